"""The statistics behind every sentence that orders methods: intervals at their stated level, pairing, Holm."""

import numpy as np
import pytest

from peft_helpers.evaluation import bootstrap_interval, holm, paired_seed_bootstrap, verdict


def test_a_95_percent_interval_has_the_width_of_the_normal_quantiles():
    # the mean of 4,000 draws of N(0, 1) has standard error 1/sqrt(4000); a 95% interval is +-1.96 of it
    values = np.random.default_rng(0).normal(0.0, 1.0, 4000)
    se = values.std(ddof=1) / np.sqrt(len(values))
    for level, z in ((0.95, 1.960), (0.80, 1.2816)):
        low, high = bootstrap_interval(values, n_boot=4000, level=level)
        assert (high - low) / 2 == pytest.approx(z * se, rel=0.08)
        test = paired_seed_bootstrap(values, np.zeros_like(values), n_boot=4000, level=level)
        assert (test["high"] - test["low"]) / 2 == pytest.approx(z * se, rel=0.08)


def test_pairing_by_document_removes_the_documents_own_variation():
    rng = np.random.default_rng(1)
    hardness = rng.uniform(0.1, 0.7, 100)  # documents differ far more than the methods do
    b = hardness + rng.normal(0, 0.005, 100)
    a = b + 0.01
    paired = paired_seed_bootstrap(a, b)
    assert paired["mean"] == pytest.approx(0.01)
    assert 0.009 < paired["low"] < paired["high"] < 0.011 and paired["p"] < 0.01
    # the same numbers with the documents of B in another order: an unpaired comparison, which cannot separate them
    unpaired = paired_seed_bootstrap(a, b[::-1])
    assert unpaired["low"] < 0 < unpaired["high"]


def test_resampling_seeds_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    hardness = rng.uniform(0.1, 0.7, 100)
    a = np.stack([hardness + shift for shift in (0.00, 0.03, 0.06)])  # three seeds far apart
    b = np.stack([hardness + 0.02] * 3)
    one_run = paired_seed_bootstrap(a[0], b[0])
    seeds = paired_seed_bootstrap(a, b)
    assert seeds["mean"] == pytest.approx(0.01)
    assert seeds["high"] - seeds["low"] > 10 * (one_run["high"] - one_run["low"])
    assert seeds["low"] < 0 < seeds["high"]  # one seed behind, two ahead: tied
    with pytest.raises(ValueError, match="same documents"):
        paired_seed_bootstrap(a, b[:, :50])


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])
    assert holm([0.9, 0.9, 0.9]) == [1.0, 1.0, 1.0]


def test_a_verdict_is_ahead_only_when_the_interval_excludes_zero():
    assert verdict(0.001, 0.02) == "ahead"
    assert verdict(-0.02, -0.001) == "behind"
    assert verdict(-0.001, 0.02) == "tied" and verdict(0.0, 0.02) == "tied"
    assert verdict(0.001, 0.02, lower_is_better=True) == "behind"
    assert verdict(-0.02, -0.001, lower_is_better=True) == "ahead"  # a lower loss


def test_intervals_are_reproducible_from_their_seed_and_follow_it():
    values = np.random.default_rng(3).normal(0.4, 0.1, 100)
    other = np.random.default_rng(4).normal(0.4, 0.1, 100)
    assert bootstrap_interval(values, seed=5) == bootstrap_interval(values, seed=5)
    assert bootstrap_interval(values, seed=5) != bootstrap_interval(values, seed=6)
    assert paired_seed_bootstrap(values, other, seed=5) == paired_seed_bootstrap(values, other, seed=5)
    assert paired_seed_bootstrap(values, other, seed=5)["low"] != paired_seed_bootstrap(values, other, seed=6)["low"]


def test_an_interval_touching_zero_is_a_tie_on_either_side():
    assert verdict(-0.02, 0.0) == "tied" and verdict(0.0, 0.0) == "tied"
    assert verdict(-0.02, -1e-9) == "behind" and verdict(1e-9, 0.02) == "ahead"


def test_the_paired_interval_draws_every_document_and_weighs_seeds_as_a_mean():
    lead_in_first = paired_seed_bootstrap(np.array([100.0, 0, 0, 0, 0]), np.zeros(5))
    assert lead_in_first["mean"] == 20.0 and lead_in_first["high"] > 0  # the first document is drawn too
    constant = paired_seed_bootstrap(np.ones((3, 50)), np.zeros((3, 50)))  # 3 seeds, every gap exactly 1
    assert constant["low"] == pytest.approx(1.0) and constant["high"] == pytest.approx(1.0)


def test_two_identical_methods_are_not_told_apart():
    scores = np.random.default_rng(3).uniform(size=40)  # one run each, the same summaries
    same = paired_seed_bootstrap(scores, scores.copy())
    assert (same["low"], same["high"], same["p"]) == (0.0, 0.0, 1.0)


def test_the_p_value_and_the_interval_match_the_normal_approximation():
    """A gap of 1.5 standard errors: two-sided p = 0.134 and a 95% interval of +-1.96 standard errors."""
    noise = np.random.default_rng(7).normal(size=400)
    diff = 0.075 + (noise - noise.mean()) / noise.std()  # mean 0.075, sd 1: standard error 0.05
    result = paired_seed_bootstrap(diff, np.zeros(400))
    assert result["p"] == pytest.approx(0.134, abs=0.03)
    assert result["high"] - result["mean"] == pytest.approx(1.96 * 0.05, rel=0.05)
    assert result["mean"] - result["low"] == pytest.approx(1.96 * 0.05, rel=0.05)
    assert result["level"] == 0.95


def test_the_reports_pairwise_table_orders_adjusts_and_decides():
    from report.stats import pairwise

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, 200)
    scores = {"b": base + rng.normal(0, 0.01, (3, 200)), "a": base + 0.05 + rng.normal(0, 0.01, (3, 200)),
              "c": base + 0.0005 + rng.normal(0, 0.01, (3, 200))}
    rows = pairwise(scores)
    assert [(r["a"], r["b"]) for r in rows] == [("a", "c"), ("a", "b"), ("c", "b")]  # higher mean first
    for r in rows:
        assert r["mean"] == pytest.approx(scores[r["a"]].mean() - scores[r["b"]].mean())
    by_p = sorted(rows, key=lambda r: r["p"])
    running = 0.0
    for rank, r in enumerate(by_p):  # Holm: (3 - rank) x p, never below the previous adjusted value, at most 1
        running = max(running, min(1.0, (3 - rank) * r["p"]))
        assert r["holm_p"] == pytest.approx(running)
    assert [r["verdict"] for r in rows[:2]] == ["ahead", "ahead"] and rows[2]["verdict"] == "tied"
    assert all(r["holm_verdict"] == (r["verdict"] if r["holm_p"] < 0.05 else "tied") for r in rows)


def test_the_reports_means_spreads_and_shares():
    from report.stats import gain_share, max_sd, mean_sd, smallest_within

    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_sd([5.0]) == (5.0, None)
    assert max_sd({"x": [{"k": 1.0}, {"k": 3.0}], "y": [{"k": 5.0}]}, "k") == pytest.approx(2 ** 0.5)
    rows = [{"val_loss": 2.0, "trainable_params": 100}, {"val_loss": 2.015, "trainable_params": 10},
            {"val_loss": 2.03, "trainable_params": 1}]
    assert smallest_within(rows)["trainable_params"] == 10  # within 0.02 of the best, the fewest parameters
    assert gain_share(0.5, 2.0) == 0.25 and gain_share(0.5, 0.0) is None and gain_share(0.5, -1.0) is None


def test_the_seed_level_test_cannot_go_below_its_floor_and_says_so():
    """Three seeds a side: 20 splits of the six seed means, so a complete separation gives p = 2/20 and nothing
    less; the same means give 1; a method with one run (zero-shot) gives no seed-level test."""
    from peft_helpers.evaluation import seed_permutation_p
    from report.words import seed_level_sentence

    assert seed_permutation_p([0.41, 0.42, 0.43], [0.30, 0.31, 0.32]) == pytest.approx(0.1)
    assert seed_permutation_p([0.30, 0.31, 0.32], [0.41, 0.42, 0.43]) == pytest.approx(0.1)  # two-sided
    assert seed_permutation_p([0.4, 0.4, 0.4], [0.4, 0.4, 0.4]) == 1.0
    overlapping = seed_permutation_p([0.40, 0.43, 0.44], [0.41, 0.42, 0.45])
    assert 0.1 < overlapping <= 1.0
    assert seed_permutation_p([0.4], [0.3, 0.31, 0.32]) is None
    # C(6, 2) = 15 splits; {0.5, 0.6} and, two-sided, {0.1, 0.2} are as far apart as observed
    assert seed_permutation_p([0.5, 0.6], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(2 / 15)
    pairs = [{"seed_p": 0.1, "holm_verdict": "ahead"}, {"seed_p": 0.1, "holm_verdict": "ahead"},
             {"seed_p": 0.4, "holm_verdict": "tied"}, {"seed_p": None, "holm_verdict": "ahead"}]
    sentence = seed_level_sentence(pairs, 3)
    assert "at best p = 0.10, reached by 2 of the 3 pairs" in sentence and 'the 2 verdicts of "ahead"' in sentence


def test_the_conclusions_places_hold_only_methods_tied_with_each_other():
    """A tie is not transitive: A tied with B and B with C, but A ahead of C, puts C in a place of its own."""
    from report.words import conclusion

    def rows(r1):
        return [{"test_rouge1": r1, "val_loss": 2.0}]

    groups = {"lora": rows(0.47), "full_ft": rows(0.464), "prompt_tuning": rows(0.451), "zero_shot": rows(0.35)}
    pairs = [{"a": "lora", "b": "full_ft", "holm_verdict": "tied"},
             {"a": "full_ft", "b": "prompt_tuning", "holm_verdict": "tied"},
             {"a": "lora", "b": "prompt_tuning", "holm_verdict": "ahead"},
             {"a": "lora", "b": "zero_shot", "holm_verdict": "ahead"},
             {"a": "full_ft", "b": "zero_shot", "holm_verdict": "ahead"},
             {"a": "prompt_tuning", "b": "zero_shot", "holm_verdict": "ahead"}]
    text = conclusion({"pairs": pairs, "groups": groups, "untuned": [], "source": "seeds"})
    assert "LoRA and full fine-tuning (tied); then prompt tuning; then zero-shot." in text
