"""The statistics behind the report's sentences: paired gaps, seed-aware pairwise tests with Holm's correction,
means and spreads, shares of full fine-tuning's gain."""

from __future__ import annotations

import re

import numpy as np
from nltk.stem import porter
from rouge_score import rouge_scorer

from peft_helpers.evaluation import (
    bootstrap_interval, holm, paired_seed_bootstrap, rouge_per_example, seed_permutation_p, verdict,
)
from peft_helpers.results import ResultsError


def paired_gap(a: list[dict], b: list[dict], seed: int = 0, names: tuple[str, str] = ("a", "b")
               ) -> tuple[float, float, float]:
    """Mean ROUGE-1 difference a - b over the same test rows, with a 95% paired-bootstrap interval.

    Pairing by document removes the variation between documents that two
    separate intervals both carry, so it is the right test of "a beats b".
    ``names``: the two methods, for the message when their rows differ.
    """
    ids_a, ids_b = [p["id"] for p in a], [p["id"] for p in b]
    if ids_a != ids_b:
        only = sorted(set(ids_a) ^ set(ids_b))
        detail = (f"{len(only)} ids in one only, e.g. {only[:3]}" if only else "the same ids in another order")
        raise ResultsError(f"the predictions of {names[0]} ({len(ids_a)} rows) and {names[1]} ({len(ids_b)} rows) "
                           f"cover different test rows ({detail}); re-run the older of the two.")
    refs = [p["reference"] for p in a]
    diff = (rouge_per_example([p["prediction"] for p in a], refs)["rouge1"]
            - rouge_per_example([p["prediction"] for p in b], refs)["rouge1"])
    low, high = bootstrap_interval(diff, seed=seed)
    return float(diff.mean()), low, high


def output_stats(predictions: list[dict]) -> dict:
    """How a method's summaries differ from the references: ROUGE-1 precision and recall, length in words, how many
    run to the cap (and their ROUGE-1 against the rest), and how many take up the references' template (their
    second sentence starts "They ...", 99 of ACLSum's 100 test references do; 29 open with "Existing")."""

    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    scores = [scorer.score(p["reference"], p["prediction"])["rouge1"] for p in predictions]
    n = len(predictions)
    capped = [sc.fmeasure for sc, p in zip(scores, predictions) if p["hit_cap"]]
    ended = [sc.fmeasure for sc, p in zip(scores, predictions) if not p["hit_cap"]]
    return {"precision": sum(sc.precision for sc in scores) / n, "recall": sum(sc.recall for sc in scores) / n,
            "words": sum(len(p["prediction"].split()) for p in predictions) / n,
            "ref_words": sum(len(p["reference"].split()) for p in predictions) / n,
            "n": n, "hit_cap": len(capped), "capped_r1": sum(capped) / len(capped) if capped else None,
            "ended_r1": sum(ended) / len(ended) if ended else None,
            "they": sum(" They " in f" {p['prediction']}" for p in predictions),
            "existing": sum(p["prediction"].startswith("Existing") for p in predictions),
            "ref_they": sum(" They " in f" {p['reference']}" for p in predictions),
            "ref_existing": sum(p["reference"].startswith("Existing") for p in predictions)}


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def max_sd(groups: dict[str, list[dict]], key: str) -> float:
    return max((mean_sd([r[key] for r in g])[1] or 0.0) for g in groups.values())


def smallest_within(rows: list[dict], tolerance: float = 0.02) -> dict:
    """The row with the fewest parameters whose validation loss is within ``tolerance`` of the lowest."""
    best = min(r["val_loss"] for r in rows)
    return min((r for r in rows if r["val_loss"] <= best + tolerance), key=lambda r: r["trainable_params"])


def pairwise(scores: dict[str, np.ndarray], seed: int = 0) -> list[dict]:
    """Every pair of methods (higher mean first): the ROUGE-1 gap paired over documents and resampling seeds, its 95%
    interval, the two-sided p-value and its Holm adjustment over all pairs, and the verdict the interval gives."""

    order = sorted(scores, key=lambda m: -scores[m].mean())
    pairs = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]]
    tests = [paired_seed_bootstrap(scores[a], scores[b], seed=seed) for a, b in pairs]
    adjusted = holm([t["p"] for t in tests])
    return [{"a": a, "b": b, **t, "holm_p": h, "verdict": verdict(t["low"], t["high"]),
             "holm_verdict": verdict(t["low"], t["high"]) if h < 1 - t["level"] else "tied",
             "seed_p": seed_permutation_p(scores[a].mean(axis=-1), scores[b].mean(axis=-1))}
            for (a, b), t, h in zip(pairs, tests, adjusted)]


def gain_share(gain: float, full_gain: float) -> float | None:
    """A method's gain as a share of full fine-tuning's; None where full fine-tuning gained nothing to share."""
    return gain / full_gain if full_gain > 0 else None


_WORD = re.compile(r"[a-z0-9]+")
_FUNCTION_WORDS = frozenset(
    "the a an of and or to in on for with by from as at is are was were be been being this that these those it its "
    "their they them we our us which who whom what when where how than then also can could may might will would "
    "shall should not no nor but if so such both each all any more most other into over under about between "
    "through during via using use used based new".split())


def _stems(text: str) -> list[str]:
    stemmer = porter.PorterStemmer()
    return [stemmer.stem(w) for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS and not w.isdigit()]


def unsupported_words(summary: str, document: str) -> list[str]:
    """The content words of ``summary`` (function words and numbers left out) whose stem appears nowhere in
    ``document``: what a summary says that its source does not, a first check of faithfulness (a paraphrase shows up
    too, so it is a list to read, not a verdict)."""
    source = set(_stems(document))
    stemmer = porter.PorterStemmer()
    seen, out = set(), []
    for w in _WORD.findall(summary.lower()):
        if w in _FUNCTION_WORDS or w.isdigit() or w in seen:
            continue
        seen.add(w)
        if stemmer.stem(w) not in source:
            out.append(w)
    return out


def unsupported_share(summaries: list[str], documents: list[str]) -> float:
    """The share of the summaries' content words (every occurrence) whose stem appears nowhere in their document."""
    total = absent = 0
    for summary, document in zip(summaries, documents):
        source, words = set(_stems(document)), _stems(summary)
        total += len(words)
        absent += sum(w not in source for w in words)
    return absent / total if total else 0.0


def common_machine(groups: dict[str, list[dict]]) -> str:
    """The kind of machine that made most of the compared runs (ties: the first met)."""
    machines = [r.get("machine", "") for rows in groups.values() for r in rows]
    return max(dict.fromkeys(machines), key=machines.count) if machines else ""


def timed_elsewhere(rows: list[dict], common: str) -> bool:
    """Whether none of a method's runs was made on the common machine, so that its times and peaks are another
    machine's and compare with no other method's."""
    return not any(r.get("machine") == common for r in rows)


def cost_runs(rows: list[dict], common: str) -> list[dict]:
    """A method's runs whose training time and peak memory are reported: those made on the common machine where it
    has any (a time measured on a GPU is not comparable with one on a CPU), else all of its runs."""
    return rows if timed_elsewhere(rows, common) else [r for r in rows if r.get("machine") == common]
