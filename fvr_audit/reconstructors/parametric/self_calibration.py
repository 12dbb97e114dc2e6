"""Parametric attacks for any extractor, with no photos from the user: self-calibration.

The shipped generators draw faces from dlib-resnet128 vectors. To attack the vectors of another
extractor F with them, a map from F's space into dlib-resnet128's is needed. Without the user's
photos (``--calibration DIR``) or a generator trained for F (``fvr-audit train``), the tool makes
its own calibration set:

1. draw dlib-resnet128 vectors z from the shipped Gaussian prior (``fvr_audit.probes``);
2. render each with one of the shipped generators (in turn; half of the faces mirrored, so the
   map does not learn one pose), in the canonical frame, and add to each face a random offset
   in the shipped eigenface basis (:func:`fvr_audit.probes.varied_faces`): the generators' faces
   look alike, and a map fitted on them alone carries less identity over to real photos;
3. embed F's crop of each face with F (one query per face, counted), and with dlib-resnet128
   (local, no query);
4. fit the ridge adapter F(face) -> dlib-resnet128(face), cross-validated over faces. Its penalty
   is the strongest that keeps the held-out faces identifiable (``PenaltySelection.IDENTIFICATION``):
   the map is used on real vectors, and the penalty that fits the synthetic faces best carries
   less identity over to real photos;
5. turn each mapped vector to the prior's typical cosine from the mean
   (``RidgeAdapter.typical_cosine``): on real vectors the map's outputs sit too close to the
   average face, and the generators then draw average faces.

The adapter is cached per (F's sha256, preprocessing, crop, settings, generator files) in the
user cache folder (``$FVR_AUDIT_CACHE`` or ``~/.cache/fvr-audit``), so a second scan of the same
F reuses it at no cost; its provenance (faces, queries, seconds, cross-validated cosine) goes
into the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.parametric.adapter import PenaltySelection, RidgeAdapter

#: Synthetic faces embedded by F by default (one query each).
DEFAULT_FACES = 2000
#: The faces are rendered and embedded in chunks of this many (bounded memory, steady progress).
CHUNK = 250
CACHE_ENV = "FVR_AUDIT_CACHE"
#: Bump when the recipe changes, so old cached adapters are not reused.
RECIPE_VERSION = 4


@dataclass(frozen=True)
class SelfCalibration:
    """A self-calibrated adapter and how it was obtained."""

    adapter: RidgeAdapter
    faces: int
    #: Queries to F spent now (0 when the adapter came from the cache).
    queries: int
    #: Seconds it took to build (the original build's when it came from the cache).
    build_seconds: float
    cached: bool
    cache_file: Path

    def describe(self) -> str:
        how = "reused from the cache" if self.cached else "built now"
        return (
            f"self-calibrated without photos ({how}): {self.faces} of the tool's own synthetic faces embedded by "
            f"{self.adapter.source}, ridge map into {self.adapter.target} space (cross-validated cosine "
            f"{self.adapter.cv_cosine:.3f}{self.adapter.turn_described}), built in {self.build_seconds:.0f} s"
        )


def is_map_target(extractor: Extractor) -> bool:
    """Whether ``extractor`` is the space the calibration maps into (dlib-resnet128): then there is
    nothing to map, and the attacks that go through the map run on it directly.

    >>> from fvr_audit.extractors.registry import get_extractor
    >>> is_map_target(get_extractor("dlib-resnet128")), is_map_target(get_extractor("faceres-1024"))
    (True, False)
    """
    from fvr_audit.probes import PRIOR_SPACE

    return extractor.name == PRIOR_SPACE


def cache_dir() -> Path:
    """``$FVR_AUDIT_CACHE`` or ``~/.cache/fvr-audit``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env) if env else Path.home() / ".cache" / "fvr-audit"


def _cache_key(extractor: Extractor, faces: int, seed: int) -> str:
    from fvr_audit.model_store import load_manifest, models_dir
    from fvr_audit.probes import PRIOR_FILE

    info = extractor.info
    manifest = load_manifest(models_dir())
    generators = sorted(e.sha256 for e in manifest.values() if e.kind == "reconstructor")
    prior = manifest[PRIOR_FILE].sha256 if PRIOR_FILE in manifest else ""
    identity = info.sha256 or extractor.name  # an HTTP endpoint has no file: its URL names it
    blob = json.dumps(
        [RECIPE_VERSION, identity, info.preprocessing.describe(), info.geometry.describe(), faces, seed, generators, prior]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def self_calibrate(
    extractor: Extractor,
    *,
    faces: int = DEFAULT_FACES,
    seed: int = 0,
    use_cache: bool = True,
    on_progress=None,
) -> SelfCalibration:
    """The adapter from ``extractor``'s space into dlib-resnet128's, from the tool's own faces."""
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.model_store import load_manifest, models_dir
    from fvr_audit.probes import PRIOR_SPACE

    if faces < 20:
        raise InputError(f"--calibration-faces {faces}: at least 20 faces are needed to fit the adapter")
    target_sha = load_manifest(models_dir())["dlib-resnet128.onnx"].sha256
    file = cache_dir() / "adapters" / f"{_cache_key(extractor, faces, seed)}.npz"
    if use_cache and file.is_file():
        try:
            # Keyed by F's content, not its name: a renamed copy of the same model reuses the map.
            adapter = replace(RidgeAdapter.load(file), source=extractor.name)
            if on_progress:
                on_progress(faces)
            return SelfCalibration(adapter, faces, 0, adapter.build_seconds, True, file)
        except InputError:
            pass  # a damaged cache entry is rebuilt below
    start = time.perf_counter()
    before = extractor.queries_used
    embedded, target = _embedded_synthetic_faces([extractor, get_extractor(PRIOR_SPACE)], faces, seed, on_progress)
    adapter = fit_calibration_map(embedded, target, source=extractor.name, target_sha256=target_sha)
    seconds = time.perf_counter() - start
    adapter = adapter.with_origin(f"{faces} synthetic faces (self-calibration)", seconds)
    queries = extractor.queries_used - before
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        adapter.save(file)
    except OSError:
        pass  # a read-only cache costs the next scan the same build, nothing else
    return SelfCalibration(adapter, faces, queries, seconds, False, file)


def fit_calibration_map(
    embedded: np.ndarray,
    target: np.ndarray,
    *,
    source: str,
    target_sha256: str = "",
    selection: PenaltySelection = PenaltySelection.IDENTIFICATION,
    turn: bool = True,
) -> RidgeAdapter:
    """The ridge map from F's vectors of the calibration faces (``embedded``) to dlib-resnet128's
    (``target``), its outputs turned to a typical person's cosine from the mean unless ``turn`` is
    False (see :attr:`RidgeAdapter.typical_cosine`)."""
    from fvr_audit.probes import PRIOR_SPACE, typical_cosine

    adapter = RidgeAdapter.fit(embedded, target, np.arange(len(embedded)), source=source, target=PRIOR_SPACE,
                               target_sha256=target_sha256, selection=selection)
    return replace(adapter, typical_cosine=typical_cosine(adapter.target_mean)) if turn else adapter


def _embedded_synthetic_faces(extractors, faces: int, seed: int, on_progress=None, spread: float | None = None) -> list[np.ndarray]:
    """Each extractor's vectors of the tool's ``faces`` calibration faces (seeded): the generators'
    faces of prior vectors, every other one mirrored, each varied in the eigenface basis by
    ``spread`` (``None``: :data:`fvr_audit.probes.VARIATION`; 0: the generators' faces as they are).
    An extractor listed twice (F that is dlib-resnet128 itself) embeds each face once: no query
    counted twice."""
    from fvr_audit.probes import GENERATORS, VARIATION, draw_prior_vectors, generate_faces, varied_faces

    z = draw_prior_vectors(faces, seed=seed)
    embedded = [np.empty((faces, e.dim), np.float32) for e in extractors]
    for lo in range(0, faces, CHUNK):
        hi = min(faces, lo + CHUNK)
        frames = np.empty((hi - lo, 200, 200, 3), np.uint8)
        for i, method in enumerate(GENERATORS):
            rows = np.arange(lo + i, hi, len(GENERATORS)) - lo
            if rows.size:
                frames[rows] = generate_faces(z[lo + rows], method)
        frames[1::2] = frames[1::2, :, ::-1]  # every other face mirrored: a face and its mirror are one person
        frames = varied_faces(frames, seed=seed * 1_000_003 + lo, spread=VARIATION if spread is None else spread)
        done: dict[int, np.ndarray] = {}
        for extractor, out in zip(extractors, embedded):
            if id(extractor) not in done:
                done[id(extractor)] = extractor.embed(crop_from_canonical(frames, extractor.geometry))
            out[lo:hi] = done[id(extractor)]
        if on_progress:
            on_progress(hi - lo)
    return embedded


def synthetic_adapter(source: Extractor, target: Extractor, *, faces: int = DEFAULT_FACES, seed: int = 0) -> RidgeAdapter:
    """A ridge map from ``source``'s space into ``target``'s, fitted on the tool's own faces embedded by
    both (no photos); cached like :func:`self_calibrate`. Used to give a surrogate recognizer the
    target vector of an attack on ``source``."""
    key = hashlib.sha256(
        f"{_cache_key(source, faces, seed)}|{target.name}|{target.info.sha256}".encode()
    ).hexdigest()[:24]
    file = cache_dir() / "adapters" / f"{key}.npz"
    if file.is_file():
        try:
            adapter = RidgeAdapter.load(file)
            if adapter.target == target.name:
                return replace(adapter, source=source.name)
        except InputError:
            pass
    start = time.perf_counter()
    x, y = _embedded_synthetic_faces([source, target], faces, seed)
    adapter = RidgeAdapter.fit(x, y, np.arange(faces), source=source.name, target=target.name,
                               target_sha256=target.info.sha256 or "", selection=PenaltySelection.IDENTIFICATION)
    adapter = adapter.with_origin(f"{faces} synthetic faces", time.perf_counter() - start)
    try:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        adapter.save(file)
    except OSError:
        pass
    return adapter
