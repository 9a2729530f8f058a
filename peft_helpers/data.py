"""Data for each profile, its cleaning, and the task's tokenization (models and tokenizers: ``models``).

Each example is ``document + "\\nTL;DR:" + " " + summary + eos``; the loss
covers only the summary and eos. Truncation cuts the document (its beginning
is kept), never the separator, and the summary only to a fixed cap.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict

from .config import CNNDM_PATH, ConfigError, Profile
from .models import hub_error, local_folder, package_folder, require_hub
from .results import file_sha256

CNNDM = ("abisee/cnn_dailymail", "3.0.0")


class DataError(ValueError):
    """Input data that cannot be used as it is; the message says what to do."""


# ---------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def clean_text(text) -> str:
    """Unicode NFC, undecodable bytes replaced, control characters removed, whitespace collapsed."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = unicodedata.normalize("NFC", str(text))
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in text)
    return _SPACES.sub(" ", text).strip()


def _as_text(value, source: str, row_id, column: str) -> str:
    """``value`` if it is text (None counts as empty), else a DataError naming where it came from."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise DataError(f"{source}, row id {row_id!r}: column {column!r} holds {type(value).__name__} "
                        f"{str(value)[:60]!r}, not text; fix the source data.")
    return value


def clean_rows(rows: list[dict], source: str = "the data") -> tuple[list[dict], Counter]:
    """Clean ``id``/``document``/``summary`` rows; drop empty ones and repeated ids, and count why."""
    kept, dropped, seen = [], Counter(), set()
    for number, row in enumerate(rows, 1):
        missing = [c for c in ("id", "document", "summary") if not isinstance(row, dict) or c not in row]
        if missing:
            raise DataError(f"{source}: row {number} lacks {missing}; every row needs id, document and summary.")
        row_id = row["id"]
        if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
            raise DataError(f"{source}: a row has id {row_id!r} ({type(row_id).__name__}); ids must be text.")
        document = clean_text(_as_text(row["document"], source, row_id, "document"))
        summary = clean_text(_as_text(row["summary"], source, row_id, "summary"))
        if str(row_id) in seen:
            dropped["repeated id"] += 1
        elif not document:
            dropped["empty document"] += 1
        elif not summary:
            dropped["empty summary"] += 1
        else:
            seen.add(str(row_id))
            kept.append({"id": str(row_id), "document": document, "summary": summary})
    return kept, dropped


def split_overlaps(splits: dict[str, list[dict]]) -> dict[str, dict[str, int]]:
    """Rows shared between two splits, by id and by identical document; a DataError when test meets train.

    Validation rows that also sit in train are counted (they flatter the
    validation loss); test rows that sit in train would make the test score
    a memory test, so they stop the run.
    """
    overlaps = {}
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ids = {r["id"] for r in splits[a]} & {r["id"] for r in splits[b]}
            docs = {r["document"] for r in splits[a]} & {r["document"] for r in splits[b]}
            overlaps[f"{a}/{b}"] = {"same id": len(ids), "same document": len(docs)}
            if {a, b} == {"train", "test"} and (ids or docs):
                raise DataError(f"{len(ids)} test row id(s) and {len(docs)} test document(s) also appear in train "
                                f"(e.g. {sorted(ids)[:3] or [d[:60] for d in sorted(docs)[:1]]}); the test split must "
                                "be unseen: remove them from one of the splits.")
    return overlaps


def _require(rows: list[dict], columns: tuple[str, ...], source: str) -> None:
    if not rows:
        raise DataError(f"{source} has no rows.")
    for number, row in enumerate(rows, 1):  # every row, not only the first: one bad row is a clear error too
        missing = [c for c in columns if not isinstance(row, dict) or c not in row]
        if missing:
            has = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{source}, row {number}, lacks column(s) {missing}; it needs {list(columns)} "
                            f"(has {has}).")


# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file; a DataError naming the file and line for one that does not parse."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {number}: not valid JSON ({err.msg} at column {err.colno}).") from err
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {number}: a JSON object was expected, got {type(row).__name__}.")
        rows.append(row)
    return rows


def aclsum_rows(split: str, folder: Path | None = None) -> list[dict]:
    """ACLSum rows as ``id``/``document``/``summary``: the abstract, and challenge + approach + outcome."""
    folder = folder or package_folder("aclsum", "aclsum") / "dataset"
    path = Path(folder) / f"{split}.jsonl"
    raw = read_jsonl(path)
    _require(raw, ("id", "summary", "sentences"), str(path))
    rows = []
    for r in raw:
        summary, sentences = r.get("summary") or {}, r.get("sentences") or {}
        if not isinstance(summary, dict) or not isinstance(sentences, dict):
            raise DataError(f"{path}, row id {r['id']!r}: 'summary' and 'sentences' must be objects.")
        abstract = sentences.get("abstract") or []
        if isinstance(abstract, str) or not isinstance(abstract, list):  # a string would be joined letter by letter
            raise DataError(f"{path}, row id {r['id']!r}: column 'sentences.abstract' must be a list of "
                            f"sentences, got {type(abstract).__name__}.")
        parts = [_as_text(summary.get(k), str(path), r["id"], f"summary.{k}") for k in ("challenge", "approach", "outcome")]
        rows.append({
            "id": r["id"],
            "document": " ".join(_as_text(x, str(path), r["id"], "sentences.abstract") for x in abstract),
            "summary": " ".join(parts),
        })
    return rows


def cnndm_rows(table) -> list[dict]:
    """CNN/DailyMail rows (``id``, ``article``, ``highlights``) as ``id``/``document``/``summary``."""
    rows = [dict(r) for r in table]
    _require(rows, ("id", "article", "highlights"), "the CNN/DailyMail table")
    return [{"id": r["id"], "document": r["article"], "summary": r["highlights"]} for r in rows]


def local_cnndm(folder: Path) -> tuple[dict[str, list[dict]], str]:
    """CNN/DailyMail from local files: ``<split>.parquet``, ``.arrow`` or ``.jsonl`` for train, validation, test.

    Each file holds the hub's columns ``id``, ``article``, ``highlights``.
    Returns the rows of each split and a digest of the files' bytes.
    """
    raw, digests = {}, []
    for split in ("train", "validation", "test"):
        found = [folder / f"{split}.{ending}" for ending in ("parquet", "arrow", "jsonl")]
        found = [path for path in found if path.is_file()]
        if len(found) != 1:
            raise DataError(f"{CNNDM_PATH}={str(folder)!r}: expected one of {split}.parquet, {split}.arrow, "
                            f"{split}.jsonl, found {[p.name for p in found] or 'none'}.")
        path = found[0]
        try:
            if path.suffix == ".jsonl":
                table = read_jsonl(path)
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq

                table = pq.read_table(path).to_pylist()
            else:
                from datasets import Dataset as ArrowDataset

                table = ArrowDataset.from_file(str(path))
        except Exception as err:  # pyarrow's ArrowInvalid, OSError, a JSON line cut short: the file, not the code
            raise DataError(f"{path} could not be read ({type(err).__name__}: {str(err)[:200]}); it is cut short or "
                            f"not a {path.suffix[1:]} file. Write it again, or unset {CNNDM_PATH} to use the hub."
                            ) from err
        try:
            raw[split] = cnndm_rows(table)
        except DataError as err:
            raise DataError(f"{path}: {err}") from err
        digests.append(file_sha256(path))
    return raw, hashlib.sha256("".join(digests).encode()).hexdigest()


def _subset(rows: list[dict], n: int, seed: int) -> list[dict]:
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    return [rows[i] for i in order[:n]]


def source_rows(profile: Profile) -> tuple[dict[str, list[dict]], str]:
    """The raw ``id``/``document``/``summary`` rows of each split, and a digest of their content."""
    if profile.dataset == "aclsum":
        folder = package_folder("aclsum", "aclsum") / "dataset"
        raw = {"train": aclsum_rows("train", folder), "validation": aclsum_rows("val", folder),
               "test": aclsum_rows("test", folder)}
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    elif profile.dataset == "cnn_dailymail" and (folder := local_folder(CNNDM_PATH)):
        raw, digest = local_cnndm(folder)
    elif profile.dataset == "cnn_dailymail":
        from datasets import load_dataset

        require_hub(f"the {CNNDM[0]} dataset")
        try:
            hub = load_dataset(*CNNDM)
        except Exception as err:  # datasets raises many types when offline
            raise hub_error(f"the {CNNDM[0]} dataset", err) from err
        raw = {split: cnndm_rows(hub[split]) for split in ("train", "validation", "test")}
        # datasets' own content fingerprints of the downloaded files: hashing 300k articles again would take minutes
        digest = hashlib.sha256("".join(hub[s]._fingerprint for s in raw).encode()).hexdigest()
    else:
        raise ConfigError(f"unknown dataset {profile.dataset!r} in profile {profile.name!r}.")
    return raw, digest


def load_splits(profile: Profile, raw: dict[str, list[dict]] | None = None) -> tuple[DatasetDict, dict]:
    """Cleaned train/validation/test splits and a report of sizes, dropped rows and overlaps."""
    raw = raw if raw is not None else source_rows(profile)[0]
    sizes = {"train": profile.n_train, "validation": profile.n_val, "test": profile.n_test}
    kept_rows, report = {}, {}
    for split, rows in raw.items():
        kept, dropped = clean_rows(rows, f"the {split} split of {profile.dataset}")
        if profile.dataset == "cnn_dailymail" or len(kept) > sizes[split]:
            kept = _subset(kept, sizes[split], profile.seed)
        if not kept:
            raise DataError(f"the {split} split is empty after cleaning ({dict(dropped)} dropped).")
        kept_rows[split] = kept
        report[split] = {"raw": len(rows), "kept": len(kept), "dropped": dict(dropped)}
    report["overlaps"] = split_overlaps(kept_rows)
    return DatasetDict({split: Dataset.from_list(rows) for split, rows in kept_rows.items()}), report


# ---------------------------------------------------------------------------
# Tokenization and batching
# ---------------------------------------------------------------------------


def check_context(profile: Profile, model_config, n_virtual: int = 0, tokenizer=None) -> None:
    """Raise when soft prompt + document + separator + summary/generation cannot fit the model."""
    limit = getattr(model_config, "n_positions", None) or getattr(model_config, "max_position_embeddings", None)
    # the separator's tokens as the tokenizer counts them ("\nTL;DR:" is 5 in the GPT-2 and SmolLM2 tokenizers), else
    # a bound; the chat template's system turn, instruction and turn markers are 48 for SmolLM2 (bound 64)
    separator = 64 if profile.prompt_format == "chat" else 16
    if tokenizer is not None and profile.prompt_format != "chat":
        separator = len(tokenizer(profile.separator, add_special_tokens=False)["input_ids"])
    longest = n_virtual + profile.max_doc_tokens + separator + max(profile.max_summary_tokens + 1,
                                                            profile.generation.max_new_tokens)
    if limit and longest > limit:
        raise ConfigError(
            f"context overflow: {n_virtual} soft tokens + {profile.max_doc_tokens} document + {separator} separator + "
            f"{max(profile.max_summary_tokens + 1, profile.generation.max_new_tokens)} summary tokens = {longest} "
            f"> the model's {limit} positions; lower max_doc_tokens, the prompt length or the separator."
        )


def encode_example(tokenizer, document: str, summary: str, max_doc: int, max_summary: int, separator: str) -> dict:
    """``prompt_ids`` (document cut to ``max_doc`` + separator) and ``target_ids`` (summary cut + eos)."""
    for name, value in (("document", document), ("summary", summary)):
        if not isinstance(value, str):
            raise DataError(f"encode_example needs the {name} as text, got {type(value).__name__} ({value!r:.40}).")
    doc = tokenizer(document, add_special_tokens=False)["input_ids"][:max_doc]
    sep = tokenizer(separator, add_special_tokens=False)["input_ids"]
    target = tokenizer(" " + summary, add_special_tokens=False)["input_ids"][:max_summary]
    if not sep or not doc:  # a tokenizer that yields nothing would train on empty prompts without a word
        raise DataError(f"the tokenizer turned the {'separator' if not sep else 'document'} into no tokens "
                        f"({(separator if not sep else document)[:40]!r}); check the tokenizer files.")
    return {"prompt_ids": doc + sep, "target_ids": target + [tokenizer.eos_token_id]}


CHAT_INSTRUCTION = "Summarize the following text:"  # the prompt tuning's text initialisation, as an instruction


def encode_chat_example(tokenizer, document: str, summary: str, max_doc: int, max_summary: int) -> dict:
    """The chat-template form: the user's turn holds the instruction and the document (cut to ``max_doc`` tokens),
    the assistant's turn the summary; ``prompt_ids`` end where the assistant's text begins."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("prompt_format='chat' needs a tokenizer with a chat template; this one has none "
                        "(GPT-2 has none: use prompt_format='plain').")
    doc = tokenizer(document, add_special_tokens=False)["input_ids"][:max_doc]
    message = f"{CHAT_INSTRUCTION}\n\n{tokenizer.decode(doc)}"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                           tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    target = tokenizer(summary, add_special_tokens=False)["input_ids"][:max_summary]
    return {"prompt_ids": prompt, "target_ids": target + [tokenizer.eos_token_id]}


def tokenize_splits(splits: DatasetDict, tokenizer, profile: Profile) -> DatasetDict:
    """Add ``prompt_ids`` and ``target_ids`` to every split (in the profile's ``prompt_format``)."""

    def encode(row):
        if profile.prompt_format == "chat":
            out = encode_chat_example(tokenizer, row["document"], row["summary"], profile.max_doc_tokens,
                                      profile.max_summary_tokens)
        else:
            out = encode_example(tokenizer, row["document"], row["summary"], profile.max_doc_tokens,
                                 profile.max_summary_tokens, profile.separator)
        out["doc_tokens"] = len(tokenizer(row["document"], add_special_tokens=False)["input_ids"])
        out["summary_tokens"] = len(tokenizer(" " + row["summary"], add_special_tokens=False)["input_ids"])
        return out

    return splits.map(encode, desc="tokenizing")


@dataclass
class TrainCollator:
    """Right-padded ``prompt + target`` batches; labels are -100 on the prompt and on padding, by position."""

    pad_id: int

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(r["prompt_ids"]) + len(r["target_ids"]) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            p, t = len(r["prompt_ids"]), len(r["target_ids"])
            ids[i, : p + t] = torch.tensor(r["prompt_ids"] + r["target_ids"])
            labels[i, p : p + t] = torch.tensor(r["target_ids"])  # eos included: the model learns to stop
            mask[i, : p + t] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


