"""The ``Reconstructor`` interface.

A reconstructor R_F turns feature vectors v = F(x) back into face images x^ with F(x^) close to v
(the paper's Definition 1). Every reconstructor draws in the canonical frame
(:data:`fvr_audit.alignment.canonical.CANONICAL_GEOMETRY`), from which each recognizer gets its
own crop. Each declares which access to F it needs and which models it uses, because the
evaluation must never let an attack use the engine F' that judges it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

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


ProgressCallback = Callable[[int], None]


class Reconstructor(abc.ABC):
    """Reconstructs faces from feature vectors made by an extractor F."""

    @property
    @abc.abstractmethod
    def info(self) -> ReconstructorInfo: ...

    @property
    def name(self) -> str:
        return self.info.name

    def supports(self, extractor: Extractor) -> str | None:
        """``None`` when this attack can run against ``extractor``, else the reason it cannot."""
        return None

    @abc.abstractmethod
    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
    ) -> ReconstructionResult:
        """Reconstruct L2-normalised float32 [N, D] ``vectors`` made by ``extractor``."""
