"""The main job: run the five notebooks in order, in place, then check the report exists.

    python -m peft_helpers.run_notebooks --profile auto

``auto`` is resolved once here (one hub check) and the concrete profile is
passed to every notebook through ``PEFT_PROFILE``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

NOTEBOOKS = ("00_data_prep", "01_prompt_tuning", "02_last_layer_ft", "03_lora", "04_comparison")


def run_notebook(path: Path, timeout: int) -> float:
    """Execute one notebook with its folder as the working directory and save its outputs in place."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()

    def report_cell(cell, cell_index, **_):
        if cell.cell_type == "code":
            print(f"  {path.stem} cell {cell_index}: done at {time.perf_counter() - started:.0f} s", flush=True)

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", on_cell_executed=report_cell,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, path)  # keep what ran, even on failure, to show where it stopped
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=os.environ.get("PEFT_PROFILE", "auto"))
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (names without .ipynb)")
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds per cell")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from peft_helpers.config import PLAIN_PROGRESS, get_profile
    from peft_helpers.report import output_dirs

    profile = get_profile(args.profile)
    os.environ["PEFT_PROFILE"] = profile.name
    os.environ[PLAIN_PROGRESS] = "1"  # widget bars would be saved as "0%" placeholders
    print(f"running the notebooks on profile {profile.name}", flush=True)
    total = time.perf_counter()
    for name in args.only or NOTEBOOKS:
        seconds = run_notebook(root / "notebooks" / f"{name}.ipynb", args.timeout)
        print(f"{name}: {seconds:.0f} s", flush=True)
    report = root / output_dirs(profile.name)[1] / "report.pdf"
    print(f"all done in {time.perf_counter() - total:.0f} s; report: {report}", flush=True)
    return 0 if report.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
