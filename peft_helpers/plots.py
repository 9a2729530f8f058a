"""Tables and figures for the notebooks: one method's numbers, the comparison table, loss curves, ROUGE bars.

Everything here reads a result (``run_method``'s return value or ``results.load_results``) and draws or lays it
out; nothing trains. The report builder (``report/``) uses the same figures.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from peft_helpers.config import COMMITTED_PROFILE, METHOD_TABLE
from peft_helpers.results import profile_dir

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


def interval_text(r: dict, digits: int = 3) -> str:
    return f"{r['mean']:.{digits}f} [{r['low']:.{digits}f}, {r['high']:.{digits}f}]"


def base_params(results: dict[str, dict]) -> int:
    """The weights of the pretrained model as loaded: the one denominator of every "% of the model".

    A method's own total differs (the LM head's untied copy adds 28.3M to SmolLM2, LoRA its factors), so the untrained
    model's count (zero-shot) is used for all; without it, the smallest total among the methods.
    """
    if "zero_shot" in results:
        return results["zero_shot"]["metrics"]["total_params"]
    return min(r["metrics"]["total_params"] for r in results.values())


def percent_of_model(trainable: int, base: int) -> str:
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
            row[name] = interval_text(m["rouge"][key])
        row.update({
            "eval loss (val)": f"{m['eval_loss']:.3f}",
            "test loss": f"{m['test_loss']:.3f}",
            "trainable params": f"{m['trainable_params']:,}",
            "trainable %": percent_of_model(m["trainable_params"], base),
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


def show_source(obj):
    """A function's or class's source as it is in the package now, as a code block for a notebook (read live with
    ``inspect``, so what a student reads is what runs)."""
    from IPython.display import Markdown

    return Markdown(f"```python\n{textwrap.dedent(inspect.getsource(obj)).rstrip()}\n```")


class Table:
    """A table that reads whole wherever the notebook is read: HTML in Jupyter, plain text in an export or a text
    viewer (a pandas Styler alone saves only ``<pandas.io.formats.style.Styler at 0x...>`` as its text)."""

    def __init__(self, frame: pd.DataFrame):
        # a labelled index (a metrics table's row names) becomes the first column: both renderings hide the index
        self.frame = frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index(names=frame.index.name or "")

    def _repr_html_(self) -> str:
        style = self.frame.style.hide(axis="index").set_properties(**{"text-align": "left", "white-space": "normal"})
        return style.to_html()

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.width", 10_000):
            return self.frame.to_string(index=False)


def show(frame: pd.DataFrame) -> Table:
    """A table for a notebook with every cell's full text (pandas cuts columns at 50 characters)."""
    return Table(frame)


def metrics_row(metrics: dict) -> pd.DataFrame:
    """One method's headline figures as a two-column table."""
    table = comparison_table({metrics["method"]: {"metrics": metrics}})
    return table.T.rename(columns={0: "value"})


def prediction_examples(predictions: list[dict], k: int = 3, width: int = 500) -> pd.DataFrame:
    """The first ``k`` test rows: reference beside the generated summary."""
    return pd.DataFrame([{"id": p["id"], "reference": textwrap.shorten(p["reference"], width),
                          "generated": textwrap.shorten(p["prediction"] or "(empty)", width)}
                         for p in predictions[:k]])


def before_after(before: list[dict], after: list[dict], width: int = 400) -> pd.DataFrame:
    """The same documents summarised before training and after (``experiment.sample_summaries`` twice), with each
    summary's ROUGE-1 against the reference."""
    if [b["id"] for b in before] != [a["id"] for a in after]:
        raise ValueError("before and after must summarise the same documents, in the same order")
    cut = lambda text: textwrap.shorten(text or "(empty)", width)  # noqa: E731
    return pd.DataFrame([{"id": b["id"], "reference": cut(b["reference"]),
                          "before training": f"{cut(b['prediction'])} (ROUGE-1 {b['rouge1']:.2f})",
                          "after training": f"{cut(a['prediction'])} (ROUGE-1 {a['rouge1']:.2f})"}
                         for b, a in zip(before, after)])


def loss_figure(result: dict, method: str, profile_name: str) -> Path | None:
    """Where a method notebook saves its loss curves: ``figures/<method>_loss.png`` for the comparison's own result,
    nothing for an experiment (its figure is shown, not filed; its folder holds the finished unit only)."""
    from .results import results_dir

    own = Path(result["folder"]) == results_dir(profile_name, method)
    return output_dirs(profile_name)[0] / f"{method}_loss.png" if own else None


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
