"""The theory answers have one source (report/theory.md), rendered as Typst for the PDF and as Markdown for notebook
04: the same words and figures in both, conditional parts kept or dropped by the data, figures always plain text."""

import re
import tempfile
from pathlib import Path

import pytest
import typst

from report import theory

DATA = {"m": {"lora": {"params": "2,442,240", "eval_loss": "2.701"}}, "sweep": {"rank": {"best": "4"}, "empty": ""},
        "verdict": "LoRA is ahead (+0.025 [+0.011, +0.043])"}
SOURCE = """<!-- a comment -->
## How it works <q-lora>

LoRA @hu2021 trains {m.lora.params} numbers, $r (d_\\text{in} + d_\\text{out})$ per matrix, and reaches
{m.lora.eval_loss}[[?sweep.rank: (rank sweep: best $r = {sweep.rank.best}$)]][[?sweep.empty: never shown]].
[[?sweep.rank & sweep.missing: nor this.]] Here {verdict}.
"""


def test_both_renderings_carry_the_same_words_and_figures():
    typ, md = theory.render(DATA, "typst", source=SOURCE), theory.render(DATA, "markdown", source=SOURCE)
    assert typ.startswith("== How it works <q-lora>\n\nLoRA @hu2021 trains 2,442,240 numbers, $r (d_\"in\" + d_\"out\")$")
    assert md.startswith("### How it works\n\nLoRA (Hu et al. 2022) trains 2,442,240 numbers, $r (d_\\text{in} + d_\\text{out})$")
    plain = lambda text: re.sub(r"\\(.)", r"\1", text)  # noqa: E731  (the escapes of each target removed)
    numbers = lambda text: re.findall(r"\d+(?:[,.]\d+)*", plain(re.sub(r"@\w+|\(Hu et al. 2022\)", "", text)))  # noqa: E731
    assert numbers(typ) == numbers(md) == ["2,442,240", "2.701", "4", "0.025", "0.011", "0.043"]
    for text in (typ, md):
        assert "(rank sweep: best" in text and "never shown" not in text and "nor this" not in text
        assert "a comment" not in text and "[[" not in text and "{" not in text.replace("\\text{", "")


def test_a_figure_is_text_never_markup_in_the_pdf():
    """Figures holding Typst's markup characters compile as text once escaped; unescaped they break the build (a
    reference to a label that does not exist), so the escape is what makes the difference."""
    data = {"x": "@nolabel #nothing <x> $ *a* _b_ [c] // d - e + f = g"}
    with tempfile.TemporaryDirectory() as tmp:
        doc = Path(tmp) / "t.typ"
        doc.write_text(theory.render(data, "typst", refs={}, source="Value: {x}.\n"))
        typst.compile(str(doc), output=str(Path(tmp) / "t.pdf"))
        doc.write_text("Value: " + data["x"] + ".\n")
        with pytest.raises(RuntimeError):
            typst.compile(str(doc), output=str(Path(tmp) / "t.pdf"))


def test_a_missing_figure_or_an_unknown_math_command_stops_the_build_by_name():
    with pytest.raises(KeyError, match="m.lora.rank"):
        theory.render(DATA, "typst", source="LoRA at rank {m.lora.rank}.\n")
    with pytest.raises(ValueError, match="sqrt"):
        theory.render(DATA, "typst", source="Scaled by $\\sqrt{r}$.\n")


def test_the_committed_theory_answers_are_the_source_with_the_committed_results(committed_report_data):
    """report/theory_answers.md (what notebook 04 shows) is what theory.md makes from results/ now; make report
    rewrites it."""
    data = committed_report_data
    root = Path(__file__).resolve().parents[1]
    committed = (root / "report" / "theory_answers.md").read_text(encoding="utf-8")
    assert committed == theory.markdown_text(data)
    assert len(re.findall(r"^### ", committed, re.M)) == 4 and "{" not in committed.replace("\\text{", "").replace(
        "\\frac{", "").replace("\\mathbb{", "").replace("^{", "").replace("}{", "")
