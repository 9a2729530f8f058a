"""Refresh the saved output of every ``show_source(...)`` cell of the committed notebooks from the package's code.

    python -m tools.refresh_sources

The method notebooks show the package's source live (``plots.show_source`` reads it with ``inspect``); the saved
output of such a cell is what a reader of the committed notebook sees without running it. After a change to a shown
function, this rewrites those outputs (nothing else in the notebooks changes; no training), and
``tests/test_notebook_sources.py`` fails until it has run.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from peft_helpers.plots import show_source

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CALL = re.compile(r"^show_source\(([\w.]+)\)\s*$", re.M)


def resolve(dotted: str):
    """``methods.LoRALayer.forward`` -> the object, looked up in ``peft_helpers``."""
    first, *rest = dotted.split(".")
    obj = importlib.import_module(f"peft_helpers.{first}")
    for attr in rest:
        obj = getattr(obj, attr)
    return obj


def source_cells(notebook: dict):
    """(cell, dotted name) for each cell that shows a source."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code" and (found := CALL.search("".join(cell["source"]))):
            yield cell, found.group(1)


def shown_text(dotted: str) -> str:
    """What the cell displays: the source as a Markdown code block."""
    return show_source(resolve(dotted)).data


def saved_text(cell: dict) -> str | None:
    """What the cell's saved output displays (None when it has no single Markdown output)."""
    outputs = [o for o in cell["outputs"] if "text/markdown" in o.get("data", {})]
    return "".join(outputs[0]["data"]["text/markdown"]) if len(outputs) == 1 else None


def main() -> int:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        changed = 0
        for cell, dotted in source_cells(notebook):
            if saved_text(cell) != shown_text(dotted):
                cell["outputs"] = [{"output_type": "execute_result", "execution_count": cell.get("execution_count"),
                                    "metadata": {}, "data": {"text/markdown": shown_text(dotted),
                                                             "text/plain": "<IPython.core.display.Markdown object>"}}]
                changed += 1
        if changed:
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path.name}: {changed} source cell(s) refreshed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
