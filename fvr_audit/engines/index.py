"""Top-k inner-product search over a gallery of L2-normalised vectors, exact or approximate.

A :class:`GalleryIndex` is exact (faiss ``IndexFlatIP``: every query scored against every vector)
up to :attr:`IndexSettings.approximate_above` vectors, and approximate above: an HNSW graph
(faiss ``IndexHNSWFlat``, the default: the better recall) or an inverted file (faiss
``IndexIVFFlat``: a k-means partition, searched in its ``ivf_probe`` nearest cells; far quicker
to build, lower recall). An approximate index can miss true neighbours, which would make an
attack look less successful than it is, so its recall is measured, not assumed:
:meth:`GalleryIndex.measure_recall` compares its answers on a sample of the queries with exact
search (blocked brute force over the vectors the index holds) and returns a :class:`RecallReport`
the scan can print beside its figures.

For the few thousand queries of a scan, exact search stays affordable beyond a million vectors
and never misses (``benchmarks/bench_scale.py`` measures build and search times and recall of each
kind), hence the high default threshold. No kind saves memory: each holds the N x D float32 vectors
(HNSW adds its links, IVF its cells).

Vectors are added, and exact search reads them, in blocks, so a gallery given as a memory-mapped
file is never normalised as one whole copy: the index's own N x D float32 storage is the only
full-size array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from fvr_audit.vectors.checks import row_blocks
from fvr_audit.vectors.npyfile import take_rows

#: A returned vector whose score is this close to the exact k-th score counts as a true neighbour:
#: rows tied with the k-th (within float32 rounding of two different products) are equally right.
TIE_TOLERANCE = 1e-5


class IndexKind(str, Enum):
    EXACT = "exact"
    HNSW = "hnsw"
    IVF = "ivf"


@dataclass(frozen=True)
class IndexSettings:
    """When search becomes approximate, and how the graph is built and searched."""

    #: Galleries of more vectors than this get an approximate index. High on purpose: a missed
    #: neighbour makes an attack look weaker than it is, and for a scan's few thousand queries exact
    #: search stays affordable (bench_scale.py, 2 shared cores, 128-d: 43 s per 1,000 queries at 1e6
    #: vectors, no build; HNSW took 62 s to build at 1e5 and ranked the true identity first for 98%
    #: of queries, IVF for 77%). LocalEngine used 500,000: pass that to keep its behaviour.
    approximate_above: int = 10_000_000
    #: Which approximate index: HNSW or IVF.
    approximate: IndexKind = IndexKind.HNSW
    #: HNSW links per vector (faiss ``M``): more is better recall, more memory and a slower build.
    hnsw_neighbours: int = 32
    #: Candidate list while building (faiss ``efConstruction``; faiss's default).
    hnsw_ef_construction: int = 40
    #: Candidate list while searching (faiss ``efSearch``): recall against speed.
    hnsw_ef_search: int = 256
    #: IVF cells (None: 4 x sqrt(N), the usual rule) and cells searched per query.
    ivf_lists: int | None = None
    ivf_probe: int = 64
    #: IVF k-means is trained on a seeded sample of this many vectors per cell (faiss wants >= 39).
    ivf_train_per_list: int = 40
    #: Vectors normalised and added per block (bounded memory for a memory-mapped gallery).
    block_rows: int = 65_536

    def __post_init__(self) -> None:
        if self.approximate is IndexKind.EXACT:
            raise ValueError("approximate must be IndexKind.HNSW or IndexKind.IVF")

    def kind_for(self, size: int) -> IndexKind:
        """
        >>> IndexSettings(approximate_above=100).kind_for(100), IndexSettings(approximate_above=100).kind_for(101)
        (<IndexKind.EXACT: 'exact'>, <IndexKind.HNSW: 'hnsw'>)
        """
        return self.approximate if size > self.approximate_above else IndexKind.EXACT

    def lists_for(self, size: int) -> int:
        """IVF cells for ``size`` vectors: never more than the vectors can train.

        >>> IndexSettings().lists_for(1_000_000), IndexSettings().lists_for(100)
        (4000, 2)
        """
        wanted = self.ivf_lists or round(4 * math.sqrt(size))
        return max(1, min(wanted, size // self.ivf_train_per_list))


@dataclass(frozen=True)
class RecallReport:
    """How much of the exact top-k an index returned, on ``queries`` queries.

    ``recall`` is the mean over queries of the share of the k returned vectors that belong to the
    exact top-k (ties with the k-th count as belonging); ``worst`` is the lowest single query's.
    """

    kind: IndexKind
    k: int
    queries: int
    recall: float
    worst: float

    def describe(self) -> str:
        """
        >>> RecallReport(IndexKind.HNSW, 10, 500, 0.9876, 0.7).describe()
        'hnsw search: recall@10 0.988 against exact search on 500 queries (worst query 0.700)'
        """
        return (
            f"{self.kind.value} search: recall@{self.k} {self.recall:.3f} against exact search on "
            f"{self.queries} queries (worst query {self.worst:.3f})"
        )


def normalized(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows as float32 of unit L2 norm (zero rows stay zero), norms accumulated in float64.

    >>> normalized(np.array([[3, 4], [0, 0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))[:, None]
    return (vectors / np.maximum(norms, eps)).astype(np.float32)


class GalleryIndex:
    """Top-k inner-product search over a gallery's vectors, L2-normalised as they are added.

    Rows are the gallery's row numbers; searches return ``(scores, rows)``, each ``[Q, k]``, best
    first.

    >>> gallery = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    >>> index = GalleryIndex.build(gallery)
    >>> scores, rows = index.search(np.array([[1, 0.1]], np.float32), k=2)
    >>> index.kind.value, rows.tolist(), np.round(scores.astype(float), 3).tolist()
    ('exact', [[0, 2]], [[0.995, 0.774]])
    """

    def __init__(self, faiss_index, kind: IndexKind, settings: IndexSettings) -> None:
        self._index = faiss_index
        self.kind = kind
        self.settings = settings

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        settings: IndexSettings = IndexSettings(),
        *,
        on_rows: Callable[[int], None] | None = None,
    ) -> GalleryIndex:
        """Index ``vectors`` ([N, D], any float; a memory map is read block by block).

        ``on_rows(count)`` reports the vectors added (building a large HNSW graph takes minutes).
        """
        import faiss

        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise ValueError(f"a gallery index needs an [N, D] array with N, D >= 1, got shape {vectors.shape}")
        size, dim = (int(v) for v in vectors.shape)
        kind = settings.kind_for(size)
        if kind is IndexKind.HNSW:
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_neighbours, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = settings.hnsw_ef_construction
            index.hnsw.efSearch = settings.hnsw_ef_search
        elif kind is IndexKind.IVF:
            lists = settings.lists_for(size)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = 0  # faiss's k-means is seeded too: the same gallery gives the same cells
            sample = np.random.default_rng(0).choice(size, size=min(size, lists * settings.ivf_train_per_list), replace=False)
            index.train(normalized(take_rows(vectors, np.sort(sample))))
            index.nprobe = min(settings.ivf_probe, lists)
        else:
            index = faiss.IndexFlatIP(dim)
        for _, block in row_blocks(vectors, settings.block_rows, on_rows=on_rows):
            index.add(normalized(block))
        if kind is IndexKind.IVF:
            # Vectors are stored by cell; a map row -> (cell, offset) lets exact search read them back.
            index.make_direct_map()
        return cls(index, kind, settings)

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def _queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.atleast_2d(np.asarray(queries))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the gallery {self.dim}")
        if not 1 <= k <= self.size:
            raise ValueError(f"k = {k}: must be between 1 and the gallery's {self.size} vectors")
        return np.ascontiguousarray(normalized(queries))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's top-``k``: ``(scores float32 [Q, k], rows int64 [Q, k])``, best first.

        An approximate index may return a row of -1 (score -inf) where its graph found fewer than k.
        """
        queries = self._queries(queries, k)
        scores, rows = self._index.search(queries, k)
        rows = rows.astype(np.int64)
        scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
        return scores, rows

    def exact_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The true top-``k`` by blocked matrix products over the stored vectors, whatever the index
        kind (the reference :meth:`measure_recall` compares with). Equal scores are ordered by row;
        which of several rows tied at the k-th place is kept is arbitrary (all are equally right).

        Memory: one block of vectors and a [Q, block] score matrix at a time.
        """
        import faiss

        queries = self._queries(queries, k)
        n_queries = len(queries)
        best_scores = np.full((n_queries, 0), -np.inf, np.float32)
        best_rows = np.zeros((n_queries, 0), np.int64)
        for start in range(0, self.size, self.settings.block_rows):
            count = min(self.settings.block_rows, self.size - start)
            # faiss.knn: brute force, one BLAS product and a heap per query (no index involved).
            scores, top = faiss.knn(
                queries, self._index.reconstruct_n(start, count), min(k, count), metric=faiss.METRIC_INNER_PRODUCT
            )
            merged_scores = np.concatenate((best_scores, scores), axis=1)
            merged_rows = np.concatenate((best_rows, top.astype(np.int64) + start), axis=1)
            order = np.lexsort((merged_rows, -merged_scores), axis=1)[:, :k]
            best_scores = np.take_along_axis(merged_scores, order, axis=1)
            best_rows = np.take_along_axis(merged_rows, order, axis=1)
        return best_scores, best_rows

    def measure_recall(
        self, queries: np.ndarray, k: int, *, max_queries: int = 1000, seed: int = 0
    ) -> RecallReport:
        """Recall@``k`` of :meth:`search` against :meth:`exact_search`, on up to ``max_queries`` of
        ``queries`` (a seeded sample: exact search over a large gallery is the slow part).

        Measured for exact indexes too (it is then 1.0 unless something is wrong).
        """
        queries = np.atleast_2d(np.asarray(queries))
        if len(queries) > max_queries:
            rng = np.random.default_rng(seed)
            queries = queries[np.sort(rng.choice(len(queries), size=max_queries, replace=False))]
        found_scores, found_rows = self.search(queries, k)
        true_scores, _ = self.exact_search(queries, k)
        kth = true_scores[:, -1:]
        hits = (found_rows >= 0) & (found_scores >= kth - TIE_TOLERANCE)
        per_query = hits.sum(axis=1) / k
        return RecallReport(
            kind=self.kind,
            k=k,
            queries=len(queries),
            recall=float(per_query.mean()) if per_query.size else 1.0,
            worst=float(per_query.min()) if per_query.size else 1.0,
        )
