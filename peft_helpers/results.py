"""Results files: where they live, written atomically, read with clear errors.

A method's results folder is one unit: it is built in a temporary folder
beside its final place and renamed into place when complete, with
``complete.json`` (the settings hash and a checksum of every file) written
last. A folder without a matching completion record is never reused.
``complete.json`` is not committed (``.gitignore``), so a fresh clone trains
every method itself; the committed files are what ``make report`` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from .config import METHOD_TABLE, METHODS


def notebook_of(method: str) -> str:
    """The notebook that makes ``method``'s results (named in every error about them)."""
    return METHOD_TABLE[method].notebook if method in METHOD_TABLE else "the method's notebook"


class ResultsError(RuntimeError):
    """Results files that are missing or unreadable; the message names the notebook to run."""


COMPLETE = "complete.json"


def profile_dir(profile_name: str, root: str | Path = "results") -> Path:
    """``results/<profile>/``: a profile's results, and for uncommitted profiles its notebooks, figures and report."""
    return Path(root) / profile_name


def results_dir(profile_name: str, method: str, root: str | Path = "results") -> Path:
    """``results/<profile>/<method>/``: the one place a method's results live."""
    return profile_dir(profile_name, root) / method


def sweep_dir(profile_name: str, sweep: str, root: str | Path = "results") -> Path:
    """``results/<profile>/sweeps/<sweep>/``: one folder per run of a sweep (``tools.sweep``), and summary.json."""
    return profile_dir(profile_name, root) / "sweeps" / sweep


def checkpoint_dir(profile_name: str, method: str, training_hash: str, root: str | Path = "checkpoints") -> Path:
    """``checkpoints/<profile>/<method>-<training hash>/``: one training run's resumable state."""
    return Path(root) / profile_name / f"{method}-{training_hash}"


def adapter_path(folder: Path, method: str) -> Path:
    """Where a method's trained weights sit in its results folder (LoRA: a peft adapter folder)."""
    adapter = METHOD_TABLE[method].weights == "adapter"
    return Path(folder) / "adapter" if adapter else Path(folder) / "adapter" / f"{method}.safetensors"


def unit_files(method: str) -> tuple[str, ...]:
    """The files a finished result of ``method`` must hold (relative to its folder)."""
    files = ["config.json", "metrics.json", "predictions.jsonl"]
    kind = METHOD_TABLE[method].weights
    if kind:
        files.append("history.csv")
        weights = adapter_path(Path("."), method)
        files += ([str(weights / "adapter_config.json"), str(weights / "adapter_model.safetensors")]
                  if kind == "adapter" else [str(weights)])
    return tuple(files)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unfinished_reason(folder: Path, method: str, settings_hash: str,
                      files: tuple[str, ...] | None = None) -> str | None:
    """None when ``folder`` holds a finished result for these settings, else why it does not.

    ``files``: the files that must be there unchanged (default: every file of the method's unit).
    """
    folder = Path(folder)
    recovered = recover_unit(folder)
    if recovered:
        print(recovered)
    record_path = folder / COMPLETE
    if not record_path.exists():
        return (f"{record_path} is missing (a fresh clone, or a run that did not finish)" if folder.exists()
                else f"{folder} does not exist")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        return f"{record_path} is unreadable ({err})"
    if record.get("hash") != settings_hash:
        return "the settings changed since those results were made"
    for name in unit_files(method) if files is None else files:
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if record.get("files", {}).get(name) != file_sha256(path):
            return f"{path} changed after the run finished"
    return None


def recover_unit(folder: Path) -> str | None:
    """After a kill between the two renames of ``write_unit`` (the old folder moved aside, the new one not yet in
    place): finish the swap when the new folder is whole (its completion record is written last), else put the old
    one back. Returns what was done, or None when nothing needed doing."""
    folder = Path(folder)
    if folder.exists() or not folder.parent.exists():
        return None
    old = folder.parent / f".{folder.name}.old"
    whole = sorted((t for t in folder.parent.glob(f".{folder.name}.*.tmp") if (t / COMPLETE).is_file()),
                   key=lambda t: t.stat().st_mtime)
    if whole:
        whole[-1].rename(folder)
        shutil.rmtree(old, ignore_errors=True)
        return f"{folder}: finished replacing it with the new result (the last run stopped between two renames)"
    if old.exists():
        old.rename(folder)
        return f"{folder}: put the previous result back (the last run stopped while replacing it)"
    return None


def finished_with_other_settings(folder: Path, method: str, settings_hash: str) -> bool:
    """Whether ``folder`` holds a whole finished result (every file as its completion record says, or a committed
    result: every file there and its config.json's hash) made with settings other than ``settings_hash``: a result a
    new run must not silently replace."""
    folder = Path(folder)
    if not (folder / COMPLETE).exists():  # a committed result (no completion record): its config.json names its hash
        try:
            made_with = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("hash")
        except (OSError, ValueError, AttributeError):
            return False
        return (isinstance(made_with, str) and made_with != settings_hash
                and all((folder / name).is_file() for name in unit_files(method)))
    try:
        record = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    if record.get("hash") == settings_hash:
        return False
    return all((folder / name).is_file() and record.get("files", {}).get(name) == file_sha256(folder / name)
               for name in unit_files(method))


def settings_difference(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs between two nested dicts (e.g. two config.json profiles)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_difference(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, list) and isinstance(b, tuple) and tuple(a) == b):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def write_unit(folder: Path, settings_hash: str, write) -> Path:
    """Build a results folder as one unit: ``write(tmp)`` fills a temporary folder, then it replaces ``folder``.

    The completion record (hash + checksums) is written last inside the
    temporary folder, and the swap is two renames; an interruption at any
    point leaves either the old folder or the new one, never a mixture.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_unit(folder)  # never delete a moved-aside result below without putting it back first
    remove_debris(folder.parent, f".{folder.name}.*.tmp")  # partial folders of killed runs: never read, now removed
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    old = folder.parent / f".{folder.name}.old"
    try:
        write(tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        record = {"hash": settings_hash, "files": {name: file_sha256(tmp / name) for name in files}}
        atomic_write_json(record, tmp / COMPLETE)
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            old.rename(folder)  # put the previous result back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder


def remove_debris(parent: Path, pattern: str, age_s: float = 600) -> None:
    """Delete what a killed write left behind (``pattern`` in ``parent``), once it is older than ``age_s`` seconds (a
    write still running elsewhere is younger)."""
    now = time.time()
    for stale in Path(parent).glob(pattern):
        try:
            if now - stale.stat().st_mtime > age_s:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        except OSError:
            pass  # gone already, or not ours to delete: it is ignored anyway


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, f".{path.name}.*.tmp")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(text: str, path: Path) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(data, path: Path) -> Path:
    return atomic_write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", path)


def atomic_write_jsonl(rows: list[dict], path: Path) -> Path:
    return atomic_write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), path)


def atomic_write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


@contextmanager
def disk_writes(what: str, then: str):
    """Turn a full or read-only disk (OSError, SafetensorError) while writing ``what`` into one ``ResultsError``:
    "could not write <what> (<reason>). <then>" (``then``: what was kept and what to do)."""
    try:
        yield
    except (OSError, SafetensorError) as err:
        raise ResultsError(f"could not write {what} ({getattr(err, 'strerror', None) or err}). {then}") from err


def atomic_write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> Path:
    return _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _remedy(path: Path, method: str) -> str:
    """What remakes ``path``: the sweep command for a file of a sweep's run, else the method's notebook."""
    parts = Path(path).parts
    if "sweeps" in parts[:-1] and parts.index("sweeps") + 1 < len(parts) - 1:
        sweep = parts[parts.index("sweeps") + 1]
        return f"python -m tools.sweep --sweep {sweep} (it makes that run again)"
    return f"notebooks/{notebook_of(method)}"


def _missing(path: Path, method: str) -> ResultsError:
    return ResultsError(f"no results for {method!r}: {path} is missing. Run {_remedy(path, method)} first.")


def read_json(path: Path, method: str = "") -> dict:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run {_remedy(path, method)}.") from err


def read_jsonl(path: Path, method: str = "") -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run {_remedy(path, method)}.") from err


def read_csv(path: Path, method: str = "") -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run {_remedy(path, method)}.") from err


def read_safetensors(path: Path, method: str = "", metadata: bool = False):
    """Tensors of a safetensors file (and its metadata when asked), with errors that name the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            extra = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ResultsError(f"{path} is not a readable safetensors file ({err}); delete it and train again.") from err
    return (tensors, extra) if metadata else tensors


METRIC_KEYS = ("eval_loss", "test_loss", "rouge", "trainable_params", "total_params", "trainable_percent",
               "peak_memory_mib", "hit_cap", "n_test")
PREDICTION_KEYS = ("id", "reference", "prediction")
HISTORY_COLUMNS = ("step", "epoch", "train_loss", "eval_loss")


def _check_fields(path: Path, method: str, present, required) -> None:
    absent = [k for k in required if k not in present]
    if absent:
        raise ResultsError(f"{path} lacks {absent}: it is from an older or broken run; re-run "
                           f"notebooks/{notebook_of(method)} for {method!r}.")


def check_unchanged(folder: Path, method: str) -> None:
    """Where the run left its completion record, every file it lists must be as the run wrote it: a replaced
    predictions file or a history cut short raises ``ResultsError`` instead of reaching a table. (Committed results
    carry no record, so a fresh clone's are read as they are.)"""
    try:
        record = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise ResultsError(f"{folder / COMPLETE} is unreadable ({err}); re-run notebooks/{notebook_of(method)} for "
                           f"{method!r}, or delete that file to read the results without the check.") from err
    changed = [name for name, digest in record.get("files", {}).items()
               if name in ("config.json", "metrics.json", "predictions.jsonl", "history.csv")
               and (folder / name).is_file() and file_sha256(folder / name) != digest]
    if changed:
        raise ResultsError(f"{', '.join(str(folder / n) for n in changed)} changed after the run of {method!r} "
                           f"finished (checksums in {folder / COMPLETE}); restore {'it' if len(changed) == 1 else 'them'} "
                           f"(git checkout) or re-run notebooks/{notebook_of(method)}.")


def verified_rows(profile_name: str, sweep: str, root: str | Path = "results") -> list[dict]:
    """The rows of a sweep's summary.json, each checked against its own run's metrics.json (the summary is rebuilt
    from the runs, so a row that disagrees with its run, or has none, was edited by hand or left behind); [] when the
    sweep has not run."""
    folder = sweep_dir(profile_name, sweep, root)
    path = folder / "summary.json"
    if not path.exists():
        return []
    summary = read_json(path)
    rebuild = f"rebuild it from the runs on disk: python -m tools.sweep --profile {profile_name} --sweep {sweep} --summarize"
    if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
        raise ResultsError(f"{path} has no list of rows; {rebuild}")
    for row in summary["rows"]:
        run = row.get("run") if isinstance(row, dict) else None
        metrics_path = folder / str(run) / "metrics.json"
        if run is None or not metrics_path.is_file():
            raise ResultsError(f"{path} lists run {run!r}, whose folder {folder / str(run)} holds no metrics.json; "
                               f"{rebuild}")
        metrics = read_json(metrics_path)
        found = {"val_loss": round(metrics["eval_loss"], 4), "trainable_params": metrics["trainable_params"]}
        if "test_rouge1" in row and "test" in metrics:
            found["test_rouge1"] = round(metrics["test"]["rouge"]["rouge1"]["mean"], 4)
        differ = [f"{k} {row.get(k)!r} (its run: {v!r})" for k, v in found.items() if row.get(k) != v]
        if differ:
            raise ResultsError(f"{path}, run {run!r}: {'; '.join(differ)}: the summary does not match the run; {rebuild}")
    return summary["rows"]


def load_results(profile_name: str, method: str, root: str | Path = "results") -> dict:
    """``metrics``, ``config``, ``history`` (DataFrame or None) and ``predictions`` of one finished method.

    Every file is checked for the fields the comparison reads, so a broken
    file fails here, naming itself, rather than deep inside a plot.
    """
    if method not in METHODS:
        raise ResultsError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    folder = results_dir(profile_name, method, root)
    check_unchanged(folder, method)
    out = {
        "metrics": read_json(folder / "metrics.json", method),
        "config": read_json(folder / "config.json", method),
        "predictions": read_jsonl(folder / "predictions.jsonl", method),
        "history": None,
    }
    _check_fields(folder / "metrics.json", method, out["metrics"], METRIC_KEYS)
    rouge = out["metrics"]["rouge"]
    _check_fields(folder / "metrics.json", method, rouge if isinstance(rouge, dict) else {},
                  ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    if not out["predictions"]:
        raise ResultsError(f"{folder / 'predictions.jsonl'} is empty; re-run notebooks/{notebook_of(method)}.")
    for row in out["predictions"]:
        _check_fields(folder / "predictions.jsonl", method, row, PREDICTION_KEYS)
    if METHOD_TABLE[method].trains:
        out["history"] = read_csv(folder / "history.csv", method)
        _check_fields(folder / "history.csv", method, out["history"].columns, HISTORY_COLUMNS)
    return out
