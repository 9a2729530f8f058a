"""The comparison: table, loss curves, ROUGE chart, examples, and the PDF report.

Everything here reads ``results/<profile>/`` only. The report is a list of
blocks (headings, paragraphs, tables, images) rendered twice, to markdown and
to PDF (fpdf2, DejaVu from matplotlib's own fonts so any text renders).
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from .config import COMMITTED_PROFILE, METHODS
from .results import ResultsError, atomic_write_text, load_results, read_json, results_dir

LABELS = {
    "zero_shot": "zero-shot",
    "prompt_tuning": "prompt tuning",
    "last_layer": "last layer (LM head)",
    "last_blocks": "last blocks + norm",
    "lora": "LoRA",
}
COLORS = {"zero_shot": "#7f7f7f", "prompt_tuning": "#1f77b4", "last_layer": "#ff7f0e",
          "last_blocks": "#d62728", "lora": "#2ca02c"}
ROUGE_NAMES = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}


def output_dirs(profile_name: str) -> tuple[Path, Path]:
    """(figures, report) folders: the top-level ones for the committed profile, else ``results/<profile>/``.

    Only the profile whose outputs are committed writes the tracked
    ``figures/`` and ``report/``; tests and other profiles never touch them.
    """
    if profile_name != COMMITTED_PROFILE:
        base = results_dir(profile_name, "").parent / profile_name
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


def comparison_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per method: ROUGE with 95% intervals, losses, parameters, time, throughput, memory."""
    rows = []
    for method, res in results.items():
        m = res["metrics"]
        row = {"method": LABELS[method] + (" (did not learn)" if m.get("learned") is False else "")}
        for key, name in ROUGE_NAMES.items():
            row[name] = _interval(m["rouge"][key])
        row.update({
            "eval loss (val)": f"{m['eval_loss']:.3f}",
            "test loss": f"{m['test_loss']:.3f}",
            "trainable params": f"{m['trainable_params']:,}",
            "trainable %": f"{m['trainable_percent']:.3f}",
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


def discussion(results: dict[str, dict]) -> list[str]:
    """Paragraphs stating which method wins on what, at what cost, and which gaps the data support."""
    trained = {m: r["metrics"] for m, r in results.items() if m != "zero_shot"}
    if not trained:
        return ["No trained method has results yet."]
    best_rouge = max(trained, key=lambda m: trained[m]["rouge"]["rouge1"]["mean"])
    best_loss = min(trained, key=lambda m: trained[m]["eval_loss"])
    b = trained[best_rouge]
    out = [
        f"{LABELS[best_rouge]} has the highest ROUGE-1 ({_interval(b['rouge']['rouge1'])}) and "
        f"{LABELS[best_loss]} the lowest validation loss ({trained[best_loss]['eval_loss']:.3f}). "
        f"{LABELS[best_rouge]} trains {b['trainable_params']:,} parameters "
        f"({b['trainable_percent']:.3f}% of the model) in {b.get('train_time_s') or 0:.0f} s."
    ]
    supported, unsupported = [], []
    for method in results:
        if method == best_rouge:
            continue
        gap, low, high = paired_gap(results[best_rouge]["predictions"], results[method]["predictions"])
        pair = f"{LABELS[best_rouge]} vs {LABELS[method]}: {gap:+.3f} [{low:+.3f}, {high:+.3f}]"
        (supported if low > 0 else unsupported).append(pair)
    if supported:
        out.append("ROUGE-1 leads the data support (paired bootstrap over the same test documents, 95% interval "
                   "of the difference above zero): " + "; ".join(supported) + ".")
    if unsupported:
        out.append("ROUGE-1 leads the data do not support (the interval of the paired difference includes zero, "
                   "so the order could flip on another sample of documents): " + "; ".join(unsupported) + ".")
    if "zero_shot" in results:
        z = results["zero_shot"]["metrics"]
        gains = ", ".join(f"{LABELS[m]} {t['rouge']['rouge1']['mean'] - z['rouge']['rouge1']['mean']:+.3f}"
                          for m, t in trained.items())
        out.append(f"Against the untrained model (zero-shot ROUGE-1 {_interval(z['rouge']['rouge1'])}, "
                   f"validation loss {z['eval_loss']:.3f}), the change in ROUGE-1 is: {gains}.")
    capped = ", ".join(f"{LABELS[m]} {r['metrics']['hit_cap']}/{r['metrics']['n_test']}" for m, r in results.items())
    out.append(f"Summaries that ran to the generation cap without emitting eos: {capped}. "
               "Those are usually repetitions, which lower precision and so ROUGE F1.")
    return out


# ---------------------------------------------------------------------------
# The report: blocks -> markdown and PDF
# ---------------------------------------------------------------------------


_FIELD = re.compile(r"\{\{(\w+)\.(\w+)\}\}")


def fill_figures(text: str, results: dict[str, dict]) -> str:
    """Replace ``{{method.field}}`` with that method's measured value (``rouge1`` as mean [interval])."""

    def value(match: re.Match) -> str:
        method, key = match.groups()
        if method not in results:
            return f"(no {LABELS.get(method, method)} results)"
        m = results[method]["metrics"]
        if key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
            return _interval(m["rouge"][key])
        if key not in m:
            raise KeyError(f"report text asks for {match.group(0)}, which metrics.json does not have")
        v = m[key]
        if key.endswith("_params"):
            return f"{v:,}"
        if key == "trainable_percent":
            return f"{v:.3f}"
        return f"{v:.3f}" if isinstance(v, float) and key.endswith("loss") else f"{v:,.0f}" if isinstance(v, float) else str(v)

    return _FIELD.sub(value, text)


def read_markdown_blocks(path: Path, results: dict[str, dict] | None = None) -> list[tuple]:
    """Headings, paragraphs and bullet items of a small markdown file, as report blocks."""
    blocks, paragraph = [], []

    def flush():
        if paragraph:
            blocks.append(("p", " ".join(paragraph)))
            paragraph.clear()

    text = Path(path).read_text(encoding="utf-8")
    for line in (fill_figures(text, results) if results else text).splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,3})\s+(.*)", stripped)
        if heading:
            flush()
            blocks.append((f"h{len(heading.group(1))}", heading.group(2)))
        elif stripped.startswith("- "):
            flush()
            blocks.append(("li", stripped[2:]))
        elif not stripped:
            flush()
        else:
            paragraph.append(stripped)
    flush()
    return blocks


def to_markdown(blocks: list[tuple]) -> str:
    lines = []
    for kind, *content in blocks:
        if kind.startswith("h"):
            lines += ["#" * int(kind[1]) + " " + content[0], ""]
        elif kind == "p":
            lines += [content[0], ""]
        elif kind == "li":
            lines.append("- " + content[0])
        elif kind == "table":
            frame = content[0]
            lines += ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            lines.append("")
        elif kind == "image":
            lines += [f"![{content[1]}]({content[0]})", ""]
    return "\n".join(lines) + "\n"


def _font_paths() -> tuple[str, str]:
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return str(folder / "DejaVuSans.ttf"), str(folder / "DejaVuSans-Bold.ttf")


def to_pdf(blocks: list[tuple], path: Path, base: Path) -> Path:
    """Render blocks to an A4 PDF; tables shrink their font to fit the page width."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(format="A4")
    regular, bold = _font_paths()
    pdf.add_font("DejaVu", "", regular)
    pdf.add_font("DejaVu", "B", bold)
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for kind, *content in blocks:
        if kind.startswith("h"):
            size = {"h1": 17, "h2": 13, "h3": 11}[kind]
            if kind == "h2" and pdf.get_y() > pdf.h - 60:
                pdf.add_page()
            pdf.set_font("DejaVu", "B", size)
            pdf.ln(2)
            pdf.multi_cell(width, size * 0.5, content[0], align="L")
            pdf.ln(1)
        elif kind in ("p", "li"):
            pdf.set_font("DejaVu", "", 9.5)
            text = content[0].replace("**", "")
            if kind == "li":
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(width - 4, 4.8, "• " + text)
            else:
                pdf.multi_cell(width, 4.8, text)
            pdf.ln(1.5)
        elif kind == "table":
            frame = content[0]
            n = len(frame.columns)
            pdf.set_font("DejaVu", "", 7 if n <= 6 else 6 if n <= 10 else 5)
            with pdf.table(width=width, text_align="LEFT", headings_style=FontFace(emphasis="BOLD"),
                           line_height=pdf.font_size * 1.4) as table:
                table.row([str(c) for c in frame.columns])
                for row in frame.itertuples(index=False):
                    table.row([str(v) for v in row])
            pdf.ln(3)
        elif kind == "image":
            image = base / content[0]
            if pdf.get_y() > pdf.h - 95:
                pdf.add_page()
            pdf.image(str(image), w=width)
            pdf.set_font("DejaVu", "", 8)
            pdf.multi_cell(width, 4, content[1], align="C")
            pdf.ln(2)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".pdf.tmp")
    pdf.output(str(tmp))
    tmp.replace(path)
    return Path(path)


def _settings_table(config: dict) -> pd.DataFrame:
    profile = config["profile"]
    rows = [("profile", profile["name"]), ("model", profile["model"]), ("dataset", profile["dataset"]),
            ("train / val / test rows", f"{profile['n_train']} / {profile['n_val']} / {profile['n_test']}"),
            ("caps: document / summary tokens", f"{profile['max_doc_tokens']} / {profile['max_summary_tokens']}"),
            ("prompt format", "document + " + repr(profile["separator"]) + " + ' ' + summary + eos"),
            ("seed", profile["seed"])]
    rows += [(f"train.{k}", v) for k, v in profile["train"].items()]
    rows += [(f"generation.{k}", v) for k, v in profile["generation"].items()]
    for method in ("prompt_tuning", "last_layer", "last_blocks", "lora"):
        shown = {k: ("+".join(v) if v else "model default") if isinstance(v, list) else v
                 for k, v in profile[method].items()}
        rows.append((method, ", ".join(f"{k}={v}" for k, v in shown.items())))
    env = config["environment"]
    rows.append(("hardware", f"{env.get('gpu') or env.get('processor') or 'CPU'}, {env['cpu_count']} cores"))
    rows.append(("libraries", ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "transformers",
                                                                 "accelerate", "datasets"))))
    return pd.DataFrame(rows, columns=["setting", "value"]).astype(str)


def _search_blocks(profile_name: str) -> list[tuple]:
    path = results_dir(profile_name, "search.json")
    if not path.exists():
        return []
    search = read_json(path)
    frame = pd.DataFrame(search["rows"]).drop(columns=["training hash"], errors="ignore")
    blocks = [("h2", "Choosing the defaults: validation loss per setting"), ("p", search["note"]), ("table", frame)]
    decoding = results_dir(profile_name, "decoding.json")
    if decoding.exists():
        blocks += [("p", "Decoding, compared on the validation split (never the test split): greedy search with and "
                         "without blocking repeated trigrams. 'hit cap' counts outputs that reached the token limit "
                         "without an end-of-sequence token, usually a repetition loop."),
                   ("table", pd.DataFrame(read_json(decoding)["rows"]))]
    return blocks


def _parity_blocks(profile_name: str) -> list[tuple]:
    path = results_dir(profile_name, "parity") / "parity.json"
    if not path.exists():
        return []
    parity = read_json(path)
    return [("h2", "Appendix: parity with the peft reference"), ("p", parity["note"]),
            ("table", pd.DataFrame(parity["rows"]))]


def build_report(profile_name: str, root="results", theory: Path = Path("report/theory.md")) -> Path:
    """Write report.md and report.pdf (with the figures they show) from ``results/`` alone.

    Built completely or not at all: every method's results are read first
    (a missing or unreadable one raises ``ResultsError`` naming it, and the
    previous report stays), then the figures and both files are made in a
    temporary folder and moved into place.
    """
    import shutil
    import tempfile

    results = collect(profile_name, METHODS, root, strict=True)
    figures, report = output_dirs(profile_name)
    report.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=report, prefix=".build-") as tmp:
        tmp_figures, tmp_report = Path(tmp) / "figures", Path(tmp) / "report"
        tmp_report.mkdir()
        blocks = report_blocks(profile_name, results, tmp_figures, theory)
        atomic_write_text(to_markdown(blocks), tmp_report / "report.md")
        to_pdf(blocks, tmp_report / "report.pdf", base=tmp_report)
        for made in sorted(tmp_figures.iterdir()):
            shutil.move(str(made), figures / made.name)  # same file system: a rename
        shutil.move(str(tmp_report / "report.md"), report / "report.md")
        shutil.move(str(tmp_report / "report.pdf"), report / "report.pdf")
    return report / "report.pdf"


def report_blocks(profile_name: str, results: dict[str, dict], figures: Path, theory: Path) -> list[tuple]:
    """The report as blocks; draws its figures into ``figures`` (a folder beside the report's)."""
    plot_loss_curves(results, figures / "loss_curves.png")
    plot_rouge(results, figures / "rouge.png")
    plt.close("all")
    table = comparison_table(results)
    config = next(iter(results.values()))["config"]
    rel = Path("../figures")  # figures/ sits beside report/ in every layout
    blocks: list[tuple] = [
        ("h1", "Parameter-efficient fine-tuning for summarization: prompt tuning, last-layer tuning, LoRA"),
        ("p", f"Profile {profile_name}: every number below was produced by the notebooks in notebooks/ on this "
              "profile and read back from results/. Intervals are 95% percentile-bootstrap intervals over the "
              "test rows (1,000 resamples)."),
        ("h2", "Setup"), ("table", _settings_table(config)),
        ("h2", "Results"),
        ("p", "ROUGE F1 on the test split (mean [95% interval]); generation identical for every method."),
        ("table", table[["method", *ROUGE_NAMES.values()]]),
        ("p", "Loss (token-weighted cross-entropy on summary tokens + eos), cost and throughput. Peak memory "
              "is the peak resident memory of the process from the start of training (CPU), or the peak "
              "allocated GPU memory (GPU)."),
        ("table", table.drop(columns=list(ROUGE_NAMES.values()))),
        ("image", str(rel / "loss_curves.png"), "Training (left) and validation (right) loss per method."),
        ("image", str(rel / "rouge.png"), "ROUGE per method with 95% bootstrap intervals."),
        ("h2", "Discussion"),
        *[("p", text) for text in discussion(results)],
        ("h2", "Examples (first three test documents)"),
    ]
    for _, row in examples_table(results, 3, 600).iterrows():
        blocks.append(("h3", f"Document {row['id']}"))
        blocks += [("p", f"**{k}:** {v}") for k, v in row.items() if k != "id"]
    blocks += _search_blocks(profile_name)
    if Path(theory).exists():
        blocks += read_markdown_blocks(theory, results)
    blocks += _parity_blocks(profile_name)
    return blocks


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
