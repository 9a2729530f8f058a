"""Choosing each method's settings by validation loss only (the test split is never read).

    python -m tools.search --profile smollm2-aclsum

Trains every candidate of ``candidates(profile)`` with the shared loop (early stopping
on validation loss), records the best validation loss of each in
``results/<profile>/search.json``, and leaves each run's checkpoint in
``checkpoints/``, keyed by its training settings: when a notebook later
trains a setting that was searched, it resumes from the finished checkpoint
instead of repeating identical work (same seed, same data, same weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from peft_helpers.config import FAMILIES, MODEL_TABLE, Profile, get_profile
from peft_helpers.experiment import build_model, prepare, train_method, training_hash
from peft_helpers.methods import parameter_report
from peft_helpers.results import atomic_write_json, profile_dir, read_json

def candidates(profile: Profile) -> dict[str, list]:
    """Settings tried per method: the profile's current default first, then alternatives.

    The alternatives move with the defaults, so search.json keeps every row ever tried (keyed by training
    hash): for smollm2-aclsum the first search started from the peft reference's settings (see parity.py).
    """
    pt, head, blocks, lora = profile.prompt_tuning, profile.last_layer, profile.last_blocks, profile.lora
    every = FAMILIES[MODEL_TABLE[profile.model].family].all_projections
    # Small on purpose: each SmolLM2 candidate costs 5-11 minutes on a 2-core CPU.
    return {
        "prompt_tuning": [pt, dataclasses.replace(pt, epochs=2 * (pt.epochs or profile.train.epochs))],
        "last_layer": [head],
        "last_blocks": [blocks],
        "lora": [lora, dataclasses.replace(lora, targets=() if set(lora.targets) == set(every) else every)],
    }


def describe_settings(settings) -> str:
    skip = {"init_text"} | ({"epochs"} if getattr(settings, "epochs", None) is None else set())
    def show(v):
        return ("+".join(v) or "family default") if isinstance(v, tuple) else v

    return ", ".join(f"{k}={show(v)}" for k, v in dataclasses.asdict(settings).items() if k not in skip)


def search(profile: Profile, methods=None, checkpoints="checkpoints") -> list[dict]:
    """Train each candidate; return one row per candidate with its best validation loss."""
    setup = prepare(profile)
    options = candidates(profile)
    rows = []
    for method in methods or options:
        for settings in options[method]:
            trial = dataclasses.replace(setup, profile=profile.replace(**{method: settings}))
            model = build_model(trial, method)
            params = parameter_report(model, verbose=False)["trainable"]
            run = training_hash(trial.profile, method)
            started = time.perf_counter()
            history, stats = train_method(trial, method, model, checkpoints=checkpoints)
            rows.append({"method": method, "settings": describe_settings(settings),
                         "trainable params": f"{params:,}", "best val loss": round(stats["best_eval_loss"], 4),
                         "epochs run": stats["epochs_run"], "train time (s)": round(stats["train_time_s"]),
                         "training hash": run})
            print(rows[-1], f"({time.perf_counter() - started:.0f} s with evaluation)", flush=True)
            del model
    return rows


def compare_generation(profile: Profile, methods=("zero_shot", "lora"), settings=None) -> list[dict]:
    """Validation ROUGE-1 of greedy decoding with and without trigram blocking, for a few methods.

    Written to ``results/<profile>/decoding.json`` by ``--generation``.
    """
    from peft_helpers.config import GenerationConfig
    from peft_helpers.evaluation import generate_summaries, rouge_summary

    setup = prepare(profile)
    options = settings or {"greedy": dataclasses.replace(profile.generation, no_repeat_ngram_size=0),
                           "greedy, no repeated trigram": dataclasses.replace(profile.generation, no_repeat_ngram_size=3)}
    rows = []
    for method in methods:
        model = build_model(setup, method)
        if method != "zero_shot":
            train_method(setup, method, model)
        for name, gen in options.items():
            assert isinstance(gen, GenerationConfig)
            preds = generate_summaries(model, setup.tokenizer, setup.splits["validation"], gen, desc=f"{method}, {name}")
            r1 = rouge_summary([p["prediction"] for p in preds], [p["reference"] for p in preds])["rouge1"]
            rows.append({"method": method, "decoding": name, "val ROUGE-1": f"{r1['mean']:.3f} [{r1['low']:.3f}, {r1['high']:.3f}]",
                         "hit cap": sum(p["hit_cap"] for p in preds)})
            print(rows[-1], flush=True)
        del model
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smollm2-aclsum")
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--generation", action="store_true",
                        help="compare decoding settings on the validation split instead (zero-shot, prompt tuning, LoRA)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    if args.generation:
        rows = compare_generation(profile, methods=args.methods or ("zero_shot", "prompt_tuning", "lora"))
        atomic_write_json({"rows": rows}, profile_dir(profile.name) / "decoding.json")
        return 0
    path = profile_dir(profile.name) / "search.json"
    previous = read_json(path) if path.exists() else {"rows": []}
    rows = search(profile, methods=args.methods)
    ran = {r["training hash"] for r in rows}  # earlier rows of other settings stay in the record
    rows = [r for r in previous["rows"] if r["training hash"] not in ran] + rows
    chosen = {}
    for method in {r["method"] for r in rows}:
        best = min((r for r in rows if r["method"] == method), key=lambda r: r["best val loss"])
        chosen[method] = best["settings"]
    note = ("Each setting trained with the shared loop (batch {b}, up to {e} epochs unless the settings name "
            "another budget, early stopping on validation loss, seed {s}); the lowest validation loss per method is "
            "the notebooks' default. The test split was not used.").format(
                b=profile.train.batch_size, e=profile.train.epochs, s=profile.seed)
    atomic_write_json({"note": note, "rows": rows, "chosen": chosen}, path)
    print("chosen by validation loss:", chosen)
    print("written", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

