"""The comparison the report leads with: every method's runs, read once, in one shape.

A trained method enters with its three training seeds at its tuned settings (the ``seeds_tuned`` sweep) once all three
are in; until then with its seeds at the notebooks' settings (the ``seeds`` sweep), marked untuned. The untrained
baselines come from ``seeds``. A profile without seeds runs (the test profiles) compares the notebooks' single runs,
one seed each. Every row carries where its files are, so that tables, figures and sentences read the same runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from peft_helpers.evaluation import rouge_per_example
from peft_helpers.results import ResultsError, profile_dir, read_json, read_jsonl, sweep_dir

from .inputs import SEED_ORDER, seed_groups, sweep_rows

BASELINES = ("zero_shot", "zero_shot_chat")
N_SEEDS = 3


def machine_label(environment: dict) -> str:
    """A machine as the cost table's note names it: the GPU, else the CPU with its cores and widest vector unit."""
    if environment.get("gpu"):
        return environment["gpu"]
    flags = environment.get("cpu_flags") or {}
    unit = ("AVX-512 with bf16" if flags.get("avx512_bf16") else "AVX-512" if flags.get("avx512f") else
            "AVX2" if flags.get("avx2") else "no AVX2")
    return f"{environment.get('processor', 'an unnamed CPU')} ({environment.get('cpu_count', '?')} cores, {unit})"


def _augment(row: dict, folder: Path) -> dict:
    """A summary row with what the report reads from its run's own files: cost, rate, where the files are."""
    metrics, config = read_json(folder / "metrics.json"), read_json(folder / "config.json")
    settings = config.get("method_settings") or {}
    return {**row, "folder": str(folder), "machine": machine_label(config.get("environment") or {}), "peak_memory_mib": metrics.get("peak_memory_mib"),
            "tokens_per_s": metrics.get("tokens_per_s"), "lr": settings.get("lr"),
            "epochs_budget": settings.get("epochs") or config["profile"]["train"]["epochs"],
            "hit_cap": metrics.get("test", {}).get("hit_cap"), "n_test": metrics.get("test", {}).get("n_test")}


def _sweep_groups(profile_name: str, sweep: str, root) -> dict[str, list[dict]]:
    groups = seed_groups(sweep_rows(profile_name, sweep, root))
    folder = sweep_dir(profile_name, sweep, root)
    return {m: [{**_augment(r, folder / r["run"]), "sweep": sweep} for r in rows] for m, rows in groups.items()}


def _notebook_rows(profile_name: str, results: dict[str, dict], root) -> dict[str, list[dict]]:
    """The notebooks' single runs as rows of the seeds' shape (one seed each)."""
    out = {}
    for method in SEED_ORDER:
        res = results.get(method)
        if res is None:
            continue
        m, env = res["metrics"], res["config"].get("environment") or {}
        row = {"run": method, "method": method, "seed": res["config"]["profile"]["seed"], "val_loss": m["eval_loss"],
               "test_loss": m["test_loss"], "trainable_params": m["trainable_params"],
               "train_time_s": m.get("train_time_s") or 0.0, "epochs_run": m.get("epochs_run"),
               "device": env.get("gpu") or env.get("processor") or "an unrecorded machine",
               "folder": str(profile_dir(profile_name, root) / method), "peak_memory_mib": m.get("peak_memory_mib"),
               "tokens_per_s": m.get("tokens_per_s"), "lr": (res["config"].get("method_settings") or {}).get("lr"),
               "hit_cap": m.get("hit_cap"), "n_test": m.get("n_test"), "sweep": None, "machine": machine_label(env)}
        for key in ("rouge1", "rouge2", "rougeL"):
            row.update({f"test_{key}": m["rouge"][key]["mean"], f"test_{key}_low": m["rouge"][key]["low"],
                        f"test_{key}_high": m["rouge"][key]["high"]})
        out[method] = [row]
    return out


def comparison(profile_name: str, results: dict[str, dict], root="results") -> dict:
    """``{"groups": method -> rows (by seed), "tuned": method -> bool, "before": method -> untuned rows,
    "source": "seeds" | "notebooks"}``: the runs every table, figure and sentence of the comparison reads."""
    before = _sweep_groups(profile_name, "seeds", root)
    after = _sweep_groups(profile_name, "seeds_tuned", root)
    if "zero_shot" not in before:
        groups = _notebook_rows(profile_name, results, root)
        return {"groups": groups, "tuned": {m: False for m in groups}, "before": {}, "source": "notebooks"}
    groups, tuned = {}, {}
    for method in SEED_ORDER:
        complete = len(after.get(method, [])) >= N_SEEDS
        rows = after[method] if complete else before.get(method)
        if rows:
            groups[method], tuned[method] = rows, complete
    return {"groups": groups, "tuned": tuned, "before": before, "source": "seeds"}


def test_predictions(row: dict) -> list[dict]:
    """A run's test predictions, in its file's order (a sweep's file holds the validation split's too)."""
    rows = read_jsonl(Path(row["folder"]) / "predictions.jsonl", row["method"])
    return [p for p in rows if p.get("split", "test") == "test"]


def history(row: dict) -> pd.DataFrame | None:
    path = Path(row["folder"]) / "history.csv"
    return pd.read_csv(path) if path.is_file() else None


def document_scores(groups: dict[str, list[dict]]) -> dict[str, np.ndarray]:
    """Per-document test ROUGE-1 of every run: method -> array (seeds, documents), documents in one order."""
    out, ids = {}, None
    for method, rows in groups.items():
        per_seed = []
        for row in rows:
            test = test_predictions(row)
            order = [p["id"] for p in test]
            if ids is None:
                ids = order
            elif order != ids:
                raise ResultsError(f"the run {row['folder']} scored other test documents than the other methods "
                                   f"({len(order)} vs {len(ids)} rows); run it again.")
            per_seed.append(rouge_per_example([p["prediction"] for p in test], [p["reference"] for p in test])["rouge1"])
        out[method] = np.stack(per_seed)
    return out
