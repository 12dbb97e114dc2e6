"""The paper's commercial-engine setting (Fig. 6, Table II), offline: K = 5, N = 5,000 LFW identities.

    python scripts/embed_lfw.py                                   # once: the LFW vector cache
    python benchmarks/bench_cloud_simulation.py > benchmarks/results_cloud_simulation.json

Protocol:

* F = dlib-resnet128; the leaked database is F's vectors of every usable LFW photo of 5,000
  identities (labels and paths): the 100 held-out ``eval`` targets of ``bench_reconstruction.py``
  and 4,900 other identities drawn with the seed.
* The gallery folder holds those identities' photos (hard links into a cache folder; LFW is never
  copied into the repository). Each target's own photo is held out of both cloud galleries by path.
* The engines are the real ``AwsRekognitionEngine`` and ``AzureFaceEngine`` (botocore's real
  request serialisation and validation; the Azure SDK's real clients) talking to the simulated
  services of :mod:`fvr_audit.engines.simulated`: every IndexFaces / AddFace / search request is
  answered by a local recognizer, faceres-1024 behind "Rekognition" and mobileface-256 behind
  "Azure", with scores on each service's scale, its default threshold (80 similarity; 0.5
  confidence) calibrated at FMR 1e-3 on impostor pairs, and its caps. Gallery photos' vectors are
  preloaded from the LFW cache (the recognizer would compute the same ones, slower).
* The scan is ``run_scan`` as ``fvr-audit scan db.npz -e dlib-resnet128 --gallery DIR --images-root
  DIR --engine aws:rekognition,azure:face --k 1,5,10 --n 5000 --rows ...`` runs it; the three
  parametric attacks at their defaults and gradient at ``--set gradient.iterations=60`` (the
  default 300 would take an hour here); ``original`` searches each target's own photo.

Prints JSON on stdout (per engine and method: tpr, fpr, no-match at K = 1, 5, 10; same-class false
positives; requests made vs the dry run's plan); writes the report to the cache folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_LFW, emit, machine  # noqa: E402
from bench_operator_extractor import CACHE, load_cache  # noqa: E402
from bench_reconstruction import choose_targets  # noqa: E402

from fvr_audit.audit import galleries  # noqa: E402
from fvr_audit.audit.plan import cloud_plans  # noqa: E402
from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan  # noqa: E402
from fvr_audit.engines.simulated import LocalRecognizer, simulated_aws_engine, simulated_azure_engine  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402

RECOGNIZERS = {"aws:rekognition": "faceres-1024", "azure:face": "mobileface-256"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=5000)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--methods", default="naive,nbnet,vec2face,gradient")
    parser.add_argument("--gradient-iterations", type=int, default=60)
    parser.add_argument("--work", type=Path, default=CACHE / "bench-cloud")
    args = parser.parse_args()
    started = time.perf_counter()

    dlib, paths = load_cache("dlib-resnet128")
    labels = np.array([p.split("/")[0] for p in paths])
    target_photos = choose_targets(paths, args.targets, args.seed)
    target_names = sorted({labels[r] for r in target_photos})
    others = sorted(set(labels) - set(target_names))
    rng = np.random.default_rng(args.seed)
    chosen = set(target_names) | set(rng.choice(others, size=args.identities - len(target_names), replace=False).tolist())
    keep = np.flatnonzero(np.isin(labels, sorted(chosen)))

    # The gallery folder: hard links to the photos (same disk), rebuilt when the selection changes.
    folder = args.work / f"gallery-{args.identities}"
    marker = folder / ".selection"
    selection = ",".join(paths[keep])
    if not marker.exists() or marker.read_text() != selection:
        shutil.rmtree(folder, ignore_errors=True)
        for rel in paths[keep]:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(args.lfw / rel, folder / rel)
            except OSError:
                shutil.copyfile(args.lfw / rel, folder / rel)
        marker.write_text(selection)
    db_file = args.work / f"leaked-{args.identities}.npz"
    np.savez(db_file, vectors=dlib[keep], labels=labels[keep], paths=paths[keep])
    rows = tuple(int(r) for r in np.searchsorted(keep, sorted(target_photos)))
    log(f"{time.perf_counter() - started:6.0f}s database {len(keep)} rows of {len(chosen)} identities; {len(rows)} targets")

    recognizers = {}
    for spec, model in RECOGNIZERS.items():
        vectors, cache_paths = load_cache(model)
        position = {p: i for i, p in enumerate(cache_paths)}
        recognizer = LocalRecognizer(get_extractor(model))
        recognizer.preload([folder / p for p in paths[keep]], vectors[[position[p] for p in paths[keep]]])
        recognizers[spec] = recognizer
    log(f"{time.perf_counter() - started:6.0f}s gallery vectors preloaded")

    engines = {}

    def create(spec, *, threshold=None, threshold_source="", run_id=None, **kwargs):
        factory = {"aws:rekognition": simulated_aws_engine, "azure:face": simulated_azure_engine}[spec]
        engines[spec] = factory(recognizer=recognizers[spec], run_id=run_id)
        return engines[spec]

    galleries.create_engine = create  # the scan's engines are the simulated services
    methods = tuple(m for m in args.methods.split(",") if m)
    settings = ScanSettings(
        sample=len(rows), seed=args.seed, ks=(1, 5, 10), ns=(args.identities,), gate_k=1,
        methods=methods, engines=tuple(RECOGNIZERS), rows=rows, run_id="bench-cloud",
        method_settings={"gradient": {"iterations": args.gradient_iterations}} if "gradient" in methods else {},
    )
    sources = GallerySources(folder=folder, images_root=folder)
    plans = {p.engine: p for p in cloud_plans(settings, sources, len(rows))}

    def progress(description: str, total: int):
        log(f"{time.perf_counter() - started:6.0f}s {description} ({total})")
        return lambda n=1: None

    outcome = run_scan(db_file, get_extractor("dlib-resnet128"), settings, sources, progress=progress, on_message=log)
    results = outcome.results
    from fvr_audit.cli.scan_cmd import write_scan_outputs

    report = args.work / "report"
    shutil.rmtree(report, ignore_errors=True)
    write_scan_outputs(outcome, report, pdf=True, redact=False)

    figures = {}
    for spec in RECOGNIZERS:
        engine = next(e for e in results.engines if e.name == spec)
        per_method = {}
        for r in results.records:
            if r.engine == spec:
                per_method.setdefault(r.method, {})[f"K={r.k}"] = {
                    "tpr": round(r.tpr, 3), "fpr": round(r.fpr, 3), "no_match": round(r.no_match, 3),
                    "tpr_ci": [round(v, 3) for v in r.tpr_ci], "n": r.n,
                }
        same_class = {s.method: {"false_positives": s.false_positives, "share": round(s.share, 3)}
                      for s in results.same_class_false_positives if s.engine == spec}
        plan = plans[spec]
        figures[spec] = {
            "simulated_by": RECOGNIZERS[spec],
            "threshold": engine.threshold, "threshold_source": engine.threshold_source, "score_scale": engine.score_scale,
            "enrolled_identities": engine.gallery_identities, "enrolled_photos": engine.gallery_vectors,
            "records": per_method,
            "same_class_false_positives_at_top1": same_class,
            "requests": dict(engines[spec].calls),
            "planned": {c.kind: c.count for c in plan.calls},
            "planned_usd": round(plan.usd, 2),
        }
    emit({
        "benchmark": "cloud_simulation",
        "machine": machine(),
        "load_average_at_end": list(os.getloadavg()),
        "database": {"rows": int(len(keep)), "identities": len(chosen), "file": str(db_file)},
        "targets": len(rows),
        "methods": {m.name: {"models_used": list(m.models_used), "seconds": round(m.seconds, 1),
                             "similarity_median": m.similarity_median} for m in results.methods},
        "engines": figures,
        "verdict": {"level": results.verdict.level.value, "rule": results.verdict.rule},
        "timings": results.timings,
        "notes": list(results.notes),
        "report": str(report),
        "seconds": round(time.perf_counter() - started, 1),
    })


if __name__ == "__main__":
    main()
