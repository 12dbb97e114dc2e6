"""The eigenface basis: a PCA of aligned training faces in the canonical frame.

Built by ``scripts/build_eigenbasis.py`` from LFW *training* identities only and shipped in
``models/`` with a manifest entry (sha256-checked on load, read with ``allow_pickle=False``).
A face is ``mean + coefficients @ components`` at the basis resolution (e.g. 100 x 100, the
canonical frame's dlib chip with padding 0.5 at half size), upsampled bilinearly to the
200 x 200 canonical frame. Coefficients are handled in units of each component's standard
deviation ("whitened"), so a random face is ``z ~ N(0, I)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical
from fvr_audit.errors import ModelIntegrityError
from fvr_audit.extractors.base import FaceGeometry

#: The shipped basis (models/manifest.json lists it).
DEFAULT_BASIS_FILE = "eigenfaces-lfw-train-100.npz"

_REQUIRED = ("mean", "components", "stddev", "size", "padding")


@dataclass(frozen=True, eq=False)
class EigenBasis:
    """Mean face and eigenfaces at ``size`` x ``size`` in the canonical frame (HWC, 0..255)."""

    #: float32 [D], D = size * size * 3.
    mean: np.ndarray
    #: float32 [K, D], orthonormal rows, strongest first.
    components: np.ndarray
    #: float32 [K]: spread of the training faces along each component.
    stddev: np.ndarray
    size: int
    padding: float
    file: str = ""
    sha256: str = ""
    explained_variance_ratio: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def truncated(self, k: int) -> EigenBasis:
        """The leading ``k`` components only."""
        k = max(1, min(int(k), self.k))
        return EigenBasis(
            self.mean,
            self.components[:k],
            self.stddev[:k],
            self.size,
            self.padding,
            self.file,
            self.sha256,
            None if self.explained_variance_ratio is None else self.explained_variance_ratio[:k],
        )

    def render_small(self, z: np.ndarray) -> np.ndarray:
        """Whitened coefficients float [N, K'] (K' <= K) -> float32 [N, size, size, 3] images (unclipped)."""
        z = np.asarray(z, dtype=np.float32)
        k = z.shape[1]
        flat = self.mean + (z * self.stddev[:k]) @ self.components[:k]
        return flat.reshape(len(z), self.size, self.size, 3)

    def project_small(self, images: np.ndarray, k: int | None = None) -> np.ndarray:
        """float [N, size, size, 3] images -> whitened coefficients float32 [N, k]."""
        k = self.k if k is None else k
        flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1) - self.mean
        return (flat @ self.components[:k].T) / self.stddev[:k]

    def from_canonical(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, 200, 200, 3] canonical frames -> float32 [N, size, size, 3] at the basis's
        resolution, cut as its training faces were (the same geometry at ``size`` px), ready for
        :meth:`project_small`.

        >>> small = load_basis().from_canonical(np.full((1, 200, 200, 3), 7, np.uint8))
        >>> small.shape, float(small.max())
        ((1, 100, 100, 3), 7.0)
        """
        geometry = FaceGeometry(self.size, CANONICAL_GEOMETRY.template, self.padding)
        return crop_from_canonical(np.asarray(frames, np.uint8), geometry).astype(np.float32)

    def mean_canonical(self) -> np.ndarray:
        """uint8 [200, 200, 3]: the mean face in the canonical frame."""
        return to_canonical_uint8(self.mean.reshape(1, self.size, self.size, 3))[0]


def to_canonical_float(small: np.ndarray) -> np.ndarray:
    """float [N, s, s, 3] images -> float32 [N, 200, 200, 3], bilinear (torch-compatible), unclipped:
    for offsets as well as images."""
    size = CANONICAL_GEOMETRY.size
    small = np.asarray(small, dtype=np.float32)
    return small if small.shape[1] == size else _bilinear_resize(small, size)


def to_canonical_uint8(small: np.ndarray) -> np.ndarray:
    """float [N, s, s, 3] 0..255 images -> uint8 [N, 200, 200, 3], bilinear (torch-compatible)."""
    return np.clip(np.rint(to_canonical_float(small)), 0, 255).astype(np.uint8)


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """Matrix [n_out, n_in] of bilinear interpolation with half-pixel centres (align_corners=False).

    >>> w = _bilinear_weights(2, 4); w.sum(axis=1).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    w = np.zeros((n_out, n_in), np.float32)
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


@functools.lru_cache(maxsize=8)
def _cached_weights(n_in: int, n_out: int) -> np.ndarray:
    return _bilinear_weights(n_in, n_out)


def _bilinear_resize(images: np.ndarray, size: int) -> np.ndarray:
    """float32 [N, h, w, 3] -> [N, size, size, 3], separable bilinear, same as torch's align_corners=False."""
    wy = _cached_weights(images.shape[1], size)
    wx = _cached_weights(images.shape[2], size)
    return np.einsum("yh,nhwc,xw->nyxc", wy, images, wx, optimize=True).astype(np.float32)


def load_basis(file: str = DEFAULT_BASIS_FILE, directory: Path | None = None, components: int | None = None) -> EigenBasis:
    """Load a shipped basis (sha256-checked against ``models/manifest.json``); ``components``: keep
    only the leading ones (``None`` or 0: all)."""
    basis = _load_basis_cached(file, str(directory) if directory else "")
    return basis.truncated(components) if components else basis


@functools.lru_cache(maxsize=2)
def _load_basis_cached(file: str, directory: str) -> EigenBasis:
    from fvr_audit.model_store import load_manifest, model_path

    folder = Path(directory) if directory else None
    path = model_path(file, folder)
    sha = load_manifest(path.parent)[file].sha256
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in _REQUIRED if key not in data.files]
            if missing:
                raise ModelIntegrityError(f"{path}: not an eigenface basis (missing {', '.join(missing)})")
            mean = data["mean"].astype(np.float32)
            components = data["components"].astype(np.float32)
            stddev = data["stddev"].astype(np.float32)
            size = int(data["size"])
            padding = float(data["padding"])
            ratio = data["explained_variance_ratio"].astype(np.float32) if "explained_variance_ratio" in data.files else None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"{path}: unreadable eigenface basis ({exc})") from exc
    if mean.shape != (size * size * 3,) or components.shape[1:] != mean.shape or stddev.shape != components.shape[:1]:
        raise ModelIntegrityError(f"{path}: inconsistent shapes in the eigenface basis")
    if abs(padding - CANONICAL_GEOMETRY.padding) > 1e-9:
        raise ModelIntegrityError(
            f"{path}: basis drawn with padding {padding:g}, the canonical frame has {CANONICAL_GEOMETRY.padding:g}"
        )
    for array in (mean, components, stddev):
        array.flags.writeable = False
    return EigenBasis(mean, components, stddev, size, padding, file, sha, ratio)
