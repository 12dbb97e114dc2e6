"""Embedding throughput of each built-in extractor, and of dlib-bin for comparison.

    python benchmarks/bench_extractor_throughput.py
    python benchmarks/bench_extractor_throughput.py --batch 32 --threads 2 --seconds 5

Batches of ``--batch`` aligned crops (real LFW chips when ../shared/data is present, otherwise
seeded random pixels: the networks' cost does not depend on content) are embedded repeatedly
for about ``--seconds`` each after one warm-up batch. dlib-bin is measured on the same 150x150
chips through ``compute_face_descriptor`` (its batch form). Prints JSON with embeddings/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_LFW, emit, machine  # noqa: E402


def rate(embed, batch: np.ndarray, seconds: float) -> float:
    """Embeddings per second of ``embed(batch)`` over about ``seconds`` after one warm-up call."""
    embed(batch)
    calls, start = 0, time.perf_counter()
    while True:
        embed(batch)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            return calls * len(batch) / elapsed


def crops_for(geometry, count: int, lfw: Path) -> tuple[np.ndarray, str]:
    if (lfw / "pairs.txt").exists():
        from fvr_audit.alignment import FaceAligner, NoFacePolicy, load_image_rgb

        aligner = FaceAligner([geometry], no_face=NoFacePolicy.CENTER)
        files = sorted(lfw.glob("*/*_0001.jpg"))[:count]
        return np.stack([aligner.align(load_image_rgb(f)).crops[0] for f in files]), "LFW chips"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, geometry.size, geometry.size, 3), dtype=np.uint8), "random pixels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    args = parser.parse_args()
    # Before any model is created: the extractors read it for their thread pools.
    os.environ["FVR_AUDIT_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS, get_extractor

    results = {}
    chips_150 = None
    for name in BUILTIN_EXTRACTORS:
        extractor = get_extractor(name)
        batch, content = crops_for(extractor.geometry, args.batch, args.lfw)
        if name == "dlib-resnet128":
            chips_150 = batch
        results[name] = {"embeddings_per_s": round(rate(extractor.embed, batch, args.seconds), 1), "backend": "onnxruntime"}
        print(f"  {name}: {results[name]['embeddings_per_s']}/s", file=sys.stderr)

    from fvr_audit.extractors.dlib_resnet import create_dlib_resnet128

    torch_model = create_dlib_resnet128(backend="torch")
    with torch.no_grad():
        results["dlib-resnet128 (torch)"] = {
            "embeddings_per_s": round(rate(torch_model.embed, chips_150, args.seconds), 1),
            "backend": "torch",
        }

    try:
        import dlib

        from fvr_audit.alignment.aligner import dlib_model_file

        reference = dlib.face_recognition_model_v1(str(dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")))
        chips = [np.ascontiguousarray(c) for c in chips_150]
        results["dlib-bin compute_face_descriptor"] = {
            "embeddings_per_s": round(rate(lambda b: reference.compute_face_descriptor(b), chips, args.seconds), 1),
            "backend": f"dlib {dlib.__version__} (prebuilt dlib-bin, no BLAS)",
        }
        speedup = results["dlib-resnet128"]["embeddings_per_s"] / results["dlib-bin compute_face_descriptor"]["embeddings_per_s"]
        results["dlib-resnet128"]["speedup_vs_dlib_bin"] = round(speedup, 1)
    except ImportError:
        pass

    emit(
        {
            "benchmark": "extractor_throughput",
            "batch": args.batch,
            "threads": args.threads,
            "input": content,
            "results": results,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
