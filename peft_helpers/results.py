"""Results files: written atomically (temp file + rename), read with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import METHODS

NOTEBOOK_OF = {
    "zero_shot": "04_comparison.ipynb",
    "prompt_tuning": "01_prompt_tuning.ipynb",
    "last_layer": "02_last_layer_ft.ipynb",
    "last_blocks": "02_last_layer_ft.ipynb",
    "lora": "03_lora.ipynb",
}


class ResultsError(RuntimeError):
    """Results files that are missing or unreadable; the message names the notebook to run."""


def results_dir(profile_name: str, method: str, root: str | Path = "results") -> Path:
    return Path(root) / profile_name / method


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def atomic_write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    return _atomic(path, lambda tmp: save_file(tensors, tmp))


def _missing(path: Path, method: str) -> ResultsError:
    notebook = NOTEBOOK_OF.get(method, "the method's notebook")
    return ResultsError(f"no results for {method!r}: {path} is missing. Run notebooks/{notebook} first.")


def read_json(path: Path, method: str = "") -> dict:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run notebooks/{NOTEBOOK_OF.get(method, '')}.") from err


def read_jsonl(path: Path, method: str = "") -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run notebooks/{NOTEBOOK_OF.get(method, '')}.") from err


def read_csv(path: Path, method: str = "") -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is corrupt ({err}); delete it and re-run notebooks/{NOTEBOOK_OF.get(method, '')}.") from err


def read_safetensors(path: Path, method: str = "") -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise _missing(path, method)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ResultsError(f"{path} is not a readable safetensors file ({err}); retrain the method.") from err


def load_results(profile_name: str, method: str, root: str | Path = "results") -> dict:
    """``metrics``, ``config``, ``history`` (DataFrame or None) and ``predictions`` of one finished method."""
    if method not in METHODS:
        raise ResultsError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    folder = results_dir(profile_name, method, root)
    out = {
        "metrics": read_json(folder / "metrics.json", method),
        "config": read_json(folder / "config.json", method),
        "predictions": read_jsonl(folder / "predictions.jsonl", method),
        "history": None,
    }
    if method != "zero_shot":
        out["history"] = read_csv(folder / "history.csv", method)
    return out
