"""Is the extractor's preprocessing right? A check on the tool's own faces, not only a guess.

A user's model whose preprocessing was guessed wrong (channel order, scaling, crop) still
returns vectors, and every attack then optimises against nonsense. Three symptoms tell:

* NaN or infinite outputs: broken, refused;
* nearly the same vector for different faces: broken, refused;
* a face and its mirror image not clearly closer than two different faces: the model does not
  see faces the way it was fed them; warned, with the preprocessing that does best on the same
  faces (tried for ONNX files, whose preprocessing is ours to choose) and the flags for it.

The faces are synthetic (:mod:`fvr_audit.probes`), so the check needs no photo from the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    FaceGeometry,
    Preprocessing,
)

#: Made-up people embedded with their mirror images (2 queries each).
CHECK_FACES = 8
#: Mean cosine between different faces above which the outputs count as constant.
CONSTANT_COSINE = 0.995
#: How much closer (in cosine) a face's mirror image must be than another face, on average.
MIN_MIRROR_MARGIN = 0.05
#: A different preprocessing is suggested when it beats the guess's margin by this much.
BETTER_BY = 0.05


@dataclass(frozen=True)
class EmbeddingCheck:
    """What the extractor made of the tool's faces."""

    faces: int
    #: Mean cos(F(face), F(mirror of face)).
    mirror_cosine: float
    #: Mean cos(F(face a), F(face b)) over pairs of different faces.
    different_cosine: float

    @property
    def margin(self) -> float:
        """How much closer a mirror image is than another face (cosine)."""
        return self.mirror_cosine - self.different_cosine

    def describe(self) -> str:
        """One line.

        >>> EmbeddingCheck(8, 0.93, 0.41, ).describe()
        'face vs its mirror 0.930, different faces 0.410 (margin 0.520, 8 faces)'
        """
        return (
            f"face vs its mirror {self.mirror_cosine:.3f}, different faces {self.different_cosine:.3f} "
            f"(margin {self.margin:.3f}, {self.faces} faces)"
        )


def _faces_and_mirrors(count: int, geometry: FaceGeometry) -> np.ndarray:
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.probes import probe_faces

    canonical = probe_faces(count, seed=1)
    return crop_from_canonical(np.concatenate([canonical, canonical[:, :, ::-1]]), geometry)


def measure(vectors: np.ndarray, label: str) -> EmbeddingCheck:
    """The check's figures from raw vectors of [faces; their mirrors]; raises on NaN/constant."""
    vectors = np.asarray(vectors, np.float64)
    count = len(vectors) // 2
    if not np.isfinite(vectors).all():
        raise InputError(
            f"{label}: the model outputs NaN or infinite values for the tool's own faces; the model is broken or "
            "its input is far from what it expects (check --mean/--std/--channel-order/--layout)"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise InputError(f"{label}: the model outputs all-zero vectors for some of the tool's own faces; it cannot be audited")
    unit = vectors / norms
    faces, mirrors = unit[:count], unit[count:]
    mirror = float(np.mean(np.einsum("nd,nd->n", faces, mirrors)))
    gram = faces @ faces.T
    different = float(gram[~np.eye(count, dtype=bool)].mean())
    if different > CONSTANT_COSINE:
        raise InputError(
            f"{label}: the model outputs nearly the same vector for different faces (mean cosine {different:.4f}); "
            "it cannot tell people apart as fed (check the preprocessing flags, or the output it exposes)"
        )
    return EmbeddingCheck(count, mirror, different)


def check_extractor(extractor: Extractor) -> tuple[EmbeddingCheck, list[str]]:
    """Embed the tool's faces and their mirrors; (the figures, warning lines). Raises
    :class:`InputError` for NaN or constant outputs. Costs ``2 * CHECK_FACES`` queries to F."""
    crops = _faces_and_mirrors(CHECK_FACES, extractor.geometry)
    try:
        check = measure(extractor.embed(crops, normalize=False), extractor.name)
    except InputError as exc:
        better = suggest_preprocessing(extractor, EmbeddingCheck(CHECK_FACES, 0.0, 1.0))
        if better is None:
            raise
        raise InputError(f"{exc}; with {better} it separates the tool's faces") from exc
    warnings: list[str] = []
    if check.margin < MIN_MIRROR_MARGIN:
        line = (
            f"{extractor.name}: the embeddings look degenerate as fed: {check.describe()}; a face's mirror image "
            f"should be clearly closer than another face. Likely cause: the preprocessing guess"
        )
        better = suggest_preprocessing(extractor, check)
        warnings.append(line + (f"; try {better}" if better else " (check --mean, --std, --channel-order, --crop, --input-size)"))
    return check, warnings


#: (mean, std) pairs of the common conventions, on 0..255 input.
_SCALINGS = (
    ((127.5,) * 3, (127.5,) * 3),  # ArcFace/insightface, FaceNet (fixed standardisation)
    ((127.5,) * 3, (128.0,) * 3),  # insightface MXNet exports
    ((0.0,) * 3, (255.0,) * 3),  # 0..1
    ((0.0,) * 3, (1.0,) * 3),  # 0..255 (the graph normalises itself)
    ((122.782, 117.001, 104.298), (256.0,) * 3),  # dlib
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),  # ImageNet
)


def _crops_for(size: int) -> list[FaceGeometry]:
    return [
        FaceGeometry(size, AlignmentTemplate.ARCFACE_5PT),
        FaceGeometry(size, AlignmentTemplate.DLIB_5PT, 0.25),
        FaceGeometry(size, AlignmentTemplate.DLIB_5PT, 0.5),
    ]


def suggest_preprocessing(extractor: Extractor, current: EmbeddingCheck) -> str | None:
    """For an ONNX file: the flags of the common convention that separates the tool's faces best,
    when it beats the current one by :data:`BETTER_BY`; None otherwise (or for other extractors)."""
    from fvr_audit.extractors.onnx_model import OnnxModelExtractor

    if not isinstance(extractor, OnnxModelExtractor):
        return None
    layout = extractor.info.preprocessing.layout
    best: tuple[float, str] | None = None
    for geometry in _crops_for(extractor.geometry.size):
        crops = _faces_and_mirrors(CHECK_FACES, geometry)
        for mean, std in _SCALINGS:
            for order in ChannelOrder:
                candidate = Preprocessing(order, layout, mean, std)
                try:
                    check = measure(extractor.embed_with(crops, candidate), extractor.name)
                except InputError:
                    continue
                if best is None or check.margin > best[0]:
                    flags = (
                        f"--crop {geometry.template.value}"
                        + (f" --padding {geometry.padding:g}" if geometry.template is AlignmentTemplate.DLIB_5PT else "")
                        + f" --mean {','.join(f'{m:g}' for m in mean)} --std {','.join(f'{s:g}' for s in std)}"
                        + f" --channel-order {order.value}"
                    )
                    best = (check.margin, f"{flags} (margin {check.margin:.3f})")
    if best is not None and best[0] >= current.margin + BETTER_BY:
        return best[1]
    return None
