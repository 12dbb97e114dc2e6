"""Where an extractor's crop lies in the canonical frame, as an affine map (for differentiable crops).

:func:`fvr_audit.alignment.canonical.crop_from_canonical` cuts each recognizer's crop from the
200 x 200 canonical frame: a square (dlib-5pt chips), the whole frame (no template) or a fixed
similarity warp (arcface-5pt). :func:`crop_affine` gives the same map as a 2 x 3 matrix from crop
pixel indices to canonical pixel indices, so that white-box attacks can cut the crop with one
``grid_sample`` (and compose it with a random jitter), and black-box attacks know which part of
the frame F sees.
"""

from __future__ import annotations

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, canonical_box
from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry


def crop_affine(geometry: FaceGeometry) -> np.ndarray:
    """float64 [2, 3]: crop pixel (x, y, 1) -> canonical pixel (x, y), pixel centres at integers.

    >>> crop_affine(FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25)).round(3).tolist()
    [[1.0, 0.0, 25.0], [0.0, 1.0, 25.0]]
    >>> m = crop_affine(FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5)); float(m[0, 0] * 224)
    200.0
    """
    full = CANONICAL_GEOMETRY.size
    if geometry.template is AlignmentTemplate.ARCFACE_5PT:
        from fvr_audit.alignment.aligner import ARCFACE_TEMPLATE_112
        from fvr_audit.alignment.canonical import CANONICAL_ARCFACE_POINTS

        template = ARCFACE_TEMPLATE_112 * (geometry.size / 112.0)
        forward = _similarity(CANONICAL_ARCFACE_POINTS, template)  # canonical -> crop
        inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))
        return inverse[:2]
    if geometry.template is AlignmentTemplate.NONE:
        start, side = 0.0, float(full)
    else:
        start, side = canonical_box(geometry)
    scale = side / geometry.size
    # PIL's box resize (and a plain slice when scale is 1): x_in = (x_out + 0.5) * scale + start - 0.5
    offset = 0.5 * scale + start - 0.5
    return np.array([[scale, 0.0, offset], [0.0, scale, offset]])


def view_box(geometry: FaceGeometry) -> tuple[float, float]:
    """(low, high) canonical pixel range (both axes) that the crop covers, clipped to the frame.

    >>> view_box(FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25))
    (25.0, 174.0)
    """
    m = crop_affine(geometry)
    last = geometry.size - 1
    corners = np.array([[0, 0, 1], [last, 0, 1], [0, last, 1], [last, last, 1]], dtype=np.float64)
    mapped = corners @ m.T
    full = CANONICAL_GEOMETRY.size
    low = float(np.clip(mapped.min(), 0, full - 1))
    high = float(np.clip(mapped.max(), 0, full - 1))
    return round(low, 6), round(high, 6)


def normalised_theta(geometry: FaceGeometry) -> np.ndarray:
    """float64 [2, 3] for ``torch.nn.functional.affine_grid`` (``align_corners=False``): crop -> frame.

    >>> normalised_theta(FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25)).round(4).tolist()
    [[0.75, 0.0, 0.0], [0.0, 0.75, 0.0]]
    """
    size, full = geometry.size, CANONICAL_GEOMETRY.size
    # output normalised u -> output index: i = (size / 2) u + (size - 1) / 2
    out_to_index = np.array([[size / 2, 0, (size - 1) / 2], [0, size / 2, (size - 1) / 2], [0, 0, 1]])
    # canonical index -> normalised: u = (2 / full) i + 1 / full - 1
    index_to_norm = np.array([[2 / full, 0, 1 / full - 1], [0, 2 / full, 1 / full - 1], [0, 0, 1]])
    m = np.vstack([crop_affine(geometry), [0, 0, 1]])
    return (index_to_norm @ m @ out_to_index)[:2]


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform [2, 3] taking ``source`` points to ``target`` (Umeyama)."""
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):
        transform = SimilarityTransform.from_estimate(source, target)
    else:  # older scikit-image
        transform = SimilarityTransform()
        transform.estimate(source, target)
    return np.asarray(transform.params, dtype=np.float64)[:2]
