"""LFW verification accuracy (standard 10-fold protocol) of each built-in extractor.

    python benchmarks/bench_lfw_verification.py                 # all built-ins
    python benchmarks/bench_lfw_verification.py --extractors dlib-resnet128 --no-face skip

Every image named by pairs.txt is detected once (dlib HOG + 5-point landmarks; when HOG finds
no face, landmarks are placed in a centred box, since LFW frames are centred on the subject)
and cut to each extractor's geometry. Similarity is cosine; per fold, the threshold is chosen
on the other nine folds. Prints JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_LFW, emit, machine, require_lfw  # noqa: E402

from fvr_audit.alignment.aligner import NoFacePolicy  # noqa: E402
from fvr_audit.datasets.lfw import read_lfw_pairs  # noqa: E402
from fvr_audit.extraction.discover import ImageRecord  # noqa: E402
from fvr_audit.alignment.aligner import FaceStatus  # noqa: E402
from fvr_audit.extraction.pipeline import EmbeddingRun, embed_records  # noqa: E402
from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS, get_extractor  # noqa: E402
from fvr_audit.metrics.verification import kfold_verification_accuracy  # noqa: E402


def load_cached(cache: Path, extractors, images: list[str], no_face: NoFacePolicy) -> EmbeddingRun:
    """The pairs' images from an embed_lfw.py cache, refusing a cache made by other models or crops."""
    if no_face is not NoFacePolicy.CENTER:
        sys.exit("error: --cache holds centre-fallback embeddings; use it with --no-face center")
    vectors, statuses = {}, None
    for extractor in extractors:
        data = np.load(cache / f"{extractor.name}.npz", allow_pickle=False)
        if str(data["extractor_sha256"]) != (extractor.info.sha256 or "") or str(data["geometry"]) != extractor.geometry.describe():
            sys.exit(f"error: {cache}/{extractor.name}.npz was made by another model file or crop; rerun scripts/embed_lfw.py")
        row = {str(p): i for i, p in enumerate(data["paths"])}
        vectors[extractor.name] = data["vectors"][[row[rel] for rel in images]]
        statuses = tuple(FaceStatus(str(data["statuses"][row[rel]])) for rel in images)
    return EmbeddingRun(vectors, np.arange(len(images)), statuses, ("",) * len(images), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--extractors", default=",".join(BUILTIN_EXTRACTORS))
    parser.add_argument("--no-face", type=NoFacePolicy, default=NoFacePolicy.CENTER)
    parser.add_argument("--limit-pairs", type=int, default=None, help="first N pairs of each fold (quick runs)")
    parser.add_argument(
        "--cache", type=Path, default=None,
        help="folder written by scripts/embed_lfw.py (same alignment policy); skips re-embedding",
    )
    args = parser.parse_args()

    lfw = require_lfw(args.lfw)
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    if args.limit_pairs:
        per_fold: dict[int, int] = {}
        kept = []
        for pair in pairs:
            if per_fold.get((pair.fold, pair.same), 0) < args.limit_pairs // 2:
                per_fold[(pair.fold, pair.same)] = per_fold.get((pair.fold, pair.same), 0) + 1
                kept.append(pair)
        pairs = kept
    images = sorted({p.first for p in pairs} | {p.second for p in pairs})
    extractors = [get_extractor(name) for name in args.extractors.split(",")]
    records = [ImageRecord(lfw / rel, rel, rel.split("/")[0]) for rel in images]

    start = time.perf_counter()
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % 500 == 0 or done == len(records):
            print(f"  {done}/{len(records)} images, {time.perf_counter() - start:.0f} s", file=sys.stderr)

    if args.cache:
        run = load_cached(args.cache, extractors, images, args.no_face)
    else:
        run = embed_records(records, extractors, no_face=args.no_face, on_progress=progress)
    row_of = {int(index): row for row, index in enumerate(run.kept)}
    index_of = {rel: i for i, rel in enumerate(images)}
    usable = [p for p in pairs if index_of[p.first] in row_of and index_of[p.second] in row_of]
    first = np.array([row_of[index_of[p.first]] for p in usable])
    second = np.array([row_of[index_of[p.second]] for p in usable])
    same = np.array([p.same for p in usable])
    folds = np.array([p.fold for p in usable])

    results = {}
    for extractor in extractors:
        vectors = run.vectors[extractor.name]
        scores = np.einsum("ij,ij->i", vectors[first], vectors[second])
        accuracy = kfold_verification_accuracy(scores, same, folds)
        results[extractor.name] = {
            "accuracy": round(accuracy.mean, 5),
            "std_error": round(accuracy.std_error, 5),
            "per_fold": [round(a, 4) for a in accuracy.per_fold],
            "cosine_thresholds": [round(t, 4) for t in accuracy.thresholds],
            "geometry": extractor.geometry.describe(),
        }
    emit(
        {
            "benchmark": "lfw_verification",
            "protocol": "LFW pairs.txt, 10 folds, threshold chosen on the other 9 folds, cosine similarity",
            "pairs": len(pairs),
            "pairs_scored": len(usable),
            "images": len(images),
            "alignment": {status.value: n for status, n in run.counts.items()},
            "no_face_policy": args.no_face.value,
            "results": results,
            "seconds": round(time.perf_counter() - start, 1),
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
