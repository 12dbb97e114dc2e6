"""Face verification accuracy under the LFW k-fold protocol.

Huang et al. 2007 (LFW), "unrestricted, labeled outside data" protocol: for each of the 10
folds, the decision threshold is chosen on the other 9 folds (maximising their accuracy) and
applied to the held-out fold; the figure is the mean (and standard error) over folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Similarity threshold maximising accuracy of ``score >= t`` -> same person.

    Candidate thresholds are the midpoints between consecutive sorted scores (and the ends).

    >>> best_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False]))
    0.55
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(scores)
    sorted_scores, sorted_same = scores[order], same[order]
    # Accepting everything above candidate i: correct = (#same at or above i) + (#different below i).
    same_above = np.concatenate([np.cumsum(sorted_same[::-1])[::-1], [0]])
    diff_below = np.concatenate([[0], np.cumsum(~sorted_same)])
    correct = same_above + diff_below
    best = int(np.argmax(correct))
    if best == 0:
        return float(sorted_scores[0] - 1e-6)
    if best == len(sorted_scores):
        return float(sorted_scores[-1] + 1e-6)
    return float(round((sorted_scores[best - 1] + sorted_scores[best]) / 2, 12))


@dataclass(frozen=True)
class KFoldAccuracy:
    """Mean and standard error of per-fold accuracy, and the per-fold figures and thresholds."""

    mean: float
    std_error: float
    per_fold: tuple[float, ...]
    thresholds: tuple[float, ...]


def kfold_verification_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> KFoldAccuracy:
    """LFW-style k-fold verification accuracy of similarity ``scores``.

    >>> scores = np.array([0.9, 0.2, 0.8, 0.3, 0.7, 0.6])
    >>> same = np.array([1, 0, 1, 0, 1, 0], bool)
    >>> kfold_verification_accuracy(scores, same, np.array([0, 0, 1, 1, 2, 2])).per_fold
    (1.0, 1.0, 0.5)
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
        thresholds.append(threshold)
    values = np.array(accuracies)
    std_error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return KFoldAccuracy(float(values.mean()), std_error, tuple(accuracies), tuple(thresholds))
