"""Tiny ONNX embedding models built with ``onnx.helper`` for the extractor tests.

The standard model averages each colour channel over the image and projects the three means
with a fixed matrix: ``embedding = channel_means(preprocessed crops) @ weights``. That is cheap,
deterministic, and sensitive to everything a preprocessing guess can get wrong (mean, std,
channel order, layout), so tests can compare against a numpy reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Opset and IR version every onnxruntime release of the last years can load.
OPSET = 13
IR_VERSION = 8

Dim = int | str | None


def projection_weights(dim: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """The [channels, dim] projection the test models use."""
    return np.random.default_rng(seed).normal(size=(channels, dim)).astype(np.float32)


def reference_embedding(network_input: np.ndarray, layout: str, weights: np.ndarray) -> np.ndarray:
    """What the standard model outputs for an already preprocessed float input."""
    axes = (2, 3) if layout == "NCHW" else (1, 2)
    return network_input.mean(axis=axes) @ weights


def build_embedding_model(
    path: Path,
    *,
    input_shape: Sequence[Dim] = ("N", 3, 112, 112),
    layout: str = "NCHW",
    dim: int = 16,
    seed: int = 0,
    prologue: Sequence[tuple[str, float]] = (),
    output_shape: Sequence[Dim] | None = None,
    output_4d: bool = False,
    metadata: dict[str, str] | None = None,
    extra_inputs: Sequence[str] = (),
    input_name: str = "image",
    channels: int = 3,
) -> Path:
    """Write a channel-mean + projection model to ``path`` and return the path.

    ``prologue``: (op, constant) pairs applied to the input first, e.g. ``[("Sub", 127.5),
    ("Mul", 1 / 128)]`` for a model that normalises internally. ``output_4d`` makes the output
    [N, D, 1, 1]. ``output_shape`` overrides the declared output shape (e.g. ``["N", "D"]``).
    ``extra_inputs`` adds float [1] inputs that the graph multiplies in (multi-input models).
    ``channels`` sizes the projection for inputs that are not RGB (a greyscale model).
    """
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = input_name
    for index, (op, constant) in enumerate(prologue):
        const_name = f"prologue_const_{index}"
        initializers.append(numpy_helper.from_array(np.array(constant, np.float32), const_name))
        out = f"prologue_{index}"
        nodes.append(helper.make_node(op, [current, const_name], [out]))
        current = out

    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes.append(helper.make_node("ReduceMean", [current], ["channel_means"], axes=axes, keepdims=0))
    current = "channel_means"
    for extra in extra_inputs:
        nodes.append(helper.make_node("Mul", [current, extra], [f"{extra}_scaled"]))
        current = f"{extra}_scaled"

    initializers.append(numpy_helper.from_array(projection_weights(dim, seed, channels), "weights"))
    final = "embedding_flat" if output_4d else "embedding"
    nodes.append(helper.make_node("MatMul", [current, "weights"], [final]))
    if output_4d:
        initializers.append(numpy_helper.from_array(np.array([2, 3], np.int64), "unsqueeze_axes"))
        nodes.append(helper.make_node("Unsqueeze", [final, "unsqueeze_axes"], ["embedding"]))

    declared = output_shape if output_shape is not None else (["N", dim, 1, 1] if output_4d else ["N", dim])
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))]
    inputs += [helper.make_tensor_value_info(extra, TensorProto.FLOAT, [1]) for extra in extra_inputs]
    graph = helper.make_graph(
        nodes,
        "test-embedder",
        inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, list(declared))],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fvr-audit-tests"
    )
    model.ir_version = IR_VERSION
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_rank3_model(path: Path) -> Path:
    """A model whose input is a single [3, 112, 112] image (no batch axis)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["embedding"], axes=[1, 2], keepdims=0)],
        "rank3",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def build_rank3_output_model(path: Path) -> Path:
    """A model with a proper image input but an [N, 3, 112] output."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["embedding"], axes=[3], keepdims=0)],
        "bad-output",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 3, 112])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path
