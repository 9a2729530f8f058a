"""``make report``: results -> data.json -> the Typst template -> report/report.pdf, whole or not at all.

The template ``report.typ`` (beside this file) lays out the document and ``theory.md`` holds the theory answers;
every number they print comes from the ``data.json`` that ``tables.report_data`` makes from the results files.
Typst ships in the ``typst`` wheel, so this works offline.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tomllib
import typst

from peft_helpers.config import COMMITTED_PROFILE, METHODS
from peft_helpers.plots import output_dirs
from peft_helpers.results import ResultsError, remove_debris

from . import theory
from .inputs import collect
from .tables import report_data

TEMPLATE = Path(__file__).resolve().parent / "report.typ"


PLACEHOLDER_AUTHOR = "Student name"  # report/settings.toml as committed: the student fills it in


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


README = Path(__file__).resolve().parents[1] / "README.md"
README_START, README_END = "<!-- results: written by make report from results/ -->", "<!-- results: end -->"


def readme_block(data: dict) -> str:
    """The README's results: the report's comparison table as Markdown and its concluding ranking, between markers
    (``make report`` rewrites it, so the README never leads with other numbers than the report)."""
    comp = data["comparison"]
    table = comp["table"]
    lines = ["| " + " | ".join(table["header"]) + " |", "|" + "---|" * len(table["header"])]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    what = ("Test split (validation loss on the validation split), mean ± standard deviation over training seeds "
            "0, 1 and 2; zero-shot trains nothing and runs once; \"±95% docs\": the mean half-width of each seed's "
            "bootstrap interval of ROUGE-1 over the test documents." if comp["source"] == "seeds" else
            "One training run per method, [95% interval] over the test documents.")
    if comp["untuned"]:
        what += " †: at its hand-set rate, its tuning grid not finished yet; the other methods at their tuned rate."
    note = [data["machines_note"], ""] if data.get("machines_note") else []
    return "\n".join([README_START, "", what, "", *lines, "", *note, data["conclusion"], "", README_END])


def write_readme_block(data: dict, path: Path = README) -> bool:
    """Put ``readme_block`` between the README's markers; False (and nothing written) where it has none."""
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    new = head + readme_block(data) + tail
    if new != text:
        path.write_text(new, encoding="utf-8")
    return True


def build_report(profile_name: str, root="results", settings_path: Path | None = None) -> Path:
    """Write report.pdf (and the figures it shows, and the theory answers as Markdown) from ``results/`` alone.

    Built completely or not at all: every method's results are read first
    (a missing or unreadable one raises ``ResultsError`` naming it, and the
    previous report stays), then the figures, the data file and the PDF are
    made in a temporary folder and moved into place.
    """
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
    remove_debris(report, ".build-*")  # left by a build that was killed (a live one is minutes old at most)
    with tempfile.TemporaryDirectory(dir=report, prefix=".build-") as tmp:
        tmp_figures = Path(tmp).resolve().relative_to(project) / "figures"
        tmp_figures.mkdir()
        try:
            data = report_data(profile_name, results, tmp_figures, settings, root)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:  # files that parse but are malformed
            raise ResultsError(
                f"the results files of {profile_name!r} are malformed ({type(err).__name__}: {err}); nothing was "
                "written and the previous report stays. Restore them (git checkout results/) or re-run the notebook "
                "or sweep that wrote them.") from err
        data = typeset_minus(data)
        try:  # the theory answers from their one source: Typst for the PDF, Markdown for notebook 04
            data["theory"] = theory.typst_text(data)
            (Path(tmp) / "theory_answers.md").write_text(theory.markdown_text(data), encoding="utf-8")
        except (KeyError, ValueError) as err:
            raise ResultsError(f"the theory answers could not be written ({err}); the previous report stays.") from err
        (Path(tmp) / "data.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
        template = Path(tmp) / "report.typ"
        for name in ("report.typ", "refs.yml"):
            shutil.copy(TEMPLATE.parent / name, Path(tmp) / name)
        (Path(tmp) / "settings.toml").write_text(settings_path.read_text() if settings_path.exists() else "")
        try:
            typst.compile(str(template), output=str(Path(tmp) / "report.pdf"), root=str(project),
                          sys_inputs={"data": "/" + str(tmp_figures.parent / "data.json")})
        except RuntimeError as err:  # typst.TypstError: the template or the data does not compile
            raise ResultsError(f"the report did not compile; the previous one stays. Typst said: {err}") from err
        for made in sorted(tmp_figures.iterdir()):
            shutil.move(str(made), figures / made.name)  # same file system: a rename
        shutil.move(str(Path(tmp) / "theory_answers.md"), report / "theory_answers.md")
        shutil.move(str(Path(tmp) / "report.pdf"), report / "report.pdf")
    if profile_name == COMMITTED_PROFILE and root == "results":  # the README shows the committed results only
        write_readme_block(data)
    return report / "report.pdf"


def main(argv=None) -> int:
    """``make report``: figures and report/report.pdf from the committed results/, training nothing."""


    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--profile", default=COMMITTED_PROFILE,
                        help=f"whose results (default and 'auto': {COMMITTED_PROFILE}, the committed ones); another "
                             "profile's report goes to results/<profile>/report/")
    args = parser.parse_args(argv)
    if args.profile == "auto":  # make report without PROFILE: the committed results
        args.profile = COMMITTED_PROFILE
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
