"""The canonical face frame in which reconstructions are made, and crops cut from it.

dlib's ``get_face_chip`` maps its mean-face landmark box [0, 1]^2 to the chip so that
``pixel = (padding + u) / (1 + 2 * padding) * size``. A chip with padding 0.5 at 200 px therefore
holds every dlib chip with padding <= 0.5: dlib-resnet128's 150 px / 0.25 chip is exactly its
central 150 x 150 pixels, and faceres's 224 px / 0.5 chip is the whole frame resized. So
reconstructors draw faces in this one frame, and each recognizer receives its own crop of them,
with no detection step that could fail on a reconstruction.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry

#: Reconstructions are 200 x 200 dlib chips with padding 0.5.
CANONICAL_GEOMETRY = FaceGeometry(200, AlignmentTemplate.DLIB_5PT, 0.5)

#: Mean ArcFace points (eye centres, nose tip, mouth corners; x, y) of 400 LFW faces in the
#: canonical frame, from dlib's 68-point model (scripts/measure_canonical_arcface.py). One fixed
#: warp of the frame to the ArcFace template keeps mobileface at 90.5% on LFW pairs (93.7% with
#: each face's own landmarks).
CANONICAL_ARCFACE_POINTS = np.array(
    [[72.1, 71.2], [125.0, 71.2], [98.3, 100.4], [74.8, 129.1], [122.5, 129.2]], dtype=np.float64
)


def canonical_box(geometry: FaceGeometry, canonical: FaceGeometry = CANONICAL_GEOMETRY) -> tuple[float, float]:
    """(start, side) in canonical pixels of the square that ``geometry``'s chip covers.

    >>> canonical_box(FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25))
    (25.0, 150.0)
    >>> canonical_box(FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5))
    (0.0, 200.0)
    """
    if geometry.template is not AlignmentTemplate.DLIB_5PT:
        raise InputError(
            f"crop {geometry.describe()}: only dlib-5pt crops are squares of the canonical frame; "
            "arcface-5pt crops are warped (crop_from_canonical)"
        )
    if geometry.padding > canonical.padding + 1e-9:
        raise InputError(
            f"crop {geometry.describe()}: padding above the canonical frame's {canonical.padding:g} "
            "would need pixels that reconstructions do not have"
        )
    unit = canonical.size / (1 + 2 * canonical.padding)  # canonical pixels per landmark-box unit
    side = unit * (1 + 2 * geometry.padding)
    start = unit * (canonical.padding - geometry.padding)
    return float(start), float(side)


def crop_from_canonical(images: np.ndarray, geometry: FaceGeometry) -> np.ndarray:
    """uint8 [N, 200, 200, 3] canonical images -> uint8 [N, size, size, 3] crops in ``geometry``.

    >>> x = np.zeros((2, 200, 200, 3), np.uint8); x[:, 25:175, 25:175] = 255
    >>> crop = crop_from_canonical(x, FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25))
    >>> crop.shape, int(crop.min())
    ((2, 150, 150, 3), 255)
    >>> crop_from_canonical(x, FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT)).shape
    (2, 112, 112, 3)
    """
    images = np.asarray(images)
    size = CANONICAL_GEOMETRY.size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 [N, {size}, {size}, 3] canonical images, got {images.dtype} {images.shape}")
    if geometry.template is AlignmentTemplate.ARCFACE_5PT:
        from fvr_audit.alignment.aligner import ARCFACE_TEMPLATE_112, warp_to_template

        template = ARCFACE_TEMPLATE_112 * (geometry.size / 112.0)
        return np.stack([warp_to_template(image, CANONICAL_ARCFACE_POINTS, template, geometry.size) for image in images])
    if geometry.template is AlignmentTemplate.NONE:
        from fvr_audit.alignment.aligner import resize_square

        return np.stack([resize_square(image, geometry.size) for image in images])
    start, side = canonical_box(geometry)
    if abs(start - round(start)) < 1e-6 and abs(side - geometry.size) < 1e-6:
        s = int(round(start))
        return np.ascontiguousarray(images[:, s : s + geometry.size, s : s + geometry.size])
    box = (start, start, start + side, start + side)
    return np.stack(
        [
            np.asarray(Image.fromarray(image).resize((geometry.size, geometry.size), Image.BILINEAR, box=box))
            for image in images
        ]
    )
