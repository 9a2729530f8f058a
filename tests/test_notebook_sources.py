"""The method notebooks show the core of each method as source; that source must be the package's own, verbatim."""

import importlib
import inspect
import re
import textwrap
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SNIPPET = re.compile(r"<!-- source: ([\w.]+) -->\n```python\n(.*?)\n```", re.S)


def shown_sources():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                for name, code in SNIPPET.findall(cell.source):
                    yield path.stem, name, code


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_each_method_notebook_shows_its_method():
    stems = {stem for stem, _, _ in shown_sources()}
    assert {"01_prompt_tuning", "02_last_layer_ft", "03_lora"} <= stems


@pytest.mark.parametrize("stem, name, code", list(shown_sources()), ids=lambda v: v if isinstance(v, str) and "\n" not in v else "")
def test_shown_source_is_the_current_code(stem, name, code):
    assert code == textwrap.dedent(inspect.getsource(resolve(name))).strip(), (
        f"notebooks/{stem}.ipynb shows an outdated {name}; re-insert it from the package")
