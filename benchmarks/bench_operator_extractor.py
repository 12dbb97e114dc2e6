"""The operator's own case (issue #9): a user's ONNX model the tool has never seen, a plain .npy.

    python scripts/embed_lfw.py                                  # once: the LFW vector cache
    python benchmarks/bench_operator_extractor.py > benchmarks/results_operator_extractor.json
    python benchmarks/bench_operator_extractor.py --endpoint --targets 10 --tag http > results_operator_extractor_http.json

Protocol:

* F = ``faceres-1024`` given as a plain ONNX file the tool has never seen: the shipped graph with
  an Identity node appended (another file, another sha256), so no built-in shortcut applies.
* The leaked database: a plain ``.npy`` (no labels, no paths) of F's vectors of one LFW photo per
  identity (all 5,749 people: one enrolled template each). Targets: the same 100 photos of
  held-out ``eval`` identities as ``bench_reconstruction.py`` (given to the scan as rows).
* The scan runs exactly as ``fvr-audit scan db.npy -e faceres-user.onnx --crop dlib-5pt --padding 0.5
  --mean 0 --std 1 --channel-order BGR`` does (the flags the scan's preprocessing check names when
  run without them: the ArcFace-style guess makes this graph's outputs constant) (``run_scan``, no
  labels, default settings but ``--set`` overrides below): white-box check, self-calibration of
  the parametric attacks, the five attacks, and the system figures (F's top-1/top-K of the leaked
  row among the 5,749 rows; acceptance at FMR 1e-3 on impostor pairs of rows).
* The same reconstructions, judged with labels by independent recognizers as in
  ``bench_reconstruction.py``: each judge's gallery is every other LFW photo (5,749 identities),
  N = 1000 random subsets holding the true identity; ``original`` is the target photo itself.
  dlib-resnet128 judges only the attacks that did not use it (gradient, eigenfaces);
  mobileface-256 judges every attack; faceres-1024 is F itself (the same function as the user's
  copy): the paper's same-system row, as in the README's table of generator routes.
* ``--endpoint``: F is served on 127.0.0.1 by :mod:`fvr_audit.extractors.http_server` and
  reached as a black box; the JSON compares the scan's query count with the server's.

Prints JSON on stdout; progress on stderr. Phase timings come from the scan's own ``timings``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402
from bench_reconstruction import Gallery, choose_targets, topk_rows  # noqa: E402

from fvr_audit.alignment.canonical import crop_from_canonical  # noqa: E402
from fvr_audit.audit.scan import ScanSettings, run_scan  # noqa: E402
from fvr_audit.extractors.base import AlignmentTemplate, ChannelOrder  # noqa: E402
from fvr_audit.extractors.registry import ExtractorOptions, get_extractor  # noqa: E402
from fvr_audit.model_store import models_dir  # noqa: E402

CACHE = Path(os.environ.get("FVR_AUDIT_CACHE", Path.home() / ".cache" / "fvr-audit"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def user_copy(work: Path) -> Path:
    """The shipped faceres graph with an Identity node on its output: same function, new file."""
    out = work / "faceres-user.onnx"
    if not out.exists():
        model = onnx.load(str(models_dir() / "faceres-1024.onnx"))
        old = model.graph.output[0].name
        model.graph.node.append(helper.make_node("Identity", [old], ["user_embedding"], name="user_identity"))
        model.graph.output[0].name = "user_embedding"
        onnx.save(model, str(out))
    return out


def load_cache(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(CACHE / "lfw" / f"{name}.npz", allow_pickle=False) as data:
        return np.asarray(data["vectors"], np.float32), np.asarray(data["paths"]).astype(str)


def phases(timings: dict, report_seconds: float, targets: int) -> dict:
    """The scan's wall time by phase: fixed costs (once per scan) and per-target costs (the attacks,
    which grow with the targets), and what a scan of 100 targets would take by that split
    (an extrapolation, labelled as one, when fewer targets were run)."""
    fixed = {"calibration": timings.get("calibration_seconds", 0.0),
             **{k.removeprefix("fine_tune_").removesuffix("_seconds") + " tuning": v
                for k, v in timings.items() if k.startswith("fine_tune_")},
             "galleries": timings.get("galleries_seconds", 0.0), "report": report_seconds}
    per_target = {k.removeprefix("reconstruct_").removesuffix("_seconds"): v / targets
                  for k, v in timings.items() if k.startswith("reconstruct_")}
    per_target["matching"] = sum(timings.get(k, 0.0) for k in ("reidentify_seconds", "metrics_seconds", "system_match_seconds")) / targets
    measured = sum(fixed.values()) + sum(per_target.values()) * targets
    return {
        "fixed_seconds": {k: round(v, 1) for k, v in fixed.items()},
        "per_target_seconds": {k: round(v, 2) for k, v in per_target.items()},
        "measured_total_seconds": round(measured, 1),
        "targets": targets,
        "total_seconds_for_100_targets": round(sum(fixed.values()) + sum(per_target.values()) * 100, 1),
        "total_for_100_is": "measured" if targets == 100 else f"extrapolated from {targets} targets (fixed + 100 x per-target)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=CACHE / "bench-operator")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every attack)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="METHOD.NAME=VALUE, as scan --set")
    parser.add_argument("--calibration-faces", type=int, default=2000)
    parser.add_argument("--endpoint", action="store_true", help="serve F over HTTP on 127.0.0.1 and audit it as a black box")
    parser.add_argument("--query-budget", type=int, default=None)
    parser.add_argument("--topk-seeds", type=int, default=5)
    parser.add_argument("--tag", default="")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="start from an empty user cache, so self-calibration and tuning are built and timed")
    args = parser.parse_args()
    from fvr_audit.cli.scan_cmd import parse_method_options

    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FVR_AUDIT_CACHE", str(CACHE))
    if args.fresh_cache:
        import shutil

        fresh = args.work / f"fresh-cache-{args.tag or 'run'}"
        shutil.rmtree(fresh, ignore_errors=True)
        os.environ["FVR_AUDIT_CACHE"] = str(fresh)
    faceres, paths = load_cache("faceres-1024")
    target_photos = choose_targets(paths, args.targets, args.seed)
    # one enrolled template per person: the target photo for the targets, the first photo otherwise
    labels = np.array([p.split("/")[0] for p in paths])
    first = {}
    for row, name in enumerate(labels):
        first.setdefault(name, row)
    for row in target_photos:
        first[labels[row]] = row
    enrolled = np.array(sorted(first.values()))
    # One file per target draw: two runs at once must never share (and rewrite) a memory-mapped database.
    db_file = args.work / f"leaked-templates-t{args.targets}-s{args.seed}.npy"
    # Written to a new file and renamed: a run that has the old file memory-mapped keeps reading it.
    partial = db_file.with_name(f".{os.getpid()}.{db_file.name}")  # ends in .npy: np.save keeps the name
    np.save(partial, faceres[enrolled])
    os.replace(partial, db_file)
    target_rows = np.searchsorted(enrolled, target_photos)

    model = user_copy(args.work)
    # The guess alone (ArcFace-style (x-127.5)/127.5) makes this graph's outputs constant; the scan's
    # check refuses it and names these flags, which a user then passes (see the README).
    options = ExtractorOptions(mean=(0.0,) * 3, std=(1.0,) * 3, channel_order=ChannelOrder.BGR,
                               crop=AlignmentTemplate.DLIB_5PT, padding=0.5)
    extractor = get_extractor(str(model), options)
    server = None
    if args.endpoint:
        from fvr_audit.extractors.http_server import serve_extractor

        server = serve_extractor(extractor)
        geometry = extractor.geometry
        extractor = get_extractor(server.url, ExtractorOptions(input_size=geometry.size, crop=geometry.template,
                                                               padding=geometry.padding))
    methods = None if args.methods is None else tuple(m for m in args.methods.split(",") if m)
    settings = ScanSettings(
        sample=len(target_rows), seed=args.seed, methods=methods, engines=(), method_settings=parse_method_options(args.sets),
        calibration_faces=args.calibration_faces, query_budget=args.query_budget, rows=tuple(int(r) for r in target_rows),
        # finished work units are kept: a run stopped midway (or failing after the scan) resumes them
        work_dir=args.work / f"units-{args.tag or 'run'}-t{args.targets}-s{args.seed}",
    )
    started = time.perf_counter()

    def progress(description: str, total: int):
        log(f"{time.perf_counter() - started:7.0f}s {description} ({total})")
        return lambda n=1: None

    try:
        outcome = run_scan(db_file, extractor, settings, progress=progress, on_message=log)
    finally:
        if server is not None:
            server.close()
    results = outcome.results
    # The report phase, as `scan` writes it (HTML and PDF), timed on its own.
    from fvr_audit.cli.scan_cmd import write_scan_outputs

    mark = time.perf_counter()
    report_dir = args.work / f"report-{args.tag or 'run'}"
    if report_dir.exists():
        import shutil

        shutil.rmtree(report_dir)
    write_scan_outputs(outcome, report_dir, pdf=True, redact=False)
    report_seconds = round(time.perf_counter() - mark, 1)
    # The scan returns its targets in row order; judge each reconstruction against its own photo.
    target_photos = [int(enrolled[t.index]) for t in results.targets]
    result = {
        "benchmark": "operator_extractor",
        "tag": args.tag,
        "machine": machine(),
        "load_average_at_end": list(os.getloadavg()),
        "extractor": {k: results.extractor[k] for k in ("name", "sha256", "queries_used", "queries_by_phase")},
        "database": {"rows": int(len(enrolled)), "labelled": False, "file": str(db_file)},
        "targets": int(len(target_rows)),
        "timings": {**results.timings, "report_seconds": report_seconds},
        "phases": phases(results.timings, report_seconds, len(target_rows)),
        "fresh_cache": bool(args.fresh_cache),
        "notes": list(results.notes),
        "methods": {
            m.name: {
                "access": m.access, "models_used": list(m.models_used), "seconds": round(m.seconds, 1),
                "queries_per_target_mean": m.queries_per_target_mean, "similarity_median": m.similarity_median,
                "adapter": m.settings.get("adapter"), "service_queries": m.service_queries,
            }
            for m in results.methods
        },
        "system": {
            f"{r.method}|top{r.k}": {"share": round(r.tpr, 4), "ci": [round(v, 4) for v in r.tpr_ci], "n": r.n}
            for r in results.records
        },
        "system_sar": {
            v.method: {"sar": round(v.sar, 4), "ci": [round(x, 4) for x in v.sar_ci], "threshold": round(v.threshold, 4),
                       "fmr": v.fmr, "impostor_pairs": v.impostor_comparisons}
            for v in results.verification
        },
        "verdict": {"level": results.verdict.level.value, "rule": results.verdict.rule},
    }
    if server is not None:
        result["server_requests"] = server.requests
    # The same reconstructions judged with labels by independent recognizers.
    judges = {}
    for judge_name in ("faceres-1024", "dlib-resnet128", "mobileface-256"):
        judge = get_extractor(judge_name)
        vectors, judge_paths = load_cache(judge_name)
        assert (judge_paths == paths).all(), "the LFW caches must list the same photos in the same order"
        gallery = Gallery(paths, vectors, target_photos)
        truth = np.array([gallery.column[labels[r]] for r in target_photos])
        rows = {"original": topk_rows(gallery.identity_scores(vectors[target_photos]), truth, args.topk_seeds)}
        for method, images in outcome.reconstructions.items():
            used = next(m.models_used for m in results.methods if m.name == method)
            if judge_name != "faceres-1024" and any(judge_name in str(u) for u in used):
                rows[method] = {"not_judged": f"{method} used {judge_name}"}
                continue
            queries = judge.embed(crop_from_canonical(images, judge.geometry))
            rows[method] = topk_rows(gallery.identity_scores(queries), truth, args.topk_seeds)
        for method, row in rows.items():
            if "tpr@1_N=1000" in row:
                row["share_of_original_tpr@1_N=1000"] = round(row["tpr@1_N=1000"] / rows["original"]["tpr@1_N=1000"], 3)
        judges[judge_name] = rows
        log(f"{judge_name}: " + ", ".join(f"{m} {r.get('tpr@1_N=1000')}" for m, r in rows.items()))
    result["judges"] = judges
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result)


if __name__ == "__main__":
    main()
