"""Results files: where they live, written atomically, read with clear errors.

A method's results folder is one unit: it is built in a temporary folder
beside its final place and renamed into place when complete, with
``complete.json`` written last: the settings hash, the method, a checksum of
every file and which of them are weights. The record is committed with the
files it describes; the large weights (a full-rank head or blocks) are not
(``.gitignore``). One rule then serves notebooks, sweeps and the report:

- a unit whose record matches the settings and whose files match their checksums is finished; its scores are reused,
  and only a caller that needs the weights (a notebook) trains again when they are absent, saying so;
- a finished unit made with other settings is never replaced unless the caller asks (``retrain``);
- the report refuses a unit without a record, or with a file that differs from it.
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

from .config import METHOD_TABLE, METHODS, settings_text


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


def experiment_dir(profile_name: str, method: str, run: str, root: str | Path = "results") -> Path:
    """``results/<profile>/experiments/<method>/<run>/``: a run with settings of one's own (a notebook's changed
    parameter), kept beside the comparison's unit instead of replacing it; not committed (``.gitignore``)."""
    if not run or not all(c.isalnum() or c in "._-=+" for c in run) or run.startswith("."):
        raise ResultsError(f"a run name is letters, digits and . _ - = + (not starting with a dot), got {run!r}.")
    return profile_dir(profile_name, root) / "experiments" / method / run


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


def weight_files(method: str) -> tuple[str, ...]:
    """The files of a unit that hold trained weights: what a fresh clone may lack (the large ones are not committed)."""
    return tuple(name for name in unit_files(method) if name.startswith("adapter/"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(folder: Path) -> dict | None:
    """The completion record of ``folder`` (None when there is none); ``ResultsError`` when it is unreadable."""
    path = Path(folder) / COMPLETE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise ResultsError(f"{path} is unreadable ({err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise ResultsError(f"{path} is unreadable (no checksums of files)")
    return record


def unfinished_reason(folder: Path, method: str, settings_hash: str,
                      files: tuple[str, ...] | None = None, weights: bool = True) -> str | None:
    """None when ``folder`` holds a finished result for these settings, else why it does not.

    ``files``: the files that must be there unchanged (default: every file of the method's unit). With
    ``weights=False`` the weight files may be absent (a fresh clone: the large ones are not committed): the scores
    are finished, which is all a sweep or the report needs.
    """
    folder = Path(folder)
    recovered = recover_unit(folder)
    if recovered:
        print(recovered)
    record_path = folder / COMPLETE
    try:
        record = read_record(folder)
    except ResultsError as err:
        return str(err)
    if record is None:
        return (f"{record_path} is missing (a run that did not finish)" if folder.exists()
                else f"{folder} does not exist")
    if record.get("hash") != settings_hash:
        return "the settings changed since those results were made"
    optional = set(weight_files(method)) if not weights else set()
    for name in unit_files(method) if files is None else files:
        path = folder / name
        if not path.is_file():
            if name in optional:
                continue
            if name in weight_files(method):
                return (f"{path} is missing (the scores are committed, these weights are not: they are trained "
                        "again)")
            return f"{path} is missing"
        if record["files"].get(name) != file_sha256(path):
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
    """Whether ``folder`` holds a finished result (its record, and every file but the weights as the record says)
    made with settings other than ``settings_hash``: a result a new run must not silently replace. The weights do not
    count: a fresh clone lacks the large ones, and its committed scores are as finished as anywhere."""
    folder = Path(folder)
    try:
        record = read_record(folder)
    except ResultsError:
        return False
    if record is None:  # a unit that lost its record (deleted by hand): its config.json still names its settings
        try:
            made_with = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("hash")
        except (OSError, ValueError, AttributeError):
            return False
        return (isinstance(made_with, str) and made_with != settings_hash
                and all((folder / name).is_file() for name in unit_files(method) if name not in weight_files(method)))
    if record.get("hash") == settings_hash:
        return False
    return unfinished_reason(folder, method, record.get("hash"), weights=False) is None


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


def write_unit(folder: Path, settings_hash: str, write, method: str | None = None) -> Path:
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
        record = {"hash": settings_hash, "method": method,
                  "files": {name: file_sha256(tmp / name) for name in files},
                  "weights": [name for name in files if name.startswith("adapter/")],
                  "finished": time.strftime("%Y-%m-%d", time.gmtime())}
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
    if "sweeps" in parts[:-1] and 0 < parts.index("sweeps") < len(parts) - 2:
        at = parts.index("sweeps")
        return (f"python -m tools.sweep --profile {parts[at - 1]} --sweep {parts[at + 1]} (it makes that run "
                "again)")
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
    """A unit is read only as its run left it: its completion record exists, names this method, and every file it
    lists is there with the same checksum (the weights may be absent: the large ones are not committed). A hand edit,
    a file copied from another method's folder or a history cut short raises ``ResultsError`` instead of reaching a
    table; so does a metrics or config file whose ``method`` is not its folder's."""
    folder = Path(folder)
    remedy = f"restore the folder (git checkout {folder}) or re-run notebooks/{notebook_of(method)}"
    try:
        record = read_record(folder)
    except ResultsError as err:
        raise ResultsError(f"{err}; {remedy}.") from err
    if record is None:
        if not folder.exists():
            raise _missing(folder, method)
        raise ResultsError(f"{folder / COMPLETE} is missing: a result without its completion record (the checksums "
                           f"of its files) is not read; {remedy}.")
    if record.get("method") not in (None, method):  # None: a record older than the method field
        raise ResultsError(f"{folder} holds a result of {record['method']!r}, not of {method!r} (its {COMPLETE}); "
                           f"{remedy}.")
    weights = set(record.get("weights") or ())
    changed, missing = [], []
    for name, digest in sorted(record["files"].items()):
        path = folder / name
        if not path.is_file():
            if name not in weights:
                missing.append(str(path))
        elif file_sha256(path) != digest:
            changed.append(str(path))
    if missing:
        raise ResultsError(f"{', '.join(missing)} missing from the result of {method!r} (listed in "
                           f"{folder / COMPLETE}); {remedy}.")
    if changed:
        raise ResultsError(f"{', '.join(changed)} changed after the run of {method!r} finished (checksums in "
                           f"{folder / COMPLETE}); {remedy}.")
    for name in ("config.json", "metrics.json"):
        made_for = read_json(folder / name, method).get("method", method)
        if made_for != method:
            raise ResultsError(f"{folder / name} is a result of {made_for!r}, not of {method!r}; {remedy}.")


def latest_finished(profile_name: str, root: str | Path = "results") -> str | None:
    """The date (YYYY-MM-DD) the newest unit of a profile finished, from the completion records (None without any)."""
    dates = []
    for path in profile_dir(profile_name, root).rglob(COMPLETE):
        try:
            dates.append(str(json.loads(path.read_text(encoding="utf-8"))["finished"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return max(dates, default=None)


def run_row(folder: Path, sweep: str) -> dict:
    """One row of a sweep's summary.json, made from the run's own files alone (config.json and metrics.json): what
    the summary says of the run, and what a check of the summary compares it with."""
    folder = Path(folder)
    config, m = read_json(folder / "config.json"), read_json(folder / "metrics.json")
    method = config["method"]
    env = config.get("environment") or {}
    row = {"run": folder.name, "method": method, "settings": settings_text(method, config.get("method_settings")),
           "seed": config["profile"]["seed"], "trainable_params": m["trainable_params"],
           "val_loss": round(m["eval_loss"], 4), "epochs_run": m.get("epochs_run"),
           "train_time_s": m.get("train_time_s"), "generation_s": m["generation_s"],
           "device": env.get("gpu") or env.get("processor", "unknown")}
    if m["rouge"] is not None:
        r1 = m["rouge"]["rouge1"]
        row.update({"val_rouge1": round(r1["mean"], 4), "val_rouge1_low": round(r1["low"], 4),
                    "val_rouge1_high": round(r1["high"], 4)})
    if sweep == "tune":
        row["group"], row["lr"] = folder.name.rsplit("-lr", 1)[0], config["method_settings"]["lr"]
    if "test" in m:
        row["test_loss"] = round(m["test"]["test_loss"], 4)
        for key in ("rouge1", "rouge2", "rougeL"):
            score = m["test"]["rouge"][key]
            row.update({f"test_{key}": round(score["mean"], 4), f"test_{key}_low": round(score["low"], 4),
                        f"test_{key}_high": round(score["high"], 4)})
    return row


def finished_runs(profile_name: str, sweep: str, root: str | Path = "results") -> list[Path]:
    """Every run folder of a sweep on disk whose scores are finished (its record and every file but the weights as the
    record says, for the settings the record names), in name order."""
    out = []
    folder = sweep_dir(profile_name, sweep, root)
    for run in sorted(folder.iterdir()) if folder.is_dir() else ():
        if not run.is_dir() or run.name.startswith("."):
            continue
        try:
            record = read_record(run)
            method = (record or {}).get("method") or read_json(run / "config.json").get("method")
        except (ResultsError, AttributeError):
            continue
        if (record and method in METHOD_TABLE
                and unfinished_reason(run, method, record.get("hash"), weights=False) is None):
            out.append(run)
    return out


def verified_rows(profile_name: str, sweep: str, root: str | Path = "results") -> list[dict]:
    """The rows of a sweep's summary.json, each equal in every column to the row its run's own files give, each run
    finished (its record matches its files) and listed once; [] when the sweep has not run."""
    folder = sweep_dir(profile_name, sweep, root)
    path = folder / "summary.json"
    if not path.exists():
        return []
    summary = read_json(path)
    rebuild = (f"rebuild it from the runs on disk: python -m tools.sweep --profile {profile_name} --sweep {sweep} "
               "--summarize")
    if not isinstance(summary, dict) or not isinstance(summary.get("rows"), list):
        raise ResultsError(f"{path} has no list of rows; {rebuild}")
    finished = {run.name for run in finished_runs(profile_name, sweep, root)}
    seen = set()
    for row in summary["rows"]:
        run = row.get("run") if isinstance(row, dict) else None
        if run in seen:
            raise ResultsError(f"{path} lists run {run!r} twice; {rebuild}")
        seen.add(run)
        if run is None or not (folder / str(run) / "metrics.json").is_file():
            raise ResultsError(f"{path} lists run {run!r}, whose folder {folder / str(run)} holds no metrics.json; "
                               f"{rebuild}")
        if run not in finished:
            raise ResultsError(f"{path} lists run {run!r}, whose files are not as its completion record says "
                               f"({folder / str(run) / COMPLETE}); restore the run (git checkout) or run it again")
        found = run_row(folder / str(run), sweep)
        differ = [f"{k} {row.get(k)!r} (its run: {v!r})" for k, v in found.items() if row.get(k) != v]
        differ += [f"{k} {row[k]!r} (its run has none)" for k in row if k not in found]
        if differ:
            raise ResultsError(f"{path}, run {run!r}: {'; '.join(differ)}: the summary does not match the run; "
                               f"{rebuild}")
    return summary["rows"]


def load_results(profile_name: str, method: str, root: str | Path = "results", folder: Path | None = None) -> dict:
    """``metrics``, ``config``, ``history`` (DataFrame or None) and ``predictions`` of one finished method (from
    ``folder`` where given, e.g. an experiment's; else the method's unit).

    Every file is checked for the fields the comparison reads, so a broken
    file fails here, naming itself, rather than deep inside a plot.
    """
    if method not in METHOD_TABLE:
        raise ResultsError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    folder = Path(folder) if folder is not None else results_dir(profile_name, method, root)
    recovered = recover_unit(folder)  # a kill between the two renames of write_unit: finish or undo the swap first
    if recovered:
        print(recovered)
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
