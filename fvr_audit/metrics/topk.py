"""Metric 1 of the paper: top-K matching of reconstructions by a secondary recognizer F'.

"Assessing Privacy Risks from Feature Vector Reconstruction Attacks", section V: for a
reconstruction of person P, F' returns its top-K matches;

* tpr: share of reconstructions whose top-K holds P's true identity;
* fpr: share whose top-K holds only wrong identities;
* no-match: share for which F' returns nothing above its threshold.

The three add up to 1. Here the top-K are *identities* (an identity scores the best similarity of
its enrolled images), so that the random baseline is exactly K/N for N enrolled identities.
Every N is a random subset of the gallery identities that always contains the true identity:
for each reconstruction, N-1 distractor identities are drawn, repeated over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def random_baseline(k: int, n: int) -> float:
    """Chance that a random ranking puts the true identity in the top-K of N: K/N (capped at 1).

    >>> random_baseline(5, 100), random_baseline(25, 10)
    (0.05, 1.0)
    """
    return min(1.0, k / n)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (Wilson 1927; Brown, Cai & DasGupta 2001).

    Better than the normal approximation near 0 and 1, where audit figures often sit.
    ``successes`` may be fractional (a rate averaged over seeds, times ``n``).

    >>> [round(v, 4) for v in wilson_interval(50, 100)]
    [0.4038, 0.5962]
    >>> [round(v, 4) for v in wilson_interval(0, 100)]
    [0.0, 0.037]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return (0.0, 1.0)
    z = _normal_quantile(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF (the standard library's, to avoid a scipy dependency).

    >>> round(_normal_quantile(0.975), 6)
    1.959964
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(q)


@dataclass(frozen=True)
class TopKRates:
    """tpr, fpr and no-match of one (method, engine, K, N), with the tpr's 95% interval."""

    k: int
    n: int
    tpr: float
    fpr: float
    no_match: float
    tpr_ci: tuple[float, float]
    baseline: float
    #: Reconstructions evaluated, and gallery draws per reconstruction.
    queries: int
    seeds: int


def topk_outcomes(
    true_scores: np.ndarray, distractor_scores: np.ndarray, k: int, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: (hit, false_positive, no_match) booleans.

    ``true_scores`` [Q]: score of each query against its true identity; ``distractor_scores``
    [Q, M]: against M wrong identities. Ties count against the true identity (pessimistic for the
    attacker, so the figure stays a lower bound). With a ``threshold``, identities below it are
    not returned.

    >>> t = np.array([0.9, 0.5, 0.2])
    >>> d = np.array([[0.1, 0.2], [0.6, 0.7], [0.1, 0.1]])
    >>> [x.tolist() for x in topk_outcomes(t, d, k=1)]
    [[True, False, True], [False, True, False], [False, False, False]]
    >>> [x.tolist() for x in topk_outcomes(t, d, k=1, threshold=0.3)]
    [[True, False, False], [False, True, False], [False, False, True]]
    """
    true_scores = np.asarray(true_scores, dtype=np.float64)
    distractor_scores = np.asarray(distractor_scores, dtype=np.float64)
    rank = (distractor_scores >= true_scores[:, None]).sum(axis=1)
    if threshold is None:
        hit = rank < k
        return hit, ~hit, np.zeros_like(hit)
    true_returned = true_scores >= threshold
    hit = (rank < k) & true_returned
    anything_returned = true_returned | (distractor_scores >= threshold).any(axis=1)
    no_match = ~anything_returned
    return hit, anything_returned & ~hit, no_match


def topk_sweep(
    identity_scores: np.ndarray,
    true_identity: np.ndarray,
    ks: list[int],
    ns: list[int],
    *,
    seeds: int = 5,
    threshold: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[TopKRates]:
    """tpr/fpr/no-match for every (K, N), each N a random identity subset holding the true one.

    ``identity_scores`` [Q, G]: score of each query against each of G gallery identities;
    ``true_identity`` [Q]: column of the query's true identity. N larger than G is capped at G;
    (K, N) pairs with K > N are skipped. At N = G the draw is the whole gallery, so one seed.

    >>> scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.8, 0.85, 0.0]])
    >>> rates = topk_sweep(scores, np.array([0, 1]), ks=[1, 2], ns=[4], seeds=3)
    >>> [(r.k, r.n, r.tpr, r.fpr, r.no_match, r.baseline) for r in rates]
    [(1, 4, 0.5, 0.5, 0.0, 0.25), (2, 4, 1.0, 0.0, 0.0, 0.5)]
    """
    identity_scores = np.asarray(identity_scores, dtype=np.float64)
    true_identity = np.asarray(true_identity)
    queries, gallery = identity_scores.shape
    rng = rng or np.random.default_rng(0)
    rows = np.arange(queries)
    true_scores = identity_scores[rows, true_identity]
    # Distractor columns per query: every identity but the true one.
    others = np.argsort(np.arange(gallery)[None, :] == true_identity[:, None], axis=1, kind="stable")[:, : gallery - 1]
    results = []
    for n in sorted({min(n, gallery) for n in ns}):
        draws = 1 if n == gallery else seeds
        outcome_sums = {k: np.zeros(3) for k in ks}
        per_query_hits = {k: np.zeros(queries) for k in ks}
        for _ in range(draws):
            # N-1 distractors per query, without replacement, by sorting random keys.
            chosen = np.argsort(rng.random((queries, gallery - 1)), axis=1)[:, : n - 1]
            distractors = identity_scores[rows[:, None], others[rows[:, None], chosen]]
            for k in ks:
                if k > n:
                    continue
                hit, false_positive, no_match = topk_outcomes(true_scores, distractors, k, threshold)
                outcome_sums[k] += [hit.mean(), false_positive.mean(), no_match.mean()]
                per_query_hits[k] += hit
        for k in ks:
            if k > n:
                continue
            tpr, fpr, no_match = outcome_sums[k] / draws
            results.append(
                TopKRates(
                    k=k,
                    n=n,
                    tpr=float(tpr),
                    fpr=float(fpr),
                    no_match=float(no_match),
                    tpr_ci=wilson_interval(float(per_query_hits[k].sum() / draws), queries),
                    baseline=random_baseline(k, n),
                    queries=queries,
                    seeds=draws,
                )
            )
    return sorted(results, key=lambda r: (r.k, r.n))


def topk_rates_from_hits(
    returned: list[tuple[str, ...]] | list[list[str]], true_labels: np.ndarray, ks: list[int], n: int
) -> list[TopKRates]:
    """tpr/fpr/no-match from the identities an engine returned, best first, for each K.

    For engines that answer only with their top matches above a threshold (cloud services):
    the N of the figure is the enrolled gallery's, drawn once. ``returned[q]`` is the (possibly
    empty) list of identities for query q, at least ``max(ks)`` long unless the engine returned
    fewer. An empty answer is a no-match; an answer without the true identity in its first K is a
    false positive, as in :func:`topk_outcomes`.

    >>> rates = topk_rates_from_hits([("a", "b"), ("c", "b"), ()], np.array(["a", "b", "c"]), [1, 2], 10)
    >>> [(r.k, r.n, round(r.tpr, 3), round(r.fpr, 3), round(r.no_match, 3), r.baseline) for r in rates]
    [(1, 10, 0.333, 0.333, 0.333, 0.1), (2, 10, 0.667, 0.0, 0.333, 0.2)]
    """
    true_labels = np.asarray(true_labels).astype(str)
    queries = len(true_labels)
    if len(returned) != queries:
        raise ValueError(f"{len(returned)} answers for {queries} queries")
    results = []
    for k in sorted(set(ks)):
        if k > n:
            continue
        hit = np.array([true in tuple(answer)[:k] for answer, true in zip(returned, true_labels)], bool)
        no_match = np.array([len(answer) == 0 for answer in returned], bool)
        false_positive = ~hit & ~no_match
        results.append(
            TopKRates(
                k=k,
                n=n,
                tpr=float(hit.mean()) if queries else 0.0,
                fpr=float(false_positive.mean()) if queries else 0.0,
                no_match=float(no_match.mean()) if queries else 0.0,
                tpr_ci=wilson_interval(float(hit.sum()), queries),
                baseline=random_baseline(k, n),
                queries=queries,
                seeds=1,
            )
        )
    return results


def same_class_false_positive_share(top1_identity: np.ndarray, false_positive: np.ndarray) -> float:
    """Share of false positives whose top-1 wrong identity is also another false positive's top-1.

    The paper's Table II: reconstructions that all land on one wrong identity reveal a shared
    artefact of the reconstructor rather than a resemblance to someone.

    >>> same_class_false_positive_share(np.array([3, 3, 7, 9, 1]), np.array([1, 1, 1, 0, 0], bool))
    0.6666666666666666
    >>> same_class_false_positive_share(np.array([1, 2]), np.array([0, 0], bool))
    0.0
    """
    identities = np.asarray(top1_identity)[np.asarray(false_positive, dtype=bool)]
    if identities.size == 0:
        return 0.0
    _, inverse, counts = np.unique(identities, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))


def threshold_at_fmr(impostor_scores: np.ndarray, fmr: float) -> float:
    """Score threshold whose false-match rate on ``impostor_scores`` is at most ``fmr``.

    Accepting ``score >= threshold`` admits at most ``floor(fmr * len)`` impostors.

    >>> t = threshold_at_fmr(np.arange(1000) / 1000, 1e-2)
    >>> round(t, 6), int((np.arange(1000) / 1000 >= t).sum())
    (0.989, 10)
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise ValueError("no impostor scores to set a threshold from")
    allowed = int(math.floor(fmr * scores.size))
    # The (allowed+1)-th highest impostor must be rejected: sit just above it.
    return float(np.nextafter(scores[allowed], np.inf)) if allowed < scores.size else float(scores[-1])


def success_attack_rate(genuine_scores: np.ndarray, threshold: float) -> float:
    """SAR: share of reconstructions that F' accepts as their target at ``threshold``.

    The "success attack rate" of the template-inversion literature (e.g. Shahreza et al.,
    "Face reconstruction from facial templates", 2023), with the threshold set at a fixed
    false-match rate of the engine.

    >>> success_attack_rate(np.array([0.2, 0.5, 0.7, 0.9]), 0.6)
    0.5
    """
    genuine = np.asarray(genuine_scores, dtype=np.float64)
    return float(np.mean(genuine >= threshold)) if genuine.size else 0.0


def rows_scoring_at_least(own_scores: np.ndarray, block_scores: np.ndarray) -> np.ndarray:
    """Per query, how many rows of ``block_scores`` [T, B] score at least its own row's score [T].

    Adding these counts over the blocks of a database (with each query's own row left out of
    its block) gives ``rank - 1`` of the own row among all rows, ties counted against the
    attacker: the rank a deployed system holding the database gives the leaked row.

    >>> rows_scoring_at_least(np.array([0.5, 0.9]), np.array([[0.5, 0.2, 0.7], [0.1, 0.2, 0.3]])).tolist()
    [2, 0]
    """
    return (np.asarray(block_scores) >= np.asarray(own_scores)[:, None]).sum(axis=1)


def share_in_random_subsets(rivals: np.ndarray, others: int, k: int, n: int) -> float:
    """Expected share of queries whose own row is in the top ``k`` of a random ``n``-row subset
    that holds it, given each query's ``rivals`` (rows, among the ``others`` other rows, that score
    at least as high as its own row; ties count against the attacker).

    The subset's other ``n - 1`` rows hold X rivals, X hypergeometric (``others`` rows, ``rivals``
    marked, ``n - 1`` drawn); the own row is in the top ``k`` when X <= k - 1. Exact, with no
    random draws: the database-side counterpart of :func:`topk_sweep`'s N subsets.

    >>> share_in_random_subsets(np.array([0, 0]), 99, 1, 10)   # always first
    1.0
    >>> round(share_in_random_subsets(np.array([1]), 99, 1, 100), 6)   # the one rival is always drawn
    0.0
    >>> round(share_in_random_subsets(np.array([1]), 99, 1, 50), 4)    # drawn with probability 49/99
    0.5051
    """
    rivals = np.asarray(rivals, dtype=np.int64)
    draws = n - 1
    if draws > others or draws < 0:
        raise ValueError(f"a subset of {n} rows needs {draws} other rows, the database has {others}")
    total = 0.0
    for c in rivals.tolist():
        total += _hypergeometric_cdf(k - 1, others, int(c), draws)
    return total / len(rivals) if len(rivals) else 0.0


def _hypergeometric_cdf(x: int, population: int, marked: int, draws: int) -> float:
    """P(X <= x) for X ~ Hypergeometric(population, marked, draws), by log-gamma sums."""
    lo = max(0, draws - (population - marked))
    hi = min(x, marked, draws)
    if hi < lo:
        return 0.0

    def log_choose(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    denominator = log_choose(population, draws)
    return float(min(1.0, sum(math.exp(log_choose(marked, i) + log_choose(population - marked, draws - i) - denominator)
                              for i in range(lo, hi + 1))))
