"""The ``Reconstructor`` interface.

A reconstructor R_F turns feature vectors v = F(x) back into face images x^ with F(x^) close to v
(the paper's Definition 1). Every reconstructor draws in the canonical frame
(:data:`fvr_audit.alignment.canonical.CANONICAL_GEOMETRY`), from which each recognizer gets its
own crop. Each declares which access to F it needs and which models it uses, because the
evaluation must never let an attack use the engine F' that judges it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from fvr_audit.extractors.base import Extractor


class AttackAccess(str, Enum):
    """What the attack needs from F."""

    #: Only F's outputs (queries); works on ONNX files and HTTP endpoints.
    BLACK_BOX = "black-box"
    #: Gradients of F (a differentiable torch module).
    WHITE_BOX = "white-box"
    #: A network trained beforehand for F; at scan time only the network runs.
    PARAMETRIC = "parametric"


@dataclass(frozen=True)
class ReconstructorInfo:
    """What a report records about an attack."""

    name: str
    access: AttackAccess
    description: str
    #: Citation of the method.
    reference: str
    #: Model files the attack uses besides F (e.g. an eigenface basis), by name.
    models: tuple[str, ...] = ()
    #: The attack this one stands in for where F's gradients cannot be had (``transfer`` for
    #: ``gradient``): by default the scan runs only one of the two.
    stands_in_for: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    """The faces an attack held once it had spent ``queries`` queries per target (at most: a target
    that stopped earlier holds its final face), so re-identification can be read against queries."""

    queries: int
    #: uint8 [N, 200, 200, 3], in target order.
    images: np.ndarray


@dataclass(frozen=True)
class ReconstructionResult:
    """Reconstructions of N vectors."""

    #: uint8 [N, 200, 200, 3] RGB images in the canonical frame.
    images: np.ndarray
    #: cosine(F(x^), v) of each reconstruction, as F sees its own crop of it.
    similarity: np.ndarray
    #: Queries to F spent per target (0 for parametric methods).
    queries: np.ndarray
    seconds: float
    #: Names of every model the attack touched (F itself and any surrogate): the fairness record.
    models_used: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    #: Earlier faces of a query-driven attack, by increasing queries (empty for the others).
    checkpoints: tuple[Checkpoint, ...] = ()


#: ``on_progress(n)``: n more targets' worth of work done. An attack that advances all its targets
#: together reports fractions as it goes (see :class:`WorkShare`); its reports sum to its targets.
ProgressCallback = Callable[[float], None]


class WorkShare:
    """Turns "this share of the call's work is done" into ``on_progress`` reports in targets.

    A query-driven attack moves all its targets together for minutes; reporting only at the end
    left a progress line at "0/12, ETA unknown" for all that time.

    >>> reports = []
    >>> share = WorkShare(reports.append, 4)
    >>> share.reached(0.25); share.reached(0.5); share.finish()
    >>> reports, sum(reports)
    ([1.0, 1.0, 2.0], 4.0)
    """

    def __init__(self, on_progress: ProgressCallback | None, targets: int) -> None:
        self._report = on_progress
        self._targets = float(targets)
        self._done = 0.0

    def reached(self, share: float) -> None:
        """``share`` (0..1) of the work is done now; reports the part not yet reported."""
        done = min(1.0, max(0.0, share)) * self._targets
        if self._report is not None and done > self._done:
            self._report(done - self._done)
            self._done = done

    def finish(self) -> None:
        """All the work is done (a call whose targets stopped early reports the rest here)."""
        if self._report is not None and self._targets > self._done:
            self._report(self._targets - self._done)
        self._done = self._targets

#: Multiplier of the run's seed in each target's seed (a prime: rows of runs with nearby seeds
#: do not share seeds).
SEED_STRIDE = 1_000_003


def target_seed(seed: int, row: int) -> int:
    """The random seed of the target at database row ``row`` in a run seeded ``seed``: one rule for
    scan and reconstruct, whatever chunk, worker or executor the target lands in.

    >>> target_seed(0, 17), target_seed(2, 5)
    (17, 2000011)
    """
    return int(seed) * SEED_STRIDE + int(row)


class Reconstructor(abc.ABC):
    """Reconstructs faces from feature vectors made by an extractor F.

    Every draw of the attack for target ``i`` comes from a generator seeded with
    ``target_seeds[i]`` alone, so a target's reconstruction depends on its seed, not on which
    other targets share its call (beyond float rounding of batched products; the driver keeps
    batches the same on every executor for that reason).
    """

    #: ``settings`` of the method (a frozen dataclass, or a dict), recorded with its results.
    settings: Any = None
    #: What :func:`~fvr_audit.reconstructors.registry.get_reconstructor` made this from (a
    #: ``ReconstructorSpec``), so workers can make it again; None for attacks made directly.
    origin: Any = None

    @property
    @abc.abstractmethod
    def info(self) -> ReconstructorInfo: ...

    @property
    def name(self) -> str:
        return self.info.name

    def supports(self, extractor: Extractor) -> str | None:
        """``None`` when this attack can run against ``extractor``, else the reason it cannot."""
        return None

    def checked_targets(self, vectors: np.ndarray, extractor: Extractor) -> np.ndarray:
        """The L2-normalised float32 targets, once the attack can run against ``extractor`` and the
        vectors have its dimension (the checks every ``reconstruct`` starts with)."""
        from fvr_audit.errors import InputError
        from fvr_audit.extractors.base import l2_normalize

        reason = self.supports(extractor)
        if reason:
            raise InputError(reason if reason.startswith(self.name) else f"{self.name}: {reason}")
        targets = l2_normalize(np.asarray(vectors, dtype=np.float32))
        if targets.ndim != 2 or targets.shape[1] != extractor.dim:
            raise InputError(f"{self.name}: vectors are {targets.shape[-1]}-d, {extractor.name} makes {extractor.dim}-d")
        return targets

    @abc.abstractmethod
    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds: Sequence[int] | None = None,
    ) -> ReconstructionResult:
        """Reconstruct L2-normalised float32 [N, D] ``vectors`` made by ``extractor``.

        ``target_seeds``: one seed per target (see :func:`target_seed`); None: ``seed + i`` for
        the i-th vector (a standalone call). A method without random draws ignores both.
        """


def seeds_for(count: int, seed: int, target_seeds: Sequence[int] | None) -> list[int]:
    """The per-target seeds of a ``reconstruct`` call: ``target_seeds``, checked, or ``seed + i``.

    >>> seeds_for(2, 5, None), seeds_for(2, 5, [7, 9])
    ([5, 6], [7, 9])
    """
    if target_seeds is None:
        return [int(seed) + i for i in range(count)]
    if len(target_seeds) != count:
        raise ValueError(f"{len(target_seeds)} target seeds for {count} vectors")
    return [int(x) for x in target_seeds]
