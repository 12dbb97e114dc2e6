"""Split LFW identities into reconstructor-training and held-out evaluation sets (run once).

    python scripts/make_lfw_split.py --lfw ../shared/data/lfw-deepfunneled

Writes fvr_audit/datasets/splits/lfw_{train,eval,demo}.txt (one identity per line, sorted).
Eval identities are drawn (seeded) from those with 2..40 images, so every target has other photos
to enrol in a gallery and no single celebrity dominates; demo is a subset of eval. Every other
identity is for training reconstructors and eigenface bases. Split by identity, never by image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fvr_audit.datasets.lfw import lfw_identities

SPLITS = Path(__file__).resolve().parent.parent / "fvr_audit" / "datasets" / "splits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw-deepfunneled"))
    parser.add_argument("--eval", type=int, default=600, help="held-out identities")
    parser.add_argument("--demo", type=int, default=60, help="of which shipped in the demo database")
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()

    identities = lfw_identities(args.lfw)
    eligible = sorted(name for name, images in identities.items() if 2 <= len(images) <= 40)
    rng = np.random.default_rng(args.seed)
    held_out = sorted(rng.choice(eligible, size=args.eval, replace=False).tolist())
    demo = sorted(rng.choice(held_out, size=args.demo, replace=False).tolist())
    train = sorted(set(identities) - set(held_out))
    SPLITS.mkdir(parents=True, exist_ok=True)
    for name, names in (("train", train), ("eval", held_out), ("demo", demo)):
        (SPLITS / f"lfw_{name}.txt").write_text("\n".join(names) + "\n")
        images = sum(len(identities[n]) for n in names)
        print(f"lfw_{name}.txt: {len(names)} identities, {images} images")


if __name__ == "__main__":
    main()
