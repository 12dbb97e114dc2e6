"""Metric 2 of the paper: do *people* pick the right person out of an engine's top-K?

"Assessing Privacy Risks from Feature Vector Reconstruction Attacks", section VI: participants see
a reconstruction beside the top-K (K = 5) matches a recognizer F' returned for it and say which,
if any, is the same person, with their confidence on a 5-point Likert scale. Fig. 7 shows the
matching accuracy per method (per-participant quartiles) against the random baseline 1/K; Table
III the share of answers given with some confidence (Likert >= 2) or none (Likert 1).

Answers of one participant are not independent (some people are better at faces), so intervals
here are a *participant* bootstrap: whole participants are resampled with replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Likert 1 is "not confident at all"; anything above counts as "confident" (the paper's Table III).
CONFIDENT_FROM = 2
LIKERT_LEVELS = (1, 2, 3, 4, 5)
BOOTSTRAP_RESAMPLES = 2000


def chance_accuracy(k: int) -> float:
    """Matching accuracy of a random pick among K candidates (the paper's baseline, 20% at K = 5).

    >>> chance_accuracy(5)
    0.2
    """
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    return 1.0 / k


@dataclass(frozen=True)
class ParticipantTally:
    """One participant's answers to one method: how many were right, out of how many."""

    correct: int
    answered: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else float("nan")


def pooled_accuracy(tallies: Sequence[ParticipantTally]) -> float:
    """All answers of all participants pooled: correct / answered (nan without answers).

    >>> pooled_accuracy([ParticipantTally(3, 5), ParticipantTally(1, 5)])
    0.4
    """
    answered = sum(t.answered for t in tallies)
    return sum(t.correct for t in tallies) / answered if answered else float("nan")


def bootstrap_interval(
    tallies: Sequence[ParticipantTally],
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled accuracy, resampling participants (seeded).

    The same tallies and seed always give the same interval; one participant (or none) gives no
    spread to resample, so the interval is the point itself (or nan).

    >>> tallies = [ParticipantTally(c, 5) for c in (5, 4, 2, 1, 3, 0, 5, 2)]
    >>> low, high = bootstrap_interval(tallies, seed=0)
    >>> low < pooled_accuracy(tallies) < high, (low, high) == bootstrap_interval(tallies, seed=0)
    (True, True)
    >>> bootstrap_interval([ParticipantTally(5, 5)] * 4)
    (1.0, 1.0)
    """
    tallies = [t for t in tallies if t.answered]
    if not tallies:
        return (float("nan"), float("nan"))
    correct = np.array([t.correct for t in tallies], dtype=float)
    answered = np.array([t.answered for t in tallies], dtype=float)
    if len(tallies) == 1:
        point = float(correct[0] / answered[0])
        return (point, point)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(tallies), size=(resamples, len(tallies)))
    rates = correct[picks].sum(axis=1) / answered[picks].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rates, [tail, 100 - tail])
    return (float(low), float(high))


def quartiles(values: Sequence[float]) -> dict[str, float] | None:
    """min, q25, median, q75, max (linear interpolation), as in Fig. 7's boxes; None when empty.

    >>> quartiles([0.2, 0.4, 0.6, 0.8, 1.0])
    {'min': 0.2, 'q25': 0.4, 'median': 0.6, 'q75': 0.8, 'max': 1.0}
    """
    if not len(values):
        return None
    q = np.quantile(np.asarray(values, dtype=float), [0, 0.25, 0.5, 0.75, 1])
    return dict(zip(("min", "q25", "median", "q75", "max"), (round(float(v), 6) for v in q)))


def confidence_shares(levels: Sequence[int]) -> dict:
    """Table III: share of answers given with some confidence (Likert >= 2), and the 1-5 counts.

    >>> confidence_shares([1, 2, 5, 5])
    {'answers': 4, 'confident': 0.75, 'not_confident': 0.25, 'mean': 3.25, 'counts': {'1': 1, '2': 1, '3': 0, '4': 0, '5': 2}}
    """
    counts = {str(level): sum(1 for v in levels if v == level) for level in LIKERT_LEVELS}
    if not levels:
        return {"answers": 0, "confident": None, "not_confident": None, "mean": None, "counts": counts}
    confident = sum(1 for v in levels if v >= CONFIDENT_FROM) / len(levels)
    return {
        "answers": len(levels),
        "confident": round(confident, 6),
        "not_confident": round(1 - confident, 6),
        "mean": round(float(np.mean(levels)), 6),
        "counts": counts,
    }
