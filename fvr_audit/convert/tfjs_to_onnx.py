"""Translate a TensorFlow.js graph model (``model.json`` + weight shards) into ONNX.

Only the ``onnx`` package is needed: no TensorFlow, tensorflowjs or tf2onnx (about 3 GB of tools
for what is, for the models this project ships, a dozen op types).

How it works
------------
1. :func:`load_tfjs_graph` reads ``model.json`` and decodes every weight listed in its
   ``weightsManifest`` (float32, int32, bool; float16; uint8/uint16 with ``scale`` and ``min``).
2. :func:`convert_tfjs_to_onnx` walks back from the outputs the caller names (any node, not only
   the signature's outputs: a recognizer's embedding is often an internal node), so everything the
   outputs do not need is pruned. It then translates the remaining nodes in dependency order, each
   through one entry of a dispatch table (``_TRANSLATORS``: TF op name -> translator function).

Layout: TF graphs are NHWC, ONNX convolutions are NCHW. Every translated tensor carries a flag
saying whether its ONNX value holds the TF tensor as it is, or transposed to NCHW. Convolutions
ask for NCHW, layout-sensitive ops (Reshape, MatMul, Softmax) ask for the TF layout, and
element-wise ops work in whatever layout their inputs already have, converting constants rather
than tensors (a per-channel ``[C]`` constant becomes ``[1, C, 1, 1]``). So a chain
conv -> batch norm -> relu -> conv needs no Transpose at all, the graph input stays NHWC
``[N, H, W, C]`` exactly as in tfjs, and weights are transposed once, at conversion time.

TF ``SAME`` padding becomes explicit (possibly asymmetric) ONNX pads computed from the static
input size, so the batch dimension stays dynamic while every spatial size is known.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fvr_audit.errors import InputError

#: ONNX opset of the produced models (ReduceMean/Max/Min still take ``axes`` as an attribute).
OPSET = 17
#: IR version matching opset 17, so that older onnxruntime releases load the files too.
IR_VERSION = 8

#: ONNX axis ``i`` of an NCHW value holds TF (NHWC) axis ``NHWC_TO_NCHW[i]``.
NHWC_TO_NCHW = (0, 3, 1, 2)
#: The inverse permutation; ``NCHW_TO_NHWC[a]`` is also where TF axis ``a`` sits in an NCHW value.
NCHW_TO_NHWC = (0, 2, 3, 1)

_TF_TO_ONNX_DTYPE = {"DT_FLOAT": TensorProto.FLOAT, "DT_INT32": TensorProto.INT32}

#: How weights are stored in the shards: manifest dtype (or quantization dtype) -> numpy dtype.
_STORED_DTYPES = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}


class TfjsConversionError(InputError):
    """The tfjs model cannot be translated: unknown op, unsupported attribute, bad weights."""


# ----------------------------------------------------------------------------- reading model.json


@dataclass(frozen=True)
class TfNode:
    """One node of a tfjs graph; ``inputs`` are tensor references without control inputs."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: Mapping[str, Any]

    def _get(self, key: str) -> dict | None:
        return self.attr.get(key)

    def ints(self, key: str, default: Sequence[int] = ()) -> list[int]:
        """A list-of-ints attribute (``strides``, ``dilations``...)."""
        value = self._get(key)
        if value is None:
            return list(default)
        return [int(v) for v in value.get("list", {}).get("i", [])]

    def integer(self, key: str, default: int) -> int:
        value = self._get(key)
        return default if value is None else int(value.get("i", default))

    def string(self, key: str, default: str) -> str:
        """A string attribute; tfjs stores them base64-encoded."""
        value = self._get(key)
        if value is None or "s" not in value:
            return default
        return base64.b64decode(value["s"]).decode()

    def strings(self, key: str) -> list[str]:
        value = self._get(key) or {}
        return [base64.b64decode(s).decode() for s in value.get("list", {}).get("s", [])]

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key)
        return default if value is None else bool(value.get("b", default))

    def number(self, key: str, default: float) -> float:
        value = self._get(key)
        return default if value is None else float(value.get("f", default))


@dataclass
class TfjsGraph:
    """A parsed tfjs graph model: its nodes (file order), decoded weights and top-level fields."""

    nodes: dict[str, TfNode]
    weights: dict[str, np.ndarray]
    #: ``format``, ``generatedBy``, ``convertedBy``, ``signature`` as found in model.json.
    meta: dict[str, Any]


def split_tensor_ref(ref: str) -> tuple[str, int]:
    """``"conv/Relu:1"`` -> ``("conv/Relu", 1)``; a bare node name is output 0.

    >>> split_tensor_ref("global_pooling/Mean"), split_tensor_ref("split:1")
    (('global_pooling/Mean', 0), ('split', 1))
    """
    node, sep, index = ref.rpartition(":")
    if sep and index.isdigit():
        return node, int(index)
    return ref, 0


def decode_weights(
    manifest: Sequence[Mapping[str, Any]], read_file: Callable[[str], bytes]
) -> dict[str, np.ndarray]:
    """Decode the weights of a ``weightsManifest``.

    Each group's shard files are concatenated in order and its weights follow one another with
    no padding. Quantised weights are expanded as tfjs does: ``float16`` is widened to float32;
    ``uint8``/``uint16`` become ``q * scale + min`` (computed in float64, rounded once to float32,
    like tfjs's JavaScript doubles stored in a Float32Array; rounded to integers for int32).
    """
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        buffer = b"".join(read_file(path) for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, shape, dtype = spec["name"], tuple(int(d) for d in spec["shape"]), spec["dtype"]
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else dtype
            if stored not in _STORED_DTYPES:
                raise TfjsConversionError(f"weight {name!r}: unsupported stored dtype {stored!r}")
            count = math.prod(shape)
            nbytes = count * _STORED_DTYPES[stored].itemsize
            if offset + nbytes > len(buffer):
                raise TfjsConversionError(
                    f"weight {name!r}: shards {group['paths']} hold {len(buffer)} bytes, "
                    f"the manifest needs at least {offset + nbytes}"
                )
            raw = np.frombuffer(buffer, _STORED_DTYPES[stored], count, offset)
            offset += nbytes
            weights[name] = _dequantize(raw, dtype, quant, name).reshape(shape)
    return weights


def _dequantize(raw: np.ndarray, dtype: str, quant: Mapping[str, Any] | None, name: str) -> np.ndarray:
    if quant is None:
        return (
            raw.astype(np.bool_) if dtype == "bool" else raw.astype(_STORED_DTYPES[dtype].newbyteorder("="))
        )
    if quant["dtype"] == "float16":
        return raw.astype(np.float32)
    if "scale" not in quant or "min" not in quant:
        raise TfjsConversionError(f"weight {name!r}: {quant['dtype']} quantisation without scale and min")
    values = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
    if dtype == "int32":
        return np.rint(values).astype(np.int32)
    return values.astype(np.float32)


def load_tfjs_graph(model_json: str | Path) -> TfjsGraph:
    """Read a tfjs graph model; weight shards are looked up beside ``model_json``."""
    model_json = Path(model_json)
    try:
        model = json.loads(model_json.read_text())
    except (OSError, ValueError) as exc:
        raise TfjsConversionError(f"{model_json}: not a readable model.json ({exc})") from exc
    topology = model.get("modelTopology", {})
    if model.get("format", "graph-model") != "graph-model" or "node" not in topology:
        raise TfjsConversionError(f"{model_json}: not a tfjs graph model (format {model.get('format')!r})")
    if topology.get("library", {}).get("function"):
        raise TfjsConversionError(f"{model_json}: graphs with functions (control flow) are not supported")
    nodes = {}
    for raw in topology["node"]:
        inputs = tuple(ref for ref in raw.get("input", []) if not ref.startswith("^"))
        nodes[raw["name"]] = TfNode(raw["name"], raw["op"], inputs, raw.get("attr", {}))

    def read_shard(path: str) -> bytes:
        try:
            return (model_json.parent / path).read_bytes()
        except OSError as exc:
            raise TfjsConversionError(f"{model_json}: weight shard {path!r} unreadable ({exc})") from exc

    weights = decode_weights(model.get("weightsManifest", []), read_shard)
    meta = {key: model[key] for key in ("format", "generatedBy", "convertedBy", "signature") if key in model}
    return TfjsGraph(nodes, weights, meta)


# ----------------------------------------------------------------------------- building the ONNX graph

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class _Value:
    """A translated TF tensor."""

    #: ONNX value name; for a constant, the key of its (lazily emitted) initializer.
    name: str
    #: The TF shape (NHWC order, whatever the ONNX layout); ``None`` dims are unknown (the batch);
    #: ``None`` itself means the rank is unknown.
    shape: Shape | None
    #: True: the ONNX value holds the 4-d TF tensor transposed to NCHW.
    nchw: bool = False
    #: Constants: the value in TF layout, emitted as an initializer only when an op reads it.
    const: np.ndarray | None = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


class _Builder:
    """Accumulates ONNX nodes and initializers, with unique names and layout conversions."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._used: set[str] = set(reserved)
        self._const_names: dict[tuple[str, bool], str] = {}

    def unique(self, hint: str) -> str:
        name, k = hint, 1
        while name in self._used:
            name, k = f"{hint}_{k}", k + 1
        self._used.add(name)
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        """Append one node; returns its (single) output name."""
        out = self.unique(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def initializer(self, hint: str, array: np.ndarray) -> str:
        name = self.unique(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def materialize(self, value: _Value) -> str:
        """The ONNX name to read ``value`` from; emits a constant's initializer on first use."""
        if value.const is None:
            return value.name
        key = (value.name, value.nchw)
        if key not in self._const_names:
            array = value.const.transpose(NHWC_TO_NCHW) if value.nchw else value.const
            self._const_names[key] = self.initializer(value.name, array)
        return self._const_names[key]

    def to_tf_layout(self, value: _Value) -> _Value:
        """The value with its ONNX layout equal to the TF one (a Transpose back if it was NCHW)."""
        if not value.nchw:
            return value
        if value.const is not None:
            return replace(value, nchw=False)
        out = self.op("Transpose", [value.name], f"{value.name}/to_nhwc", perm=list(NCHW_TO_NHWC))
        return _Value(out, value.shape)

    def to_nchw(self, value: _Value) -> _Value:
        """The 4-d value laid out NCHW (constants are transposed when emitted, tensors by a node)."""
        if value.nchw:
            return value
        if value.rank != 4:
            raise TfjsConversionError(f"{value.name}: expected a 4-d NHWC tensor, got shape {value.shape}")
        if value.const is not None:
            return replace(value, nchw=True)
        out = self.op("Transpose", [value.name], f"{value.name}/to_nchw", perm=list(NHWC_TO_NCHW))
        return _Value(out, value.shape, nchw=True)

    def align(self, a: _Value, b: _Value) -> tuple[_Value, _Value]:
        """Bring two operands of an element-wise op to one layout, moving constants rather than tensors."""
        if a.nchw == b.nchw:
            return a, b
        if b.nchw:
            b, a = self.align(b, a)
            return a, b
        # ``a`` is NCHW, ``b`` is in TF layout.
        if b.rank == 0:
            return a, b  # a scalar broadcasts the same way in either layout
        if b.const is not None and b.rank is not None and b.rank <= 4:
            # TF broadcasting aligns trailing axes: [C] means [1, 1, 1, C] in NHWC.
            padded = b.const.reshape((1,) * (4 - b.rank) + b.const.shape)
            return a, replace(b, const=padded, shape=padded.shape, nchw=True)
        if b.rank == 4:
            return a, self.to_nchw(b)
        return self.to_tf_layout(a), b


# ----------------------------------------------------------------------------- op translators

#: A translator turns one TF node (with its translated inputs) into ONNX nodes; returns its output.
Translator = Callable[[_Builder, TfNode, list[_Value]], _Value]
_TRANSLATORS: dict[str, Translator] = {}


def _translates(*ops: str) -> Callable[[Translator], Translator]:
    def register(fn: Translator) -> Translator:
        for op in ops:
            _TRANSLATORS[op] = fn
        return fn

    return register


def _fail(node: TfNode, message: str) -> TfjsConversionError:
    return TfjsConversionError(f"node {node.name!r} ({node.op}): {message}")


def _constant(node: TfNode, inputs: list[_Value], index: int, what: str) -> np.ndarray:
    """An input that must be known at conversion time (a kernel, axes, paddings, a shape)."""
    if index >= len(inputs):
        raise _fail(node, f"missing input {index} ({what})")
    if inputs[index].const is None:
        raise _fail(node, f"the {what} must be a constant (got computed tensor {inputs[index].name!r})")
    return inputs[index].const


def _expect_inputs(node: TfNode, inputs: list[_Value], count: int) -> None:
    if len(inputs) != count:
        raise _fail(node, f"expected {count} inputs, got {len(inputs)}")


def _broadcast_shape(a: Shape | None, b: Shape | None) -> Shape | None:
    """Numpy/TF broadcasting of shapes with unknown (None) dims."""
    if a is None or b is None:
        return None
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    return tuple(y if x == 1 else x if y == 1 else (x if x is not None else y) for x, y in zip(a, b))


def _fused_parts(node: TfNode, inputs: list[_Value], base_inputs: int) -> tuple[list[str], list[_Value]]:
    """For ``_Fused*`` ops: the ops fused after the main one, and their extra arguments."""
    if not node.op.startswith("_Fused"):
        _expect_inputs(node, inputs, base_inputs)
        return [], []
    fused = node.strings("fused_ops")
    args = inputs[base_inputs:]
    if len(args) != node.integer("num_args", len(args)):
        raise _fail(node, f"num_args says {node.integer('num_args', 0)} but {len(args)} extra inputs given")
    return fused, list(args)


def _apply_fused(b: _Builder, node: TfNode, value: _Value, fused: list[str], args: list[_Value]) -> _Value:
    """Translate a fused op's epilogue (``BiasAdd`` then an activation) as separate ONNX nodes."""
    for op in fused:
        if op == "BiasAdd":
            x, bias = b.align(value, args.pop(0))
            out = b.op("Add", [b.materialize(x), b.materialize(bias)], f"{node.name}/bias_add")
            value = _Value(out, value.shape, nchw=x.nchw)
        elif op in _ACTIVATIONS:
            alpha = args.pop(0) if op == "Prelu" else None
            value = _activation(b, node, op, value, alpha)
        else:
            raise _fail(
                node, f"unsupported fused op {op!r} (supported: BiasAdd, {', '.join(sorted(_ACTIVATIONS))})"
            )
    return value


_BINARY = {
    "Add": "Add",
    "AddV2": "Add",
    "BiasAdd": "Add",
    "Sub": "Sub",
    "Mul": "Mul",
    "RealDiv": "Div",
    "Maximum": "Max",
    "Minimum": "Min",
}


@_translates(*_BINARY)
def _binary(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 2)
    if node.op == "BiasAdd" and node.string("data_format", "NHWC") != "NHWC":
        raise _fail(node, "only NHWC data_format is supported")
    x, y = b.align(inputs[0], inputs[1])
    out = b.op(_BINARY[node.op], [b.materialize(x), b.materialize(y)], node.name)
    return _Value(out, _broadcast_shape(inputs[0].shape, inputs[1].shape), nchw=x.nchw or y.nchw)


#: Activations, standalone or fused: TF name -> ONNX op (Relu6 and Prelu need extra inputs).
_ACTIVATIONS = {
    "Relu": "Relu",
    "Relu6": "Clip",
    "Elu": "Elu",
    "Selu": "Selu",
    "LeakyRelu": "LeakyRelu",
    "Prelu": "PRelu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
}


def _activation(b: _Builder, node: TfNode, op: str, x: _Value, alpha: _Value | None = None) -> _Value:
    """One element-wise activation; keeps the input's layout."""
    hint = node.name if op == node.op else f"{node.name}/{op.lower()}"
    inputs, attrs = [b.materialize(x)], {}
    if op == "Relu6":
        inputs += [b.initializer(f"{hint}/min", np.float32(0)), b.initializer(f"{hint}/max", np.float32(6))]
    elif op == "LeakyRelu":
        attrs["alpha"] = node.number("leakyrelu_alpha" if node.op.startswith("_Fused") else "alpha", 0.2)
    elif op == "Prelu":
        if alpha is None:
            raise _fail(node, "Prelu needs an alpha input")
        x, alpha = b.align(x, alpha)
        inputs = [b.materialize(x), b.materialize(alpha)]
    out = b.op(_ACTIVATIONS[op], inputs, hint, **attrs)
    return _Value(out, x.shape, nchw=x.nchw)


@_translates("Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Prelu")
def _unary_activation(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 2 if node.op == "Prelu" else 1)
    return _activation(b, node, node.op, inputs[0], inputs[1] if node.op == "Prelu" else None)


@_translates("Identity", "Snapshot", "StopGradient")
def _identity(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 1)
    return inputs[0]


def _spatial(node: TfNode, key: str) -> tuple[int, int]:
    """(height, width) of a 4-element NHWC attribute such as ``strides``; batch/channel must be 1."""
    values = node.ints(key, (1, 1, 1, 1))
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise _fail(node, f"{key} {values} unsupported (need [1, h, w, 1])")
    return values[1], values[2]


def _conv_padding(
    node: TfNode,
    x_shape: Shape | None,
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> tuple[list[int], tuple[int | None, int | None]]:
    """ONNX ``pads`` [top, left, bottom, right] and the output (height, width) of a TF convolution.

    TF ``SAME`` gives ``ceil(size / stride)`` outputs and puts the odd pixel of padding at the
    bottom/right; it depends on the input size, which must therefore be known here.
    """
    padding = node.string("padding", "VALID")
    sizes = (x_shape[1], x_shape[2]) if x_shape is not None and len(x_shape) == 4 else (None, None)
    begins, ends, outs = [], [], []
    for axis, (size, k, stride, dilation) in enumerate(zip(sizes, kernel_hw, strides, dilations)):
        span = (k - 1) * dilation + 1
        if padding == "SAME":
            if size is None:
                raise _fail(node, "SAME padding needs the input's height and width, which are unknown here")
            total = max((-(-size // stride) - 1) * stride + span - size, 0)
            begin, end = total // 2, total - total // 2
        elif padding == "VALID":
            begin = end = 0
        elif padding == "EXPLICIT":
            explicit = node.ints("explicit_paddings")
            begin, end = explicit[2 + 2 * axis], explicit[3 + 2 * axis]
        else:
            raise _fail(node, f"padding {padding!r} unsupported")
        begins.append(begin)
        ends.append(end)
        outs.append(None if size is None else (size + begin + end - span) // stride + 1)
    return begins + ends, (outs[0], outs[1])


@_translates("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "_FusedDepthwiseConv2dNative")
def _conv2d(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    if node.string("data_format", "NHWC") != "NHWC":
        raise _fail(node, "only NHWC data_format is supported")
    fused, args = _fused_parts(node, inputs, 2)
    x, kernel = inputs[0], _constant(node, inputs, 1, "filter")
    if kernel.ndim != 4:
        raise _fail(node, f"filter of shape {kernel.shape} is not 4-d")
    kh, kw, k_in, k_out = kernel.shape
    in_channels = x.shape[3] if x.rank == 4 and x.shape[3] is not None else k_in
    if "Depthwise" in node.op:
        # TF [kh, kw, C, M] -> ONNX [C*M, 1, kh, kw], group C: output channel c*M + m, as in TF.
        weight = kernel.transpose(2, 3, 0, 1).reshape(k_in * k_out, 1, kh, kw)
        group, out_channels = k_in, k_in * k_out
    else:
        # TF [kh, kw, I, O] -> ONNX [O, I, kh, kw]; an input with more channels than I is grouped.
        if in_channels % k_in:
            raise _fail(node, f"input channels {in_channels} not a multiple of filter channels {k_in}")
        weight = kernel.transpose(3, 2, 0, 1)
        group, out_channels = in_channels // k_in, k_out
    strides, dilations = _spatial(node, "strides"), _spatial(node, "dilations")
    pads, (out_h, out_w) = _conv_padding(node, x.shape, (kh, kw), strides, dilations)
    conv_inputs = [
        b.materialize(b.to_nchw(x)),
        b.initializer(f"{node.name}/weight", weight.astype(np.float32)),
    ]
    if fused[:1] == ["BiasAdd"] and args[0].const is not None and args[0].const.ndim == 1:
        conv_inputs.append(b.initializer(f"{node.name}/bias", args[0].const.astype(np.float32)))
        fused, args = fused[1:], args[1:]
    out = b.op(
        "Conv",
        conv_inputs,
        node.name,
        kernel_shape=[kh, kw],
        strides=list(strides),
        dilations=list(dilations),
        pads=pads,
        group=group,
    )
    batch = x.shape[0] if x.rank == 4 else None
    return _apply_fused(b, node, _Value(out, (batch, out_h, out_w, out_channels), nchw=True), fused, args)


@_translates("MatMul", "_FusedMatMul")
def _matmul(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    fused, args = _fused_parts(node, inputs, 2)
    a, w = b.to_tf_layout(inputs[0]), b.to_tf_layout(inputs[1])
    if a.rank != 2 or w.rank != 2:
        raise _fail(node, f"only 2-d MatMul is supported (shapes {a.shape} and {w.shape})")
    trans_a, trans_b = node.flag("transpose_a"), node.flag("transpose_b")
    gemm_inputs = [b.materialize(a), b.materialize(w)]
    if fused[:1] == ["BiasAdd"] and args[0].rank == 1:
        gemm_inputs.append(b.materialize(args[0]))  # Gemm's C broadcasts a [N] bias over rows
        fused, args = fused[1:], args[1:]
    out = b.op("Gemm", gemm_inputs, node.name, transA=int(trans_a), transB=int(trans_b))
    shape = (a.shape[1 if trans_a else 0], w.shape[0 if trans_b else 1])
    return _apply_fused(b, node, _Value(out, shape), fused, args)


#: TF reductions -> ONNX ops that (at opset 17) take ``axes`` as an attribute.
_REDUCTIONS = {"Mean": "ReduceMean", "Max": "ReduceMax", "Min": "ReduceMin"}


@_translates(*_REDUCTIONS)
def _reduce(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 2)
    x = inputs[0]
    if x.rank is None:
        raise _fail(node, "input rank unknown")
    axes = sorted({int(a) % x.rank for a in np.ravel(_constant(node, inputs, 1, "reduction axes"))})
    keep = node.flag("keep_dims")
    onnx_axes = [NCHW_TO_NHWC[a] for a in axes] if x.nchw else axes
    out = b.op(_REDUCTIONS[node.op], [b.materialize(x)], node.name, axes=onnx_axes, keepdims=int(keep))
    if keep:
        return _Value(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)), nchw=x.nchw)
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if not x.nchw:
        return _Value(out, shape)
    # The surviving axes come out in NCHW order; they are in TF order already unless C survives
    # together with H or W (e.g. a mean over the batch only), which takes a Transpose.
    remaining = [a for a in NHWC_TO_NCHW if a not in axes]
    if remaining != sorted(remaining):
        out = b.op("Transpose", [out], f"{node.name}/to_tf", perm=[int(i) for i in np.argsort(remaining)])
    return _Value(out, shape)


@_translates("Pad", "PadV2", "MirrorPad")
def _pad(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 3 if node.op == "PadV2" else 2)
    x = inputs[0]
    paddings = _constant(node, inputs, 1, "paddings").astype(np.int64).reshape(-1, 2)
    if x.rank is not None and len(paddings) != x.rank:
        raise _fail(node, f"paddings for rank {len(paddings)}, input rank {x.rank}")
    if (paddings < 0).any():
        raise _fail(node, "negative paddings are not supported")
    mode = "constant"
    if node.op == "MirrorPad":
        tf_mode = node.string("mode", "REFLECT")
        if tf_mode != "REFLECT":
            raise _fail(node, f"MirrorPad mode {tf_mode} unsupported (ONNX has REFLECT only)")
        mode = "reflect"
    ordered = paddings[list(NHWC_TO_NCHW)] if x.nchw else paddings
    pad_inputs = [
        b.materialize(x),
        b.initializer(f"{node.name}/pads", np.concatenate([ordered[:, 0], ordered[:, 1]])),
    ]
    if node.op == "PadV2":
        fill = np.asarray(_constant(node, inputs, 2, "constant value"), np.float32).reshape(())
        pad_inputs.append(b.initializer(f"{node.name}/value", fill))
    out = b.op("Pad", pad_inputs, node.name, mode=mode)
    shape = None
    if x.shape is not None:
        shape = tuple(None if d is None else d + int(p.sum()) for d, p in zip(x.shape, paddings))
    return _Value(out, shape, nchw=x.nchw)


def _reshaped(shape: Shape | None, target: np.ndarray) -> Shape | None:
    """The output shape of a Reshape; a -1 stays unknown unless the whole input size is known."""
    dims: list[int | None] = [int(d) for d in target]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        total = None if shape is None or None in shape else math.prod(shape)
        dims[dims.index(-1)] = total // known if total is not None and known else None
    return tuple(dims)


@_translates("Reshape")
def _reshape(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 2)
    # Reshape follows the memory order of the TF layout: an NCHW value must go back first.
    x = b.to_tf_layout(inputs[0])
    target = _constant(node, inputs, 1, "shape").astype(np.int64).ravel()
    if (target == 0).any():
        raise _fail(node, "a 0 in the target shape means 'empty' in TF but 'copy' in ONNX; unsupported")
    out = b.op("Reshape", [b.materialize(x), b.initializer(f"{node.name}/shape", target)], node.name)
    return _Value(out, _reshaped(x.shape, target))


@_translates("Softmax")
def _softmax(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    _expect_inputs(node, inputs, 1)
    x = b.to_tf_layout(inputs[0])
    return _Value(b.op("Softmax", [b.materialize(x)], node.name, axis=-1), x.shape)


@_translates("ConcatV2")
def _concat(b: _Builder, node: TfNode, inputs: list[_Value]) -> _Value:
    if len(inputs) < 2:
        raise _fail(node, "needs at least one tensor and the axis")
    parts = inputs[:-1]
    rank = parts[0].rank
    if rank is None:
        raise _fail(node, "input rank unknown")
    axis = int(_constant(node, inputs, len(inputs) - 1, "axis")) % rank
    nchw = rank == 4 and any(p.nchw for p in parts)
    parts = [b.to_nchw(p) if nchw else b.to_tf_layout(p) for p in parts]
    out = b.op(
        "Concat", [b.materialize(p) for p in parts], node.name, axis=NCHW_TO_NHWC[axis] if nchw else axis
    )
    sizes = [p.shape[axis] if p.shape is not None else None for p in parts]
    shape = list(parts[0].shape)
    shape[axis] = None if None in sizes else sum(sizes)
    return _Value(out, tuple(shape), nchw=nchw)


#: The TF ops this translator knows, besides ``Placeholder`` and ``Const``.
SUPPORTED_OPS = frozenset(_TRANSLATORS)


# ----------------------------------------------------------------------------- simplification

# TF graphs spell some activations as several element-wise nodes: Keras' ReLU6 as
# ``Relu -> Minimum(6) -> Maximum(0)`` (tf.clip_by_value), MXNet's PReLU as
# ``Maximum(x, 0) + gamma * Minimum(x, 0)``, and batch norms frozen after a convolution as a
# per-channel ``Mul`` and ``Add``. onnxruntime fuses a Conv with a following Clip or Relu, but not
# with Min/Max chains, and each unfused node is one more pass over the largest tensors of the
# network (faceres ran about 3x slower unfused in onnxruntime; the torch interpreter of
# fvr_audit.convert.onnx_to_torch fuses nothing itself). The activation rewrites are exact; folding
# a Mul/Add into the conv weights changes float32 rounding only (relative 1e-7).


def _scalar_const(consts: Mapping[str, np.ndarray], name: str) -> float | None:
    value = consts.get(name)
    return float(value.reshape(())) if value is not None and value.size == 1 else None


def _split_const(node: onnx.NodeProto, consts: Mapping[str, np.ndarray]) -> tuple[str, str, float] | None:
    """(tensor input, constant input, its value) of a binary node with one scalar constant, else None."""
    if len(node.input) != 2:
        return None
    for var, const in ((0, 1), (1, 0)):
        value = _scalar_const(consts, node.input[const])
        if value is not None and node.input[var] not in consts:
            return node.input[var], node.input[const], value
    return None


def simplify_graph(model: onnx.ModelProto) -> int:
    """Fold per-channel affine ops into convolutions and fuse clip-by-value and PReLU patterns.

    Works on ``model`` in place; returns the number of nodes removed.
    """
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    original = set(consts)
    nodes = list(graph.node)
    before = len(nodes)
    outputs = {o.name for o in graph.output}
    while True:  # each pass folds one Mul/Add per conv: Conv -> Mul -> Add takes two
        folded = _fold_affine_into_conv(nodes, consts, outputs)
        if len(folded) == len(nodes):
            break
        nodes = folded
    for rewrite in (_fuse_pad_into_conv, _fuse_prelu, _fuse_clip, _fuse_relu_into_clip):
        nodes = rewrite(nodes, consts, outputs)
    used = {name for node in nodes for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    # Constants created by the rewrites (folded weights, Clip bounds).
    initializers += [numpy_helper.from_array(consts[n], n) for n in sorted(used & (set(consts) - original))]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return before - len(nodes)


def _single_use(nodes: Sequence[onnx.NodeProto], outputs: set[str]) -> Callable[[str], bool]:
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    return lambda name: uses.get(name, 0) == 1 and name not in outputs


def _producers(nodes: Sequence[onnx.NodeProto]) -> dict[str, onnx.NodeProto]:
    return {out: node for node in nodes for out in node.output}


def _rebuild(
    nodes: Sequence[onnx.NodeProto], replaced: dict[int, onnx.NodeProto], removed: set[int]
) -> list[onnx.NodeProto]:
    return [replaced.get(id(n), n) for n in nodes if id(n) not in removed]


def _clip_bound(consts: dict[str, np.ndarray], name: str) -> str:
    """A rank-0 float32 constant with the value of constant ``name`` (Clip bounds must be scalars)."""
    value = consts[name]
    if value.ndim == 0 and value.dtype == np.float32:
        return name
    scalar = f"{name}/scalar"
    while scalar in consts and consts[scalar].ndim:
        scalar += "_"
    consts[scalar] = value.astype(np.float32).reshape(())
    return scalar


def _new_const(consts: dict[str, np.ndarray], hint: str, value: np.ndarray) -> str:
    name = hint
    while name in consts:
        name += "_"
    consts[name] = value
    return name


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """``value`` as a [channels] vector when it broadcasts over an NCHW tensor along C only."""
    if value.ndim > 4 or value.dtype != np.float32:
        return None
    shape = (1,) * (4 - value.ndim) + value.shape
    if shape[0] != 1 or shape[2:] != (1, 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1), (channels,))


def _fold_affine_into_conv(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], outputs: set[str]
) -> list[onnx.NodeProto]:
    """``Mul(Conv(x, W, B), s)`` -> ``Conv(x, W*s, B*s)`` and ``Add(Conv(x, W, B), a)`` -> ``Conv(x, W, B+a)``."""
    producer, single_use = _producers(nodes), _single_use(nodes, outputs)
    replaced, removed = {}, set()
    for node in nodes:
        if node.op_type not in ("Mul", "Add") or len(node.input) != 2:
            continue
        for var, const in ((0, 1), (1, 0)):
            conv = producer.get(node.input[var])
            if (
                conv is None
                or conv.op_type != "Conv"
                or id(conv) in removed
                or node.input[const] not in consts
            ):
                continue
            if not single_use(node.input[var]) or conv.input[1] not in consts:
                continue
            weight = consts[conv.input[1]]
            bias = (
                consts.get(conv.input[2])
                if len(conv.input) > 2 and conv.input[2]
                else np.zeros(len(weight), np.float32)
            )
            vector = _per_channel(consts[node.input[const]], len(weight))
            if vector is None or bias is None:
                continue
            if node.op_type == "Mul":
                weight = weight * vector.reshape(-1, *([1] * (weight.ndim - 1)))
                bias = bias * vector
            else:
                bias = bias + vector
            inputs = [
                conv.input[0],
                _new_const(consts, f"{conv.name}/folded_weight", weight.astype(np.float32)),
                _new_const(consts, f"{conv.name}/folded_bias", bias.astype(np.float32)),
            ]
            attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
            replaced[id(node)] = helper.make_node("Conv", inputs, list(node.output), name=conv.name, **attrs)
            removed.add(id(conv))
            break
    return _rebuild(nodes, replaced, removed)


def _fuse_pad_into_conv(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], outputs: set[str]
) -> list[onnx.NodeProto]:
    """``Conv(Pad(x, zeros on H and W only))`` -> ``Conv(x)`` with the padding added to its ``pads``.

    MXNet-born graphs (mobileface) pad explicitly before every VALID convolution.
    """
    producer, single_use = _producers(nodes), _single_use(nodes, outputs)
    replaced, removed = {}, set()
    for conv in nodes:
        pad = producer.get(conv.input[0]) if conv.op_type == "Conv" else None
        if pad is None or pad.op_type != "Pad" or not single_use(conv.input[0]) or len(pad.input) < 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        mode = {a.name: helper.get_attribute_value(a) for a in pad.attribute}.get("mode", b"constant")
        fill = _scalar_const(consts, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0.0
        pads = consts.get(pad.input[1])
        if (
            mode not in (b"constant", "constant")
            or fill != 0.0
            or pads is None
            or pads.size != 8
            or len(pad.input) > 3
        ):
            continue
        begin, end = pads[:4], pads[4:]
        if (
            begin[0]
            or begin[1]
            or end[0]
            or end[1]
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            continue  # padding the batch or channels is not a convolution's business
        top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
        attrs["pads"] = [int(top + begin[2]), int(left + begin[3]), int(bottom + end[2]), int(right + end[3])]
        replaced[id(conv)] = helper.make_node(
            "Conv", [pad.input[0], *conv.input[1:]], list(conv.output), name=conv.name, **attrs
        )
        removed.add(id(pad))
    return _rebuild(nodes, replaced, removed)


def _fuse_clip(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], outputs: set[str]
) -> list[onnx.NodeProto]:
    """``Max(Min(x, hi), lo)`` or ``Min(Max(x, lo), hi)`` with scalar bounds -> ``Clip(x, lo, hi)``."""
    producer, single_use = _producers(nodes), _single_use(nodes, outputs)
    replaced, removed = {}, set()
    for outer in nodes:
        if outer.op_type not in ("Min", "Max") or id(outer) in removed:
            continue
        outer_split = _split_const(outer, consts)
        inner = producer.get(outer_split[0]) if outer_split else None
        if (
            inner is None
            or {inner.op_type, outer.op_type} != {"Min", "Max"}
            or not single_use(outer_split[0])
        ):
            continue
        inner_split = _split_const(inner, consts)
        if inner_split is None:
            continue
        low, high = (outer_split, inner_split) if outer.op_type == "Max" else (inner_split, outer_split)
        if low[2] > high[2]:
            continue  # not a clip: the result would be a constant
        inputs = [inner_split[0], _clip_bound(consts, low[1]), _clip_bound(consts, high[1])]
        replaced[id(outer)] = helper.make_node("Clip", inputs, list(outer.output), name=outer.name)
        removed.add(id(inner))
    return _rebuild(nodes, replaced, removed)


def _fuse_relu_into_clip(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], outputs: set[str]
) -> list[onnx.NodeProto]:
    """``Clip(Relu(x), lo >= 0, hi)`` -> ``Clip(x, lo, hi)``: the Relu changes nothing the Clip keeps."""
    producer, single_use = _producers(nodes), _single_use(nodes, outputs)
    replaced, removed = {}, set()
    for clip in nodes:
        if clip.op_type != "Clip" or len(clip.input) < 2:
            continue
        relu = producer.get(clip.input[0])
        lo = _scalar_const(consts, clip.input[1])
        if relu is None or relu.op_type != "Relu" or lo is None or lo < 0 or not single_use(clip.input[0]):
            continue
        replaced[id(clip)] = helper.make_node(
            "Clip", [relu.input[0], *clip.input[1:]], list(clip.output), name=clip.name
        )
        removed.add(id(relu))
    return _rebuild(nodes, replaced, removed)


def _fuse_prelu(
    nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray], outputs: set[str]
) -> list[onnx.NodeProto]:
    """``Add(Max(x, 0), Mul(gamma, Min(x, 0)))`` (any operand order) -> ``PRelu(x, gamma)``."""
    producer, single_use = _producers(nodes), _single_use(nodes, outputs)
    replaced, removed = {}, set()
    for add in nodes:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        parts = [producer.get(name) for name in add.input]
        if any(p is None for p in parts) or not all(single_use(name) for name in add.input):
            continue
        by_op = {p.op_type: p for p in parts}
        positive, scaled = by_op.get("Max"), by_op.get("Mul")
        if positive is None or scaled is None:
            continue
        positive_split = _split_const(positive, consts)
        mul_inputs = [(scaled.input[i], scaled.input[1 - i]) for i in (0, 1)]
        match = None
        for gamma, negative_name in mul_inputs:
            negative = producer.get(negative_name)
            if (
                gamma in consts
                and negative is not None
                and negative.op_type == "Min"
                and single_use(negative_name)
            ):
                match = (gamma, negative)
        if positive_split is None or positive_split[2] != 0 or match is None:
            continue
        gamma, negative = match
        negative_split = _split_const(negative, consts)
        if negative_split is None or negative_split[0] != positive_split[0] or negative_split[2] != 0:
            continue
        replaced[id(add)] = helper.make_node(
            "PRelu", [positive_split[0], gamma], list(add.output), name=add.name
        )
        removed.update({id(positive), id(scaled), id(negative)})
    return _rebuild(nodes, replaced, removed)


# ----------------------------------------------------------------------------- the conversion


def _needed_nodes(graph: TfjsGraph, roots: Iterable[str]) -> list[str]:
    """The nodes the ``roots`` depend on, in dependency order (iterative post-order DFS)."""

    def producers(name: str) -> Iterable[str]:
        for ref in graph.nodes[name].inputs:
            producer, _ = split_tensor_ref(ref)
            if producer not in graph.nodes:
                raise TfjsConversionError(f"node {name!r}: input {ref!r} is not a node of the graph")
            yield producer

    order: list[str] = []
    seen: set[str] = set()
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(producers(root)))]
        while stack:
            name, pending = stack[-1]
            for producer in pending:
                if producer not in seen:
                    seen.add(producer)
                    stack.append((producer, iter(producers(producer))))
                    break
            else:
                stack.pop()
                order.append(name)
    return order


def _placeholder_shape(node: TfNode) -> Shape | None:
    shape = node.attr.get("shape", {}).get("shape", {})
    if shape.get("unknownRank"):
        return None
    return tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape.get("dim", []))


def _onnx_dims(shape: Shape | None) -> list[int | str | None] | None:
    if shape is None:
        return None
    return ["batch" if i == 0 and d is None else d for i, d in enumerate(shape)]


def _normalize_outputs(outputs: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(outputs, Mapping):
        pairs = list(outputs.items())
    else:
        pairs = [(split_tensor_ref(ref)[0], ref) for ref in outputs]
    if not pairs:
        raise TfjsConversionError("name at least one output node")
    result = {}
    for onnx_name, ref in pairs:
        node, index = split_tensor_ref(ref)
        if index:
            raise TfjsConversionError(f"output {ref!r}: only output 0 of a node can be exported")
        result[onnx_name] = node
    return result


def convert_tfjs_to_onnx(
    model: str | Path | TfjsGraph,
    outputs: Sequence[str] | Mapping[str, str],
    *,
    graph_name: str = "tfjs_graph",
    metadata: Mapping[str, str] | None = None,
    simplify: bool = True,
) -> onnx.ModelProto:
    """Translate a tfjs graph model into an ONNX model computing the named ``outputs``.

    ``outputs``: TF node names (``"global_pooling/Mean"``, ``":0"`` accepted), exported under
    the same names, or a mapping ``{onnx_output_name: tf_node_name}``. Any node can be an output;
    nodes the outputs do not depend on are left out. Graph inputs keep the Placeholder names and
    the TF layout (NHWC images stay NHWC). ``simplify`` folds per-channel Mul/Add into convolutions and
    fuses multi-node activations into Clip and PRelu (:func:`simplify_graph`; much faster). Raises
    :class:`TfjsConversionError` naming the op and node of anything it cannot translate.
    """
    graph = model if isinstance(model, TfjsGraph) else load_tfjs_graph(model)
    output_map = _normalize_outputs(outputs)
    for tf_name in output_map.values():
        if tf_name not in graph.nodes:
            raise TfjsConversionError(f"output {tf_name!r} is not a node of the graph")
    order = _needed_nodes(graph, output_map.values())
    placeholders = [name for name in order if graph.nodes[name].op == "Placeholder"]
    builder = _Builder(reserved=[*placeholders, *output_map])

    values: dict[str, _Value] = {}
    graph_inputs = []
    for name in order:
        node = graph.nodes[name]
        if node.op == "Placeholder":
            dtype = node.attr.get("dtype", {}).get("type", "DT_FLOAT")
            if dtype not in _TF_TO_ONNX_DTYPE:
                raise _fail(node, f"input dtype {dtype} unsupported")
            shape = _placeholder_shape(node)
            graph_inputs.append(
                helper.make_tensor_value_info(name, _TF_TO_ONNX_DTYPE[dtype], _onnx_dims(shape))
            )
            values[name] = _Value(name, shape)
        elif node.op == "Const":
            if name not in graph.weights:
                raise _fail(node, "constant has no entry in the weightsManifest")
            values[name] = _Value(name, graph.weights[name].shape, const=graph.weights[name])
        else:
            translate = _TRANSLATORS.get(node.op)
            if translate is None:
                raise _fail(
                    node, f"unsupported op {node.op!r}; supported: {', '.join(sorted(SUPPORTED_OPS))}"
                )
            args = []
            for ref in node.inputs:
                producer, index = split_tensor_ref(ref)
                if index:
                    raise _fail(node, f"input {ref!r} reads output {index} of a multi-output op; unsupported")
                args.append(values[producer])
            values[name] = translate(builder, node, args)

    graph_outputs = []
    for onnx_name, tf_name in output_map.items():
        value = builder.to_tf_layout(values[tf_name])
        builder.nodes.append(
            helper.make_node("Identity", [builder.materialize(value)], [onnx_name], name=onnx_name)
        )
        elem = (
            TensorProto.FLOAT if value.const is None else helper.np_dtype_to_tensor_dtype(value.const.dtype)
        )
        graph_outputs.append(helper.make_tensor_value_info(onnx_name, elem, _onnx_dims(value.shape)))

    onnx_graph = helper.make_graph(
        builder.nodes, graph_name, graph_inputs, graph_outputs, builder.initializers
    )
    result = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="fvr-audit tfjs_to_onnx",
        ir_version=IR_VERSION,
    )
    props = {"source_format": "tfjs graph-model", "tfjs_outputs": json.dumps(output_map)}
    for key in ("generatedBy", "convertedBy"):
        if key in graph.meta:
            props[f"tfjs_{key}"] = str(graph.meta[key])
    props.update(metadata or {})
    helper.set_model_props(result, props)
    if simplify:
        simplify_graph(result)
    onnx.checker.check_model(result)
    return result
