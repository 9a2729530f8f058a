"""The method notebooks show each method's core as the package's own source, read live (``plots.show_source``); the
committed notebooks' saved outputs of those cells must be that source as it is now."""

import json

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
