"""Run an ONNX graph as a ``torch.nn.Module``, so that gradients flow through it.

White-box attacks need the gradient of an embedding with respect to the input image. The
recognizers this project ships are ONNX files (some translated from tfjs, see
:mod:`fvr_audit.convert.tfjs_to_onnx`), and users bring their own ONNX models; this module
interprets such a graph node by node with torch operations instead of converting it to Python
source. It needs torch only (``onnx2torch`` would pull torchvision and, with it, a CUDA build).

Coverage: the ops the tfjs translator emits and those common in face-recognition exports
(ResNet/MobileNet/ArcFace-style graphs from PyTorch, MXNet or TF), including the dynamic
reshape idiom ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` of PyTorch exports. An op
outside the table raises :class:`OnnxToTorchError` listing every unsupported op at load time,
never halfway through a forward pass. Inference semantics only (BatchNormalization uses its
running statistics, Dropout is the identity). Constants become buffers, so ``.to(device)`` and
``.double()`` move them; no parameter is created (the module is not meant to be trained).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

from fvr_audit.errors import InputError


class OnnxToTorchError(InputError):
    """The ONNX graph uses ops or attributes this interpreter does not cover."""


Tensor = torch.Tensor
#: One op: (inputs, attributes, opset) -> output tensor(s). Absent optional inputs are ``None``.
OpFunction = Callable[[list[Tensor | None], dict[str, Any], int], Tensor | tuple[Tensor, ...]]
_OPS: dict[str, OpFunction] = {}


def _op(*names: str) -> Callable[[OpFunction], OpFunction]:
    def register(fn: OpFunction) -> OpFunction:
        for name in names:
            _OPS[name] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    """ONNX op types (default domain) this interpreter runs."""
    return sorted(_OPS)


def _ints(value: Tensor | None) -> list[int]:
    """A shape-like input (an int64 tensor) as Python ints."""
    return [] if value is None else [int(v) for v in value.reshape(-1).tolist()]


# ----------------------------------------------------------------------------- element-wise


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> OpFunction:
    return lambda inputs, attrs, opset: fn(inputs[0], inputs[1])


def _divide(a: Tensor, b: Tensor) -> Tensor:
    # ONNX integer division truncates toward zero; torch's "/" would return floats.
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


_op("Add")(_binary(torch.add))
_op("Sub")(_binary(torch.sub))
_op("Mul")(_binary(torch.mul))
_op("Div")(_binary(_divide))
_op("Pow")(_binary(torch.pow))
_op("Min")(lambda inputs, attrs, opset: functools.reduce(torch.minimum, inputs))
_op("Max")(lambda inputs, attrs, opset: functools.reduce(torch.maximum, inputs))
_op("Sum")(lambda inputs, attrs, opset: functools.reduce(torch.add, inputs))

_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Erf": torch.erf,
    "Softplus": F.softplus,
    "Identity": lambda x: x,
    "Dropout": lambda x: x,  # inference
}
for _name, _fn in _UNARY.items():
    _op(_name)(lambda inputs, attrs, opset, fn=_fn: fn(inputs[0]))


@_op("PRelu")
def _prelu(inputs, attrs, opset):
    x, slope = inputs
    # ONNX broadcasts the slope numpy-style; one slope per channel ([1, C, 1, 1], [C, 1, 1]) or a
    # single one can use torch's fused kernel.
    padded = (1,) * (x.dim() - slope.dim()) + tuple(slope.shape)
    if x.dim() >= 2 and padded[0] == 1 and all(d == 1 for d in padded[2:]) and padded[1] in (1, x.shape[1]):
        return F.prelu(x, slope.reshape(-1))
    return torch.where(x >= 0, x, x * slope)


@_op("LeakyRelu")
def _leaky_relu(inputs, attrs, opset):
    return F.leaky_relu(inputs[0], attrs.get("alpha", 0.01))


@_op("Elu")
def _elu(inputs, attrs, opset):
    return F.elu(inputs[0], attrs.get("alpha", 1.0))


@_op("Selu")
def _selu(inputs, attrs, opset):
    alpha, gamma = (
        attrs.get("alpha", 1.67326319217681884765625),
        attrs.get("gamma", 1.05070102214813232421875),
    )
    x = inputs[0]
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@_op("HardSigmoid")
def _hard_sigmoid(inputs, attrs, opset):
    return torch.clamp(attrs.get("alpha", 0.2) * inputs[0] + attrs.get("beta", 0.5), 0, 1)


@_op("Clip")
def _clip(inputs, attrs, opset):
    x = inputs[0]
    if opset < 11:  # bounds were attributes before opset 11
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low = inputs[1] if len(inputs) > 1 else None
        high = inputs[2] if len(inputs) > 2 else None
    # Tensor bounds keep the gradient path exact (clamp passes the gradient inside the range).
    return torch.clamp(x, low, high)


def _softmax(inputs, attrs, opset, log: bool):
    x = inputs[0]
    fn = torch.log_softmax if log else torch.softmax
    if opset >= 13:
        return fn(x, dim=attrs.get("axis", -1))
    # Before opset 13 the input was flattened to 2-d at ``axis`` (default 1) first.
    axis = attrs.get("axis", 1) % x.dim()
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    return fn(flat, dim=1).reshape(x.shape)


_OPS["Softmax"] = lambda inputs, attrs, opset: _softmax(inputs, attrs, opset, log=False)
_OPS["LogSoftmax"] = lambda inputs, attrs, opset: _softmax(inputs, attrs, opset, log=True)


# ----------------------------------------------------------------------------- linear algebra


@_op("MatMul")
def _matmul(inputs, attrs, opset):
    return torch.matmul(inputs[0], inputs[1])


@_op("Gemm")
def _gemm(inputs, attrs, opset):
    a, b = inputs[0], inputs[1]
    if attrs.get("transA", 0):
        a = a.transpose(0, 1)
    if attrs.get("transB", 0):
        b = b.transpose(0, 1)
    y = attrs.get("alpha", 1.0) * (a @ b)
    c = inputs[2] if len(inputs) > 2 else None
    return y if c is None else y + attrs.get("beta", 1.0) * c


def _spatial_padding(
    attrs: dict[str, Any], x: Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int]:
    """ONNX pads [begin..., end...] of a conv or pool, resolving ``auto_pad``."""
    spatial = x.shape[2:]
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins + ends
    if auto_pad == "VALID":
        return [0] * (2 * len(spatial))
    return list(attrs.get("pads", [0] * (2 * len(spatial))))


def _pad_spatial(x: Tensor, pads: list[int], value: float = 0.0) -> tuple[Tensor, list[int]]:
    """Apply asymmetric pads with F.pad; returns the tensor and the symmetric remainder for torch."""
    n = len(pads) // 2
    begins, ends = pads[:n], pads[n:]
    if begins == ends:
        return x, begins
    torch_pads: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):  # F.pad lists the last axis first
        torch_pads += [b, e]
    return F.pad(x, torch_pads, value=value), [0] * n


@_op("Conv")
def _conv(inputs, attrs, opset):
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    dims = weight.dim() - 2
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    x, padding = _pad_spatial(x, _spatial_padding(attrs, x, kernel, strides, dilations))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    return conv(x, weight, bias, strides, padding, dilations, attrs.get("group", 1))


@_op("ConvTranspose")
def _conv_transpose(inputs, attrs, opset):
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if attrs.get("auto_pad", "NOTSET") != "NOTSET" or "output_shape" in attrs:
        raise OnnxToTorchError("ConvTranspose: auto_pad and output_shape are not supported")
    dims = weight.dim() - 2
    pads = list(attrs.get("pads", [0] * (2 * dims)))
    if pads[:dims] != pads[dims:]:
        raise OnnxToTorchError("ConvTranspose: asymmetric pads are not supported")
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[dims]
    return conv(
        x,
        weight,
        bias,
        attrs.get("strides", [1] * dims),
        pads[:dims],
        attrs.get("output_padding", [0] * dims),
        attrs.get("group", 1),
        attrs.get("dilations", [1] * dims),
    )


@_op("BatchNormalization")
def _batch_norm(inputs, attrs, opset):
    x, scale, bias, mean, var = inputs[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))


@_op("InstanceNormalization")
def _instance_norm(inputs, attrs, opset):
    x, scale, bias = inputs
    return F.instance_norm(x, weight=scale, bias=bias, eps=attrs.get("epsilon", 1e-5))


# ----------------------------------------------------------------------------- pooling and reductions


def _pool(inputs, attrs, opset, kind: str):
    x = inputs[0]
    kernel = list(attrs["kernel_shape"])
    dims = len(kernel)
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    pads = _spatial_padding(attrs, x, kernel, strides, dilations)
    ceil = bool(attrs.get("ceil_mode", 0))
    if kind == "max":
        x, padding = _pad_spatial(x, pads, value=-math.inf)
        pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
        return pool(x, kernel, strides, padding, dilations, ceil_mode=ceil)
    include_pad = bool(attrs.get("count_include_pad", 0))
    n = len(pads) // 2
    if pads[:n] != pads[n:]:
        if not include_pad:
            raise OnnxToTorchError("AveragePool: asymmetric pads without count_include_pad are not supported")
        x, padding = _pad_spatial(x, pads)
    else:
        padding = pads[:n]
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
    return pool(x, kernel, strides, padding, ceil_mode=ceil, count_include_pad=include_pad)


_OPS["MaxPool"] = lambda inputs, attrs, opset: _pool(inputs, attrs, opset, "max")
_OPS["AveragePool"] = lambda inputs, attrs, opset: _pool(inputs, attrs, opset, "avg")


@_op("GlobalAveragePool")
def _global_average_pool(inputs, attrs, opset):
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@_op("GlobalMaxPool")
def _global_max_pool(inputs, attrs, opset):
    x = inputs[0]
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


#: ONNX reductions; each moved ``axes`` from attribute to input at some opset.
_REDUCTIONS: dict[str, tuple[Callable[..., Tensor], int]] = {
    "ReduceMean": (torch.mean, 18),
    "ReduceSum": (torch.sum, 13),
    "ReduceMax": (torch.amax, 18),
    "ReduceMin": (torch.amin, 18),
    "ReduceProd": (torch.prod, 18),
    "ReduceL2": (lambda x, dim, keepdim: torch.sqrt(torch.sum(x * x, dim=dim, keepdim=keepdim)), 18),
}


def _reduce(inputs, attrs, opset, name: str):
    fn, axes_as_input_since = _REDUCTIONS[name]
    x = inputs[0]
    axes = (
        _ints(inputs[1] if len(inputs) > 1 else None)
        if opset >= axes_as_input_since
        else attrs.get("axes", [])
    )
    keepdims = bool(attrs.get("keepdims", 1))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    axes = sorted(a % x.dim() for a in axes)
    if name == "ReduceProd":  # torch.prod takes one axis at a time
        for axis in reversed(axes):
            x = torch.prod(x, dim=axis, keepdim=keepdims)
        return x
    return fn(x, dim=axes, keepdim=keepdims)


for _name in _REDUCTIONS:
    _OPS[_name] = lambda inputs, attrs, opset, name=_name: _reduce(inputs, attrs, opset, name)


# ----------------------------------------------------------------------------- shapes


@_op("Flatten")
def _flatten(inputs, attrs, opset):
    x = inputs[0]
    axis = attrs.get("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


@_op("Reshape")
def _reshape(inputs, attrs, opset):
    x, shape = inputs[0], _ints(inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]  # 0 copies the input dim
    return x.reshape(shape)


@_op("Transpose")
def _transpose(inputs, attrs, opset):
    x = inputs[0]
    return x.permute(*attrs.get("perm", list(reversed(range(x.dim())))))


@_op("Concat")
def _concat(inputs, attrs, opset):
    return torch.cat([t for t in inputs if t is not None], dim=attrs["axis"])


@_op("Pad")
def _pad(inputs, attrs, opset):
    x = inputs[0]
    if opset < 11:
        pads, value = list(attrs["pads"]), attrs.get("value", 0.0)
    else:
        pads = _ints(inputs[1])
        value = float(inputs[2]) if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else 0.0
    rank = x.dim()
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(rank))
    n = len(axes)
    begins, ends = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begins[axis % rank], ends[axis % rank] = pads[i], pads[n + i]
    mode = attrs.get("mode", "constant")
    torch_pads: list[int] = []
    for axis in reversed(range(rank)):
        torch_pads += [begins[axis], ends[axis]]
    # Trailing zero pairs are dropped: reflect/replicate in torch only pad the last 1-3 axes.
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        return F.pad(x, torch_pads, value=value)
    return F.pad(x, torch_pads, mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])


@_op("Shape")
def _shape(inputs, attrs, opset):
    shape = list(inputs[0].shape)
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return torch.tensor(shape[start:end], dtype=torch.int64)


@_op("Gather")
def _gather(inputs, attrs, opset):
    data, indices = inputs
    axis = attrs.get("axis", 0) % data.dim()
    indices = torch.where(indices < 0, indices + data.shape[axis], indices)
    out = torch.index_select(data, axis, indices.reshape(-1).long())
    return out.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


@_op("Unsqueeze")
def _unsqueeze(inputs, attrs, opset):
    x = inputs[0]
    axes = _ints(inputs[1]) if opset >= 13 else attrs["axes"]
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


@_op("Squeeze")
def _squeeze(inputs, attrs, opset):
    x = inputs[0]
    axes = (_ints(inputs[1]) if len(inputs) > 1 else []) if opset >= 13 else attrs.get("axes", [])
    if not axes:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return x


@_op("Slice")
def _slice(inputs, attrs, opset):
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(inputs[1]), _ints(inputs[2])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    axes = axes or list(range(len(starts)))
    steps = steps or [1] * len(starts)
    index = [slice(None)] * x.dim()
    reversed_axes = []
    for start, end, axis, step in zip(starts, ends, axes, steps):
        size = x.shape[axis]
        if step == 0:
            raise OnnxToTorchError("Slice: a step of 0 is not allowed")
        if step > 0:
            index[axis] = slice(max(min(start, size), -size), max(min(end, size), -size - 1), step)
            continue
        # Negative steps (ONNX semantics: start clamped to [0, size-1], end to [-1, size-1]);
        # torch has no negative-step slicing, so pick the indices explicitly.
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
        reversed_axes.append((axis, torch.arange(start, end, step, dtype=torch.long, device=x.device)))
    x = x[tuple(index)]
    for axis, picks in reversed_axes:
        x = x.index_select(axis if axis >= 0 else axis + x.dim(), picks)
    return x


@_op("Split")
def _split(inputs, attrs, opset):
    x = inputs[0]
    axis = attrs.get("axis", 0)
    sizes = (
        _ints(inputs[1]) if opset >= 13 and len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    )
    if not sizes:
        parts = attrs.get("num_outputs")
        if parts is None:
            raise OnnxToTorchError("Split: without split sizes, the number of outputs must be known")
        sizes = [math.ceil(x.shape[axis] / parts)] * (parts - 1)
        sizes.append(x.shape[axis] - sum(sizes))
    return tuple(torch.split(x, sizes, dim=axis))


_ONNX_TO_TORCH_DTYPE = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


@_op("Cast")
def _cast(inputs, attrs, opset):
    return inputs[0].to(_ONNX_TO_TORCH_DTYPE[attrs["to"]])


@_op("Constant")
def _constant(inputs, attrs, opset):
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            value = attrs[key]
            return value if isinstance(value, Tensor) else torch.tensor(value)
    raise OnnxToTorchError(f"Constant: attribute {sorted(attrs)} not supported")


@_op("ConstantOfShape")
def _constant_of_shape(inputs, attrs, opset):
    value = attrs.get("value", torch.zeros(1))
    return torch.full(_ints(inputs[0]), value.reshape(()).item(), dtype=value.dtype)


@_op("Expand")
def _expand(inputs, attrs, opset):
    x, shape = inputs[0], _ints(inputs[1])
    # ONNX Expand broadcasts both ways: a 1 in ``shape`` keeps the input's dim.
    return x * torch.ones(shape, dtype=x.dtype, device=x.device)


@_op("Resize", "Upsample")
def _resize(inputs, attrs, opset):
    x = inputs[0]
    mode = attrs.get("mode", "nearest")
    coordinates = attrs.get("coordinate_transformation_mode", "half_pixel" if opset >= 11 else "asymmetric")
    if mode == "nearest" and coordinates == "asymmetric" and attrs.get("nearest_mode", "round_prefer_floor") in ("floor", "round_prefer_floor"):
        options = {"mode": "nearest"}
    elif mode == "linear" and x.dim() in (3, 4, 5) and coordinates in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        kind = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
        options = {"mode": kind, "align_corners": coordinates == "align_corners"}
    else:
        raise OnnxToTorchError(
            f"Resize: mode {mode!r} with coordinate_transformation_mode {coordinates!r} is not supported "
            "(nearest/asymmetric and linear/half_pixel or align_corners are)"
        )
    scales = inputs[2] if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else inputs[1]
    sizes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
    if sizes:
        return F.interpolate(x, size=sizes[2:], **options)
    return F.interpolate(x, scale_factor=[float(s) for s in scales.reshape(-1)[2:]], **options)


# ----------------------------------------------------------------------------- the module


@dataclass(frozen=True)
class _Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


def _attribute(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return torch.from_numpy(numpy_helper.to_array(value).copy())
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


class OnnxGraphModule(torch.nn.Module):
    """An ONNX model's graph evaluated with torch ops; ``forward(*inputs)`` in graph-input order.

    Returns one tensor for a single-output graph, else a tuple in graph-output order.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self._buffer_of: dict[str, str] = {}
        for k, initializer in enumerate(graph.initializer):
            # Buffer names cannot hold the dots and slashes of ONNX names: number them.
            array = numpy_helper.to_array(initializer).copy()
            self.register_buffer(f"const_{k}", torch.from_numpy(array))
            self._buffer_of[initializer.name] = f"const_{k}"
        self.input_names = [i.name for i in graph.input if i.name not in self._buffer_of]
        self.output_names = [o.name for o in graph.output]
        self.nodes = [
            _Node(
                n.op_type,
                n.name,
                tuple(n.input),
                tuple(n.output),
                {a.name: _attribute(a) for a in n.attribute},
            )
            for n in graph.node
        ]
        self._check(graph)

    def _check(self, graph: onnx.GraphProto) -> None:
        unsupported = sorted(
            {
                f"{n.op_type} (domain {n.domain})" if n.domain not in ("", "ai.onnx") else n.op_type
                for n in graph.node
                if n.domain not in ("", "ai.onnx") or n.op_type not in _OPS
            }
        )
        if unsupported:
            raise OnnxToTorchError(
                f"ONNX ops not supported by the torch interpreter: {', '.join(unsupported)}"
            )
        known = set(self._buffer_of) | set(self.input_names) | {""}
        for node in self.nodes:
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise OnnxToTorchError(
                    f"node {node.name!r} ({node.op}): inputs {missing} are not computed before it"
                )
            known.update(node.outputs)
        absent = [name for name in self.output_names if name not in known]
        if absent:
            raise OnnxToTorchError(f"graph outputs {absent} are never computed")

    def make_trainable(self, names) -> None:
        """Turn these initializers (ONNX names) into trainable parameters; the rest stay constants."""
        for name in names:
            slot = self._buffer_of[name]
            value = getattr(self, slot)
            delattr(self, slot)
            self.register_parameter(slot, torch.nn.Parameter(value.clone()))

    def initializer(self, name: str) -> Tensor:
        """The current value of an initializer (ONNX name), trained or not."""
        return getattr(self, self._buffer_of[name])

    @classmethod
    def from_file(cls, path: str | Path) -> OnnxGraphModule:
        return cls(onnx.load(str(path)))

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"expected {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(inputs)}"
            )
        values: dict[str, Tensor | None] = {
            name: getattr(self, slot) for name, slot in self._buffer_of.items()
        }
        values.update(zip(self.input_names, inputs))
        values[""] = None  # an omitted optional input
        for node in self.nodes:
            result = _OPS[node.op]([values[name] for name in node.inputs], node.attrs, self.opset)
            values.update(zip(node.outputs, result if isinstance(result, tuple) else (result,)))
        outputs = tuple(values[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs


def onnx_to_torch(model: onnx.ModelProto | str | Path) -> OnnxGraphModule:
    """An ONNX model (or file) as an evaluation-mode torch module."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return OnnxGraphModule(model).eval()
