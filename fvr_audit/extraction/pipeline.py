"""Align and embed many images: detection in worker processes, embedding in batches.

dlib's detector holds the GIL, so detection runs in processes (one per core); each worker builds
its own aligner. Crops come back in order and are embedded in batches by every extractor.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from fvr_audit.alignment.aligner import AlignedFace, FaceAligner, FaceStatus, NoFacePolicy
from fvr_audit.alignment.images import load_image_rgb
from fvr_audit.errors import InputError
from fvr_audit.extraction.discover import ImageRecord
from fvr_audit.extractors.base import Extractor, FaceGeometry

#: Below this many images, starting worker processes costs more than it saves.
MIN_IMAGES_FOR_WORKERS = 16


@dataclass(frozen=True)
class EmbeddingRun:
    """Result of embedding a list of images with one or more extractors."""

    #: extractor name -> float32 [M, dim] L2-normalised vectors of the usable images, in record order.
    vectors: dict[str, np.ndarray]
    #: Indices (into the records) of the M usable images.
    kept: np.ndarray
    #: Outcome of every record, in record order.
    statuses: tuple[FaceStatus, ...]
    #: Why a record was not usable ('' when it was).
    reasons: tuple[str, ...]
    seconds: float

    @property
    def counts(self) -> Counter:
        return Counter(self.statuses)


_worker_aligner: FaceAligner | None = None
_worker_aligned_input = False


def _init_worker(geometries: tuple[FaceGeometry, ...], no_face: NoFacePolicy, aligned_input: bool) -> None:
    global _worker_aligner, _worker_aligned_input
    _worker_aligner = FaceAligner(geometries, no_face=no_face)
    _worker_aligned_input = aligned_input


def _align_file(path: str) -> AlignedFace:
    assert _worker_aligner is not None
    try:
        image = load_image_rgb(path)
    except InputError as error:
        return AlignedFace(FaceStatus.UNREADABLE, reason=str(error))
    if _worker_aligned_input:
        return _worker_aligner.resize_only(image)
    return _worker_aligner.align(image)


def default_workers() -> int:
    """Detection processes: the cores this process may use (2 on the reference machine)."""
    env = os.environ.get("FVR_AUDIT_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def align_paths(
    paths: Sequence[str],
    geometries: Sequence[FaceGeometry],
    *,
    no_face: NoFacePolicy = NoFacePolicy.SKIP,
    aligned_input: bool = False,
    workers: int | None = None,
) -> Iterator[AlignedFace]:
    """Yield the alignment of each path, in order. Bad files yield ``UNREADABLE``, never raise."""
    workers = default_workers() if workers is None else workers
    init_args = (tuple(geometries), no_face, aligned_input)
    if workers <= 1 or len(paths) < MIN_IMAGES_FOR_WORKERS:
        _init_worker(*init_args)
        yield from map(_align_file, paths)
        return
    # spawn, not fork: the parent may hold onnxruntime thread pools that do not survive a fork.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.map(_align_file, paths, chunksize=8)


def embed_records(
    records: Sequence[ImageRecord],
    extractors: Sequence[Extractor],
    *,
    no_face: NoFacePolicy = NoFacePolicy.SKIP,
    aligned_input: bool = False,
    workers: int | None = None,
    batch_size: int = 64,
    on_progress: Callable[[int], None] | None = None,
) -> EmbeddingRun:
    """Align every record once, embed the usable crops with every extractor."""
    start = time.perf_counter()
    geometries = list(dict.fromkeys(e.geometry for e in extractors))
    slot = {e.name: geometries.index(e.geometry) for e in extractors}
    statuses: list[FaceStatus] = []
    reasons: list[str] = []
    kept: list[int] = []
    pending: list[tuple[np.ndarray, ...]] = []
    parts: dict[str, list[np.ndarray]] = {e.name: [] for e in extractors}

    def flush() -> None:
        for extractor in extractors:
            batch = np.stack([crops[slot[extractor.name]] for crops in pending])
            parts[extractor.name].append(extractor.embed(batch))
        pending.clear()

    paths = [str(r.path) for r in records]
    for index, face in enumerate(
        align_paths(paths, geometries, no_face=no_face, aligned_input=aligned_input, workers=workers)
    ):
        statuses.append(face.status)
        reasons.append("" if face.status.usable else face.reason)
        if face.status.usable:
            kept.append(index)
            pending.append(face.crops)
            if len(pending) >= batch_size:
                flush()
        if on_progress:
            on_progress(1)
    if pending:
        flush()
    vectors = {
        e.name: np.concatenate(parts[e.name]) if parts[e.name] else np.zeros((0, e.dim), np.float32)
        for e in extractors
    }
    return EmbeddingRun(
        vectors=vectors,
        kept=np.asarray(kept, dtype=np.int64),
        statuses=tuple(statuses),
        reasons=tuple(reasons),
        seconds=time.perf_counter() - start,
    )
