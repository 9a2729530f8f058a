"""The main job: run the five notebooks in order, then check the report exists.

    python -m tools.run_notebooks --profile auto

``auto`` is resolved once here (one hub check) and the concrete profile is
passed to every notebook through ``PEFT_PROFILE``. Cell outputs (training
and generation bars, "training, because ..." lines) stream to the terminal
as they happen. Executed notebooks are saved in place only for the profile
whose outputs are committed, and only when they ran to the end; other
profiles, and a notebook that failed, are saved under
``results/<profile>/notebooks/`` (not tracked), so no tracked file changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NOTEBOOKS = ("00_data_prep", "01_prompt_tuning", "02_last_layer_ft", "03_lora", "04_comparison")


def collapse(text: str) -> str:
    """What a terminal would show: each line keeps only what follows its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _client_class():
    from nbclient import NotebookClient
    from nbformat import NotebookNode

    class StreamingClient(NotebookClient):
        """Echoes stream output to this terminal as it arrives, and keeps one stream output per cell and name.

        A progress bar redraws itself with carriage returns; in the saved
        notebook it leaves its final line, not one output per redraw.
        """

        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] != "stream":
                return super().output(outs, msg, display_id, cell_index)
            name, text = msg["content"]["name"], msg["content"]["text"]
            terminal = sys.stdout if name == "stdout" else sys.stderr
            terminal.write(text)
            terminal.flush()
            if outs and outs[-1].get("output_type") == "stream" and outs[-1].get("name") == name:
                outs[-1]["text"] = collapse(outs[-1]["text"] + text)
                return outs[-1]
            out = NotebookNode(output_type="stream", name=name, text=collapse(text))
            outs.append(out)
            return out

    return StreamingClient


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def strip_widgets(notebook) -> None:
    """Drop the progress bars' widget state and views: a saved notebook keeps their text form only (the widget state
    of every bar ever drawn is most of a notebook's size, and no viewer can render it without the kernel)."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
        if cell.get("outputs"):
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "display_data" or o.get("data")]


def this_run(root: Path, profile_name: str) -> dict:
    """Which run this is: its start (UTC, the run's id), the commit it ran and whether tracked files other than the
    run's own outputs had changes not committed."""
    def git(*args):
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    outputs = ("notebooks/", "results/", "figures/", "report/report.pdf")
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"id": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "profile": profile_name,
            "commit": git("rev-parse", "HEAD") or "unknown",
            "uncommitted_changes": None if changed is None else any(
                not line[3:].startswith(outputs) for line in changed.splitlines())}


def run_notebook(path: Path, target: Path, failed: Path, timeout: int, run: dict | None = None) -> float:
    """Execute one notebook with its folder as the working directory; save it to ``target`` if it ran through.

    On an error the executed copy goes to ``failed`` (to show where it
    stopped) and ``target`` keeps what it held before. ``run`` is recorded in
    the saved notebook's metadata (``peft_run``).
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code_cells = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    started = time.perf_counter()

    def announce(cell, cell_index, **_):
        first = next((line for line in cell.source.splitlines() if line and not line.startswith("#")), "")
        print(f"\n[{path.stem} · cell {code_cells.index(cell_index) + 1}/{len(code_cells)} · "
              f"{time.perf_counter() - started:.0f} s] {first[:90]}", flush=True)

    client = _client_class()(notebook, timeout=timeout, kernel_name="python3", on_cell_execute=announce,
                             resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except BaseException:
        failed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, failed)
        print(f"\n{path.stem} stopped; the executed copy is {failed} ({target} is unchanged)", file=sys.stderr)
        raise
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    strip_widgets(notebook)
    if run is not None:
        notebook.metadata["peft_run"] = run
    nbformat.write(notebook, tmp)
    tmp.replace(target)
    return time.perf_counter() - started


STAGES = ("train_time_s", "validation_s", "test_loss_s", "generation_s")


def write_timings(root: Path, profile_name: str, notebooks: dict[str, float], total_s: float, started: float,
                  run: dict | None = None) -> Path:
    """``results/<profile>/timings.json``: this run's wall time per notebook and per method stage, with the CPU.

    A method whose results were reused rather than made by this run is marked so (its stage times are older).
    """
    from peft_helpers.config import METHODS
    from peft_helpers.experiment import environment
    from peft_helpers.results import atomic_write_json, profile_dir, results_dir

    methods = {}
    for method in METHODS:
        path = results_dir(profile_name, method, root / "results") / "metrics.json"
        if path.exists():
            metrics = json.loads(path.read_text())
            methods[method] = {"made_by_this_run": path.stat().st_mtime >= started,
                               **{stage: metrics.get(stage) for stage in STAGES}}
    record = {"profile": profile_name, "run": run, "total_s": round(total_s, 1),
              "notebooks_s": {k: round(v, 1) for k, v in notebooks.items()}, "methods": methods,
              "environment": environment()}
    return atomic_write_json(record, profile_dir(profile_name, root / "results") / "timings.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=os.environ.get("PEFT_PROFILE", "auto"))
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (names without .ipynb)")
    parser.add_argument("--timeout", type=int, default=6 * 3600, help="seconds per cell")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    from peft_helpers.config import COMMITTED_PROFILE, get_profile
    from peft_helpers.progress import PLAIN_PROGRESS
    from peft_helpers.results import profile_dir
    from peft_helpers.plots import output_dirs

    profile = get_profile(args.profile)
    os.environ["PEFT_PROFILE"] = profile.name
    os.environ[PLAIN_PROGRESS] = "1"  # widget bars would be saved as "0%" placeholders
    in_place = profile.name == COMMITTED_PROFILE
    copies = profile_dir(profile.name, root / "results") / "notebooks"
    print(f"running the notebooks on profile {profile.name}; executed notebooks go to "
          f"{'notebooks/ (committed)' if in_place else copies}", flush=True)
    total, timings, started = time.perf_counter(), {}, time.time()
    run = this_run(root, profile.name)
    if args.only is None:  # a whole run: the report it makes names it (results/<profile>/run.json)
        from peft_helpers.results import atomic_write_json

        atomic_write_json(run, profile_dir(profile.name, root / "results") / "run.json")
    for name in args.only or NOTEBOOKS:
        source = root / "notebooks" / f"{name}.ipynb"
        target = source if in_place else copies / f"{name}.ipynb"
        timings[name] = run_notebook(source, target, copies / f"{name}.failed.ipynb", args.timeout, run)
        print(f"\n{name}: {timings[name]:.0f} s", flush=True)
    report = root / output_dirs(profile.name)[1] / "report.pdf"
    print("\nwall time per notebook: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"all done in {time.perf_counter() - total:.0f} s; report: {report}", flush=True)
    if args.only is None:  # a whole run: record where its time went
        print(f"stage timings: {write_timings(root, profile.name, timings, time.perf_counter() - total, started, run)}")
    return 0 if report.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
