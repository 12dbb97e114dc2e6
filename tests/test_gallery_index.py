"""GalleryIndex: exact below a size, HNSW above, and its recall against exact search measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fvr_audit.engines.index import GalleryIndex, IndexKind, IndexSettings, RecallReport, normalized


def clustered(n_clusters: int, per_cluster: int, dim: int, spread: float, seed: int) -> np.ndarray:
    """Unit vectors around random centres: the shape of a face gallery (identities, and photos of each)."""
    rng = np.random.default_rng(seed)
    centres = normalized(rng.standard_normal((n_clusters, dim)))
    points = np.repeat(centres, per_cluster, axis=0) + spread * rng.standard_normal((n_clusters * per_cluster, dim))
    return normalized(points.astype(np.float32))


def brute_force_top_k(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = normalized(queries) @ normalized(gallery).T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


def test_exact_below_the_threshold_and_hnsw_above() -> None:
    gallery = clustered(10, 10, 16, 0.3, seed=0)
    assert GalleryIndex.build(gallery, IndexSettings(approximate_above=100)).kind is IndexKind.EXACT
    assert GalleryIndex.build(gallery, IndexSettings(approximate_above=99)).kind is IndexKind.HNSW


def test_exact_search_matches_brute_force_and_recall_is_one() -> None:
    gallery = clustered(40, 25, 32, 0.4, seed=1)
    queries = clustered(40, 3, 32, 0.6, seed=2)
    index = GalleryIndex.build(gallery, IndexSettings(block_rows=97))  # blocks that do not divide N
    assert index.kind is IndexKind.EXACT and index.size == 1000 and index.dim == 32
    truth_scores, truth_rows = brute_force_top_k(gallery, queries, 10)
    for scores, rows in (index.search(queries, 10), index.exact_search(queries, 10)):
        np.testing.assert_array_equal(rows, truth_rows)
        np.testing.assert_allclose(scores, truth_scores, atol=1e-5)
    report = index.measure_recall(queries, 10)
    assert report == RecallReport(IndexKind.EXACT, 10, len(queries), 1.0, 1.0)


def test_vectors_are_normalised_as_they_are_added() -> None:
    gallery = np.array([[10, 0], [0, 0.5], [3, 3]], np.float32)
    index = GalleryIndex.build(gallery, IndexSettings(block_rows=2))
    scores, rows = index.search(np.array([[0, 2]], np.float32), 3)
    assert rows.tolist() == [[1, 2, 0]]
    np.testing.assert_allclose(scores, [[1.0, np.sqrt(0.5), 0.0]], atol=1e-6)


def test_hnsw_recall_is_measured_against_exact_search() -> None:
    # A deliberately weak graph (few links, short candidate lists) on a clustered set, so that it
    # misses neighbours: the reported recall must be what brute force says it is, below 1.
    gallery = clustered(200, 20, 32, 0.1, seed=3)
    queries = clustered(200, 2, 32, 0.14, seed=4)
    settings = IndexSettings(approximate_above=0, hnsw_neighbours=8, hnsw_ef_construction=16, hnsw_ef_search=16)
    index = GalleryIndex.build(gallery, settings)
    assert index.kind is IndexKind.HNSW
    k = 10
    report = index.measure_recall(queries, k, max_queries=len(queries))

    found_scores, found_rows = index.search(queries, k)
    _, truth_rows = brute_force_top_k(gallery, queries, k)
    by_rows = np.mean([len(set(f) & set(t)) / k for f, t in zip(found_rows, truth_rows)])
    assert report.queries == len(queries) and report.kind is IndexKind.HNSW
    assert report.recall == pytest.approx(by_rows, abs=0.01)  # ties aside, recall by rows
    assert 0.2 < report.recall < 1.0
    assert report.worst < report.recall
    # HNSW scores are true inner products: each returned score is the row's exact cosine.
    exact = np.einsum("qd,qkd->qk", normalized(queries), normalized(gallery)[np.maximum(found_rows, 0)])
    np.testing.assert_allclose(found_scores[found_rows >= 0], exact[found_rows >= 0], atol=1e-5)

    # The default search settings on the same graph do much better: the figure tracks the index.
    strong = GalleryIndex.build(gallery, IndexSettings(approximate_above=0))
    assert strong.measure_recall(queries, k).recall > max(0.95, report.recall)


def test_recall_is_measured_on_a_seeded_sample_of_queries() -> None:
    gallery = clustered(50, 10, 16, 0.5, seed=5)
    queries = clustered(50, 10, 16, 0.7, seed=6)
    index = GalleryIndex.build(gallery, IndexSettings(approximate_above=0, hnsw_neighbours=4, hnsw_ef_search=4))
    first = index.measure_recall(queries, 5, max_queries=60, seed=1)
    assert first.queries == 60
    assert index.measure_recall(queries, 5, max_queries=60, seed=1) == first


def test_memory_mapped_gallery(tmp_path: Path) -> None:
    gallery = clustered(30, 10, 8, 0.3, seed=7) * np.float32(3)  # not unit norm on disk
    np.save(tmp_path / "g.npy", gallery)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    index = GalleryIndex.build(mapped, IndexSettings(block_rows=64))
    _, rows = index.search(gallery[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("shape", "k", "message"),
    [((3, 4), 4, "k = 4: must be between 1 and the gallery's 3 vectors"), ((3, 4), 0, "k = 0"), ((3, 5), 1, "dimension 5")],
)
def test_bad_searches(shape: tuple[int, int], k: int, message: str) -> None:
    index = GalleryIndex.build(np.eye(3, 4, dtype=np.float32))
    with pytest.raises(ValueError, match=message):
        index.search(np.ones((1, shape[1]), np.float32), k)


def test_empty_gallery_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        GalleryIndex.build(np.zeros((0, 4), np.float32))


def test_ivf_recall_is_measured_and_exact_search_reads_its_vectors_back_in_gallery_order() -> None:
    gallery = clustered(100, 30, 32, 0.1, seed=8)
    queries = clustered(100, 2, 32, 0.14, seed=9)
    settings = IndexSettings(approximate_above=0, approximate=IndexKind.IVF, ivf_lists=50, ivf_probe=2)
    index = GalleryIndex.build(gallery, settings, on_rows=(added := []).append)
    assert index.kind is IndexKind.IVF and index.size == 3000 and sum(added) == 3000
    truth_scores, truth_rows = brute_force_top_k(gallery, queries, 10)
    scores, rows = index.exact_search(queries, 10)
    np.testing.assert_array_equal(rows, truth_rows)
    np.testing.assert_allclose(scores, truth_scores, atol=1e-5)

    report = index.measure_recall(queries, 10)
    _, found_rows = index.search(queries, 10)
    by_rows = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found_rows, truth_rows)])
    assert report.kind is IndexKind.IVF and report.recall == pytest.approx(by_rows, abs=0.01)
    assert 0.1 < report.recall < 1.0  # 2 of 50 cells searched: neighbours in other cells are missed
    # Searching every cell is exhaustive: recall 1.
    every_cell = GalleryIndex.build(gallery, IndexSettings(approximate_above=0, approximate=IndexKind.IVF, ivf_lists=50, ivf_probe=50))
    assert every_cell.measure_recall(queries, 10).recall == 1.0


def test_exact_is_not_an_approximate_kind() -> None:
    with pytest.raises(ValueError, match="HNSW or IndexKind.IVF"):
        IndexSettings(approximate=IndexKind.EXACT)
