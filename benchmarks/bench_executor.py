"""Reconstruction throughput through the executor seam with 1 and 2 workers (targets/s, and the ratio).

    python benchmarks/bench_executor.py                                  # gradient, 32 targets (4 units), processes
    python benchmarks/bench_executor.py --executor ray --targets 32 --iterations 20

Runs the one reconstruction driver (``reconstruct_to_folder``, as ``scan`` and ``reconstruct``
do) on seeded random unit vectors of F = dlib-resnet128, into a fresh temporary folder per run,
with ``--workers 1`` and then ``--workers 2`` of the same executor. Every worker computes with
``FVR_AUDIT_THREADS`` threads (set to 1 here unless given: 2 workers x 1 thread on 2 cores), so
the two runs produce the same PNG bytes, which is checked. ``seconds`` is the driver's wall time
including the workers' start-up (spawn, model loading) - what a user waits for - and
``targets_per_second`` is targets / seconds; ``seconds_in_units_sum`` is the attack's own time
summed over the units (in parallel with 2 workers: a unit taking twice as long means the two
workers shared one free core). Prints JSON and writes it to
``benchmarks/results_executor.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402


def run(executor: str, workers: int, vectors: np.ndarray, method: str, settings: dict, seed: int) -> dict:
    from fvr_audit.execution import open_executor, parse_executor
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.reconstructors.registry import get_reconstructor
    from fvr_audit.reconstructors.runner import reconstruct_to_folder

    extractor = get_extractor("dlib-resnet128")
    attack = get_reconstructor(method, **settings)
    with tempfile.TemporaryDirectory(prefix="fvr-bench-executor-") as folder:
        start = time.perf_counter()
        with open_executor(parse_executor(executor, workers)) as pool:
            run_ = reconstruct_to_folder(vectors, extractor, attack, Path(folder) / "out", seed=seed, executor=pool)
        seconds = time.perf_counter() - start
        # time the attack itself took inside the workers (their start-up and model loading excluded)
        compute = sum(target["seconds"] for target in run_.manifest["targets"])
        digest = hashlib.sha256()
        for png in sorted((Path(folder) / "out").glob("*.png")):
            digest.update(png.read_bytes())
    return {
        "executor": executor,
        "workers": workers,
        "targets": len(vectors),
        "seconds": round(seconds, 2),
        "targets_per_second": round(len(vectors) / seconds, 4),
        "seconds_in_units_sum": round(compute, 2),
        "seconds_per_unit_mean": round(compute / -(-len(vectors) // 8), 2),
        "png_sha256": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", default="processes", help="processes (default) or ray")
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--targets", type=int, default=32, help="a multiple of 16: units of 8 split evenly over 2 workers")
    parser.add_argument("--iterations", type=int, default=20, help="gradient steps / eigenfaces iterations per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", default="shared with other jobs", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results_executor.json")
    args = parser.parse_args()
    os.environ.setdefault("FVR_AUDIT_THREADS", "1")

    rng = np.random.default_rng(args.seed)
    vectors = rng.normal(size=(args.targets, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = {"iterations": args.iterations}
    if args.method == "gradient":
        settings["plateau_steps"] = 0  # every target takes the same number of steps: a fair comparison
    load_before = os.getloadavg()[0]
    runs = [run(args.executor, workers, vectors, args.method, settings, args.seed) for workers in (1, 2)]
    result = {
        "benchmark": "executor throughput",
        "command": " ".join(["python", "benchmarks/bench_executor.py", *sys.argv[1:]]),
        "method": args.method,
        "settings": settings,
        "threads_per_worker": int(os.environ["FVR_AUDIT_THREADS"]),
        "runs": runs,
        "speedup_2_vs_1": round(runs[1]["targets_per_second"] / runs[0]["targets_per_second"], 3),
        "same_png_bytes": runs[0]["png_sha256"] == runs[1]["png_sha256"],
        "load": args.load,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "machine": machine(),
    }
    emit(result)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
