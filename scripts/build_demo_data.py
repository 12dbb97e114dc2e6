"""Build the demo database shipped in models/demo/ from LFW held-out identities.

    python scripts/embed_lfw.py                    # once: LFW embedded by every built-in extractor
    python scripts/build_demo_data.py              # writes models/demo/*.npz + manifest entries

Targets: one photo (seeded) of each identity in fvr_audit/datasets/splits/lfw_demo.txt, stored as
dlib-resnet128 vectors (the leaked database). Galleries, per engine F' (dlib-resnet128 and
faceres-1024): every other photo of the demo identities plus every photo of the other held-out
(eval) identities as distractors. Originals: the target photos in faceres-1024's space, for the
"original" reference row. No reconstructor or eigenface basis is trained on any of these
identities (they are trained on lfw_train.txt). Only vectors, labels and relative paths are
stored: no images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fvr_audit.datasets.lfw import lfw_split
from fvr_audit.io.npz import save_npz
from fvr_audit.model_store import models_dir, register_model

ENGINES = ("dlib-resnet128", "faceres-1024")
SOURCE = "LFW deep-funneled ({ids}); vectors only, embedded by scripts/embed_lfw.py"
LICENSE = "derived from LFW (UMass Amherst research benchmark; news photos); vectors only, no images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fvr-audit" / "lfw")
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()

    spaces = {name: np.load(args.cache / f"{name}.npz", allow_pickle=False) for name in ENGINES}
    paths = spaces["dlib-resnet128"]["paths"]
    for name, space in spaces.items():
        assert (space["paths"] == paths).all(), f"{name}: cache rows differ; rebuild with scripts/embed_lfw.py"
    labels = spaces["dlib-resnet128"]["labels"]
    demo, held_out = set(lfw_split("demo")), set(lfw_split("eval"))

    rng = np.random.default_rng(args.seed)
    targets = np.array(
        sorted(int(rng.choice(np.flatnonzero(labels == name))) for name in sorted(demo)), dtype=np.int64
    )
    gallery = np.array(
        [i for i in range(len(labels)) if labels[i] in held_out and i not in set(targets.tolist())], dtype=np.int64
    )
    out = models_dir() / "demo"
    out.mkdir(parents=True, exist_ok=True)

    def write(file: str, space: str, rows: np.ndarray, description: str, half: bool = False) -> None:
        vectors = spaces[space]["vectors"][rows]
        save_npz(
            out / file,
            vectors=vectors.astype(np.float16 if half else np.float32),
            labels=labels[rows],
            paths=paths[rows],
            extractor=np.array(space),
        )
        (out / file).chmod(0o644)
        register_model(
            f"demo/{file}",
            kind="demo-data",
            source=SOURCE.format(ids="identities of fvr_audit/datasets/splits/lfw_demo.txt and lfw_eval.txt"),
            license=LICENSE,
            script="scripts/build_demo_data.py",
            description=description,
        )
        print(f"{file}: {len(rows)} vectors, {len(set(labels[rows]))} identities")

    write("demo-targets.npz", "dlib-resnet128", targets, "the demo's leaked database: one dlib vector per demo identity")
    write("demo-gallery-dlib-resnet128.npz", "dlib-resnet128", gallery, "gallery of F' = dlib-resnet128")
    write("demo-gallery-faceres-1024.npz", "faceres-1024", gallery, "gallery of F' = faceres-1024 (float16)", half=True)
    write("demo-originals-faceres-1024.npz", "faceres-1024", targets, "the target photos in faceres-1024's space")


if __name__ == "__main__":
    main()
