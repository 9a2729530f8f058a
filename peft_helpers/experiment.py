"""One call per notebook step: prepare data, build a method's model, train, evaluate, write results."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .config import (
    METHOD_TABLE, MODEL_TABLE, ConfigError, Profile, TrainConfig, get_profile, method_settings,
    named_profile, without_added_later,
)
from .data import check_context, load_splits, source_rows, tokenize_splits
from .models import load_model, load_tokenizer
from .evaluation import generate_summaries, rouge_per_example, rouge_summary
from .methods import AdapterError, load_trainable_state, method_object, parameter_report, trainable_state
from .results import (
    ResultsError, atomic_write_csv, atomic_write_json, atomic_write_jsonl, checkpoint_dir, disk_writes,
    experiment_dir, finished_with_other_settings, load_results, read_csv, read_json, results_dir, settings_difference,
    sweep_dir, unfinished_reason, write_unit,
)
from .training import (
    Recipe, check_lines, cpu_bf16_advice, cpu_flags, evaluate_loss, peak_memory_mib, pick_precision, reset_peak_memory,
    train,
)

_INITIAL = "_peft_helpers_initial"  # the trainable weights as build_model made them
_TRAINED = "_peft_helpers_trained"  # set once run_method has trained or loaded the model


@dataclass
class Setup:
    """What every notebook starts from: the profile, its tokenizer and its tokenized splits."""

    profile: Profile
    tokenizer: object
    splits: object  # datasets.DatasetDict with prompt_ids / target_ids
    data_report: dict

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_hash(profile: Profile, source_digest: str = "") -> str:
    """Identifies the tokenized splits: the data settings and the content of the source rows."""
    keys = ("model", "dataset", "n_train", "n_val", "n_test", "max_doc_tokens", "max_summary_tokens",
            "separator", "seed")
    values = {k: getattr(profile, k) for k in keys}
    if profile.prompt_format != "plain":  # added later: the plain format keeps the hashes it always had
        values["prompt_format"] = profile.prompt_format
    payload = json.dumps({**values, "source": source_digest}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prepare(profile: Profile, data_root: str | Path = "data") -> Setup:
    """Tokenizer and cleaned, tokenized splits for ``profile``, cached in ``data/<profile>/``.

    The cache is reused while the data settings and the source rows are
    unchanged; otherwise the splits are rebuilt from the source and the
    cache rewritten.
    """
    from datasets import load_from_disk
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # tokenizing a few hundred rows takes a second; its bars would clutter the notebook
    tokenizer = load_tokenizer(profile)
    raw, source_digest = source_rows(profile)
    folder, digest = Path(data_root) / profile.name, data_hash(profile, source_digest)
    meta = folder / "data_report.json"
    if meta.exists():
        try:
            saved = json.loads(meta.read_text())
            if saved.get("hash") == digest:
                return Setup(profile, tokenizer, load_from_disk(str(folder / "splits")), saved["report"])
        except (json.JSONDecodeError, OSError, KeyError, ValueError):
            pass  # an unreadable cache is rebuilt below
    splits, report = load_splits(profile, raw)
    splits = tokenize_splits(splits, tokenizer, profile)
    meta.unlink(missing_ok=True)  # the cache is valid only once the record is written again, after the splits
    splits.save_to_disk(str(folder / "splits"))
    atomic_write_json({"hash": digest, "report": report}, meta)
    return Setup(profile, tokenizer, splits, report)


def describe(setup: Setup) -> dict:
    """Profile, model, split sizes and device, as the first output of every notebook shows them."""
    p = setup.profile
    return {"profile": p.name, "model": MODEL_TABLE[p.model].source, "dataset": p.dataset,
            "train/val/test": f"{len(setup.splits['train'])}/{len(setup.splits['validation'])}/{len(setup.splits['test'])}",
            "device": str(device()), "torch": torch.__version__}


def train_config(profile: Profile, method: str) -> TrainConfig:
    """The shared optimisation settings, with the method's own epoch budget if it sets one."""
    settings = method_settings(profile, method)
    epochs = getattr(settings, "epochs", None)
    return dataclasses.replace(profile.train, epochs=epochs) if epochs else profile.train


def build_model(setup: Setup, method: str) -> nn.Module:
    """A freshly loaded base model with ``method`` applied (frozen, trainable parts marked)."""
    model = apply_method(load_model(setup.profile, setup.tokenizer), setup.profile, setup.tokenizer, method)
    model = model.to(device()).eval()  # wrappers are created in training mode; dropout off until train()
    setattr(model, _INITIAL, trainable_state(model))
    return model


def apply_method(model: nn.Module, profile: Profile, tokenizer, method: str) -> nn.Module:
    """``method`` applied to a loaded base ``model`` with the profile's settings: frozen, trainable parts marked.
    Returns the model to use (prompt tuning wraps it)."""
    settings, behaviour = method_settings(profile, method), method_object(method)
    check_context(profile, model.config, behaviour.virtual_tokens(settings), tokenizer)
    torch.manual_seed(profile.seed)  # LoRA's A and a sampled prompt are the same in every run
    return behaviour.apply(model, settings, tokenizer, profile.seed)


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(profile: Profile, method: str) -> str:
    """Identifies finished results: the training settings plus generation (not other methods' settings)."""
    return _digest({"training": training_hash(profile, method), "generation": dataclasses.asdict(profile.generation)})




def training_hash(profile: Profile, method: str) -> str:
    """Identifies a training run: only what changes the trained weights (not generation, not other methods)."""
    settings = method_settings(profile, method)
    if settings is not None:  # the epoch budget is hashed once, as part of the effective train settings
        settings = {k: v for k, v in without_added_later(dataclasses.asdict(settings)).items() if k != "epochs"}
    train = train_config(profile, method) if settings is not None else profile.train
    return _digest({"data": data_hash(profile), "train": dataclasses.asdict(train), "seed": profile.seed,
                    "method": method, "settings": settings})


def recipe_hash(profile: Profile, method: str, recipe: Recipe, settings_hash=config_hash) -> str:
    """``settings_hash(profile, method)`` for the default recipe (every committed result's); with another recipe, a
    hash of that and the recipe's functions, so that its result and checkpoint are never taken for the default's."""
    plain = settings_hash(profile, method)
    return plain if recipe.default else _digest({"settings": plain, "recipe": recipe.describe()})


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Library versions and hardware, recorded with every result."""
    import accelerate
    import datasets
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "datasets": datasets.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "processor": _cpu_name(),
            "cpu_flags": cpu_flags(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    else:  # what bf16 would gain here (auto stays fp32 on CPUs; see training.cpu_bf16_advice)
        info["bf16_advice"] = cpu_bf16_advice()
    return info


def load_trained(model: nn.Module, folder: Path, method: str) -> None:
    """The trained weights of a finished result in ``folder`` loaded into ``model`` (built for ``method``)."""
    method_object(method).load(model, folder)


def restore_initial(model: nn.Module) -> None:
    """Put the trainable weights back to their state when ``build_model`` made the model.

    The frozen weights never change, so this equals a freshly loaded model:
    re-running a training cell with ``retrain=True`` never continues from
    the weights of a previous run.
    """
    initial = getattr(model, _INITIAL, None)
    if initial is None:
        if getattr(model, _TRAINED, False):
            raise ConfigError("this model was already trained or loaded by run_method; build a fresh one with "
                              "build_model (re-run the model cell) before training again.")
        return
    load_trainable_state(model, initial, source="the initial weights")


def changed_settings(folder: Path, profile: Profile) -> list[str]:
    """``setting: before -> now`` for every setting in which ``profile`` differs from the one that made the result in
    ``folder`` (its config.json). Both sides are read as a ``Profile``, so a setting added since, absent from an older
    record, takes its default and compares equal."""
    before = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["profile"]
    try:
        before = Profile(**before).to_dict()
    except (TypeError, ConfigError):
        pass  # a record from code whose settings this code no longer has: compared as it is
    return settings_difference(json.loads(json.dumps(before)), json.loads(json.dumps(profile.to_dict())))


def other_settings_message(folder: Path, method: str, profile: Profile, remedy: str) -> str:
    """Why a finished result in ``folder`` is not replaced by a run of ``profile``: every setting that differs, then
    ``remedy``."""
    try:
        changed = changed_settings(folder, profile)
    except (OSError, ValueError, KeyError, TypeError):
        changed = []
    return (f"{folder} holds a finished {method} result made with other settings"
            + (f" ({'; '.join(changed)})" if changed else "") + f". It is not replaced without being asked: {remedy}")


def experiment_name(profile: Profile, method: str, base: Profile | None = None) -> str | None:
    """None when ``profile`` trains and scores ``method`` as ``base`` does (default: its named profile; a notebook
    passes the profile before its parameter cell's changes, ``$PEFT_OVERRIDES`` included): the unit the comparison
    reads. Else a run name made of the settings that differ, e.g. ``lr=0.002_r=16``: a student's experiment, which
    ``run_method(..., run=name)`` keeps in its own folder instead of replacing the comparison's result."""
    base = base if base is not None else named_profile(profile.name)
    if config_hash(profile, method) == config_hash(base, method):
        return None
    own = METHOD_TABLE[method].settings
    sections = {m.settings for m in METHOD_TABLE.values() if m.settings}
    parts = []
    for line in settings_difference(json.loads(json.dumps(base.to_dict())), json.loads(json.dumps(profile.to_dict()))):
        key, value = line.split(":", 1)[0], line.split(" -> ", 1)[1]  # "lora.targets", "['q_proj', 'v_proj']"
        if key.split(".")[0] not in sections - {own}:
            value = value.strip("[]()'\"").replace("', '", "+").replace(", ", "+")
            parts.append(f"{key.split('.')[-1]}={value}")
    name = "".join(c if c.isalnum() or c in "._-=+" else "" for c in "_".join(parts)).lstrip(".")
    digest = training_hash(profile, method)[:6]
    return name if name and len(name) <= 60 else f"{name[:50]}-{digest}" if name else digest


def environment_line(info: dict | None = None) -> str:
    """The hardware and library versions in one line (``environment()`` holds them all, recorded with each result)."""
    info = info or environment()
    flags = [k for k in ("avx512_bf16", "amx_bf16") if info.get("cpu_flags", {}).get(k)]
    threads = f"{info['torch_threads']} thread{'s' * (info['torch_threads'] != 1)}"
    where = info.get("gpu") or f"{info['processor']} ({threads}{', ' + ', '.join(flags) if flags else ''})"
    return f"{where} · torch {info['torch']} · transformers {info['transformers']} · Python {info['python']}"


def start_notebook(profile_name: str | None, run: str | None = None, **changes: dict) -> tuple[Setup, dict]:
    """Everything a method notebook does before its method: the working directory, the profile with the parameter
    cell's ``changes`` applied (``method=dict(setting=value)``; ``None`` values keep the profile's), the data, and
    for each method the folder its results go to. Prints what the run will use.

    Returns ``(setup, runs)``: ``runs[method]`` is the experiment name to pass to ``run_method`` (``run`` if given,
    else one made of the changed settings), or None for the comparison's own unit."""
    root = Path.cwd()
    while not (root / "peft_helpers").is_dir() and root != root.parent:  # from notebooks/ or the project root
        root = root.parent
    os.chdir(root if (root / "peft_helpers").is_dir() else Path.cwd())
    base = get_profile(profile_name)  # the profile as make run uses it ($PEFT_OVERRIDES included)
    profile = base.replace(**{METHOD_TABLE[method].settings: {k: v for k, v in settings.items() if v is not None}
                              for method, settings in changes.items()})
    setup = prepare(profile)
    sizes = describe(setup)
    print(f"profile {profile.name}: {sizes['model']} on {sizes['dataset']}, train/validation/test "
          f"{sizes['train/val/test']} documents, {sizes['device']}")
    print(environment_line())
    runs = {}
    for method in changes:
        runs[method] = run or experiment_name(profile, method, base)
        folder = (results_dir(profile.name, method) if runs[method] is None else
                  experiment_dir(profile.name, method, runs[method]))
        settings = ", ".join(f"{k} {v}" for k, v in effective_settings(profile, method).items())
        print(f"{method}: {method_settings(profile, method)}\n  will use: {settings}\n  results: {folder}"
              + ("" if runs[method] is None else " (an experiment: the comparison's own result is left as it is)"))
    return setup, runs


def sample_summaries(setup: Setup, model: nn.Module, split: str = "validation", indices=(0, 1)) -> list[dict]:
    """``model``'s summaries of a few documents of ``split`` (greedy, the profile's decoding), each with its ROUGE-1
    F1 against the reference: the notebooks run it before training and after, on the same documents."""
    rows = [setup.splits[split][i] for i in indices]
    predictions = generate_summaries(model, setup.tokenizer, rows, setup.profile.generation, desc="sample summaries")
    rouge1 = rouge_per_example([p["prediction"] for p in predictions], [p["reference"] for p in predictions])["rouge1"]
    return [{**p, "rouge1": float(r)} for p, r in zip(predictions, rouge1)]


def effective_settings(profile: Profile, method: str) -> dict:
    """What a run of ``method`` will use, defaults resolved: learning rate, epoch budget, batch, warm-up, patience."""
    settings, train = method_settings(profile, method), train_config(profile, method)
    return {"lr": getattr(settings, "lr", None), "epochs (at most)": train.epochs, "batch": train.batch_size,
            "warm-up": f"{train.warmup_ratio:.0%} of the updates", "patience (validation checks)": train.patience,
            "checks per epoch": train.evals_per_epoch, "precision": train.precision}


# what training records about itself (``training._summary``): a run that takes another run's training takes these
TRAINING_STATS = ("train_time_s", "validation_s", "train_tokens", "tokens_per_s", "updates", "epochs_run",
                  "stopped_early", "start_eval_loss", "learned", "mixed_precision", "peak_memory_mib", "device",
                  "cached_features", "micro_batch_size", "resumed_after_epoch")


def trained_twin(profile: Profile, method: str, root: str | Path = "results") -> Path | None:
    """A finished run of the sweeps trained with exactly these settings (the same ``config_hash``) whose weights are
    here: the tuned seeds first, then the tuning grid. A notebook's run at a sweep's settings is the same computation,
    so it takes that run's training instead of repeating it (hours on a CPU). The sweeps train in fp32 everywhere;
    where ``precision="auto"`` means fp32 too (on a CPU), their runs are these settings' computation as well."""
    digests = [config_hash(profile, method)]
    if profile.train.precision == "auto" and pick_precision("auto") == "no":
        digests.append(config_hash(profile.replace(train=dict(precision="fp32")), method))
    for sweep in ("seeds_tuned", "tune"):
        folder = sweep_dir(profile.name, sweep, root)
        for run in sorted(folder.iterdir()) if folder.is_dir() else ():
            if run.is_dir() and any(unfinished_reason(run, method, digest) is None for digest in digests):
                return run
    return None


def take_training(model: nn.Module, twin: Path, method: str) -> tuple[pd.DataFrame, dict]:
    """The weights, history and training statistics of the finished run ``twin``, loaded into ``model``."""
    load_trained(model, twin, method)
    made = read_json(twin / "metrics.json", method)
    stats = {"best_eval_loss": made["eval_loss"], **{k: made[k] for k in TRAINING_STATS if k in made},
             "reused_from": f"sweeps/{twin.parent.name}/{twin.name}"}
    return read_csv(twin / "history.csv", method), stats


def run_method(setup: Setup, method: str, model: nn.Module, retrain: bool = False,
               root: str | Path = "results", checkpoints: str | Path = "checkpoints", run: str | None = None,
               recipe: Recipe | None = None) -> dict:
    """Train (unless zero-shot) and evaluate ``model``; write and return the results (and their ``folder``).

    A finished result for the same settings (the whole unit, see
    ``results.write_unit``) is reused, its weights loaded into ``model``,
    unless ``retrain`` is true. Anything less is trained (or resumed from
    its checkpoint), and the log says why. With ``run`` the results go to
    ``results/<profile>/experiments/<method>/<run>/``, beside the method's
    own unit, which is then never touched. A ``recipe`` other than the default (another loss, optimizer or
    schedule) is always an experiment: without ``run`` it is named ``recipe-<digest>``.
    """
    profile, recipe = setup.profile, recipe or Recipe()
    if run is None and not recipe.default:
        run = f"recipe-{recipe_hash(profile, method, recipe)[:6]}"
    folder = results_dir(profile.name, method, root) if run is None else experiment_dir(profile.name, method, run, root)
    digest = recipe_hash(profile, method, recipe)
    why = "retrain=True" if retrain else unfinished_reason(folder, method, digest)
    if why is not None and not retrain and finished_with_other_settings(folder, method, digest):
        raise ResultsError(other_settings_message(
            folder, method, profile, "to replace it, run again with retrain=True (RETRAIN = True in the notebook); "
            f"to keep both, copy or move {folder} elsewhere first"
            + (" (the tests' smoke results: make clean)." if profile.name == "smoke" else ".")))
    if why is None:
        try:
            load_trained(model, folder, method)
            setattr(model, _TRAINED, True)
            print(f"{method}: reusing the finished results in {folder} (pass retrain=True to train again)")
            loaded = load_results(profile.name, method, root, folder=folder)
            if loaded.get("history") is not None:
                print("its validation checks, as printed when it trained:",
                      *check_lines(loaded["history"], train_config(profile, method).patience), sep="\n  ")
            return {**loaded, "folder": folder}
        except (ResultsError, AdapterError) as err:
            why = f"its weights could not be loaded ({err})"
    restore_initial(model)
    if not METHOD_TABLE[method].trains:
        print(f"{method}: evaluating, because {why}", flush=True)
        history, stats = None, {"train_time_s": 0.0, "tokens_per_s": None}
    else:
        twin = (trained_twin(profile, method, root) if not retrain and recipe.default and run is None else None)
        history = None
        if twin is not None:
            try:
                history, stats = take_training(model, twin, method)
                print(f"{method}: not training, because {why}, and {stats['reused_from']} trained exactly these "
                      "settings: its weights and history are taken and scored on the test split", flush=True)
            except (ResultsError, AdapterError) as err:
                print(f"{method}: {twin} has these settings but could not be loaded ({err}); training instead")
                restore_initial(model)
                history = None
        if history is None:
            print(f"{method}: training, because {why}", flush=True)
            history, stats = train_method(setup, method, model, retrain, checkpoints, recipe)
    setattr(model, _TRAINED, True)
    metrics, predictions = evaluate_method(setup, method, model, stats)
    config = {"hash": digest, "method": method, "profile": profile.to_dict(), "environment": environment(),
              "method_settings": dataclasses.asdict(settings) if (settings := method_settings(profile, method)) else None,
              **({} if recipe.default else {"recipe": recipe.describe()})}
    save_results(folder, digest, method, model, profile, config, history, metrics, predictions)
    return {"metrics": metrics, "config": config, "history": history, "predictions": predictions, "folder": folder}


def train_method(setup: Setup, method: str, model: nn.Module, retrain: bool = False,
                 checkpoints: str | Path = "checkpoints", recipe: Recipe | None = None) -> tuple[pd.DataFrame, dict]:
    """Train ``model`` with the method's settings (and ``recipe``), resuming its checkpoint unless ``retrain``."""
    profile, recipe = setup.profile, recipe or Recipe()
    run = recipe_hash(profile, method, recipe, training_hash)
    checkpoint = checkpoint_dir(profile.name, method, run, checkpoints)
    if retrain and checkpoint.exists():
        shutil.rmtree(checkpoint)  # train again from scratch, not from the last checkpoint
    reset_peak_memory()
    return train(model, setup.splits, setup.pad_id, train_config(profile, method),
                 method_settings(profile, method).lr, profile.seed, checkpoint, run, recipe)


def evaluate_method(setup: Setup, method: str, model: nn.Module, stats: dict) -> tuple[dict, list[dict]]:
    """Validation and test loss, test generations and ROUGE: the metrics of a trained ``model``."""
    profile = setup.profile
    if not METHOD_TABLE[method].trains:
        reset_peak_memory()
    params = parameter_report(model, verbose=False)  # the notebook prints it where the model is built
    train_peak = stats.get("peak_memory_mib") or peak_memory_mib()
    batch = profile.train.batch_size
    # a trained model holds its best weights, whose validation loss training already measured
    val_loss = stats.get("best_eval_loss")
    if val_loss is None:
        val_loss = evaluate_loss(model, setup.splits["validation"], setup.pad_id, batch, desc="validation loss")
    started = time.perf_counter()
    test_loss = evaluate_loss(model, setup.splits["test"], setup.pad_id, batch, desc="test loss")
    test_loss_s = time.perf_counter() - started
    started = time.perf_counter()
    predictions = generate_summaries(model, setup.tokenizer, setup.splits["test"], profile.generation,
                                     desc=f"generating ({method})")
    generation_s = time.perf_counter() - started
    rouge = rouge_summary([p["prediction"] for p in predictions], [p["reference"] for p in predictions],
                          seed=profile.seed)
    new_tokens = sum(p["new_tokens"] for p in predictions)
    metrics = {
        "method": method, "profile": profile.name, "eval_loss": val_loss, "test_loss": test_loss,
        "rouge": rouge, "trainable_params": params["trainable"], "total_params": params["total"],
        "trainable_percent": params["percent"], **stats, "peak_memory_mib": round(train_peak, 1),
        "test_loss_s": round(test_loss_s, 2), "generation_s": round(generation_s, 2),
        "generated_tokens_per_s": round(new_tokens / generation_s, 1),
        "mean_new_tokens": new_tokens / len(predictions),
        "hit_cap": sum(p["hit_cap"] for p in predictions), "n_test": len(predictions),
    }
    return metrics, predictions


def save_results(folder: Path, digest: str, method: str, model: nn.Module, profile: Profile, config: dict,
                 history, metrics: dict, predictions: list[dict]) -> Path:
    """Write the results folder as one unit (weights, config, history, predictions, metrics, completion record)."""

    def write(tmp: Path) -> None:
        method_object(method).save(model, tmp, profile, MODEL_TABLE[profile.model].source)
        atomic_write_json(config, tmp / "config.json")
        if history is not None:
            atomic_write_csv(history, tmp / "history.csv")
        atomic_write_jsonl(predictions, tmp / "predictions.jsonl")
        atomic_write_json(metrics, tmp / "metrics.json")

    with disk_writes(f"the results of {method} to {folder}",
                     "Nothing was lost: a previous result there stays as it was, and training can resume from its "
                     "checkpoint; free space (or make the folder writable) and run again."):
        return write_unit(folder, digest, write, method)
