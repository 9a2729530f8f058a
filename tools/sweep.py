"""Sweeps beyond the assignment, each from one resumable command, on the validation split only.

    python -m tools.sweep --profile smollm2-aclsum --sweep lora_rank
    python -m tools.sweep --profile smollm2-aclsum --sweep methods prompt_length

Every run of a sweep trains one setting with the shared loop, generates summaries for the validation
documents and writes one results unit, ``results/<profile>/sweeps/<sweep>/<run>/``, in the format of a
method's results (config.json with every setting, history.csv, metrics.json, predictions.jsonl, the
trained weights) with the same completion record: a finished run is skipped, an interrupted one
resumes from its last epoch checkpoint (``checkpoints/``), so a killed sweep continues where it stopped.
Only the ``seeds`` sweep reads the test split. ``summary.json`` beside the runs collects them once they finish.

Every trained run of a sweep uses fp32 arithmetic on every device (``train.precision="fp32"``; the notebooks' ``auto``
is fp32 on a CPU too), so runs made on a GPU and on a CPU compare.

The sweeps:

- ``lora_rank``: LoRA on the query and value projections (Hu et al. 2021, sec. 7) with r in
  {1, 2, 4, 8, 16, 64}, alpha fixed at the profile's value so the scale alpha/r falls as r grows, as in
  Hu et al. (sec. 4.1). ``lora_geometry`` then compares the r=8 and r=64 updates (``geometry.json``).
- ``prompt_length``: prompt tuning with n in {1, 5, 20, 50, 100} soft tokens (Lester et al. 2021, sec. 3.2),
  text initialisation, the profile's learning rate and epochs.
- ``prompt_init``: the profile's prompt (20 tokens) started from sampled vocabulary rows and from uniform noise in
  [-0.5, 0.5], against the text initialisation (``prompt_length``'s n20 run; Lester et al. 2021, sec. 3.2).
- ``full_ft``: the ceiling: every weight trained (the embedding, tied to the LM head, included), with the learning
  rate in {1e-5, 3e-5, 1e-4}.
- ``seeds``: the final numbers: zero-shot, then every notebook method with training seeds 0, 1, 2 (and full
  fine-tuning at the learning rate ``full_ft`` chose on validation, once that sweep has finished), each scored on
  the validation split and on the test split. The only sweep that reads the test split.
- ``tune``: the comparison protocol (DESIGN.md): every method, full fine-tuning included, on a log-spaced
  learning-rate grid of at least four values, each run up to 8 epochs with early stopping on validation loss, the
  profile's batch, warm-up, schedule and clipping; the grid is extended one step past an edge until the lowest
  validation loss is strictly inside it. Then LoRA's other placement (query and value) and prompt tuning's other
  length (100 tokens) at their method's chosen rate. Selection by validation loss only: no generation, no test split.
- ``seeds_tuned``: the tuned comparison: seeds 0, 1, 2 of every method whose ``tune`` grid has finished, at its chosen
  rate, scored on validation and test like ``seeds``. Seed 0 is the tuning run at that rate; where its weights were
  kept (soft prompts, LoRA adapters) they are scored instead of trained again. The untuned ``seeds`` runs stay as they
  are: the comparison's "before".
- ``methods``: no training; the validation ROUGE of the notebooks' finished runs (``results/<profile>/<method>/``),
  so the sweeps' plots can place every method on the same axes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import torch

from peft_helpers.config import (
    FAMILIES, METHOD_TABLE, METHODS, MODEL_TABLE, TUNE_EPOCHS, TUNE_GRIDS, ConfigError, Profile, get_profile,
    method_settings, settings_text,
)
from peft_helpers.evaluation import generate_summaries, rouge_summary
from peft_helpers.experiment import (
    Setup, build_model, config_hash, data_hash, environment, evaluate_method, load_trained, other_settings_message,
    prepare, save_results, train_method,
)
from peft_helpers.methods import AdapterError, parameter_report
from peft_helpers.results import (
    ResultsError, atomic_write_json, finished_runs, finished_with_other_settings, read_csv, read_json,
    read_safetensors, results_dir, run_row, sweep_dir, unfinished_reason, verified_rows,
)
from peft_helpers.training import evaluate_loss

PROJECT = Path(__file__).resolve().parents[1]
SWEEPS = ("lora_rank", "prompt_length", "prompt_init", "full_ft", "seeds", "tune", "seeds_tuned", "methods")
SCORED_ON_TEST = ("seeds", "seeds_tuned")  # the sweeps that read the test split
LORA_RANKS = (1, 2, 4, 8, 16, 64)
PROMPT_LENGTHS = (1, 5, 20, 50, 100)
FULL_FT_LRS = (1e-5, 3e-5, 1e-4)
SEEDS = (0, 1, 2)
TRAINED = ("prompt_tuning", "last_layer", "last_blocks", "lora")  # the notebooks' trained methods


# The sweeps made before the tuning protocol ran at the rates set by hand, and the seeds among them are the
# comparison's "before"; the profile's defaults have since moved to the tuned rates, so these sweeps keep the settings
# they ran with (a fresh clone reuses every committed run of theirs instead of training it again).
HAND_SET = {"smollm2-aclsum": dict(prompt_tuning=dict(lr=0.1, epochs=8), last_layer=dict(lr=1e-4, epochs=None),
                                   last_blocks=dict(lr=1e-4, epochs=None), lora=dict(lr=1e-3, epochs=None))}
HAND_SET_SWEEPS = ("lora_rank", "prompt_length", "prompt_init", "full_ft", "seeds")


def hand_set(profile: Profile) -> Profile:
    """The profile at the rates the sweeps before the tuning protocol used (``HAND_SET``); unchanged elsewhere."""
    changes = HAND_SET.get(profile.name)
    return profile.replace(**changes) if changes else profile


def runs(profile: Profile, sweep: str, root: str | Path = "results") -> dict[str, tuple[str, Profile]]:
    """Run name -> (method, the profile with that run's settings), in the order they are trained."""
    if sweep == "methods":
        return {method: (method, profile) for method in METHODS}
    if sweep not in SWEEPS:
        raise ConfigError(f"unknown sweep {sweep!r}; choose from {', '.join(SWEEPS)}.")
    profile = profile.replace(train=dict(precision="fp32"))  # the same arithmetic on every device
    if sweep in HAND_SET_SWEEPS:
        profile = hand_set(profile)
    if sweep == "lora_rank":
        targets = FAMILIES[MODEL_TABLE[profile.model].family].lora_default  # query and value
        return {f"r{r}": ("lora", profile.replace(lora=dict(r=r, targets=targets))) for r in LORA_RANKS}
    if sweep == "prompt_length":
        return {f"n{n}": ("prompt_tuning", profile.replace(prompt_tuning=dict(n_tokens=n))) for n in PROMPT_LENGTHS}
    if sweep == "prompt_init":
        return {"vocab": ("prompt_tuning", profile.replace(prompt_tuning=dict(init_text=None))),
                "uniform": ("prompt_tuning", profile.replace(prompt_tuning=dict(uniform_init=True)))}
    if sweep == "full_ft":
        return {f"lr{lr:g}": ("last_blocks", full_fine_tuning(profile, lr)) for lr in FULL_FT_LRS}
    if sweep == "tune":
        return tune_plan(profile, root)
    if sweep == "seeds_tuned":
        return tuned_seeds_plan(profile, root)
    plan = {"zero_shot": ("zero_shot", profile)}
    if MODEL_TABLE[profile.model].chat:  # an instruction model, prompted as it was trained to be: its chat template
        plan["zero_shot_chat"] = ("zero_shot", profile.replace(prompt_format="chat"))
    for seed in SEEDS:
        plan.update({f"{method}-s{seed}": (method, profile.replace(seed=seed)) for method in TRAINED})
    lr = chosen_full_ft_lr(profile, root)
    if lr is not None:
        plan.update({f"full_ft-s{seed}": ("last_blocks", full_fine_tuning(profile.replace(seed=seed), lr))
                     for seed in SEEDS})
    return plan


def full_fine_tuning(profile: Profile, lr: float) -> Profile:
    """Every weight trained: every block, the final norm and the (tied) embedding, at ``lr``."""
    return profile.replace(last_blocks=dict(n_blocks=model_depth(profile), lr=lr, embeddings=True))


def chosen_full_ft_lr(profile: Profile, root: str | Path = "results") -> float | None:
    """The full_ft learning rate with the lowest validation loss, once every run of that sweep is in its summary."""
    losses = {row["run"]: row["val_loss"] for row in verified_rows(profile.name, "full_ft", root)}
    by_name = {f"lr{lr:g}": lr for lr in FULL_FT_LRS}
    if set(losses) != set(by_name):
        return None
    return by_name[min(losses, key=losses.get)]


# ---------------------------------------------------------------------------
# The tuning protocol: the same learning-rate search for every method
# ---------------------------------------------------------------------------

TUNE_MAX_STEPS = 3  # how far a grid may be extended past either edge before the sweep says so and stops extending


def lr_step(lr: float, up: bool) -> float:
    """The next rate of the 1-3-10 ladder above (or below) ``lr``: 1e-4 -> 3e-4 -> 1e-3 ..."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = lr / 10 ** exponent
    ladder = [1.0, 3.0, 10.0] if up else [0.1, 0.3, 1.0]  # 3e-4 down -> 1e-4, 1e-4 down -> 3e-5
    if up:
        nxt = next(m for m in ladder if m > mantissa + 1e-9)
    else:
        nxt = next(m for m in reversed(ladder) if m < mantissa - 1e-9)
    return float(f"{nxt * 10 ** exponent:.3g}")


def tune_variant(profile: Profile, group: str, lr: float) -> tuple[str, Profile]:
    """The method and settings of one tuning run: ``group`` (a method, or one of its tried variants) at ``lr``."""
    epochs = dict(lr=lr, epochs=TUNE_EPOCHS)
    profile = profile.replace(train=dict(precision="fp32"))  # as every sweep trains
    if group == "full_ft":  # its own method (the older full_ft sweep trained it as last_blocks with the embedding)
        return "full_ft", profile.replace(full_ft=epochs)
    if group == "lora_qv":
        targets = FAMILIES[MODEL_TABLE[profile.model].family].lora_default
        return "lora", profile.replace(lora=dict(targets=targets, **epochs))
    if group == "prompt_tuning_n100":
        return "prompt_tuning", profile.replace(prompt_tuning=dict(n_tokens=100, **epochs))
    return group, profile.replace(**{group: epochs})


# the variants each method also tries, at the rate its grid chose
TUNE_VARIANTS = {"lora": "lora_qv", "prompt_tuning": "prompt_tuning_n100"}


def _run_name(group: str, lr: float) -> str:
    return f"{group}-lr{lr:g}"


def _finished_loss(profile: Profile, sweep: str, name: str, method: str, variant: Profile,
                   root: str | Path) -> float | None:
    folder = sweep_dir(profile.name, sweep, root) / name
    if not scored(folder, method, config_hash(variant, method)):
        return None
    return read_json(folder / "metrics.json", method)["eval_loss"]


def tune_grid(profile: Profile, group: str, root: str | Path = "results") -> tuple[list[float], dict[float, float]]:
    """A method's grid as far as the finished runs extend it, and the validation loss of each finished rate.

    The grid grows one rate past an edge whenever every rate in it has finished and the lowest loss sits on that edge.
    """
    grid = sorted(TUNE_GRIDS[group])
    while True:
        losses = {}
        for lr in grid:
            method, variant = tune_variant(profile, group, lr)
            loss = _finished_loss(profile, "tune", _run_name(group, lr), method, variant, root)
            if loss is not None:
                losses[lr] = loss
        if len(losses) < len(grid):
            return grid, losses
        best = min(losses, key=losses.get)
        low, high = grid[0], grid[-1]
        if best == low and len([g for g in grid if g < TUNE_GRIDS[group][0]]) < TUNE_MAX_STEPS:
            grid = [lr_step(low, up=False)] + grid
        elif best == high and len([g for g in grid if g > TUNE_GRIDS[group][-1]]) < TUNE_MAX_STEPS and high < 3:
            grid = grid + [lr_step(high, up=True)]
        else:
            return grid, losses


def tune_choice(profile: Profile, group: str, root: str | Path = "results") -> dict | None:
    """The chosen rate of a method's grid once the grid is finished: ``{"lr", "val_loss", "interior"}``, else None."""
    grid, losses = tune_grid(profile, group, root)
    if len(losses) < len(grid):
        return None
    best = min(losses, key=losses.get)
    return {"lr": best, "val_loss": losses[best], "grid": grid, "interior": grid[0] < best < grid[-1]}


def tune_plan(profile: Profile, root: str | Path = "results") -> dict[str, tuple[str, Profile]]:
    """Run name -> (method, settings) of every tuning run known so far, cheapest methods first."""
    plan = {}
    for group in TUNE_GRIDS:
        grid, _ = tune_grid(profile, group, root)
        plan.update({_run_name(group, lr): tune_variant(profile, group, lr) for lr in grid})
        variant = TUNE_VARIANTS.get(group)
        choice = tune_choice(profile, group, root) if variant else None
        if choice is not None:
            plan[_run_name(variant, choice["lr"])] = tune_variant(profile, variant, choice["lr"])
    return plan


def tuned_seeds_plan(profile: Profile, root: str | Path = "results") -> dict[str, tuple[str, Profile]]:
    """Seeds 0, 1 and 2 of every method whose tuning grid has finished, each at its chosen rate with the grid's epoch
    budget and early stopping. Seed 0 is the tuning run at that rate (the same settings): ``run_one`` scores its
    weights where they were kept instead of training it again."""
    plan = {}
    for group in TUNE_GRIDS:
        choice = tune_choice(profile, group, root)
        if choice is None:
            continue
        method, variant = tune_variant(profile, group, choice["lr"])
        plan.update({f"{group}-s{seed}": (method, variant.replace(seed=seed)) for seed in SEEDS})
    return plan


def tuning_twin(profile: Profile, sweep: str, name: str, method: str, root: str | Path = "results") -> Path | None:
    """The tuning run that trained exactly this run of ``seeds_tuned`` (seed 0 at the chosen rate), when its weights
    are here for these settings; else None."""
    if sweep != "seeds_tuned" or not METHOD_TABLE[method].trains:
        return None
    group = name.rsplit("-s", 1)[0]
    folder = sweep_dir(profile.name, "tune", root) / _run_name(group, method_settings(profile, method).lr)
    return folder if unfinished_reason(folder, method, config_hash(profile, method)) is None else None


# what a sweep's own metrics hold besides the training statistics it takes over from a reused tuning run
_RUN_FIELDS = ("sweep", "run", "method", "profile", "split", "seed", "eval_loss", "rouge", "trainable_params",
               "trainable_percent", "generation_s", "n_val", "hit_cap", "test", "reused_from")


_DEPTHS: dict[str, int] = {}


def model_depth(profile: Profile) -> int:
    """The number of transformer blocks of the profile's model (loaded once per model)."""
    from peft_helpers.methods import transformer_blocks
    from peft_helpers.models import load_model

    if profile.model not in _DEPTHS:
        _DEPTHS[profile.model] = len(transformer_blocks(load_model(profile)))
    return _DEPTHS[profile.model]


def validation_scores(setup: Setup, model, seed: int) -> tuple[list[dict], dict]:
    """Greedy summaries of the validation documents (the profile's decoding) and their ROUGE."""
    predictions = generate_summaries(model, setup.tokenizer, setup.splits["validation"], setup.profile.generation,
                                     desc="validation summaries")
    rouge = rouge_summary([p["prediction"] for p in predictions], [p["reference"] for p in predictions], seed=seed)
    return predictions, rouge


def run_one(setup: Setup, sweep: str, name: str, method: str, root: str | Path, checkpoints: str | Path,
            retrain: bool = False) -> str:
    """Train (or resume) and score one run of a sweep; write its unit. Returns what was done.

    The run contract of the notebooks: a finished run for these settings is kept (a sweep needs its scores, not its
    weights, so a fresh clone's committed runs are finished too); a finished run made with other settings is not
    replaced unless ``retrain``."""
    profile = setup.profile
    folder, digest = sweep_dir(profile.name, sweep, root) / name, config_hash(profile, method)
    if not retrain and scored(folder, method, digest):
        return "finished earlier"
    if not retrain and finished_with_other_settings(folder, method, digest):
        raise ResultsError(other_settings_message(
            folder, method, profile, f"to replace it, run again with --retrain; to keep both, move {folder} "
            "elsewhere first."))
    why = "--retrain" if retrain else unfinished_reason(folder, method, digest)
    model = build_model(setup, method)
    if sweep == "methods":  # the notebooks' finished run: its weights and validation loss, no new training
        finished = results_dir(profile.name, method, root)
        if method != "zero_shot":
            load_trained(model, finished, method)
        history = read_csv(finished / "history.csv", method) if method != "zero_shot" else None
        stats = {k: v for k, v in read_json(finished / "metrics.json", method).items()
                 if k in ("eval_loss", "epochs_run", "train_time_s", "tokens_per_s")}
        stats["best_eval_loss"] = stats.pop("eval_loss")
    elif method == "zero_shot":
        history, stats = None, {"best_eval_loss": evaluate_loss(model, setup.splits["validation"], setup.pad_id,
                                                                profile.train.batch_size, desc="validation loss")}
    elif not retrain and (twin := tuning_twin(profile, sweep, name, method, root)) is not None:
        load_trained(model, twin, method)  # computed once: the tuning run at these settings, now scored on test
        history = read_csv(twin / "history.csv", method)
        made = read_json(twin / "metrics.json", method)
        stats = {"best_eval_loss": made["eval_loss"], **{k: v for k, v in made.items() if k not in _RUN_FIELDS},
                 "reused_from": f"tune/{twin.name}"}
        why = f"{why}; the weights of tune/{twin.name} (the same settings) are scored instead of training again"
    else:
        history, stats = train_method(setup, method, model, retrain=retrain, checkpoints=checkpoints)
    started = time.perf_counter()
    if sweep == "tune":  # selection reads the validation loss only: no summaries to generate
        predictions, rouge = [], None
    else:
        predictions, rouge = validation_scores(setup, model, profile.seed)
    params = parameter_report(model, verbose=False)
    metrics = {"sweep": sweep, "run": name, "method": method, "profile": profile.name, "split": "validation",
               "seed": profile.seed, "eval_loss": stats["best_eval_loss"], "rouge": rouge,
               "trainable_params": params["trainable"], "trainable_percent": params["percent"],
               **{k: v for k, v in stats.items() if k != "best_eval_loss"},
               "generation_s": round(time.perf_counter() - started, 2), "n_val": len(predictions),
               "hit_cap": sum(p["hit_cap"] for p in predictions)}
    predictions = [{"split": "validation", **p} for p in predictions]
    if sweep in SCORED_ON_TEST:  # the final numbers: the test split too, as the notebooks score it
        test, test_predictions = evaluate_method(setup, method, model, stats)
        metrics["split"] = "validation, test"
        metrics["test"] = {k: test[k] for k in ("test_loss", "rouge", "test_loss_s", "generation_s", "mean_new_tokens",
                                                "hit_cap", "n_test")}
        predictions += [{"split": "test", **p} for p in test_predictions]
    settings = method_settings(profile, method)
    config = {"hash": digest, "sweep": sweep, "run": name, "method": method, "profile": profile.to_dict(),
              "environment": environment(), "method_settings": dataclasses.asdict(settings) if settings else None}
    save_results(folder, digest, method, model, profile, config, history, metrics, predictions)
    return f"trained and scored ({why})" if sweep != "methods" else f"scored ({why})"


def expected_seconds(profile: Profile, sweep: str, method: str, root: str | Path = "results") -> float:
    """How long a run of ``method`` in ``sweep`` may take, from the records of its finished runs made on this kind of
    device (this GPU, or a CPU): the longest of them (training, validation, test loss and generation), times 1.25 for
    a slower machine; an hour where none has finished yet."""
    here = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    times = []
    for run in finished_runs(profile.name, sweep, root):
        metrics = read_json(run / "metrics.json")
        if metrics.get("method") != method or read_json(run / "config.json").get("environment", {}).get("gpu") != here:
            continue
        test = metrics.get("test") or {}
        times.append(sum(v or 0.0 for v in (metrics.get("train_time_s"), metrics.get("validation_s"),
                                              metrics.get("generation_s"), test.get("test_loss_s"),
                                              test.get("generation_s"))))
    return 1.25 * max(times) if times else 3600.0


def until_time(text: str, now: float | None = None) -> float:
    """``--until HH:MM`` as epoch seconds: that time today, or tomorrow where it has passed."""
    import datetime

    try:
        hour, minute = (int(part) for part in text.split(":"))
        now_dt = datetime.datetime.fromtimestamp(time.time() if now is None else now)
        target = now_dt.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError as err:
        raise ConfigError(f"--until takes a time of day as HH:MM (e.g. 07:20), not {text!r}.") from err
    if target.timestamp() <= now_dt.timestamp():
        target += datetime.timedelta(days=1)
    return target.timestamp()


def run_sweep(profile: Profile, sweep: str, root: str | Path = "results", checkpoints: str | Path = "checkpoints",
              only: list[str] | None = None, retrain: bool = False, until: float | None = None) -> dict:
    """Every run of ``sweep`` not finished yet, then its summary.json; returns the summary. ``retrain`` (only with
    ``only``) trains the named runs again, replacing what is there. ``until`` (epoch seconds): no run starts that
    could not finish by then (``expected_seconds``), so that a machine that is not kept never holds a run cut short;
    the sweep stops there and continues on the next call."""
    if retrain and not only:
        raise ConfigError("--retrain replaces finished runs: name them with --runs (it never applies to a whole sweep).")
    setup = prepare(profile)
    plan = runs(profile, sweep, root)
    unknown = sorted(set(only or ()) - set(plan))
    if unknown:
        raise ConfigError(f"sweep {sweep} has no run(s) {unknown}; its runs are {', '.join(plan)}.")
    first = ("r8", "r64") if sweep == "lora_rank" else ()  # what lora_geometry needs, in case the sweep is cut short
    visited: set[str] = set()
    made: set[str] = set()  # the runs this call trained or scored (not finished earlier)
    while True:  # the plan is read again after every run: a finished grid can add rates (the tune sweep)
        plan = runs(profile, sweep, root)
        pending = [(i, name, mv) for i, (name, mv) in
                   enumerate(sorted(plan.items(), key=lambda item: item[0] not in first), 1)
                   if name not in visited and (not only or name in only)]
        if not pending:
            break
        i, name, (method, variant) = pending[0]
        visited.add(name)
        if until is not None and not scored(sweep_dir(profile.name, sweep, root) / name, method,
                                            config_hash(variant, method)):
            need = expected_seconds(profile, sweep, method, root)
            if tuning_twin(variant, sweep, name, method, root) is not None:
                need *= 0.3  # seed 0 scores the tuning run's weights: evaluation only
            if time.time() + need > until:
                print(f"[{sweep} {i}/{len(plan)}] {name}: not started: it may take {need / 60:.0f} min and would run "
                      f"past --until; the next call continues here", flush=True)
                break
        started = time.perf_counter()
        print(f"[{sweep} {i}/{len(plan)}] {name}: {method}, {describe(variant, method)}", flush=True)
        same_data = data_hash(variant) == data_hash(setup.profile)
        trial = dataclasses.replace(setup, profile=variant) if same_data else prepare(variant)  # e.g. the chat format
        try:
            done = run_one(trial, sweep, name, method, root, checkpoints, retrain)
        except (ResultsError, AdapterError) as err:
            if sweep != "methods":
                raise
            done = f"skipped: the notebooks' run of {method} is not here ({err})"  # e.g. a fresh clone: make run first
        print(f"[{sweep} {i}/{len(plan)}] {name}: {done}, {time.perf_counter() - started:.0f} s", flush=True)
        if not done.startswith(("finished earlier", "skipped")):
            made.add(name)
    if sweep == "seeds" and not any(name.startswith("full_ft") for name in plan):
        print("[seeds] full fine-tuning is left out until the full_ft sweep has finished (it chooses its lr)")
    return finish_sweep(profile, sweep, root, made)


def finish_sweep(profile: Profile, sweep: str, root: str | Path = "results", made: set[str] = frozenset()) -> dict:
    """What a sweep writes once its runs are done (``made``: the runs this call trained or scored): summary.json, the
    rank sweep's geometry, the tuned seeds' prompt tokens. Returns the summary."""
    summary = summarize(profile, sweep, root)
    geometry = sweep_dir(profile.name, sweep, root) / "geometry.json"
    if (sweep == "lora_rank" and {"r8", "r64"} <= {r["run"] for r in summary["rows"]}
            and (made & {"r8", "r64"} or not geometry.exists())):  # recomputed only from new adapters: SVDs differ
        atomic_write_json(lora_geometry(profile, root), geometry)  # in their last digits from machine to machine
    tokens = sweep_dir(profile.name, sweep, root) / "prompt_tokens.json"
    made_prompts = any(name.startswith("prompt_tuning") for name in made)
    if sweep == "seeds_tuned" and (made_prompts or not tokens.exists()) and any(
            r["method"] == "prompt_tuning" for r in summary["rows"]):
        atomic_write_json(prompt_tokens(profile, root), tokens)
    return summary


def run_pool(profile: Profile, sweeps: list[str], jobs: int, root: str | Path = "results",
             checkpoints: str | Path = "checkpoints", until: float | None = None) -> dict[str, int]:
    """The runs of ``sweeps`` on ``jobs`` processes at once (several runs sharing one GPU, or a many-core CPU).

    Each process is ``python -m tools.sweep --sweep S --runs NAME``: one run, with the run contract and resume of a
    single run, its output in ``<checkpoints>/pool/<sweep>-<name>.log``. The plans are read again whenever a process
    ends, so a grid that finishes adds its next rate, its variant and its seeds while the other runs go on. ``until``
    (epoch seconds): no run starts that its method's finished runs say could not end by then. A signal (SIGINT,
    SIGTERM) stops every process (each resumes from its last epoch checkpoint on the next call). Every sweep's summary
    is written at the end. Returns the count of runs finished earlier, made here, failed and left."""
    import signal
    import subprocess

    prepare(profile)  # the data cache written once, before the processes read it
    logs = Path(checkpoints) / "pool"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs)), "PEFT_PLAIN_PROGRESS": "1"}
    running: dict[tuple[str, str], tuple[subprocess.Popen, float]] = {}
    earlier, made, failed, left = set(), {sweep: set() for sweep in sweeps}, set(), set()

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            pending = []
            for sweep in sweeps:
                for name, (method, variant) in runs(profile, sweep, root).items():
                    key = (sweep, name)
                    if key in running or key in failed or name in made[sweep]:
                        continue
                    if scored(sweep_dir(profile.name, sweep, root) / name, method, config_hash(variant, method)):
                        earlier.add(key)
                        continue
                    pending.append((sweep, name, method, variant))
            for sweep, name, method, variant in pending[:max(0, jobs - len(running))]:
                need = expected_seconds(profile, sweep, method, root)
                if until is not None and time.time() + need > until:
                    if (sweep, name) not in left:
                        print(f"[pool] {sweep}/{name}: not started: it may take {need / 60:.0f} min and would run past "
                              "--until; the next call continues here", flush=True)
                    left.add((sweep, name))
                    continue
                log = open(logs / f"{sweep}-{name}.log", "w")
                cmd = [sys.executable, "-m", "tools.sweep", "--profile", profile.name, "--sweep", sweep, "--runs", name,
                       "--root", str(Path(root).resolve()), "--checkpoints", str(Path(checkpoints).resolve())]
                process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT)
                running[(sweep, name)] = (process, time.time())
                log.close()
                print(f"[pool] started {sweep}/{name} ({len(running)} running)", flush=True)
            if not running:
                left |= {(s, n) for s, n, *_ in pending}
                break
            time.sleep(2)
            for key, (process, started) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[key]
                sweep, name = key
                if process.returncode == 0:
                    made[sweep].add(name)
                    print(f"[pool] finished {sweep}/{name} in {time.time() - started:.0f} s", flush=True)
                else:
                    failed.add(key)
                    tail = (logs / f"{sweep}-{name}.log").read_text(errors="replace").splitlines()[-5:]
                    print(f"[pool] FAILED {sweep}/{name} (exit {process.returncode}):\n  " + "\n  ".join(tail),
                          flush=True)
    except KeyboardInterrupt as why:
        print(f"[pool] stopping ({why}): {len(running)} run(s) cut, each resumes from its checkpoint", flush=True)
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.wait()
        left |= set(running)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sweep in sweeps:
        finish_sweep(profile, sweep, root, made[sweep])
    counts = {"finished earlier": len(earlier), "made": sum(map(len, made.values())), "failed": len(failed),
              "left": len(left)}
    print("[pool] " + ", ".join(f"{k}: {v}" for k, v in counts.items()), flush=True)
    return counts


def describe(profile: Profile, method: str) -> str:
    """A run's method settings as ``key=value`` text (a prompt's init named, settings added later only when set)."""
    settings = method_settings(profile, method)
    return settings_text(method, dataclasses.asdict(settings) if settings is not None else None)


def summarize(profile: Profile, sweep: str, root: str | Path = "results") -> dict:
    """summary.json: one row per finished run on disk (validation loss and ROUGE-1, trainable parameters, times; test
    scores for the seeds sweep), each made from its run's own files: the runs of the plan in its order, then any other
    finished run there (made with other settings, or by an older plan), so a partial re-run never drops a row."""
    plan = runs(profile, sweep, root)
    finished = {run.name: run for run in finished_runs(profile.name, sweep, root)}
    order = [name for name in plan if name in finished] + sorted(set(finished) - set(plan))
    rows = [run_row(finished[name], sweep) for name in order]
    split = "validation, test" if sweep in SCORED_ON_TEST else "validation"
    summary = {"sweep": sweep, "profile": profile.name, "split": split, "n_runs": len(plan), "rows": rows}
    if sweep == "tune":
        summary["chosen"] = {group: tune_choice(profile, group, root) for group in TUNE_GRIDS}
    atomic_write_json(summary, sweep_dir(profile.name, sweep, root) / "summary.json")
    return summary


def scored(folder: Path, method: str, digest: str) -> bool:
    """Whether ``folder`` holds a finished run's scores for these settings: its completion record names them and every
    file but the weights is as the record says. The weights may be absent (full-rank weights are not committed): a
    sweep needs the scores only."""
    return unfinished_reason(folder, method, digest, weights=False) is None


# ---------------------------------------------------------------------------
# What the low-rank updates are (Hu et al. 2021, sec. 7)
# ---------------------------------------------------------------------------


def _adapter_factors(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Layer path -> (A (r, d_in), B (d_out, r), alpha/r) from a peft-format adapter folder."""
    config = read_json(folder / "adapter_config.json", "lora")
    tensors = read_safetensors(folder / "adapter_model.safetensors", "lora")
    scale = config["lora_alpha"] / config["r"]
    out = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            layer = key[: -len(".lora_A.weight")].removeprefix("base_model.model.")
            out[layer] = (a.double(), tensors[key.replace("lora_A", "lora_B")].double(), scale)
    if not out:
        raise ResultsError(f"{folder} holds no LoRA factors.")
    return out


def subspace_similarity(a_small: torch.Tensor, a_large: torch.Tensor) -> torch.Tensor:
    """Hu et al.'s phi(i, j) = ||U_i^T V_j||_F^2 / min(i, j) for all i <= r_small, j <= r_large.

    U and V are the right-singular vectors of the two A matrices (the input directions each update reads);
    phi is 1 when one span contains the other and about max(i, j) / d_in for random subspaces.
    """
    u = torch.linalg.svd(a_small, full_matrices=False).Vh  # (r_small, d_in), rows by singular value
    v = torch.linalg.svd(a_large, full_matrices=False).Vh  # (r_large, d_in)
    overlap = (u @ v.T) ** 2  # (r_small, r_large): squared cosines between single directions
    cumulative = overlap.cumsum(0).cumsum(1)  # entry (i-1, j-1) = ||U_i^T V_j||_F^2
    i = torch.arange(1, u.shape[0] + 1, dtype=overlap.dtype)[:, None]
    j = torch.arange(1, v.shape[0] + 1, dtype=overlap.dtype)[None, :]
    return cumulative / torch.minimum(i, j)


def amplification(weight: torch.Tensor, delta: torch.Tensor, r: int, generator: torch.Generator) -> dict:
    """Hu et al.'s sec. 7.3: how much of W lies in the top-r directions of Delta W, of W itself and of random ones.

    ||U^T W V||_F with U, V the top-r left/right singular vectors; ``factor`` = ||Delta W||_F / ||U^T W V||_F for
    Delta W's own directions (Hu et al. report about 21.5 for r = 4 in GPT-3).
    """
    def projected(u, v):
        return torch.linalg.matrix_norm(u.T @ weight @ v).item()

    du, _, dvh = torch.linalg.svd(delta, full_matrices=False)
    wu, ws, _ = torch.linalg.svd(weight, full_matrices=False)
    ru = torch.linalg.qr(torch.randn(weight.shape[0], r, generator=generator, dtype=weight.dtype)).Q
    rv = torch.linalg.qr(torch.randn(weight.shape[1], r, generator=generator, dtype=weight.dtype)).Q
    along_delta = projected(du[:, :r], dvh[:r].T)
    delta_norm = torch.linalg.matrix_norm(delta).item()
    return {"delta_norm": delta_norm, "weight_norm": torch.linalg.matrix_norm(weight).item(),
            "along_delta": along_delta, "along_weight": ws[:r].norm().item(), "along_random": projected(ru, rv),
            "factor": delta_norm / along_delta}


def lora_geometry(profile: Profile, root: str | Path = "results", small: str = "r8", large: str = "r64") -> dict:
    """phi between the r=8 and r=64 updates, and how much each amplifies directions of W (per matrix type)."""
    from peft_helpers.models import load_model, load_tokenizer

    folder = sweep_dir(profile.name, "lora_rank", root)
    factors = {name: _adapter_factors(folder / name / "adapter") for name in (small, large)}
    transposed = read_json(folder / small / "adapter" / "adapter_config.json", "lora")["fan_in_fan_out"]
    base = dict(load_model(profile, load_tokenizer(profile)).named_modules())
    generator = torch.Generator().manual_seed(profile.seed)
    out = {"note": ("phi(i, j) (Hu et al. 2021, sec. 7.2) between the right-singular vectors of A for r=8 and r=64, "
                    "mean over layers; random subspaces give about max(i, j)/d_in. Amplification (sec. 7.3): "
                    "||U^T W V||_F for the top-r singular directions of Delta W, of W and of random directions, "
                    "mean over layers; factor = ||Delta W||_F / ||U^T W V||_F along Delta W's directions."),
           "small": small, "large": large, "matrices": {}}
    for kind in sorted({layer.rsplit(".", 1)[1] for layer in factors[small]}):
        layers = sorted((lay for lay in factors[small] if lay.endswith("." + kind)), key=_layer_index)
        phis = torch.stack([subspace_similarity(factors[small][lay][0], factors[large][lay][0]) for lay in layers])
        d_in = factors[small][layers[0]][0].shape[1]
        entry = {"layers": len(layers), "d_in": d_in, "phi_mean": phis.mean(0).tolist(),
                 "phi_1_1": phis[:, 0, 0].mean().item(), "phi_1_1_per_layer": phis[:, 0, 0].tolist(),
                 "phi_8_64": phis[:, -1, -1].mean().item(), "phi_8_64_random": max(phis.shape[1:]) / d_in}
        for name in (small, large):
            rows = []
            for lay in layers:
                a, b, scale = factors[name][lay]
                weight = base[lay].weight.detach().double()  # nn.Linear: (d_out, d_in); GPT-2's Conv1D: (d_in, d_out)
                weight = weight.T if transposed else weight
                rows.append(amplification(weight, scale * b @ a, a.shape[0], generator))
            entry[f"amplification_{name}"] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        out["matrices"][kind] = entry
    return out


def prompt_tokens(profile: Profile, root: str | Path = "results") -> dict:
    """How interpretable the learned soft prompts are (Lester et al. 2021, sec. 7): for each finished 20-token prompt
    of the tuning grid (one per learning rate) and of the tuned seeds, every soft token's nearest vocabulary token by
    cosine similarity, whether it is still the token the prompt started from, and the cosine between each learned
    vector and its starting one."""
    import torch.nn.functional as F

    from peft_helpers.experiment import load_trained
    from peft_helpers.methods import add_soft_prompt, nearest_tokens
    from peft_helpers.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(profile)
    out = {"note": ("nearest vocabulary token of each soft token by cosine similarity (Lester et al. 2021, sec. 7); "
                    "'kept': still the token of the initialisation text at that position; 'moved': cosine between "
                    "the learned vector and its starting one"), "runs": {}}
    runs = [(sweep, p) for sweep, pattern in (("tune", "prompt_tuning-lr*"), ("seeds_tuned", "prompt_tuning-s*"))
            for p in sorted(sweep_dir(profile.name, sweep, root).glob(pattern)) if (p / "complete.json").is_file()]
    for sweep, run in runs:
        settings = read_json(run / "config.json")["profile"]["prompt_tuning"]
        model = add_soft_prompt(load_model(profile, tokenizer), tokenizer, settings["n_tokens"], settings["init_text"])
        start = model.prompt.detach().clone()
        ids = tokenizer(settings["init_text"], add_special_tokens=False)["input_ids"] if settings["init_text"] else []
        init = [tokenizer.decode([t]) for t in (ids * (settings["n_tokens"] // max(len(ids), 1) + 1))[:settings["n_tokens"]]]
        load_trained(model, run, "prompt_tuning")
        near = nearest_tokens(model, tokenizer, k=1)
        moved = F.cosine_similarity(model.prompt.detach().float(), start.float(), dim=-1).tolist()
        out["runs"][f"{sweep}/{run.name}"] = [{"position": n["position"], "nearest": n["tokens"][0], "cosine": n["cosine"][0],
                             "init": init[i] if init else None, "kept": bool(init) and n["tokens"][0] == init[i],
                             "moved": round(moved[i], 3)} for i, n in enumerate(near)]
    return out


def _layer_index(path: str) -> int:
    return next(int(part) for part in path.split(".") if part.isdigit())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smollm2-aclsum")
    parser.add_argument("--sweep", nargs="+", choices=SWEEPS, required=True)
    parser.add_argument("--runs", nargs="*", default=None, help="only these runs of the sweep, e.g. r8 r64")
    parser.add_argument("--retrain", action="store_true",
                        help="train the runs named with --runs again, replacing their finished results")
    parser.add_argument("--list", action="store_true", help="print the sweeps' run names, one per line, and stop")
    parser.add_argument("--until", default=None, metavar="HH:MM",
                        help="start no run that could not finish by this time of day (its expected length from the "
                             "finished runs of its method); for machines that are not kept")
    parser.add_argument("--root", default="results", help="the results folder (default: results)")
    parser.add_argument("--checkpoints", default="checkpoints", help="the checkpoints folder (default: checkpoints)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once, each in its own process (e.g. 8 on one GPU); the plans are read again "
                             "whenever one ends")
    parser.add_argument("--summarize", action="store_true",
                        help="only rebuild each sweep's summary.json from the runs on disk (no training)")
    args = parser.parse_args(argv)
    try:
        profile = get_profile(args.profile)
        if args.list:
            for sweep in args.sweep:
                print("\n".join(f"{sweep} {name}" for name in runs(profile, sweep, args.root)))
            return 0
        until = until_time(args.until) if args.until else None
        if args.jobs < 1:
            raise ConfigError(f"--jobs takes a count of processes of 1 or more, not {args.jobs}.")
        if args.jobs > 1:
            if args.runs or args.retrain or args.summarize:
                raise ConfigError("--jobs runs whole sweeps: it does not combine with --runs, --retrain or "
                                  "--summarize.")
            counts = run_pool(profile, args.sweep, args.jobs, args.root, args.checkpoints, until=until)
            return 1 if counts["failed"] else 0
        for sweep in args.sweep:
            summary = summarize(profile, sweep, args.root) if args.summarize else run_sweep(
                profile, sweep, args.root, args.checkpoints, only=args.runs, retrain=args.retrain, until=until)
            print(f"{sweep}: {len(summary['rows'])}/{summary['n_runs']} runs finished, "
                  f"{sweep_dir(profile.name, sweep, args.root) / 'summary.json'}", flush=True)
    except (ConfigError, ResultsError) as err:  # a setting or a results folder the user can fix: say what, no trace
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
