"""Ranking and selection for active learning: pure functions with exact values."""

import pytest

from lib.strategies.ranking import Candidate, aggregate_uncertainty, cosine, pick_next


def test_aggregate_ignores_confidently_absent_prompts():
    assert aggregate_uncertainty({"liver": 0.2, "spleen": 0.4, "aorta": 0.0}) == pytest.approx(0.3)
    assert aggregate_uncertainty({"liver": 0.0}) == 0.0
    assert aggregate_uncertainty({}) == 0.0


def test_pick_next_highest_then_diverse():
    a, b, c = Candidate("a", 0.9, (1.0, 0.0)), Candidate("b", 0.8, (1.0, 0.001)), Candidate("c", 0.5, (0.0, 1.0))
    assert pick_next([a, b, c], []) == a
    # a was handed out: b is a near-duplicate of a, so c comes next
    assert pick_next([a, b, c], [a]) == c
    # without descriptors only the id is excluded
    plain = [Candidate("a", 0.9), Candidate("b", 0.8)]
    assert pick_next(plain, [Candidate("a", 0.9)]).id == "b"
    # all near-duplicates: best unseen one anyway
    assert pick_next([a, b], [a]) == b
    assert pick_next([a], [a]) is None
    # ties broken by id for determinism
    assert pick_next([Candidate("z", 0.5), Candidate("y", 0.5)], []).id == "y"
    assert cosine([1, 0], [0, 1]) == 0.0 and cosine([0, 0], [1, 1]) == 0.0


def test_calibrated_scores_rank_each_prompt_across_images():
    from lib.strategies.ranking import calibrated_scores

    per = {"a": {"liver": 0.9, "pancreas": 0.10}, "b": {"liver": 0.1, "pancreas": 0.30},
           "c": {"liver": 0.5, "pancreas": 0.20}, "d": {"liver": 0.0, "pancreas": 0.0}}
    s = calibrated_scores(per)
    # pancreas is uncertain everywhere, so raw means would favour b; ranks weigh both prompts alike
    assert s["a"] == (1.0 + 1 / 3) / 2 and s["b"] == (1 / 3 + 1.0) / 2 and s["c"] == (2 / 3 + 2 / 3) / 2
    assert s["d"] == 0.0


def test_density_prefers_typical_images():
    from lib.strategies.ranking import density

    d = density({"a": (1.0, 0.0), "b": (1.1, 0.1), "c": (0.9, -0.1), "outlier": (-5.0, 9.0)})
    assert min(d["a"], d["b"], d["c"]) > d["outlier"]
    assert all(0.0 <= v <= 1.0 for v in d.values())
    assert density({"a": (1.0,)}) == {"a": 1.0}
