"""A user's own ONNX face-embedding model (``--extractor model.onnx``).

An ONNX file records the network but not the preprocessing its authors trained it with: the
input size, layout, normalisation, channel order and face crop have to be read from the graph
where possible and guessed otherwise. A wrong guess does not crash anything; it silently makes
the audit measure a degraded model, so every guessed field comes with a reason, the caller prints
them all (:meth:`PreprocessingGuess.describe_lines`), and every field can be overridden through
:class:`~fvr_audit.extractors.registry.ExtractorOptions`.

Guess rules, in order of precedence for each field:

1. A user override (``--input-size``, ``--layout``, ``--mean``, ``--std``, ``--channel-order``,
   ``--crop``, ``--padding``) always wins; its reason line says "set by --flag".
2. Input size and layout come from the graph: NCHW when axis 1 is 3, NHWC when the last axis is 3,
   the size from the (square) spatial axes.
3. Mean, std and channel order recorded by the exporter in ``metadata_props`` (keys such as
   ``mean``/``std``/``input_mean``/``channel_order``). Values that all lie within 0..1 are read
   as torchvision-style statistics of x/255 and scaled to 0..255.
4. A graph that begins with Sub/Mul/Div/Add by constants on its input normalises internally:
   mean 0, std 1 (the test insightface itself applies to its ArcFace ONNX files).
5. The convention of the input size:

   * 112x112: ArcFace, ``(x-127.5)/127.5``, RGB, ``arcface-5pt`` crop. RGB is what insightface's
     own runtime feeds its ONNX files (OpenCV BGR images swapped to RGB), including models
     converted from mxnet; BGR models exist, so the reason line says to try ``--channel-order BGR``.
   * 160x160: FaceNet, ``(x-127.5)/128`` (fixed image standardisation), RGB. FaceNet crops are
     MTCNN boxes plus a small margin, not landmark-aligned, so no template matches exactly; a dlib
     chip with padding 0.2 approximates the tight FaceNet framing (a box of ~80% of the crop).
   * 150x150: dlib ResNet, per-channel mean (122.782, 117.001, 104.298) and ``/256``, RGB,
     ``dlib-5pt`` padding 0.25 (dlib's ``input_rgb_image_sized`` and ``get_face_chip`` defaults).
   * any other size: ``(x-127.5)/127.5`` RGB with a dlib chip, padding 0.25, flagged low-confidence.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    MAX_FIXED_BATCH,
    MAX_INPUT_SIDE,
    FaceGeometry,
    Layout,
    Preprocessing,
    WhiteBox,
    check_input_side,
)
from fvr_audit.extractors.registry import ExtractorOptions

#: Environment variable: intra-op threads of the onnxruntime session.
#: Faces on which the torch interpretation of a user's graph must match onnxruntime.
WHITE_BOX_PROBES = 8
#: Largest max-abs difference allowed between the two, as a share of the outputs' largest magnitude.
WHITE_BOX_TOLERANCE = 1e-3
THREADS_ENV = "FVR_AUDIT_THREADS"
DEFAULT_THREADS = 2

#: numpy dtype fed to each supported ONNX input element type (as onnxruntime spells it).
_INPUT_DTYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}

#: Element-wise ops that, with a constant operand, form a normalisation prologue.
_AFFINE_OPS = frozenset({"Sub", "Mul", "Div", "Add"})
#: Ops that may sit between the input and that prologue without changing pixel values.
_PASS_THROUGH_OPS = frozenset({"Cast", "Identity", "Transpose"})
#: How far down the input's chain to look for the prologue (mxnet exports put it first).
_PROLOGUE_SEARCH_DEPTH = 8

#: ``metadata_props`` keys some exporters use for normalisation and channel order (lower case).
_MEAN_KEYS = ("mean", "input_mean", "mean_values", "norm_mean", "normalize_mean", "pixel_mean", "image_mean")
_STD_KEYS = ("std", "input_std", "std_values", "norm_std", "normalize_std", "pixel_std", "image_std")
_CHANNEL_KEYS = ("channel_order", "color_order", "colour_order", "color_format", "colour_format")

_PIXEL_FLAGS = {"mean": "--mean", "std": "--std", "channel order": "--channel-order"}
_CROP_FLAGS = {"crop": "--crop", "padding": "--padding"}
_INPUT_FLAGS = {"size": "--input-size", "layout": "--layout"}
_FROM_GRAPH = "from the graph"


# --------------------------------------------------------------------------------------------
# The guess and its reasons
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreprocessingGuess:
    """What an ONNX file is fed, and why each field has the value it has.

    ``reasons`` holds one human-readable line per group of fields ("guessed: ..." or
    "set: ..."), in the order input, pixels, crop (plus notes on metadata that was ignored).
    """

    preprocessing: Preprocessing
    geometry: FaceGeometry
    reasons: tuple[str, ...]
    #: True when a field still rests on the generic fallback for an unknown input size.
    low_confidence: bool = False

    def describe_lines(self) -> list[str]:
        """Lines for the caller to print, one per guessed or set field group.

        >>> guess = PreprocessingGuess(Preprocessing(), FaceGeometry(150, AlignmentTemplate.DLIB_5PT),
        ...                            ("guessed: input 150x150 NCHW (from the graph)",))
        >>> guess.describe_lines()
        ['guessed: input 150x150 NCHW (from the graph)']
        """
        lines = list(self.reasons)
        if self.low_confidence:
            lines.append(
                f"warning: no known convention for {self.geometry.size}x{self.geometry.size} inputs; "
                "the guesses above are low-confidence, check them or set --mean/--std/--channel-order/--crop"
            )
        return lines


@dataclass(frozen=True)
class _Choice:
    """One field's value, a phrase saying where it came from, and whether the user set it."""

    value: object
    source: str
    user_set: bool = False


@dataclass(frozen=True)
class _Convention:
    """Preprocessing and crop that models of one input size are usually trained with."""

    source: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: ChannelOrder
    template: AlignmentTemplate
    padding: float
    #: Extra words on the channel order (the ArcFace RGB/BGR caveat).
    channel_note: str = ""
    #: Extra words on the crop (why FaceNet gets a dlib chip).
    crop_note: str = ""
    confident: bool = True


def _convention_for(size: int) -> _Convention:
    """The usual training convention for a square input of ``size`` pixels."""
    if size == 112:
        return _Convention(
            source="ArcFace convention for 112x112 inputs",
            mean=(127.5,) * 3,
            std=(127.5,) * 3,
            channel_order=ChannelOrder.RGB,
            template=AlignmentTemplate.ARCFACE_5PT,
            padding=0.25,
            channel_note="RGB as insightface feeds its ONNX files; try --channel-order BGR if matches look poor",
        )
    if size == 160:
        return _Convention(
            source="FaceNet convention for 160x160 inputs",
            mean=(127.5,) * 3,
            std=(128.0,) * 3,
            channel_order=ChannelOrder.RGB,
            template=AlignmentTemplate.DLIB_5PT,
            padding=0.2,
            crop_note="FaceNet crops are MTCNN boxes with a small margin; a dlib chip with padding 0.2 is close",
        )
    if size == 150:
        return _Convention(
            source="dlib ResNet convention for 150x150 inputs",
            mean=(122.782, 117.001, 104.298),
            std=(256.0,) * 3,
            channel_order=ChannelOrder.RGB,
            template=AlignmentTemplate.DLIB_5PT,
            padding=0.25,
        )
    return _Convention(
        source=f"no known convention for {size}x{size} inputs, low-confidence guess",
        mean=(127.5,) * 3,
        std=(127.5,) * 3,
        channel_order=ChannelOrder.RGB,
        template=AlignmentTemplate.DLIB_5PT,
        padding=0.25,
        confident=False,
    )


def _fmt_values(values: Sequence[float]) -> str:
    """``127.5`` for equal channels, ``[122.782,117.001,104.298]`` otherwise.

    >>> _fmt_values((127.5, 127.5, 127.5)), _fmt_values((1, 2, 3.5))
    ('127.5', '[1,2,3.5]')
    """
    if len(set(values)) == 1:
        return f"{values[0]:g}"
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


def _reason_line(
    subject: str, choices: Mapping[str, _Choice], flags: Mapping[str, str], note: str = ""
) -> str:
    """``guessed: <subject> (<where each field came from>; override with <flags>)``.

    Fields sharing a source are named together so the line stays short.

    >>> _reason_line("input 112x112 NCHW",
    ...              {"size": _Choice(112, "from the graph"), "layout": _Choice("NCHW", "from the graph")},
    ...              {"size": "--input-size", "layout": "--layout"})
    'guessed: input 112x112 NCHW (from the graph)'
    >>> _reason_line("(x-0)/1 RGB",
    ...              {"mean": _Choice(0, "set by --mean", True), "std": _Choice(1, "set by --std", True),
    ...               "channel order": _Choice("RGB", "ArcFace convention")}, _PIXEL_FLAGS)
    'guessed: (x-0)/1 RGB (mean: set by --mean; std: set by --std; channel order: ArcFace convention; override with --channel-order)'
    """
    # "set" when the user chose the fields that are not plain facts of the graph; "guessed" as
    # soon as one field rests on a guess (a line of graph facts alone also reads "guessed").
    guessed = any(not c.user_set and c.source != _FROM_GRAPH for c in choices.values())
    status = "set" if not guessed and any(c.user_set for c in choices.values()) else "guessed"
    by_source: dict[str, list[str]] = {}
    for label, choice in choices.items():
        by_source.setdefault(choice.source, []).append(label)
    if len(by_source) == 1:
        parts = [next(iter(by_source))]
    else:
        parts = [f"{', '.join(labels)}: {source}" for source, labels in by_source.items()]
    if note:
        parts.append(note)
    # Values read from the graph are facts, not guesses: no point suggesting a flag for them.
    open_flags = [
        flags[label]
        for label, choice in choices.items()
        if not choice.user_set and choice.source != _FROM_GRAPH and label in flags
    ]
    if open_flags:
        parts.append("override with " + "/".join(open_flags))
    return f"{status}: {subject} ({'; '.join(parts)})"


# --------------------------------------------------------------------------------------------
# Reading the graph
# --------------------------------------------------------------------------------------------


def _format_shape(shape: Sequence[object]) -> str:
    """``[N, 3, 112, 112]``; unnamed dynamic axes print as ``?``.

    >>> _format_shape(["batch", 3, None, 112])
    '[batch, 3, ?, 112]'
    """
    return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _fixed(dim: object) -> int | None:
    """A dimension's size when the graph fixes it, else None (symbolic or unknown)."""
    return dim if isinstance(dim, int) and dim > 0 else None


def _first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception message, shortened: onnxruntime errors run to pages."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_input_normalisation(graph, input_name: str) -> tuple[str, ...]:
    """Ops of an element-wise normalisation by constants that the graph applies to its input.

    Follows the input through single-consumer Sub/Mul/Div/Add nodes whose other operand is a
    constant (an initializer or a Constant node), stepping over Cast/Identity/Transpose. Returns
    the op types found, e.g. ``("Sub", "Mul")`` for an mxnet-exported ArcFace; empty when the
    graph starts with anything else (a convolution: the caller must normalise).
    """
    constants = {init.name for init in graph.initializer}
    constants.update(out for node in graph.node if node.op_type == "Constant" for out in node.output)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    found: list[str] = []
    current = input_name
    for _ in range(_PROLOGUE_SEARCH_DEPTH):
        users = consumers.get(current, [])
        if len(users) != 1:
            break
        node = users[0]
        if node.op_type in _PASS_THROUGH_OPS:
            current = node.output[0]
            continue
        if node.op_type in _AFFINE_OPS and len(node.input) == 2:
            other = node.input[1] if node.input[0] == current else node.input[0]
            if other in constants:
                found.append(node.op_type)
                current = node.output[0]
                continue
        break
    return tuple(found)


def _parse_triple(text: str) -> tuple[float, float, float] | None:
    """``"0.5"``, ``"[0.485, 0.456, 0.406]"`` or ``"127.5 127.5 127.5"`` -> three floats.

    >>> _parse_triple("[0.485, 0.456, 0.406]"), _parse_triple("127.5"), _parse_triple("a,b")
    ((0.485, 0.456, 0.406), (127.5, 127.5, 127.5), None)
    """
    pieces = [piece for piece in re.split(r"[\s,;()\[\]]+", text) if piece]
    try:
        values = [float(piece) for piece in pieces]
    except ValueError:
        return None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        return None
    return (values[0], values[1], values[2])


@dataclass(frozen=True)
class _MetadataHints:
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    channel_order: ChannelOrder | None
    #: Where the values came from, e.g. "from model metadata mean=0.5, std=0.5 (x/255 scale)".
    source: str
    channel_source: str
    #: Lines about metadata entries that looked relevant but could not be used.
    ignored: tuple[str, ...]


def read_metadata_hints(metadata: Mapping[str, str]) -> _MetadataHints:
    """Mean, std and channel order recorded by an exporter in ``metadata_props``, if any.

    >>> hints = read_metadata_hints({"mean": "0.5,0.5,0.5", "std": "0.5"})
    >>> hints.mean, hints.std, hints.source
    ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "from model metadata mean='0.5,0.5,0.5' std='0.5' (0..1 scale, x255)")
    """
    lowered = {key.lower(): (key, value) for key, value in metadata.items()}
    ignored: list[str] = []

    def lookup(keys: Sequence[str]) -> tuple[str, str, tuple[float, float, float]] | None:
        for key in keys:
            if key in lowered:
                original, text = lowered[key]
                values = _parse_triple(text)
                if values is None:
                    ignored.append(f"note: ignored model metadata {original}={text!r} (not 1 or 3 numbers)")
                    continue
                return original, text, values
        return None

    mean_entry, std_entry = lookup(_MEAN_KEYS), lookup(_STD_KEYS)
    if std_entry is not None and any(v == 0 for v in std_entry[2]):
        ignored.append(f"note: ignored model metadata {std_entry[0]}={std_entry[1]!r} (a std of 0)")
        std_entry = None
    mean = mean_entry[2] if mean_entry else None
    std = std_entry[2] if std_entry else None
    # torchvision-style statistics describe x/255; ours apply to 0..255 values. Values all
    # within 0..1 mean the former, except the identity (mean 0, std 1), which fits both scales.
    present = [*(mean or ()), *(std or ())]
    identity = (mean in (None, (0.0,) * 3)) and (std in (None, (1.0,) * 3))
    unit_scale = bool(present) and max(abs(v) for v in present) <= 1.0 and not identity
    if unit_scale:
        mean = tuple(v * 255.0 for v in mean) if mean else None  # type: ignore[assignment]
        std = tuple(v * 255.0 for v in std) if std else None  # type: ignore[assignment]
    recorded = " ".join(f"{entry[0]}={entry[1]!r}" for entry in (mean_entry, std_entry) if entry)
    source = f"from model metadata {recorded}" + (" (0..1 scale, x255)" if unit_scale else "")

    channel_order, channel_source = None, ""
    for key in _CHANNEL_KEYS:
        if key in lowered:
            original, text = lowered[key]
            upper = text.upper()
            if ("BGR" in upper) != ("RGB" in upper):
                channel_order = ChannelOrder.BGR if "BGR" in upper else ChannelOrder.RGB
                channel_source = f"from model metadata {original}={text!r}"
                break
            ignored.append(f"note: ignored model metadata {original}={text!r} (neither RGB nor BGR)")
    return _MetadataHints(mean, std, channel_order, source, channel_source, tuple(ignored))


# --------------------------------------------------------------------------------------------
# Resolving the guess
# --------------------------------------------------------------------------------------------


def _validate_options(label: str, options: ExtractorOptions) -> None:
    """One-line InputError for an override that cannot be right, before the model is loaded."""
    if options.input_size is not None and options.input_size <= 0:
        raise InputError(
            f"{label}: --input-size must be a positive number of pixels, got {options.input_size}"
        )
    if options.mean is not None and not all(math.isfinite(v) for v in options.mean):
        raise InputError(f"{label}: --mean values must be finite numbers, got {_fmt_values(options.mean)}")
    if options.std is not None and not all(math.isfinite(v) and v != 0 for v in options.std):
        raise InputError(
            f"{label}: --std values must be non-zero finite numbers, got {_fmt_values(options.std)}"
        )
    if options.padding is not None and not (math.isfinite(options.padding) and options.padding >= 0):
        raise InputError(f"{label}: --padding must be 0 or more, got {options.padding:g}")


def guess_preprocessing(
    *,
    label: str,
    input_shape: Sequence[object],
    options: ExtractorOptions,
    metadata: Mapping[str, str] | None = None,
    internal_ops: Sequence[str] = (),
) -> PreprocessingGuess:
    """Resolve input size, layout, normalisation, channel order and crop for a rank-4 input.

    ``label`` names the model in error messages. ``input_shape`` is the graph's input shape
    (ints for fixed axes, names or None for dynamic ones), ``metadata`` its ``metadata_props``,
    ``internal_ops`` what :func:`find_input_normalisation` found.

    >>> guess = guess_preprocessing(label="m.onnx", input_shape=["N", 3, 112, 112], options=ExtractorOptions())
    >>> guess.preprocessing.describe(), guess.geometry.describe()
    ('RGB NCHW (x-127.5)/127.5', '112x112 arcface-5pt')
    """
    _validate_options(label, options)
    shape = list(input_shape)
    if len(shape) != 4:
        raise InputError(
            f"{label}: input has rank {len(shape)} {_format_shape(shape)}; expected a rank-4 image batch"
        )

    # --- layout: where the 3 colour channels are
    channels_first, channels_last = _fixed(shape[1]) == 3, _fixed(shape[3]) == 3
    if options.layout is not None:
        layout = _Choice(options.layout, "set by --layout", True)
    elif channels_first and channels_last:
        raise InputError(
            f"{label}: input {_format_shape(shape)} has 3 on both axis 1 and axis 3; "
            "say which is the channel axis with --layout NCHW or --layout NHWC"
        )
    elif channels_first:
        layout = _Choice(Layout.NCHW, _FROM_GRAPH)
    elif channels_last:
        layout = _Choice(Layout.NHWC, _FROM_GRAPH)
    else:
        raise InputError(
            f"{label}: input {_format_shape(shape)} has no 3-channel axis; "
            "give --layout NCHW or --layout NHWC if it takes RGB images"
        )
    is_nchw = layout.value is Layout.NCHW
    channel_axis, spatial = (1, shape[2:4]) if is_nchw else (3, shape[1:3])
    if _fixed(shape[channel_axis]) not in (None, 3):
        raise InputError(
            f"{label}: with layout {layout.value.value} the channel axis of input {_format_shape(shape)} "
            f"is {shape[channel_axis]}, not 3"
        )

    # --- input size: square spatial axes, fixed by the graph or given by the user
    fixed_sizes = {_fixed(dim) for dim in spatial} - {None}
    if len(fixed_sizes) > 1:
        raise InputError(
            f"{label}: input {_format_shape(shape)} is not square; only square face crops are supported"
        )
    if options.input_size is not None:
        if fixed_sizes and options.input_size not in fixed_sizes:
            fixed_size = next(iter(fixed_sizes))
            raise InputError(
                f"{label}: --input-size {options.input_size} does not match the graph's fixed input "
                f"{_format_shape(shape)} ({fixed_size}x{fixed_size})"
            )
        size = _Choice(options.input_size, "set by --input-size", True)
    elif len(fixed_sizes) == 1 and all(_fixed(dim) for dim in spatial):
        size = _Choice(next(iter(fixed_sizes)), _FROM_GRAPH)
    else:
        raise InputError(f"{label}: input {_format_shape(shape)} has dynamic spatial axes; give --input-size")
    side = int(size.value)  # type: ignore[arg-type]
    if not size.user_set:
        check_input_side(label, side)
    elif side > MAX_INPUT_SIDE:
        raise InputError(f"{label}: --input-size {side}: at most {MAX_INPUT_SIDE} px per side")
    input_line = _reason_line(
        f"input {side}x{side} {layout.value.value}", {"size": size, "layout": layout}, _INPUT_FLAGS
    )

    # --- pixel normalisation and channel order: override > metadata > graph prologue > convention
    convention = _convention_for(side)
    hints = read_metadata_hints(metadata or {})
    internal_source = (
        f"the graph starts with {', '.join(internal_ops)} by constants on its input, "
        "so the model normalises internally"
    )

    def pick(
        override: object,
        meta_value: object,
        internal_value: object,
        convention_value: object,
        flag: str,
        meta_source: str,
    ) -> _Choice:
        """The first of: the user's override, the metadata, the graph prologue, the convention."""
        if override is not None:
            return _Choice(
                tuple(override) if isinstance(override, tuple) else override, f"set by {flag}", True
            )
        if meta_value is not None:
            return _Choice(meta_value, meta_source)
        if internal_value is not None:
            return _Choice(internal_value, internal_source)
        return _Choice(convention_value, convention.source)

    internal = bool(internal_ops)
    mean = pick(
        options.mean, hints.mean, (0.0,) * 3 if internal else None, convention.mean, "--mean", hints.source
    )
    std = pick(
        options.std, hints.std, (1.0,) * 3 if internal else None, convention.std, "--std", hints.source
    )
    channel_order = pick(
        options.channel_order,
        hints.channel_order,
        None,
        convention.channel_order,
        "--channel-order",
        hints.channel_source,
    )
    preprocessing = Preprocessing(
        channel_order=channel_order.value,  # type: ignore[arg-type]
        layout=layout.value,  # type: ignore[arg-type]
        mean=tuple(float(v) for v in mean.value),  # type: ignore[arg-type, union-attr]
        std=tuple(float(v) for v in std.value),  # type: ignore[arg-type, union-attr]
    )
    pixel_note = convention.channel_note if channel_order.source == convention.source else ""
    pixel_line = _reason_line(
        f"(x-{_fmt_values(preprocessing.mean)})/{_fmt_values(preprocessing.std)} {preprocessing.channel_order.value}",
        {"mean": mean, "std": std, "channel order": channel_order},
        _PIXEL_FLAGS,
        pixel_note,
    )

    # --- crop geometry: override > convention; the crop size follows the input size
    template = pick(options.crop, None, None, convention.template, "--crop", "")
    padding = pick(options.padding, None, None, convention.padding, "--padding", "")
    geometry = FaceGeometry(side, template.value, float(padding.value))  # type: ignore[arg-type]
    crop_choices = {"crop": template}
    crop_note = convention.crop_note if template.source == convention.source else ""
    if geometry.template is AlignmentTemplate.DLIB_5PT:
        crop_choices["padding"] = padding
    elif padding.user_set:
        crop_note = f"--padding has no effect on {geometry.template.value} crops"
    crop_line = _reason_line(f"crop {geometry.describe()}", crop_choices, _CROP_FLAGS, crop_note)

    low_confidence = not convention.confident and any(
        choice.source == convention.source for choice in (mean, std, channel_order, *crop_choices.values())
    )
    return PreprocessingGuess(
        preprocessing=preprocessing,
        geometry=geometry,
        reasons=(input_line, pixel_line, crop_line, *hints.ignored),
        low_confidence=low_confidence,
    )


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


def session_threads() -> int:
    """Intra-op threads for onnxruntime: ``$FVR_AUDIT_THREADS`` or 2."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise InputError(f"{THREADS_ENV} must be a positive whole number of threads, got {raw!r}")
    return threads


class OnnxModelExtractor(Extractor, WhiteBox):
    """Embeds crops with a user-supplied ONNX file, fed as :attr:`guess` describes.

    Raises :class:`InputError` (one line naming the file) when the file is missing, not ONNX,
    has other than one image input, an input or output of an unusable shape, or when an
    override contradicts the graph.
    """

    def __init__(self, path: str | os.PathLike[str], options: ExtractorOptions | None = None) -> None:
        # onnx and onnxruntime are imported here so listing extractors does not pay for them.
        import onnx

        from fvr_audit.extractors.ort_session import cpu_session

        self.path = Path(path)
        self.options = options or ExtractorOptions()
        label = str(self.path)
        self._label = label
        if not self.path.is_file():
            raise InputError(f"{label}: ONNX file not found")
        _validate_options(label, self.options)

        try:
            # Weights stored as external data are not needed to read the graph's structure.
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # protobuf raises several unrelated types for a bad file
            # protobuf's own text ("Wire format was corrupt") tells a user nothing more.
            raise InputError(f"{label}: not an ONNX model, or the file is corrupt") from exc
        if model.ir_version <= 0 or not model.graph.output:
            # Empty or arbitrary bytes can parse as an empty protobuf message.
            raise InputError(f"{label}: not an ONNX model, or the file is corrupt")

        threads = session_threads()
        try:
            self._session = cpu_session(self.path, threads, quiet=True)
        except Exception as exc:
            raise InputError(f"{label}: onnxruntime cannot load the model ({_first_line(exc)})") from exc

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(repr(item.name) for item in inputs) or "none"
            raise InputError(
                f"{label}: the model has {len(inputs)} inputs ({names}); "
                "fvr-audit needs exactly one image input"
            )
        graph_input = inputs[0]
        self.input_name: str = graph_input.name
        self.input_shape: list[object] = list(graph_input.shape)
        if graph_input.type not in _INPUT_DTYPES:
            raise InputError(
                f"{label}: input {self.input_name!r} is {graph_input.type}; only float, float16 "
                "and double image inputs are supported"
            )
        self._input_dtype = _INPUT_DTYPES[graph_input.type]

        self.guess: PreprocessingGuess = guess_preprocessing(
            label=label,
            input_shape=self.input_shape,
            options=self.options,
            metadata=dict(self._session.get_modelmeta().custom_metadata_map),
            internal_ops=find_input_normalisation(model.graph, self.input_name),
        )
        del model  # the session holds its own copy; the parsed proto is no longer needed

        # A graph with a fixed batch axis must get batches of exactly that many crops.
        self._fixed_batch = _fixed(self.input_shape[0])
        if self._fixed_batch is not None and self._fixed_batch > MAX_FIXED_BATCH:
            raise InputError(
                f"{label}: input {_format_shape(self.input_shape)} fixes a batch of {self._fixed_batch} crops; "
                f"at most {MAX_FIXED_BATCH} are supported (export the model with a dynamic batch axis)"
            )
        if self._fixed_batch is not None:
            self.batch_size = self._fixed_batch

        outputs = self._session.get_outputs()
        self.output_name: str = outputs[0].name
        self._output_count = len(outputs)
        self._dim = self._static_output_dim(list(outputs[0].shape))
        if self._dim is None:
            # The graph leaves the embedding size symbolic: one inference on a blank batch tells.
            blank = np.full((1, self.geometry.size, self.geometry.size, 3), 128, np.uint8)
            self._dim = int(self._run(blank, what="a test inference on a blank crop").shape[1])
        self._info: ExtractorInfo | None = None
        self._white_box: Any = None
        self._white_box_error: InputError | None = None
        #: One line saying how the torch interpretation compared with onnxruntime (once checked).
        self.white_box_check: str | None = None

    # -- shape checks --------------------------------------------------------------------------

    def _bad_output(self, shape: Sequence[object]) -> InputError:
        return InputError(
            f"{self._label}: output {self.output_name!r} has shape {_format_shape(shape)}; "
            "expected [N, D] (or [N, D, 1, 1])"
        )

    def _static_output_dim(self, shape: list[object]) -> int | None:
        """D when the graph fixes it; None when only an inference can tell; error when unusable."""
        if not shape:
            return None  # rank unknown to the graph
        if len(shape) == 4 and all(_fixed(dim) in (None, 1) for dim in shape[2:]):
            return _fixed(shape[1])
        if len(shape) == 2:
            return _fixed(shape[1])
        raise self._bad_output(shape)

    # -- inference -----------------------------------------------------------------------------

    def embed_with(self, crops: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
        """Raw vectors of ``crops`` fed with another ``preprocessing`` (for checking a guess)."""
        crops = np.asarray(crops)
        return np.concatenate(
            [self._run(crops[i : i + self.batch_size], preprocessing=preprocessing) for i in range(0, len(crops), self.batch_size)]
        )

    def _run(self, crops: np.ndarray, *, what: str = "inference", preprocessing: Preprocessing | None = None) -> np.ndarray:
        """One session run on at most ``batch_size`` crops -> float32 [N, D]."""
        count = len(crops)
        batch = (preprocessing or self.guess.preprocessing).apply(crops)
        if self._fixed_batch is not None and count < self._fixed_batch:
            # Pad to the graph's fixed batch; the padding rows' outputs are dropped below.
            pad = np.zeros((self._fixed_batch - count, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, pad])
        try:
            (output,) = self._session.run(
                [self.output_name], {self.input_name: batch.astype(self._input_dtype)}
            )
        except Exception as exc:
            raise InputError(f"{self._label}: {what} failed ({_first_line(exc)})") from exc
        output = np.asarray(output)
        if output.ndim == 4 and output.shape[2:] == (1, 1):
            output = output.reshape(output.shape[0], output.shape[1])
        if output.ndim != 2 or output.shape[0] != len(batch):
            raise self._bad_output(list(output.shape))
        return output[:count].astype(np.float32, copy=False)

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        vectors = self._run(np.asarray(crops))
        if vectors.shape[1] != self._dim:
            raise InputError(
                f"{self._label}: output {self.output_name!r} has {vectors.shape[1]} values per crop, "
                f"but {self._dim} before; the embedding size must not depend on the input"
            )
        return vectors

    # -- white box -----------------------------------------------------------------------------

    def torch_forward(self):
        """The graph interpreted in torch, once it has been checked against onnxruntime.

        The operator has the file, so the model is white-box: :mod:`fvr_audit.convert.onnx_to_torch`
        runs it with torch ops. Before any attack relies on it, both runtimes embed
        :data:`WHITE_BOX_PROBES` of the tool's own faces and must agree (max abs difference at most
        :data:`WHITE_BOX_TOLERANCE` of the output's scale). An op the interpreter does not cover,
        or a disagreement, raises :class:`InputError` naming it: the gradient attack is then
        skipped with that note and the black-box attacks still run.
        """
        if self._white_box_error is not None:
            raise self._white_box_error
        if self._white_box is None:
            try:
                self._white_box = self._build_white_box()
            except InputError as exc:
                self._white_box_error = exc
                raise
        return self._white_box

    def _build_white_box(self):
        import onnx
        import torch

        from fvr_audit.alignment.canonical import crop_from_canonical
        from fvr_audit.convert.onnx_to_torch import OnnxGraphModule, OnnxToTorchError
        from fvr_audit.probes import probe_faces

        label = self._label
        try:
            module = OnnxGraphModule(onnx.load(str(self.path))).eval()
        except OnnxToTorchError as exc:
            raise InputError(f"{label}: no gradients: {exc}") from exc
        except Exception as exc:
            raise InputError(f"{label}: no gradients: the graph cannot be interpreted in torch ({_first_line(exc)})") from exc
        module.requires_grad_(False)
        output_index = module.output_names.index(self.output_name)
        dtype = {np.float16: torch.float16, np.float64: torch.float64}.get(self._input_dtype, torch.float32)
        fixed = self._fixed_batch

        def run(x: torch.Tensor) -> torch.Tensor:
            out = module(x.to(dtype))
            out = out[output_index] if isinstance(out, tuple) else out
            return out.reshape(out.shape[0], -1).float()

        def forward(x: torch.Tensor) -> torch.Tensor:
            if fixed is None:
                return run(x)
            parts = []
            for lo in range(0, len(x), fixed):
                chunk = x[lo : lo + fixed]
                pad = fixed - len(chunk)
                if pad:
                    chunk = torch.cat([chunk, chunk.new_zeros((pad, *chunk.shape[1:]))])
                parts.append(run(chunk)[: fixed - pad])
            return torch.cat(parts)

        crops = crop_from_canonical(probe_faces(WHITE_BOX_PROBES), self.geometry)
        reference = np.concatenate([self._run(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)])
        try:
            with torch.no_grad():
                interpreted = forward(torch.from_numpy(self.guess.preprocessing.apply(crops))).numpy()
        except Exception as exc:
            raise InputError(f"{label}: no gradients: the torch interpretation failed ({_first_line(exc)})") from exc
        scale = float(np.abs(reference).max()) if np.isfinite(reference).all() else float("nan")
        difference = float(np.abs(interpreted - reference).max()) if interpreted.shape == reference.shape else float("inf")
        if not np.isfinite(difference) or not difference <= WHITE_BOX_TOLERANCE * max(scale, 1e-6):
            raise InputError(
                f"{label}: no gradients: the torch interpretation of the graph disagrees with onnxruntime on "
                f"{len(crops)} of the tool's faces (max abs difference {difference:.3g}, outputs up to {scale:.3g})"
            )
        self.white_box_check = (
            f"{label}: white-box: the torch interpretation of the graph matches onnxruntime on {len(crops)} of the "
            f"tool's faces (max abs difference {difference:.1e})"
        )
        return forward

    # -- description ---------------------------------------------------------------------------

    @property
    def info(self) -> ExtractorInfo:
        if self._info is None:
            from fvr_audit.model_store import sha256_file

            notes = self.guess.describe_lines()
            if self._output_count > 1:
                notes.append(
                    f"note: the model has {self._output_count} outputs; using the first, {self.output_name!r}"
                )
            self._info = ExtractorInfo(
                name=self.path.name,
                dim=int(self._dim),  # type: ignore[arg-type]
                geometry=self.guess.geometry,
                preprocessing=self.guess.preprocessing,
                source=f"user ONNX file {self.path}",
                license="unknown (user-supplied)",
                sha256=sha256_file(self.path),
                # gradients come from the torch interpretation of the graph (torch_forward)
                differentiable=True,
                notes="\n".join(notes),
                extra={
                    "input_name": self.input_name,
                    "input_shape": list(self.input_shape),
                    "output_name": self.output_name,
                    "low_confidence": self.guess.low_confidence,
                },
            )
        return self._info

    @property
    def geometry(self) -> FaceGeometry:
        # Known before ``info`` (which hashes the file); the dummy inference in __init__ needs it.
        return self.guess.geometry

    @property
    def dim(self) -> int:
        return int(self._dim)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return self.path.name
