"""The method notebooks show each method's core as the package's own source, read live (``plots.show_source``); the
committed notebooks' saved outputs of those cells must be that source as it is now."""

import inspect
import json
import re

import pytest

from tools.refresh_sources import NOTEBOOKS, resolve, saved_text, shown_text, source_cells


def shown():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell, dotted in source_cells(json.loads(path.read_text(encoding="utf-8"))):
            yield path.stem, dotted, saved_text(cell)


def test_each_method_notebook_shows_its_method_live():
    names = {(stem, dotted) for stem, dotted, _ in shown()}
    assert {("01_prompt_tuning", "methods.SoftPromptModel.prepend"), ("02_last_layer_ft", "methods.prepare_last_layer"),
            ("03_lora", "methods.LoRALayer.forward"), ("03_lora", "methods.LoRALayer.merge")} <= names


def test_a_shown_name_resolves_to_the_package_code():
    from peft_helpers.methods import LoRALayer

    assert resolve("methods.LoRALayer.forward") is LoRALayer.forward
    assert shown_text("methods.LoRALayer.forward").startswith("```python\ndef forward(self, x")


@pytest.mark.parametrize("stem, dotted, saved", list(shown()), ids=lambda v: v if isinstance(v, str) and "\n" not in v else "")
def test_the_saved_source_is_the_current_code(stem, dotted, saved):
    assert saved == shown_text(dotted), (
        f"notebooks/{stem}.ipynb shows an outdated {dotted}; run python -m tools.refresh_sources")


def test_a_shown_table_reads_whole_as_html_and_as_plain_text():
    import pandas as pd

    from peft_helpers.plots import show

    long = "a summary " * 20
    table = show(pd.DataFrame({"method": ["LoRA"], "summary": [long]}))
    assert "<table" in table._repr_html_() and long.strip() in table._repr_html_()
    assert long.strip() in repr(table) and "Styler" not in repr(table)  # what an export or a text viewer shows
    labelled = show(pd.DataFrame({"value": ["0.41"]}, index=pd.Index(["ROUGE-1"], name="figure")))
    assert "ROUGE-1" in repr(labelled) and "ROUGE-1" in labelled._repr_html_()  # row names survive the hidden index


# ---------------------------------------------------------------------------
# What a student reads: text that agrees with the outputs, no harness markers, tables that read as text
# ---------------------------------------------------------------------------

NAMES = re.compile(r"ROUGE-\d|GPT-2|SmolLM2|LLMs?-\w+|\b(?:19|20)\d\d\b")  # names and citation years, not figures


def notebooks():
    return [(path.stem, json.loads(path.read_text(encoding="utf-8"))) for path in sorted(NOTEBOOKS.glob("*.ipynb"))]


def code_text(notebook: dict) -> str:
    """Every code cell's source and saved outputs, as one text."""
    parts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            parts.append("".join(cell["source"]))
            for output in cell.get("outputs", []):
                parts.append("".join(output.get("text", "")))
                parts.extend("".join(v) for v in output.get("data", {}).values() if isinstance(v, (str, list)))
    return "\n".join(parts)


def markdown_numbers(text: str) -> list[str]:
    """The figures in a Markdown cell: headings, code spans, names and years left out."""
    text = NAMES.sub("", re.sub(r"`[^`]*`", "", re.sub(r"^#.*$", "", text, flags=re.M)))
    return re.findall(r"-?\d+(?:[.,]\d+)*(?:e-?\d+)?%?", text)


@pytest.mark.parametrize("stem, notebook", notebooks(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_figure_in_the_markdown_is_in_the_code_or_its_outputs(stem, notebook):
    """A figure written in the text (a share, a learning rate, a tolerance) must be one the notebook computes or
    uses; the interval level is the package's own. Single digits (ranks of toy examples, "near 1") are exempt."""
    from peft_helpers.evaluation import bootstrap_interval

    level = inspect.signature(bootstrap_interval).parameters["level"].default
    code = code_text(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for number in markdown_numbers("".join(cell["source"])):
            if number == f"{level:.0%}" or len(number.lstrip("-")) == 1:
                continue
            assert number.rstrip("%") in code, f"{stem}: the text says {number!r}, which no cell computes or uses"


def test_the_figure_check_sees_a_stale_share():
    assert markdown_numbers("`n x d`, about 0.01% of GPT-2 (Lester et al. 2021); ROUGE-1 with 95% intervals") == [
        "0.01%", "95%"]


@pytest.mark.parametrize("stem, notebook", notebooks(), ids=lambda v: v if isinstance(v, str) else "")
def test_no_harness_marker_no_picture_of_text_and_no_styler_only_table_where_a_student_reads(stem, notebook):
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        assert "NBVAL_" not in source, f"{stem}: use the cell tag nbval-ignore-output, not a marker in the source"
        assert "Image(" not in source, f"{stem}: text is shown as text, not as a picture of it (IPython Image)"
        for output in cell.get("outputs", []):
            assert "Styler at 0x" not in "".join(output.get("data", {}).get("text/plain", "")), stem
