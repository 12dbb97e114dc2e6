"""Caricatured generator inputs: dlib-resnet128 vectors turned away from the mean (issue #12, parametric).

The turn that helps a ridge map (``RidgeAdapter.typical_cosine``) puts each mapped vector back at a
typical person's cosine from the mean face. This asks the converse for F = dlib-resnet128 itself,
where no map is needed: does a generator draw a face other recognizers read better when its input
is turned *further* from the mean than the person's own vector (a caricature)? It writes identity
maps dlib-resnet128 -> dlib-resnet128 whose outputs sit at cosine ``c`` from the mean of the LFW
*training* photos' vectors (0.916 is those photos' own median), to pass to the benchmark as
``--adapter``:

    python scripts/embed_lfw.py                                       # once: the LFW vector caches
    python benchmarks/experiments/caricature_maps.py --cosines 0.916,0.9,0.88,0.86,0.84 --out-dir maps
    python benchmarks/bench_reconstruction.py --methods naive --adapter maps/caricature-0.88.npz \\
        --engines dlib-resnet128,faceres-1024,mobileface-256 --tag car0.88 > naive-0.88.json

Not kept (README, "Where issue 12's goals end"): within the noise of 100 targets under faceres-1024.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter  # noqa: E402

CACHE = Path.home() / ".cache" / "fvr-audit" / "lfw"
NAME = "dlib-resnet128"


def caricature_map(mean: np.ndarray, cosine: float, samples: int, sha256: str) -> RidgeAdapter:
    """The identity map on dlib-resnet128's space, its outputs turned to ``cosine`` from ``mean``."""
    return RidgeAdapter(NAME, NAME, sha256, np.eye(len(mean)), mean, mean, 0.0, 1.0, 1.0, samples, 0,
                        origin=f"identity map, outputs at cosine {cosine} from the LFW training mean",
                        typical_cosine=cosine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cosines", default="0.916,0.9,0.88,0.86,0.84")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    with np.load(CACHE / f"{NAME}.npz", allow_pickle=False) as data:
        paths, vectors = data["paths"].tolist(), data["vectors"]
    train = set(lfw_split("train"))
    y = np.asarray(vectors[[i for i, p in enumerate(paths) if p.split("/")[0] in train]], np.float64)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    mean = y.mean(axis=0)
    print(f"LFW training photos' median cosine to their mean: {np.median(y @ (mean / np.linalg.norm(mean))):.3f}",
          file=sys.stderr)
    sha = get_extractor(NAME).info.sha256 or ""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for cosine in (float(c) for c in args.cosines.split(",")):
        caricature_map(mean, cosine, len(y), sha).save(args.out_dir / f"caricature-{cosine}.npz")


if __name__ == "__main__":
    main()
