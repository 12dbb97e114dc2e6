"""A local engine: any ``Extractor`` plus a faiss inner-product index over L2-normalised vectors."""

from __future__ import annotations

import numpy as np

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.engines.base import EngineInfo, Gallery, GalleryKind, IdentityHits, ScoresEveryIdentity
from fvr_audit.engines.index import GalleryIndex, IndexSettings
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, l2_normalize
from fvr_audit.vectors.npyfile import take_rows

#: Queries x gallery scores are computed in blocks of this many gallery rows (bounded memory).
SCORE_BLOCK_ROWS = 65_536


class LocalEngine(ScoresEveryIdentity):
    """F' = an extractor run locally; identity score = best cosine over the identity's vectors."""

    def __init__(self, extractor: Extractor, *, threshold: float | None = None, threshold_source: str = "",
                 index_settings: IndexSettings = IndexSettings()) -> None:
        self._extractor = extractor
        #: Top-K search: exact below the size where approximate search pays (benchmarks/bench_scale.py).
        self.index_settings = index_settings
        self.threshold = threshold
        self.threshold_source = threshold_source if threshold is not None else ""
        self._gallery: Gallery | None = None
        self._identities: np.ndarray | None = None
        self._identity_of_row: np.ndarray | None = None
        self._index = None

    @property
    def info(self) -> EngineInfo:
        extractor = self.extractor.info
        return EngineInfo(
            name=f"local:{extractor.name}",
            description=f"{extractor.name} run locally ({extractor.source})",
            geometry=extractor.geometry,
            dim=extractor.dim,
            sha256=extractor.sha256,
            threshold=self.threshold,
            model=extractor.name,
            gallery_kind=GalleryKind.VECTORS,
            threshold_source=self.threshold_source,
        )

    @property
    def extractor(self) -> Extractor:
        return self._extractor

    def set_threshold(self, threshold: float | None, source: str) -> None:
        self.threshold = None if threshold is None else float(threshold)
        self.threshold_source = source if threshold is not None else ""

    def same_model_as(self, extractor: Extractor) -> bool:
        """Same name and hash, or the same vectors on the tool's own faces: a renamed copy of an
        engine's model (another file, another hash) is still that engine, and must not judge attacks
        on it as if it were independent. Endpoints are not compared (it would cost queries)."""
        if super().same_model_as(extractor):
            return True
        return _computes_the_same(self.extractor, extractor)

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            raise RuntimeError(f"{self.name}: no gallery enrolled")
        return self._gallery

    def enroll(self, gallery: Gallery) -> None:
        if gallery.vectors is None:
            raise InputError(f"{gallery.source}: {self.name} enrolls vectors, and this gallery has none")
        shape = np.shape(gallery.vectors)
        if len(shape) != 2 or shape[1] != self.extractor.dim:
            raise InputError(
                f"{gallery.source}: gallery vectors have shape {shape}, but {self.name} "
                f"produces {self.extractor.dim}-dimensional vectors"
            )
        identities, identity_of_row = np.unique(np.asarray(gallery.labels).astype(str), return_inverse=True)
        if len(identities) < 2:
            raise InputError(
                f"{gallery.source}: the gallery holds {len(identities)} identity; re-identification "
                "needs at least 2 enrolled identities"
            )
        # Rows sorted by identity: per-identity maxima become contiguous reductions (reduceat).
        order = np.argsort(identity_of_row, kind="stable")
        # One copy (read row by row from a memory map), normalised in place: a large gallery is not copied twice.
        vectors = np.asarray(take_rows(gallery.vectors, order), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        identity_of_row = identity_of_row[order]
        paths = None if gallery.paths is None else np.asarray(gallery.paths)[order]
        labels = np.asarray(gallery.labels)[order]
        self._gallery = Gallery(vectors, labels, gallery.source, paths, gallery.photos_root)
        self._identities = identities
        self._identity_of_row = identity_of_row
        self._index = None

    @property
    def identities(self) -> np.ndarray:
        if self._identities is None:
            raise RuntimeError(f"{self.name}: no gallery enrolled")
        return self._identities

    def identity_scores_of_vectors(self, queries: np.ndarray) -> np.ndarray:
        """[Q, G] best cosine of each query against each identity's gallery vectors (exact)."""
        gallery = self.gallery.vectors
        queries = l2_normalize(np.asarray(queries, dtype=np.float32))
        scores = np.full((len(queries), len(self.identities)), -np.inf, dtype=np.float32)
        for start in range(0, len(gallery), SCORE_BLOCK_ROWS):
            block = queries @ gallery[start : start + SCORE_BLOCK_ROWS].T
            owners = self._identity_of_row[start : start + SCORE_BLOCK_ROWS]
            # Rows are sorted by identity, so each identity is one run of columns in the block.
            run_starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            run_max = np.maximum.reduceat(block, run_starts, axis=1)
            columns = owners[run_starts]
            scores[:, columns] = np.maximum(scores[:, columns], run_max)
        return scores

    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        return self.search_vectors(self.embed(crops), k)

    def search_vectors(self, queries: np.ndarray, k: int) -> list[IdentityHits]:
        """Top-k identities per query through the gallery index (exact below ``index_settings.approximate_above`` vectors)."""
        if k > len(self.identities):
            raise InputError(f"K = {k} exceeds the {len(self.identities)} identities enrolled in {self.name}")
        queries = l2_normalize(np.asarray(queries, dtype=np.float32))
        # Fetch more rows than K: several rows may belong to one identity.
        rows = min(len(self.gallery.vectors), max(4 * k, k + 32))
        while True:
            scores, indices = self._search_index().search(queries, rows)
            hits = [self._dedupe(s, i, k) for s, i in zip(scores, indices)]
            if all(len(h.labels) >= k for h in hits) or rows >= len(self.gallery.vectors):
                break
            rows = min(len(self.gallery.vectors), rows * 4)
        if self.threshold is not None:
            hits = [self._above_threshold(h) for h in hits]
        return hits

    def _dedupe(self, scores: np.ndarray, indices: np.ndarray, k: int) -> IdentityHits:
        labels, best = [], []
        seen = set()
        for score, index in zip(scores, indices):
            if index < 0:
                continue
            identity = int(self._identity_of_row[index])
            if identity not in seen:
                seen.add(identity)
                labels.append(str(self.identities[identity]))
                best.append(float(score))
                if len(labels) == k:
                    break
        return IdentityHits(tuple(labels), tuple(best))

    def _above_threshold(self, hits: IdentityHits) -> IdentityHits:
        keep = [i for i, s in enumerate(hits.scores) if s >= self.threshold]
        return IdentityHits(tuple(hits.labels[i] for i in keep), tuple(hits.scores[i] for i in keep))

    def _search_index(self) -> GalleryIndex:
        if self._index is None:
            self._index = GalleryIndex.build(self.gallery.vectors, self.index_settings)
        return self._index

def _computes_the_same(a: Extractor, b: Extractor) -> bool:
    """Whether two local models give the same vectors on the tool's own faces."""
    from fvr_audit.extractors.http_endpoint import HttpEndpointExtractor
    from fvr_audit.probes import probe_faces

    if a.dim != b.dim or isinstance(a, HttpEndpointExtractor) or isinstance(b, HttpEndpointExtractor):
        return False
    faces = probe_faces(4, seed=5)
    va = a.embed(crop_from_canonical(faces, a.geometry))
    vb = b.embed(crop_from_canonical(faces, b.geometry))
    return bool(np.min(np.einsum("nd,nd->n", va, vb)) > 0.9999)
