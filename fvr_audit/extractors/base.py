"""The ``Extractor`` interface: aligned face crops in, feature vectors out.

An extractor declares the face geometry it expects (:class:`FaceGeometry`: how a crop is cut
from a photo) and the pixel preprocessing its network wants (:class:`Preprocessing`). Callers
hand it uint8 RGB crops already cut to that geometry; the extractor applies its own
preprocessing, so every implementation takes the same input.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


#: Largest crop side any extractor is fed: face recognizers take 96-640 px; a model declaring
#: 100000 x 100000 would need 120 GB per float crop, so it is refused up front.
MAX_INPUT_SIDE = 4096
#: Largest fixed batch axis an ONNX graph may declare (it is padded to that many crops).
MAX_FIXED_BATCH = 4096


def check_input_side(label: str, side: int) -> None:
    """One-line InputError for a crop side no face recognizer uses (before any allocation).

    >>> check_input_side("m.onnx", 100000)
    Traceback (most recent call last):
    fvr_audit.errors.InputError: m.onnx: input 100000x100000 is larger than any face recognizer's (at most 4096 px per side); check that this is a face recognizer
    """
    from fvr_audit.errors import InputError

    if side > MAX_INPUT_SIDE:
        raise InputError(
            f"{label}: input {side}x{side} is larger than any face recognizer's (at most {MAX_INPUT_SIDE} px "
            "per side); check that this is a face recognizer"
        )


class AlignmentTemplate(str, Enum):
    """How a face crop is cut from a photo."""

    #: dlib's ``get_face_chip`` from its 5-point landmarks, with the geometry's ``padding``.
    DLIB_5PT = "dlib-5pt"
    #: The ArcFace/insightface 112x112 5-point similarity template (eye centres, nose tip, mouth corners).
    ARCFACE_5PT = "arcface-5pt"
    #: No landmarks: the image is resized as it is (inputs that are already aligned crops).
    NONE = "none"


class ChannelOrder(str, Enum):
    RGB = "RGB"
    BGR = "BGR"


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


@dataclass(frozen=True)
class FaceGeometry:
    """The crop an extractor expects: a square of ``size`` pixels cut by ``template``."""

    size: int
    template: AlignmentTemplate
    #: dlib chip padding: the share of the face's extent added on each side (dlib's default 0.25).
    padding: float = 0.25

    def describe(self) -> str:
        """One line for listings.

        >>> FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25).describe()
        '150x150 dlib-5pt padding 0.25'
        """
        text = f"{self.size}x{self.size} {self.template.value}"
        if self.template is AlignmentTemplate.DLIB_5PT:
            text += f" padding {self.padding:g}"
        return text


@dataclass(frozen=True)
class Preprocessing:
    """Pixel preprocessing: ``(x - mean) / std`` on 0..255 values, in ``channel_order``, laid out as ``layout``."""

    channel_order: ChannelOrder = ChannelOrder.RGB
    layout: Layout = Layout.NCHW
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def apply(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB crops -> float32 network input.

        >>> p = Preprocessing(ChannelOrder.BGR, Layout.NCHW, (127.5,) * 3, (127.5,) * 3)
        >>> x = np.zeros((1, 2, 2, 3), np.uint8); x[..., 0] = 255
        >>> y = p.apply(x); y.shape, float(y[0, 2, 0, 0]), float(y[0, 0, 0, 0])
        ((1, 3, 2, 2), 1.0, -1.0)
        """
        x = np.asarray(crops, dtype=np.float32)
        if self.channel_order is ChannelOrder.BGR:
            x = x[..., ::-1]
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout is Layout.NCHW:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> str:
        """One line for listings and for printing what was guessed.

        >>> Preprocessing(mean=(127.5,) * 3, std=(127.5,) * 3).describe()
        'RGB NCHW (x-127.5)/127.5'
        >>> Preprocessing(mean=(122.782, 117.001, 104.298), std=(256,) * 3).describe()
        'RGB NCHW (x-[122.782,117.001,104.298])/256'
        """

        def fmt(values: tuple[float, ...]) -> str:
            if len(set(values)) == 1:
                return f"{values[0]:g}"
            return "[" + ",".join(f"{v:g}" for v in values) + "]"

        return f"{self.channel_order.value} {self.layout.value} (x-{fmt(self.mean)})/{fmt(self.std)}"


@dataclass(frozen=True)
class ExtractorInfo:
    """What ``fvr-audit extractors`` lists, and what a report records as provenance."""

    name: str
    dim: int
    geometry: FaceGeometry
    preprocessing: Preprocessing
    source: str
    license: str
    #: sha256 of the model file, when there is one (provenance in reports).
    sha256: str | None = None
    #: Whether gradients can flow to the input (white-box attacks need it).
    differentiable: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict, compare=False)


class Extractor(abc.ABC):
    """Turns aligned face crops into feature vectors.

    Implementations define :attr:`info` and :meth:`embed_raw`; :meth:`embed` adds batching and
    L2 normalisation so all callers compare vectors by cosine similarity.
    """

    #: Largest batch handed to :meth:`embed_raw` at once.
    batch_size: int = 32
    #: What :func:`~fvr_audit.extractors.registry.get_extractor` made this from (an
    #: ``ExtractorSpec``), so workers can make it again; None for extractors made directly.
    origin: Any = None

    @property
    @abc.abstractmethod
    def info(self) -> ExtractorInfo:
        """Name, dimension, geometry, preprocessing, source and licence."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def geometry(self) -> FaceGeometry:
        return self.info.geometry

    @property
    def queries_used(self) -> int:
        """Images sent to a priced or rate-limited service so far (0 for local models)."""
        return 0

    @abc.abstractmethod
    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [N, size, size, 3] RGB crops -> float32 [N, dim] vectors, as the model outputs them."""

    def embed(self, crops: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        """Embed crops in batches; L2-normalised float32 [N, dim] unless ``normalize=False``."""
        crops = np.asarray(crops)
        size = self.geometry.size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise ValueError(
                f"{self.name}: expected uint8 crops of shape [N, {size}, {size}, 3], "
                f"got {crops.dtype} {tuple(crops.shape)}"
            )
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        parts = [self.embed_raw(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        return l2_normalize(vectors) if normalize else vectors


class WhiteBox(abc.ABC):
    """Capability of an extractor whose gradients can be had (white-box attacks need them).

    Declared by inheritance, never probed: ``isinstance(extractor, WhiteBox)``. The built-in
    models are white-box through their torch twins, a user's ONNX file through the torch
    interpreter of its graph (checked against onnxruntime first).
    """

    #: One line saying how the white box was checked (an ONNX graph's interpreter against
    #: onnxruntime), once it was; None for models whose torch form is the reference itself.
    white_box_check: str | None = None

    @abc.abstractmethod
    def torch_forward(self) -> Callable[[Any], Any]:
        """A function from a preprocessed float32 torch batch (what ``info.preprocessing`` makes of
        uint8 RGB crops, in its layout) to raw embeddings, differentiable in its input.

        Raises :class:`~fvr_audit.errors.InputError` with the reason (one line) when the
        gradients cannot be had for this model after all (an op the interpreter does not cover,
        or an interpreter that disagrees with onnxruntime).
        """


def white_box_forward(extractor: Extractor) -> tuple[Callable[[Any], Any] | None, str | None]:
    """(forward, None) when gradients of ``extractor`` can be had, else (None, the reason)."""
    from fvr_audit.errors import InputError

    if not isinstance(extractor, WhiteBox):
        return None, (
            f"{extractor.name} is a black box (an HTTP endpoint or other model without gradients); "
            "white-box attacks need a model file: use a black-box method such as eigenfaces"
        )
    try:
        return extractor.torch_forward(), None
    except InputError as exc:
        return None, str(exc)


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero).

    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, eps)).astype(np.float32, copy=False)
