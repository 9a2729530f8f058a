"""Summarize your own text with the trained methods, without training anything.

    make summarize FILE=my_abstract.txt
    python -m tools.summarize my_abstract.txt [--profile smollm2-aclsum] [--methods lora prompt_tuning]

The base model is loaded once; each method whose trained weights are in ``results/<profile>/<method>/`` (the soft
prompt and the LoRA adapter are committed; the last-layer weights exist once their notebook has run here) is applied
to a copy of it with the settings those weights were trained with, and generates with the report's decoding
settings. Every summary says which weights made it. Nothing is trained and nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import sys
import textwrap
import time
from pathlib import Path

from torch import nn

from peft_helpers.config import COMMITTED_PROFILE, METHOD_TABLE, METHODS, ConfigError, Profile, get_profile
from peft_helpers.data import DataError, clean_text
from peft_helpers.evaluation import generate_ids, merged
from peft_helpers.experiment import apply_method, load_trained
from peft_helpers.methods import AdapterError
from peft_helpers.models import load_model, load_tokenizer
from peft_helpers.results import ResultsError, adapter_path, read_json, results_dir


def read_text_file(path: str | Path) -> str:
    """The text of a file the user named: UTF-8, not empty, not binary; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is not a file; give the path of a text file (e.g. an abstract saved as .txt).")
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path} is not a text file (it holds NUL bytes); give a plain UTF-8 text file.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8 and try again.") from err
    return text


def prompt_ids(text: str, tokenizer, profile: Profile) -> tuple[list[int], int]:
    """The document as every method saw it in training (cut to the profile's cap, then the separator), and how many
    tokens the cut removed."""
    text = clean_text(text)
    if not text:
        raise DataError("the text is empty (or only whitespace and control characters); nothing to summarize.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    sep = tokenizer(profile.separator, add_special_tokens=False)["input_ids"]
    return ids[: profile.max_doc_tokens] + sep, max(0, len(ids) - profile.max_doc_tokens)


def summarize(text: str, profile_name: str = COMMITTED_PROFILE, methods=None, root: str | Path = "results",
              show: bool = True) -> list[dict]:
    """Every requested method's summary of ``text`` (zero-shot and each method with trained weights present).

    Returns one dict per method: ``method``, ``label``, ``summary`` (None when its weights are absent), ``weights``
    (the path used, or why there are none), ``run`` (where and when those weights were trained), ``seconds``.
    """
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHOD_TABLE]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
    profile = get_profile(profile_name)
    tokenizer = load_tokenizer(profile)
    ids, cut = prompt_ids(text, tokenizer, profile)
    if show and cut:
        print(f"note: the text is {cut + profile.max_doc_tokens} tokens long; like the documents in training, only its "
              f"first {profile.max_doc_tokens} tokens are summarized ({cut} cut).")
    base = load_model(profile, tokenizer).eval()
    out = []
    for method in methods:
        folder = results_dir(profile.name, method, root)
        row = {"method": method, "label": METHOD_TABLE[method].label, "summary": None, "weights": None, "run": None,
               "seconds": 0.0}
        started = time.perf_counter()
        try:
            weights = adapter_path(folder, method) if METHOD_TABLE[method].weights else None
            if weights is not None and not weights.exists():
                raise ResultsError(f"{weights} is not here")
            config = read_json(folder / "config.json", method) if (folder / "config.json").exists() else None
            made_with = Profile(**config["profile"]) if config else profile  # the settings the weights fit
            model = apply_method(copy.deepcopy(base), made_with, tokenizer, method)
            if weights is not None:
                load_trained(model, folder, method)
                row["weights"] = str(weights)
                env = config["environment"] if config else {}
                row["run"] = f"trained on {env.get('gpu') or env.get('processor', 'an unrecorded machine')}"
            else:
                row["weights"] = "the base model as loaded"
            row["summary"] = _generate(model, tokenizer, ids, made_with)
        except (ResultsError, AdapterError) as err:
            row["weights"] = (f"none ({err}); train them with notebooks/{METHOD_TABLE[method].notebook} "
                              "(or make run)")
        row["seconds"] = round(time.perf_counter() - started, 1)
        out.append(row)
        if show:
            _print(row)
    return out


def _generate(model: nn.Module, tokenizer, ids: list[int], profile: Profile) -> str:
    with merged(model):
        new = generate_ids(model, [ids], profile.generation, tokenizer.eos_token_id, tokenizer.pad_token_id)[0]
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def _print(row: dict) -> None:
    print(f"\n== {row['label']}  ({row['seconds']:.0f} s)")
    print(f"   weights: {row['weights']}" + (f"; {row['run']}" if row["run"] else ""))
    if row["summary"] is not None:
        print(textwrap.fill(row["summary"] or "(empty)", width=100, initial_indent="   ", subsequent_indent="   "))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="a UTF-8 text file, e.g. a paper's abstract")
    parser.add_argument("--profile", default=COMMITTED_PROFILE)
    parser.add_argument("--methods", nargs="+", default=None, help=f"some of: {', '.join(METHODS)}")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        text = read_text_file(args.file)
        summarize(text, args.profile, args.methods)
    except (DataError, ConfigError, ResultsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
