"""The report's figures: the tuning curves, the pairwise gaps, fit and cost of the compared runs, and the parameter
budget of the size sweeps."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from peft_helpers.plots import COLORS

from .stats import common_machine, cost_runs, timed_elsewhere
from .words import method_label

FULL_FT_COLOR = "#9467bd"


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
            label = "LoRA on q, v, by rank r (green labels)" if method == "lora" else "prompt tuning, by length n (blue labels)"
            ax.plot(xs, ys, mark, color=COLORS[method], alpha=0.6, label=label)
            # r = 1 and n = 100 share an x (57,600 parameters): LoRA's labels go above left, the prompt's below right
            offset, align = ((-5, 7), "right") if method == "lora" else ((6, -14), "left")
            for r, x, y in zip(rows, xs, ys):
                ax.annotate(r["run"][1:], (x, y), textcoords="offset points", xytext=offset, ha=align, fontsize=8,
                            color=COLORS[method], fontweight="bold")  # each label in its series' colour
        for r in methods:
            if r[key] is None:  # validation ROUGE needs the methods or seeds sweep; the loss is in every run's metrics
                continue
            if r["method"] in ("zero_shot", "zero_shot_chat"):  # nothing trained: a line, not a point
                ax.axhline(r[key], color=COLORS["zero_shot"], ls=":" if r["method"] == "zero_shot" else "--",
                           label=method_label(r["method"]))
                continue
            color = FULL_FT_COLOR if r["method"] == "full_ft" else COLORS[r["method"]]
            label = method_label(r["method"])
            spread = ([[r[key] - r[f"{key}_min"]], [r[f"{key}_max"] - r[key]]] if f"{key}_min" in r else None)
            ax.errorbar(r["trainable_params"], r[key], yerr=spread, fmt="D", color=color, ms=7, capsize=3,
                        markeredgecolor="black", label=label + (f", {'tuned' if r.get('tuned') else 'hand-set rate'} "
                                                                 f"({r['n_seeds']} seed{'s' * (r['n_seeds'] > 1)})"
                                                                 if "n_seeds" in r else " (one run)"))
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


def plot_forest(pairs: list[dict], path: Path):
    """Every pair of methods on test ROUGE-1 (``stats.pairwise``): the mean gap A - B with its 95% interval (paired
    over documents, training seeds resampled), one row per pair, coloured by the verdict that survives Holm's
    adjustment; the Holm-adjusted p-value at the right."""
    colors = {"ahead": "#2ca02c", "behind": "#d62728", "tied": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(7.2, 0.19 * len(pairs) + 0.8))
    for i, r in enumerate(pairs):
        y = len(pairs) - 1 - i
        color = colors.get(r["holm_verdict"], colors["tied"])
        ax.plot([r["low"], r["high"]], [y, y], color=color, lw=2)
        ax.plot(r["mean"], y, "o", color=color, ms=4)
        ax.text(1.01, y, f"Holm p {r['holm_p']:.3f}" if r["holm_p"] >= 0.001 else "Holm p < 0.001",
                transform=ax.get_yaxis_transform(), va="center", fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(pairs)), [f"{method_label(r['a'])} vs {method_label(r['b'])}" for r in pairs][::-1],
                  fontsize=7)
    ax.set_xlabel("test ROUGE-1 gap A - B (95% interval; green: A ahead, grey: tied, after Holm)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def method_color(method: str) -> str:
    return FULL_FT_COLOR if method == "full_ft" else COLORS[method]


def _save(fig, path: Path):
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def plot_tuning(rows: list[dict], chosen: dict, path: Path):
    """The tuning curves: best validation loss against learning rate, one line per method's grid, the chosen rate
    ringed; a variant tried at its method's chosen rate (LoRA on q, v; the 100-token prompt) as a lone marker."""
    fig, ax = plt.subplots(figsize=(7.6, 3.3))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    variants = {"lora_qv": ("lora", "s", "LoRA on q, v"), "prompt_tuning_n100": ("prompt_tuning", "^", "100-token prompt")}
    for group, runs in groups.items():
        runs = sorted(runs, key=lambda r: r["lr"])
        xs, ys = [r["lr"] for r in runs], [r["val_loss"] for r in runs]
        if group in variants:
            base, mark, label = variants[group]
            ax.plot(xs, ys, mark, color=method_color(base), ms=7, mfc="white", label=label)
            continue
        ax.plot(xs, ys, "o-", color=method_color(group), label=method_label(group))
        pick = (chosen or {}).get(group)
        if pick:
            ax.plot(pick["lr"], pick["val_loss"], "o", ms=13, mfc="none", mec=method_color(group), mew=1.5)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate (log scale; ringed: the chosen rate)", ylabel="best validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _save(fig, path)


def plot_cost(groups: dict[str, list[dict]], path: Path):
    """Quality against cost: test ROUGE-1 (top) and test loss (bottom) against trained parameters, training time and
    peak memory, each method at its mean over seeds with a bar from its lowest to its highest seed; the untrained
    baselines as horizontal lines. Times and memory are medians over a method's runs on the machine that made most runs
    (``stats.cost_runs``); a method with no run there is left out of those panels (its figures are another
    machine's)."""
    fig, axes = plt.subplots(2, 3, figsize=(8.6, 4.0), sharey="row")
    common = common_machine(groups)
    costs = (("trainable_params", "trained parameters (log)", True), ("train_time_s", "training time, s (log)", True),
             ("peak_memory_mib", "peak memory, MiB", False))
    for i, (key, label) in enumerate((("test_rouge1", "test ROUGE-1"), ("test_loss", "test loss"))):
        for j, (cost, xlabel, log) in enumerate(costs):
            ax = axes[i][j]
            for method, rows in groups.items():
                values = [r[key] for r in rows]
                mean = sum(values) / len(values)
                if method in ("zero_shot", "zero_shot_chat"):
                    ax.axhline(mean, color=COLORS["zero_shot"], ls=":" if method == "zero_shot" else "--", lw=1,
                               label=method_label(method))
                    continue
                if cost != "trainable_params" and timed_elsewhere(rows, common):
                    continue  # a time or a peak of another kind of machine is not placed beside the others
                measured = rows if cost == "trainable_params" else cost_runs(rows, common)
                xs = [r[cost] for r in measured if r.get(cost)]
                if not xs:
                    continue
                x = sorted(xs)[len(xs) // 2]  # the median seed's cost (times and memory: on the common machine)
                ax.errorbar(x, mean, yerr=[[mean - min(values)], [max(values) - mean]], fmt="D", ms=6, capsize=3,
                            color=method_color(method), markeredgecolor="black", label=method_label(method))
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide
                if cost == "train_time_s":  # seconds span about one decade: ticks at 1, 3 of each, in plain numbers
                    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return fig


def plot_fit(histories: dict[str, "object"], path: Path):
    """Training and validation loss per epoch, one panel per method on one y-range, so that the gap between them (how
    far each method fits its training documents beyond what carries over) reads alike across panels."""
    methods = list(histories)
    fig, axes = plt.subplots(1, len(methods), figsize=(8.6, 2.2), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        h = histories[method]
        train = h.dropna(subset=["train_loss"])
        ax.plot(train.epoch, train.train_loss, "o--", ms=3, color=method_color(method), label="training")
        ax.plot(h.epoch, h.eval_loss, "o-", ms=3, color=method_color(method), label="validation")
        best = h.eval_loss.idxmin()
        ax.plot(h.epoch[best], h.eval_loss[best], "o", ms=9, mfc="none", mec="black")
        ax.set_title(method_label(method), fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss", fontsize=8)
    axes[0][0].legend(fontsize=7, frameon=False)
    return _save(fig, path)
