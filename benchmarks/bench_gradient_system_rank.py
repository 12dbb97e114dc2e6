"""Gradient against the operator's own unseen ONNX (issue #9): F's rank of each leaked row.

    python scripts/embed_lfw.py                                        # once: the LFW vector cache
    python benchmarks/bench_gradient_system_rank.py > benchmarks/results_gradient_system_rank.json

The same F, database and 100 targets as ``bench_operator_extractor.py`` (faceres-1024 as a renamed
ONNX file with an Identity node; one enrolled template per LFW identity, 5,749 rows, no labels), the
gradient attack at its defaults run as the scan runs it (seed 0, per-target seeds), then each
reconstruction's F vector ranked against every row (ties against the attacker) and accepted or not
at FMR 1e-3, exactly as the scan's ``system:F`` rows do (:func:`measure_against_database`). Also
prints each target's similarity and queries, so a failure can be traced to its target. The database
file is this script's own (a run never shares a memory-mapped file with another).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_operator_extractor as operator  # noqa: E402
from _common import emit, machine  # noqa: E402
from bench_reconstruction import choose_targets  # noqa: E402

from fvr_audit.audit.system_match import measure_against_database  # noqa: E402
from fvr_audit.extractors.base import AlignmentTemplate, ChannelOrder  # noqa: E402
from fvr_audit.extractors.registry import ExtractorOptions, get_extractor  # noqa: E402
from fvr_audit.reconstructors.registry import get_reconstructor  # noqa: E402
from fvr_audit.vectors import load_vectors  # noqa: E402


def main(targets: int = 100, seed: int = 0) -> None:
    work = operator.CACHE / "bench-operator"
    work.mkdir(parents=True, exist_ok=True)
    faceres, paths = operator.load_cache("faceres-1024")
    target_photos = choose_targets(paths, targets, seed)
    labels = np.array([p.split("/")[0] for p in paths])
    first: dict[str, int] = {}
    for row, name in enumerate(labels):
        first.setdefault(name, row)
    for row in target_photos:
        first[labels[row]] = row
    enrolled = np.array(sorted(first.values()))
    db_file = work / f"gradient-rank-t{targets}-s{seed}-{os.getpid()}.npy"
    np.save(db_file, faceres[enrolled])
    rows = np.sort(np.searchsorted(enrolled, target_photos))
    options = ExtractorOptions(mean=(0.0,) * 3, std=(1.0,) * 3, channel_order=ChannelOrder.BGR,
                               crop=AlignmentTemplate.DLIB_5PT, padding=0.5)
    extractor = get_extractor(str(operator.user_copy(work)), options)
    db = load_vectors(db_file, expected_dim=extractor.dim)
    started = time.perf_counter()
    try:
        result = get_reconstructor("gradient").reconstruct(np.asarray(db.vectors[rows]), extractor, seed=seed)
        seconds = time.perf_counter() - started
        records, verification, _, _ = measure_against_database(
            db, extractor, rows, {"gradient": result.images}, ks=(1, 5), ns=(1000, 5000), fmr=1e-3, seed=seed,
            progress=lambda description, total: (lambda n=1: None),
        )
    finally:
        db_file.unlink(missing_ok=True)
    emit({
        "benchmark": "gradient_system_rank",
        "machine": machine(),
        "load_average_at_end": list(os.getloadavg()),
        "extractor": extractor.name, "database_rows": int(len(enrolled)), "targets": int(len(rows)),
        "attack_seconds": round(seconds, 1),
        "system": {f"top{r.k}@N={r.n}": {"share": round(r.tpr, 4), "ci": [round(v, 4) for v in r.tpr_ci]} for r in records},
        "sar": {"fmr": 1e-3, "threshold": round(verification[0].threshold, 4), "sar": verification[0].sar,
                "ci": [round(v, 4) for v in verification[0].sar_ci]},
        "similarity": {"median": float(np.median(result.similarity)), "min": float(result.similarity.min()),
                       "below_restart_line": int((result.similarity < 0.8).sum())},
        "queries_per_target": {"mean": float(result.queries.mean()), "max": int(result.queries.max())},
        "per_target": [{"row": int(r), "similarity": round(float(s), 4), "queries": int(q)}
                       for r, s, q in zip(rows, result.similarity, result.queries)],
    })


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    main(arguments.targets, arguments.seed)
