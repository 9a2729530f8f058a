"""Generation and ROUGE.

Generation is batched with left padding and the KV cache, greedy unless the
profile asks for beams, and identical for every method: each batch enters
``generate`` as input embeddings (the soft prompt, when there is one, sits
right before each row's document), so only the generated continuation comes
back and is scored. LoRA is merged for generation and unmerged after.
"""

from __future__ import annotations

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
