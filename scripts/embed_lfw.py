"""Embed every LFW image with each built-in extractor in one alignment pass (a cache, not shipped).

    python scripts/embed_lfw.py --lfw ../shared/data/lfw-deepfunneled --out ~/.cache/fvr-audit/lfw

Writes <out>/<extractor>.npz (vectors, labels, paths) for dlib-resnet128, faceres-1024 and
mobileface-256. Images where HOG finds no face get landmarks in a centred box (LFW frames are
centred on the subject), so every image has a vector in every space. Used by scripts that build
the demo database and by benchmarks; tests build their own small sets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fvr_audit.alignment.aligner import NoFacePolicy
from fvr_audit.extraction import discover_images, embed_records
from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS, get_extractor
from fvr_audit.io.npz import save_npz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw-deepfunneled"))
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache" / "fvr-audit" / "lfw")
    parser.add_argument("--extractors", default=",".join(BUILTIN_EXTRACTORS))
    args = parser.parse_args()
    records, _ = discover_images(args.lfw)
    extractors = [get_extractor(name) for name in args.extractors.split(",")]
    start = time.perf_counter()
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done % 1000 == 0:
            print(f"{done}/{len(records)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)

    run = embed_records(records, extractors, no_face=NoFacePolicy.CENTER, on_progress=progress)
    kept = [records[i] for i in run.kept]
    for extractor in extractors:
        save_npz(
            args.out / f"{extractor.name}.npz",
            vectors=run.vectors[extractor.name],
            labels=np.array([r.label for r in kept]),
            paths=np.array([r.relative for r in kept]),
            extractor=np.array(extractor.name),
            extractor_sha256=np.array(extractor.info.sha256 or ""),
            geometry=np.array(extractor.geometry.describe()),
            statuses=np.array([run.statuses[i].value for i in run.kept]),
        )
    print({s.value: n for s, n in run.counts.items()}, f"{run.seconds:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
