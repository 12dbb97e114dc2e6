"""The ``MatchingEngine`` interface: the secondary recognizer F' of the paper.

An engine enrolls a labelled gallery and answers a query face with its top-K identities and
scores, and returns nothing below its threshold: a "no match". That is all the scan asks of a
cloud service (AWS Rekognition, Azure Face). Engines that can also give every enrolled identity's
score (local models) declare it by implementing :class:`ScoresEveryIdentity`; the scan then sweeps
N over random gallery subsets. For the others Metric 1 is computed from their top-K answers at the
enrolled N (:func:`fvr_audit.metrics.topk.topk_rates_from_hits`).

The scan talks to engines through these two classes only.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, FaceGeometry


class GalleryKind(str, enum.Enum):
    """What an engine enrolls: vectors in its own space (local models), or photos (services)."""

    VECTORS = "vectors"
    PHOTOS = "photos"


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
    #: Largest K the engine returns (cloud services cap it); None: no cap.
    max_k: int | None = None
    #: The model behind the engine, for the fairness rule (an attack that used it is not judged by it).
    model: str = ""
    #: What enrolling needs.
    gallery_kind: GalleryKind = GalleryKind.VECTORS
    #: What a score is, said in the report next to the threshold.
    score_scale: str = "cosine similarity"
    #: Where the threshold came from ("--fmr 0.001 on impostor pairs", "service default", ...).
    threshold_source: str = ""
    #: Whether queries leave the machine (a cloud service): said in the report, counted for cost.
    remote: bool = False


@dataclass(frozen=True)
class Gallery:
    """A labelled gallery and where it came from (said in the report).

    ``vectors`` are in the engine's own space (engines that enroll vectors); ``paths`` are the image
    paths relative to ``photos_root`` (engines that enroll photos, and to hold a target's own photo
    out); either may be missing when the engine does not need it.
    """

    vectors: np.ndarray | None
    labels: np.ndarray
    source: str
    #: Relative image path of each entry when known.
    paths: np.ndarray | None = None
    #: The folder the relative ``paths`` are found under (photo galleries).
    photos_root: Path | None = None

    def __post_init__(self) -> None:
        if self.vectors is not None and len(self.vectors) != len(self.labels):
            raise InputError(f"{self.source}: {len(self.vectors)} vectors but {len(self.labels)} labels")
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise InputError(f"{self.source}: {len(self.paths)} paths but {len(self.labels)} labels")

    @property
    def identities(self) -> np.ndarray:
        return np.unique(self.labels)

    def photo_files(self) -> list[Path]:
        """Each entry's image file (photo galleries)."""
        if self.paths is None or self.photos_root is None:
            raise InputError(f"{self.source}: this gallery has no photos (an engine that enrolls photos needs --gallery DIR)")
        return [Path(self.photos_root) / str(p) for p in self.paths]

    def without(self, mask: np.ndarray) -> Gallery:
        keep = ~np.asarray(mask, dtype=bool)
        return Gallery(
            None if self.vectors is None else self.vectors[keep],
            self.labels[keep],
            self.source,
            None if self.paths is None else self.paths[keep],
            self.photos_root,
        )


@dataclass(frozen=True)
class IdentityHits:
    """Top identities returned for one query, best first (possibly empty: no match)."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]


class MatchingEngine(abc.ABC):
    """F': enroll a gallery, then search query crops (cut to :attr:`EngineInfo.geometry`).

    Engines hold resources (a cloud collection); :meth:`close` releases them, and the scan closes
    every engine it opened in a ``finally``. Engines are context managers.
    """

    @property
    @abc.abstractmethod
    def info(self) -> EngineInfo: ...

    @property
    def name(self) -> str:
        return self.info.name

    @abc.abstractmethod
    def enroll(self, gallery: Gallery) -> None:
        """Replace the enrolled gallery."""

    @property
    @abc.abstractmethod
    def identities(self) -> np.ndarray:
        """The enrolled identity labels, sorted (column order of :meth:`ScoresEveryIdentity.identity_scores`)."""

    @abc.abstractmethod
    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        """Top-``k`` identities for each uint8 query crop, above the engine's threshold."""

    def same_model_as(self, extractor: Extractor) -> bool:
        """Whether this engine runs the attacked extractor F itself (the same-system baseline)."""
        info = self.info
        return info.model == extractor.name and info.sha256 is not None and info.sha256 == extractor.info.sha256

    def close(self) -> None:
        """Release what the engine holds (nothing for local engines)."""

    def __enter__(self) -> MatchingEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ScoresEveryIdentity(MatchingEngine):
    """A capability: the engine runs a local extractor and scores every enrolled identity.

    That gives the N-sweep of Metric 1, galleries given as vectors, and a threshold set from
    impostor pairs of the gallery (``--fmr``).
    """

    @property
    @abc.abstractmethod
    def extractor(self) -> Extractor:
        """The local model behind the engine (embeds gallery photos and queries)."""

    @property
    @abc.abstractmethod
    def gallery(self) -> Gallery:
        """The enrolled gallery, L2-normalised vectors sorted by identity."""

    @abc.abstractmethod
    def identity_scores_of_vectors(self, queries: np.ndarray) -> np.ndarray:
        """[Q, G] score of each query vector against each enrolled identity (:attr:`identities` order)."""

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.extractor.embed(crops)

    def identity_scores(self, crops: np.ndarray) -> np.ndarray:
        """[Q, G] score of every query crop against every enrolled identity."""
        return self.identity_scores_of_vectors(self.embed(crops))

    @abc.abstractmethod
    def set_threshold(self, threshold: float | None, source: str) -> None:
        """Set the score below which nothing is returned (e.g. from ``--fmr`` on impostor pairs)."""
