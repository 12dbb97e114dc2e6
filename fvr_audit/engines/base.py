"""The ``MatchingEngine`` interface: the secondary recognizer F' of the paper.

An engine enrolls a labelled gallery and answers a query face with its top-K identities and
scores, and (like Rekognition or Azure Face) may return nothing below its threshold: a "no
match". Local engines can also give every identity's score, which the N-sweep needs; cloud
engines cannot, so they are evaluated at their enrolled N only.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import FaceGeometry


@dataclass(frozen=True)
class EngineInfo:
    name: str
    description: str
    #: The crop the engine's queries must be cut to.
    geometry: FaceGeometry
    dim: int | None
    sha256: str | None
    #: Scores below this are not returned (None: everything is returned).
    threshold: float | None
    #: Largest K the engine returns (cloud services cap it).
    max_k: int | None = None


@dataclass(frozen=True)
class Gallery:
    """Labelled vectors in an engine's space, and where they came from (said in the report)."""

    vectors: np.ndarray
    labels: np.ndarray
    source: str
    #: Relative image path of each vector when known (to hold a target's own photo out).
    paths: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.labels):
            raise InputError(f"{self.source}: {len(self.vectors)} vectors but {len(self.labels)} labels")

    @property
    def identities(self) -> np.ndarray:
        return np.unique(self.labels)

    def without(self, mask: np.ndarray) -> Gallery:
        keep = ~np.asarray(mask, dtype=bool)
        return Gallery(
            self.vectors[keep], self.labels[keep], self.source, None if self.paths is None else self.paths[keep]
        )


@dataclass(frozen=True)
class IdentityHits:
    """Top identities returned for one query, best first (possibly empty: no match)."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]


class MatchingEngine(abc.ABC):
    """F': enroll a gallery, then search query crops (cut to :attr:`EngineInfo.geometry`)."""

    @property
    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    @property
    def name(self) -> str:
        return self.info.name

    @abc.abstractmethod
    def enroll(self, gallery: Gallery) -> None:
        """Replace the enrolled gallery."""

    @abc.abstractmethod
    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        """Top-``k`` identities for each uint8 query crop, above the engine's threshold."""

    #: Whether :meth:`identity_scores` is available (needed for the N-sweep).
    gives_all_scores: bool = False

    def identity_scores(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[Q, G] score of every query against every enrolled identity, and the G identity labels."""
        raise NotImplementedError(f"{self.name} returns only its top matches")
