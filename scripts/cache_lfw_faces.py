"""Cache aligned LFW faces in the canonical frame for training the parametric reconstructors.

    python scripts/cache_lfw_faces.py            # -> ~/.cache/fvr-audit/lfw/faces-canonical-96.npz

Every LFW photo is aligned once (dlib HOG + 5 points, the centred box when HOG finds no face, as
``scripts/embed_lfw.py`` does) into the canonical reconstruction frame (a dlib chip with padding
0.5) at ``--size`` pixels. The file holds ``faces`` uint8 [N, size, size, 3], ``paths``,
``labels`` and ``statuses`` in the order of ``discover_images``; it is a cache of face images and
so lives in the user's cache folder, never in the repository (the data README forbids it).
Vectors come from the embed_lfw cache and are matched by path at training time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.alignment.aligner import FaceStatus, NoFacePolicy  # noqa: E402
from fvr_audit.extraction import discover_images  # noqa: E402
from fvr_audit.extraction.pipeline import align_paths  # noqa: E402
from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry  # noqa: E402
from fvr_audit.io.npz import save_npz  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "lfw-deepfunneled")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path.home() / ".cache" / "fvr-audit" / "lfw" / f"faces-canonical-{args.size}.npz"
    records, _ = discover_images(args.lfw)
    geometry = FaceGeometry(args.size, AlignmentTemplate.DLIB_5PT, 0.5)
    start = time.perf_counter()
    faces = np.zeros((len(records), args.size, args.size, 3), np.uint8)
    statuses = []
    for i, face in enumerate(align_paths([str(r.path) for r in records], [geometry], no_face=NoFacePolicy.CENTER)):
        statuses.append(face.status.value)
        if face.status.usable:
            faces[i] = face.crops[0]
        if (i + 1) % 1000 == 0:
            print(f"{i + 1}/{len(records)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    usable = np.array([FaceStatus(s).usable for s in statuses])
    save_npz(
        out,
        faces=faces[usable],
        paths=np.array([r.relative for r, u in zip(records, usable, strict=True) if u]),
        labels=np.array([r.label for r, u in zip(records, usable, strict=True) if u]),
        statuses=np.array([s for s, u in zip(statuses, usable, strict=True) if u]),
        geometry=np.array(geometry.describe()),
    )
    print(f"{int(usable.sum())} faces -> {out} in {time.perf_counter() - start:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
