"""The tool's own faces: synthetic faces drawn without any photo from the user.

Several checks and attacks need faces when the operator has given none: checking a user's ONNX
model against its torch interpretation, checking that a guessed preprocessing gives sensible
embeddings, and calibrating the shipped parametric generators to an extractor they were not
trained for. The faces are drawn by the shipped generators (trained for dlib-resnet128) from
vectors sampled from a Gaussian model of dlib-resnet128 vectors of LFW *training* identities
(``models/dlib-resnet128-vector-prior.npz``, built by ``scripts/build_vector_prior.py``), so
they are new faces, not photos of anyone in the evaluation or demo splits.

>>> vectors = draw_prior_vectors(4, seed=0)
>>> vectors.shape, bool(np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5))
((4, 128), True)
>>> bool(np.array_equal(vectors, draw_prior_vectors(4, seed=0)))
True
"""

from __future__ import annotations

import functools

import numpy as np

from fvr_audit.errors import ModelIntegrityError

#: The Gaussian model of dlib-resnet128 vectors (mean, Cholesky factor of the covariance).
PRIOR_FILE = "dlib-resnet128-vector-prior.npz"
#: The space the prior and the shipped generators live in.
PRIOR_SPACE = "dlib-resnet128"
#: Generators that draw the tool's faces, in turn (each its own look, so checks see variety).
GENERATORS = ("naive", "nbnet", "vec2face")
#: Spread of the random eigenface-space offset that :func:`varied_faces` adds to each face, in units
#: of the LFW training faces' own spread along each eigenface. The generators' faces look alike; a map
#: fitted on them alone carries little identity over to real photos (the offset lifts top-1
#: identification of mapped faceres-1024 vectors from 0.31 to 0.41 on LFW, 0.44 to 0.66 on AT&T:
#: ``benchmarks/experiments/calibration_faces.py``; 0.25 and 0.75 read lower or no better).
VARIATION = 0.5


@functools.lru_cache(maxsize=1)
def _prior() -> tuple[np.ndarray, np.ndarray]:
    from fvr_audit.model_store import model_path

    path = model_path(PRIOR_FILE)
    with np.load(path, allow_pickle=False) as data:
        try:
            return np.asarray(data["mean"], np.float64), np.asarray(data["factor"], np.float64)
        except KeyError as exc:
            raise ModelIntegrityError(f"{path}: no {exc.args[0]!r} array; rebuild it with scripts/build_vector_prior.py") from exc


def draw_prior_vectors(count: int, seed: int = 0) -> np.ndarray:
    """``count`` L2-normalised float32 dlib-resnet128 vectors drawn from the shipped prior (seeded)."""
    mean, factor = _prior()
    z = np.random.default_rng([seed, 0x9F0B]).standard_normal((count, len(mean)))
    vectors = mean + z @ factor.T
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def typical_cosine(direction: np.ndarray, draws: int = 4096) -> float:
    """The median cosine between the prior's vectors and ``direction`` (towards the prior's own mean:
    0.92; 300 LFW photos' dlib-resnet128 vectors towards a self-calibrated map's mean: 0.91): how far from the average face a
    typical person's vector lies.

    >>> mean, _ = _prior()
    >>> round(typical_cosine(mean), 2)
    0.92
    """
    vectors = draw_prior_vectors(draws, seed=0x7C)
    return float(np.median(vectors @ (np.asarray(direction, np.float64) / np.linalg.norm(direction))))


def generate_faces(vectors: np.ndarray, method: str = "naive") -> np.ndarray:
    """uint8 [N, 200, 200, 3] canonical faces of dlib-resnet128 ``vectors`` by a shipped generator."""
    from fvr_audit.model_store import load_manifest, models_dir
    from fvr_audit.reconstructors.parametric import ParametricReconstructor
    from fvr_audit.reconstructors.parametric.store import find_reconstructor

    sha = load_manifest(models_dir())["dlib-resnet128.onnx"].sha256
    found, reason = find_reconstructor(method, PRIOR_SPACE, sha)
    if found is None:
        raise ModelIntegrityError(f"the tool's own faces need the shipped {method} generator: {reason}")
    return ParametricReconstructor(method).render(found, vectors)


def varied_faces(frames: np.ndarray, seed: int = 0, spread: float = VARIATION) -> np.ndarray:
    """uint8 canonical ``frames`` [N, 200, 200, 3], each plus its own random offset drawn from the
    Gaussian model of the shipped eigenface basis (``spread`` times the training faces' spread, at
    the basis's resolution, upsampled): natural variation of light, shape and texture around the
    generators' faces (seeded).

    >>> faces = np.full((2, 200, 200, 3), 128, np.uint8)
    >>> varied = varied_faces(faces, seed=3)
    >>> varied.shape, varied.dtype.name, bool(np.array_equal(varied, varied_faces(faces, seed=3)))
    ((2, 200, 200, 3), 'uint8', True)
    >>> bool(np.array_equal(varied_faces(faces, spread=0.0), faces)), bool((varied[0] != varied[1]).any())
    (True, True)
    """
    from fvr_audit.reconstructors.eigenbasis import load_basis, to_canonical_float

    basis = load_basis()
    rng = np.random.default_rng([seed, 0xAD0])
    coefficients = (spread * rng.standard_normal((len(frames), basis.k))).astype(np.float32)
    offsets = ((coefficients * basis.stddev) @ basis.components).reshape(len(frames), basis.size, basis.size, 3)
    return np.clip(np.rint(frames.astype(np.float32) + to_canonical_float(offsets)), 0, 255).astype(np.uint8)


def probe_faces(count: int, seed: int = 0) -> np.ndarray:
    """``count`` synthetic canonical faces of ``count`` different made-up people (seeded), drawn in
    turn by each shipped generator."""
    vectors = draw_prior_vectors(count, seed)
    faces = np.empty((count, 200, 200, 3), np.uint8)
    for i, method in enumerate(GENERATORS):
        rows = np.arange(i, count, len(GENERATORS))
        if rows.size:
            faces[rows] = generate_faces(vectors[rows], method)
    return faces
