"""Generation and ROUGE.

Generation is batched with left padding and the KV cache, greedy unless the
profile asks for beams, and identical for every method: each batch enters
``generate`` as input embeddings (the soft prompt, when there is one, sits
right before each row's document), so only the generated continuation comes
back and is scored. LoRA is merged for generation and unmerged after.
"""

from __future__ import annotations

import itertools
import re
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from rouge_score import rouge_scorer
from torch import nn

from .config import GenerationConfig
from .progress import progress
from .methods import embed_prompts, language_model, lora_layers, merge_lora, unmerge_lora

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@contextmanager
def merged(model: nn.Module):
    """LoRA folded into the weights inside the block (no adapter overhead), unmerged after."""
    has_lora = bool(lora_layers(model))
    if has_lora:
        merge_lora(model)
    try:
        yield model
    finally:
        if has_lora:
            unmerge_lora(model)


@torch.no_grad()
def generate_ids(model: nn.Module, prompts: list[list[int]], settings: GenerationConfig, eos_id: int,
                 pad_id: int) -> list[list[int]]:
    """Generated token ids (eos and padding stripped) for each prompt, in one batch."""
    lm = language_model(model)
    embeds, mask = embed_prompts(model, prompts)
    # transformers warns that with inputs_embeds the n-gram block sees only generated tokens: that is what we want
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*")
        out = lm.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=settings.max_new_tokens,
            do_sample=False, num_beams=settings.num_beams, no_repeat_ngram_size=settings.no_repeat_ngram_size,
            repetition_penalty=settings.repetition_penalty, eos_token_id=eos_id, pad_token_id=pad_id,
            use_cache=True,
        )
    results = []
    for row in out.tolist():
        if eos_id in row:
            row = row[: row.index(eos_id)]
        results.append(row)
    return results


def generate_summaries(model: nn.Module, tokenizer, dataset, settings: GenerationConfig,
                       desc: str = "generating") -> list[dict]:
    """Summaries for every row of a tokenized split: id, reference, prediction, and whether it hit the cap."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["prompt_ids"]))  # less padding
    outputs: dict[int, list[int]] = {}
    with merged(model):
        for start in progress(range(0, len(order), settings.batch_size), desc=desc):
            chunk = order[start:start + settings.batch_size]
            ids = generate_ids(model, [dataset[i]["prompt_ids"] for i in chunk], settings,
                               tokenizer.eos_token_id, tokenizer.pad_token_id)
            outputs.update(zip(chunk, ids))
    model.train(was_training)
    rows = []
    for i in range(len(dataset)):
        rows.append({
            "id": dataset[i]["id"],
            "reference": dataset[i]["summary"],
            "prediction": tokenizer.decode(outputs[i], skip_special_tokens=True).strip(),
            "new_tokens": len(outputs[i]),
            "hit_cap": len(outputs[i]) >= settings.max_new_tokens,
        })
    return rows


# ---------------------------------------------------------------------------
# ROUGE
# ---------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> str:
    """One sentence per line, as rougeLsum expects."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def rouge_per_example(predictions: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """ROUGE-1/2/L/Lsum F1 of each prediction against its reference (rouge_score, Porter stemmer)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references.")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    scores = {k: [] for k in ROUGE_KEYS}
    for pred, ref in zip(predictions, references):
        result = scorer.score(_sentences(ref), _sentences(pred))  # score(target, prediction)
        for k in ROUGE_KEYS:
            scores[k].append(result[k].fmeasure)
    return {k: np.array(v) for k, v in scores.items()}


def bootstrap_interval(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def rouge_summary(predictions: list[str], references: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean ROUGE F1 with a 95% bootstrap interval, per key: {"rouge1": {"mean", "low", "high"}, ...}."""
    per_example = rouge_per_example(predictions, references)
    out = {}
    for k, values in per_example.items():
        low, high = bootstrap_interval(values, n_boot, seed)
        out[k] = {"mean": float(values.mean()), "low": low, "high": high}
    return out


# ---------------------------------------------------------------------------
# Comparing two methods: paired over documents, resampling training seeds too
# ---------------------------------------------------------------------------


def paired_seed_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean difference ``a - b`` of per-document scores, with a bootstrap interval over documents and seeds.

    Args:
        a: scores of method A, shape (seeds_a, documents) or (documents,) for one training run.
        b: scores of method B on the same documents in the same order, shape (seeds_b, documents).

    Each replicate draws the documents once, with replacement, for both methods (the pairing: a hard document is
    hard for both), and each method's training seeds with replacement, independently (a second training run of a
    method is a new draw). Returns ``{"mean", "low", "high", "p", "level"}``: ``p`` is the two-sided bootstrap
    p-value of "no difference", twice the smaller share of replicates on either side of zero.
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired scores need the same documents: {a.shape[1]} vs {b.shape[1]}.")
    rng = np.random.default_rng(seed)
    n_docs = a.shape[1]
    docs = rng.integers(0, n_docs, size=(n_boot, n_docs))

    def seed_means(x: np.ndarray) -> np.ndarray:  # (n_boot, documents): each replicate's mean over drawn seeds
        draws = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
        weights = np.stack([np.bincount(row, minlength=x.shape[0]) for row in draws]) / x.shape[0]
        return weights @ x

    diff = seed_means(a) - seed_means(b)
    gaps = np.take_along_axis(diff, docs, axis=1).mean(axis=1)
    tail = (1 - level) / 2 * 100
    p = min(1.0, 2 * min((gaps <= 0).mean(), (gaps >= 0).mean()))
    return {"mean": float(a.mean() - b.mean()), "low": float(np.percentile(gaps, tail)),
            "high": float(np.percentile(gaps, 100 - tail)), "p": float(p), "level": level}


def seed_permutation_p(a, b) -> float | None:
    """Two-sided exact permutation p-value of the gap between two methods' per-seed means, the seeds as the units.

    Every way to deal the pooled seed means into groups of the two sizes is one equally likely split under "no
    difference"; ``p`` is the share of splits whose gap is at least the observed one. With three seeds a side there
    are 20 splits, so ``p`` cannot go below 2/20 = 0.1: seeds alone cannot settle a gap at the 5% level, whatever
    its size. None where a method has a single run (zero-shot), which gives no seed-level spread.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) < 2 or len(b) < 2:
        return None
    pooled, observed = np.concatenate([a, b]), abs(a.mean() - b.mean())
    gaps = [abs(pooled[list(idx)].mean() - np.delete(pooled, list(idx)).mean())
            for idx in itertools.combinations(range(len(pooled)), len(a))]
    return float(np.mean([g >= observed - 1e-12 for g in gaps]))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of several p-values (family-wise error at the stated level)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(low: float, high: float, lower_is_better: bool = False) -> str:
    """"ahead" or "behind" only when the interval of A - B excludes zero, else "tied"."""
    if low > 0:
        return "behind" if lower_is_better else "ahead"
    if high < 0:
        return "ahead" if lower_is_better else "behind"
    return "tied"
