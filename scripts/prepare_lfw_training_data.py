"""Training data for the shipped parametric reconstructors, from the LFW caches (no re-alignment).

    python scripts/embed_lfw.py            # vectors of every LFW photo (cache)
    python scripts/cache_lfw_faces.py      # aligned canonical faces of every LFW photo (cache)
    python scripts/prepare_lfw_training_data.py --extractor dlib-resnet128

Keeps the photos of the LFW *training* identities only (fvr_audit/datasets/splits/lfw_train.txt;
the evaluation and demo identities never enter training), resizes the canonical faces to the
generators' 64 px and pairs each with its vector. Writes a TrainingData file (the format that
``fvr-audit train --data`` reads and that ``fvr-audit train --faces DIR`` builds from photos)
into the cache folder, never into the repository: it holds face images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.reconstructors.parametric.networks import OUTPUT_SIZE  # noqa: E402
from fvr_audit.reconstructors.parametric.training import TrainingData  # noqa: E402

CACHE = Path.home() / ".cache" / "fvr-audit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extractor", default="dlib-resnet128")
    parser.add_argument("--faces", type=Path, default=CACHE / "lfw" / "faces-canonical-96.npz")
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    extractor = get_extractor(args.extractor)
    out = args.out or CACHE / "train" / f"lfw-{args.split}-{extractor.name}.npz"
    with np.load(CACHE / "lfw" / f"{extractor.name}.npz", allow_pickle=False) as cache:
        if str(cache["extractor_sha256"]) != (extractor.info.sha256 or ""):
            sys.exit(f"error: the vector cache of {extractor.name} was made by another model file; rerun embed_lfw.py")
        vector_of = dict(zip(cache["paths"].tolist(), cache["vectors"], strict=True))
    keep = set(lfw_split(args.split))
    with np.load(args.faces, allow_pickle=False) as faces_file:
        paths, labels = faces_file["paths"], faces_file["labels"]
        rows = [i for i, (p, label) in enumerate(zip(paths, labels, strict=True)) if label in keep and p in vector_of]
        faces = faces_file["faces"][rows]
    small = np.stack([np.asarray(Image.fromarray(f).resize((OUTPUT_SIZE, OUTPUT_SIZE), Image.BILINEAR)) for f in faces])
    data = TrainingData(
        faces=small,
        vectors=np.stack([vector_of[paths[i]] for i in rows]).astype(np.float32),
        labels=labels[rows],
        source=f"LFW deep-funneled, {args.split} split ({len(keep)} identities listed in fvr_audit/datasets/splits/lfw_{args.split}.txt)",
        extractor=extractor.name,
        extractor_sha256=extractor.info.sha256 or "",
    )
    data.save(out)
    print(f"{len(rows)} faces of {len(set(labels[rows].tolist()))} identities -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
