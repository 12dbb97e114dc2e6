"""Metric 1 (top-K matching): properties that must hold for any scores."""

from __future__ import annotations

import numpy as np
import pytest

from fvr_audit.metrics.topk import (
    same_class_false_positive_share,
    threshold_at_fmr,
    topk_outcomes,
    topk_sweep,
    wilson_interval,
)


@pytest.mark.parametrize("threshold", [None, 0.0, 0.5, 0.9])
def test_rates_add_up_to_one(threshold):
    rng = np.random.default_rng(0)
    scores = rng.random((200, 300))
    rates = topk_sweep(scores, rng.integers(0, 300, 200), ks=[1, 5, 25], ns=[50, 300], seeds=3, threshold=threshold)
    assert len(rates) == 6
    for r in rates:
        assert r.tpr + r.fpr + r.no_match == pytest.approx(1.0)
        assert r.tpr_ci[0] <= r.tpr <= r.tpr_ci[1]


def test_random_scores_match_the_k_over_n_baseline():
    rng = np.random.default_rng(1)
    queries, gallery = 2000, 1000
    rates = topk_sweep(rng.random((queries, gallery)), rng.integers(0, gallery, queries), ks=[5, 25], ns=[100, 1000], seeds=4)
    for r in rates:
        assert r.tpr_ci[0] <= r.baseline <= r.tpr_ci[1], r


def test_perfect_scores_hit_at_every_k_and_n():
    scores = np.eye(30) + 0.01 * np.random.default_rng(2).random((30, 30))
    for r in topk_sweep(scores, np.arange(30), ks=[1, 5], ns=[10, 30], seeds=2):
        assert (r.tpr, r.fpr, r.no_match) == (1.0, 0.0, 0.0)


def test_n_is_capped_and_k_above_n_skipped():
    rates = topk_sweep(np.random.default_rng(3).random((5, 8)), np.zeros(5, int), ks=[1, 10], ns=[4, 50], seeds=2)
    assert [(r.k, r.n, r.seeds) for r in rates] == [(1, 4, 2), (1, 8, 1)]


def test_the_true_identity_is_always_in_the_subset():
    # The true identity scores lowest of all, so it can only be found when K >= N.
    scores = np.ones((10, 50))
    scores[:, 0] = 0.0
    rates = {(r.k, r.n): r.tpr for r in topk_sweep(scores, np.zeros(10, int), ks=[5, 10], ns=[5, 10], seeds=3)}
    assert rates == {(5, 5): 1.0, (5, 10): 0.0, (10, 10): 1.0}


def test_ties_count_against_the_attacker():
    hit, fp, nm = topk_outcomes(np.array([0.5]), np.array([[0.5, 0.1]]), k=1)
    assert (hit[0], fp[0], nm[0]) == (False, True, False)


def test_same_class_share_and_fmr_threshold():
    assert same_class_false_positive_share(np.array([4, 4, 4, 4]), np.ones(4, bool)) == 1.0
    assert same_class_false_positive_share(np.array([1, 2, 3]), np.ones(3, bool)) == 0.0
    impostors = np.random.default_rng(4).normal(size=100_000)
    t = threshold_at_fmr(impostors, 1e-3)
    assert (impostors >= t).mean() <= 1e-3
    assert (impostors >= np.nextafter(t, -np.inf) - 1e-3).mean() > 1e-3 - 1e-4


def test_wilson_interval_is_within_unit_range_and_narrows():
    wide = wilson_interval(5, 10)
    narrow = wilson_interval(500, 1000)
    assert 0 <= wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1] <= 1
