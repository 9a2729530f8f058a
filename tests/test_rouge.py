"""ROUGE: the same numbers as rouge_score itself, with an interval around the mean."""

import numpy as np
import pytest
from rouge_score import rouge_scorer

from peft_helpers import rouge_per_example, rouge_summary
from peft_helpers.evaluation import bootstrap_interval


def test_known_answers():
    scores = rouge_per_example(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert all(v[0] == pytest.approx(1.0) for v in scores.values())
    scores = rouge_per_example(["dogs bark loudly"], ["the cat sat"])
    assert all(v[0] == 0.0 for v in scores.values())
    # stemming: "running" and "runs" share the stem "run", so all 3 unigrams match both ways
    scores = rouge_per_example(["the dog running"], ["the dog runs"])
    assert scores["rouge1"][0] == pytest.approx(1.0)
    scores = rouge_per_example(["a b c"], ["a b d"])
    assert scores["rouge1"][0] == pytest.approx(2 / 3) and scores["rouge2"][0] == pytest.approx(1 / 2)


def test_agrees_with_rouge_score_directly():
    preds = ["We propose a new parser. It is fast.", "Results improve by 2 points.", "nothing"]
    refs = ["They propose a fast parser. It improves accuracy.", "The results improve.", "A model for parsing."]
    ours = rouge_per_example(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for i, (p, r) in enumerate(zip(preds, refs)):
        direct = scorer.score(r, p)
        for k in ("rouge1", "rouge2", "rougeL"):
            assert ours[k][i] == pytest.approx(direct[k].fmeasure)


def test_interval_contains_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(size=20), rng.uniform(size=2000)
    lo_s, hi_s = bootstrap_interval(small)
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    summary = rouge_summary(["a b c", "x y", "a"], ["a b d", "x z", "b"])
    for k, v in summary.items():
        assert v["low"] <= v["mean"] <= v["high"], k


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_per_example(["a", "b"], ["a"])


def test_paired_gap_sees_a_consistent_lead_and_no_lead_against_itself():
    from report.stats import paired_gap

    refs = [f"the model improves parsing accuracy on treebank {i}" for i in range(30)]
    good = [{"id": i, "reference": r, "prediction": r.replace("treebank", "corpus")} for i, r in enumerate(refs)]
    poor = [{"id": i, "reference": r, "prediction": "a method"} for i, r in enumerate(refs)]
    gap, low, high = paired_gap(good, poor)
    assert low > 0 and low <= gap <= high
    assert paired_gap(good, good) == (0.0, 0.0, 0.0)


def test_the_rouge_interval_follows_the_runs_seed():
    """Each seeds-sweep run draws its ROUGE interval with its own seed (recorded in its config), not seed 0's."""
    predictions = ["the cat sat on the mat", "a dog ran", "models learn words", "rain fell all day", "tea is hot"] * 4
    references = ["a cat sat on a mat", "the dog ran far", "models learn", "it rained all day long", "hot tea"] * 4
    per_example = rouge_per_example(predictions, references)["rouge1"]
    for seed in (0, 2):
        got = rouge_summary(predictions, references, seed=seed)["rouge1"]
        assert (got["low"], got["high"]) == bootstrap_interval(per_example, seed=seed)
    assert rouge_summary(predictions, references, seed=2)["rouge1"] != rouge_summary(predictions, references)["rouge1"]
