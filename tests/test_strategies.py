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
