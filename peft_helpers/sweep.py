"""Sweeps beyond the assignment, each from one resumable command, on the validation split only.

    python -m peft_helpers.sweep --profile smollm2-aclsum --sweep lora_rank
    python -m peft_helpers.sweep --profile smollm2-aclsum --sweep methods prompt_length

Every run of a sweep trains one setting with the shared loop, generates summaries for the validation
documents and writes one results unit, ``results/<profile>/sweeps/<sweep>/<run>/``, in the format of a
method's results (config.json with every setting, history.csv, metrics.json, predictions.jsonl, the
trained weights) with the same completion record: a finished run is skipped, an interrupted one
resumes from its last epoch checkpoint (``checkpoints/``), so a killed sweep continues where it stopped.
The test split is never read here. ``summary.json`` beside the runs collects them once they finish.

The sweeps:

- ``lora_rank``: LoRA on the query and value projections (Hu et al. 2021, sec. 7) with r in
  {1, 2, 4, 8, 16, 64}, alpha fixed at the profile's value so the scale alpha/r falls as r grows, as in
  Hu et al. (sec. 4.1). ``lora_geometry`` then compares the r=8 and r=64 updates (``geometry.json``).
- ``prompt_length``: prompt tuning with n in {1, 5, 20, 50, 100} soft tokens (Lester et al. 2021, sec. 3.2),
  text initialisation, the profile's learning rate and epochs.
- ``all_blocks``: the ceiling: every transformer block and the final norm trained (all weights but the
  embedding, which SmolLM2 and GPT-2 tie to the LM head), with the learning rate in {1e-5, 3e-5, 1e-4}.
- ``methods``: no training; the validation ROUGE of the notebooks' finished runs (``results/<profile>/<method>/``),
  so the sweeps' plots can place every method on the same axes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from .config import FAMILIES, METHOD_TABLE, MODEL_TABLE, ConfigError, Profile, get_profile, method_settings
from .evaluation import generate_summaries, rouge_summary
from .experiment import (
    Setup, build_model, config_hash, environment, load_trained, prepare, save_results, train_method,
)
from .methods import AdapterError, parameter_report
from .results import (
    ResultsError, atomic_write_json, profile_dir, read_csv, read_json, read_safetensors, results_dir, unfinished_reason,
)

SWEEPS = ("lora_rank", "prompt_length", "all_blocks", "methods")
LORA_RANKS = (1, 2, 4, 8, 16, 64)
PROMPT_LENGTHS = (1, 5, 20, 50, 100)
ALL_BLOCKS_LRS = (1e-5, 3e-5, 1e-4)


def sweep_dir(profile_name: str, sweep: str, root: str | Path = "results") -> Path:
    """``results/<profile>/sweeps/<sweep>/``: one folder per run, and summary.json."""
    return profile_dir(profile_name, root) / "sweeps" / sweep


def runs(profile: Profile, sweep: str) -> dict[str, tuple[str, Profile]]:
    """Run name -> (method, the profile with that run's settings), in the order they are trained."""
    if sweep == "lora_rank":
        targets = FAMILIES[MODEL_TABLE[profile.model].family].lora_default  # query and value
        return {f"r{r}": ("lora", profile.replace(lora=dict(r=r, targets=targets))) for r in LORA_RANKS}
    if sweep == "prompt_length":
        return {f"n{n}": ("prompt_tuning", profile.replace(prompt_tuning=dict(n_tokens=n))) for n in PROMPT_LENGTHS}
    if sweep == "all_blocks":
        depth = model_depth(profile)
        return {f"lr{lr:g}": ("last_blocks", profile.replace(last_blocks=dict(n_blocks=depth, lr=lr)))
                for lr in ALL_BLOCKS_LRS}
    if sweep == "methods":
        return {method: (method, profile) for method in METHOD_TABLE}
    raise ConfigError(f"unknown sweep {sweep!r}; choose from {', '.join(SWEEPS)}.")


def model_depth(profile: Profile) -> int:
    """The number of transformer blocks of the profile's model."""
    from .methods import transformer_blocks
    from .models import load_model

    return len(transformer_blocks(load_model(profile)))


def validation_scores(setup: Setup, model, seed: int) -> tuple[list[dict], dict]:
    """Greedy summaries of the validation documents (the profile's decoding) and their ROUGE."""
    predictions = generate_summaries(model, setup.tokenizer, setup.splits["validation"], setup.profile.generation,
                                     desc="validation summaries")
    rouge = rouge_summary([p["prediction"] for p in predictions], [p["reference"] for p in predictions], seed=seed)
    return predictions, rouge


def run_one(setup: Setup, sweep: str, name: str, method: str, root: str | Path, checkpoints: str | Path) -> str:
    """Train (or resume) and score one run of a sweep; write its unit. Returns what was done."""
    profile = setup.profile
    folder, digest = sweep_dir(profile.name, sweep, root) / name, config_hash(profile, method)
    why = unfinished_reason(folder, method, digest)
    if why is None:
        return "finished earlier"
    model = build_model(setup, method)
    if sweep == "methods":  # the notebooks' finished run: its weights and validation loss, no new training
        finished = results_dir(profile.name, method, root)
        if method != "zero_shot":
            load_trained(model, finished, method)
        history = read_csv(finished / "history.csv", method) if method != "zero_shot" else None
        stats = {k: v for k, v in read_json(finished / "metrics.json", method).items()
                 if k in ("eval_loss", "epochs_run", "train_time_s", "tokens_per_s")}
        stats["best_eval_loss"] = stats.pop("eval_loss")
    else:
        history, stats = train_method(setup, method, model, checkpoints=checkpoints)
    started = time.perf_counter()
    predictions, rouge = validation_scores(setup, model, profile.seed)
    params = parameter_report(model, verbose=False)
    metrics = {"sweep": sweep, "run": name, "method": method, "profile": profile.name, "split": "validation",
               "eval_loss": stats["best_eval_loss"], "rouge": rouge, "trainable_params": params["trainable"],
               "trainable_percent": params["percent"], **{k: v for k, v in stats.items() if k != "best_eval_loss"},
               "generation_s": round(time.perf_counter() - started, 2), "n_val": len(predictions),
               "hit_cap": sum(p["hit_cap"] for p in predictions)}
    settings = method_settings(profile, method)
    config = {"hash": digest, "sweep": sweep, "run": name, "method": method, "profile": profile.to_dict(),
              "environment": environment(), "method_settings": dataclasses.asdict(settings) if settings else None}
    save_results(folder, digest, method, model, profile, config, history, metrics, predictions)
    return f"trained and scored ({why})" if sweep != "methods" else f"scored ({why})"


def run_sweep(profile: Profile, sweep: str, root: str | Path = "results", checkpoints: str | Path = "checkpoints",
              only: list[str] | None = None) -> dict:
    """Every run of ``sweep`` not finished yet, then its summary.json; returns the summary."""
    setup = prepare(profile)
    plan = runs(profile, sweep)
    unknown = sorted(set(only or ()) - set(plan))
    if unknown:
        raise ConfigError(f"sweep {sweep} has no run(s) {unknown}; its runs are {', '.join(plan)}.")
    first = ("r8", "r64") if sweep == "lora_rank" else ()  # what lora_geometry needs, in case the sweep is cut short
    for i, (name, (method, variant)) in enumerate(sorted(plan.items(), key=lambda item: item[0] not in first), 1):
        if only and name not in only:
            continue
        started = time.perf_counter()
        print(f"[{sweep} {i}/{len(plan)}] {name}: {method}, {describe(variant, method)}", flush=True)
        trial = dataclasses.replace(setup, profile=variant)
        try:
            done = run_one(trial, sweep, name, method, root, checkpoints)
        except (ResultsError, AdapterError) as err:
            if sweep != "methods":
                raise
            done = f"skipped: the notebooks' run of {method} is not here ({err})"  # e.g. a fresh clone: make run first
        print(f"[{sweep} {i}/{len(plan)}] {name}: {done}, {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarize(profile, sweep, root)
    if sweep == "lora_rank" and {"r8", "r64"} <= {r["run"] for r in summary["rows"]}:
        atomic_write_json(lora_geometry(profile, root), sweep_dir(profile.name, sweep, root) / "geometry.json")
    return summary


def describe(profile: Profile, method: str) -> str:
    settings = method_settings(profile, method)
    if settings is None:
        return "no training"
    return ", ".join(f"{k}={'+'.join(v) if isinstance(v, tuple) else v}" for k, v in dataclasses.asdict(settings).items()
                     if v is not None and k != "init_text")


def summarize(profile: Profile, sweep: str, root: str | Path = "results") -> dict:
    """summary.json: one row per finished run (validation loss and ROUGE-1, trainable parameters, times)."""
    rows = []
    for name, (method, variant) in runs(profile, sweep).items():
        folder = sweep_dir(profile.name, sweep, root) / name
        if unfinished_reason(folder, method, config_hash(variant, method)) is not None:
            continue
        m = read_json(folder / "metrics.json", method)
        r1 = m["rouge"]["rouge1"]
        rows.append({"run": name, "method": method, "settings": describe(variant, method),
                     "trainable_params": m["trainable_params"], "val_loss": round(m["eval_loss"], 4),
                     "val_rouge1": round(r1["mean"], 4), "val_rouge1_low": round(r1["low"], 4),
                     "val_rouge1_high": round(r1["high"], 4), "epochs_run": m.get("epochs_run"),
                     "train_time_s": m.get("train_time_s"), "generation_s": m["generation_s"]})
    summary = {"sweep": sweep, "profile": profile.name, "split": "validation", "n_runs": len(runs(profile, sweep)),
               "rows": rows}
    atomic_write_json(summary, sweep_dir(profile.name, sweep, root) / "summary.json")
    return summary


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
    from .models import load_model, load_tokenizer

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


def _layer_index(path: str) -> int:
    return next(int(part) for part in path.split(".") if part.isdigit())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smollm2-aclsum")
    parser.add_argument("--sweep", nargs="+", choices=SWEEPS, required=True)
    parser.add_argument("--runs", nargs="*", default=None, help="only these runs of the sweep, e.g. r8 r64")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    for sweep in args.sweep:
        summary = run_sweep(profile, sweep, only=args.runs)
        print(f"{sweep}: {len(summary['rows'])}/{summary['n_runs']} runs finished, "
              f"{sweep_dir(profile.name, sweep) / 'summary.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
