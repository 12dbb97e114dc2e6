"""Fit the ridge adapter between two extractors on LFW training identities (issue #5 measurement).

    python scripts/embed_lfw.py        # vector caches
    python scripts/fit_lfw_adapter.py --source faceres-1024 --target dlib-resnet128 --photos 1000

The same fit as ``fvr-audit adapter --calibration DIR`` and the scan's ``--calibration`` (which embed
a photo folder themselves) when given ``--turn``, but from the embed_lfw caches: the calibration photos
are ``--photos`` photos (seeded) of the LFW *training* identities, so no evaluation identity is used.
Prints the cross-validated cosine and writes the adapter to ``--out``. Without ``--turn`` the outputs
are left where the ridge puts them: the fit of every README figure before the eleventh session, and
of the shipped surrogate maps (``scripts/build_surrogate_maps.py``).

    python scripts/fit_lfw_adapter.py --source mobileface-256 --photos 2000 --turn --out a.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter  # noqa: E402

CACHE = Path.home() / ".cache" / "fvr-audit"


def fit_lfw_adapter(source: str, target: str, photos: int = 0, seed: int = 0, turn: bool = False) -> RidgeAdapter:
    """The ridge map source -> target fitted on ``photos`` (0: all) photos of the LFW training identities;
    ``turn``: see :attr:`RidgeAdapter.typical_cosine`."""
    caches = {}
    for name in (source, target):
        extractor = get_extractor(name)
        with np.load(CACHE / "lfw" / f"{name}.npz", allow_pickle=False) as data:
            if str(data["extractor_sha256"]) != (extractor.info.sha256 or ""):
                sys.exit(f"error: the {name} cache was made by another model file; rerun scripts/embed_lfw.py")
            caches[name] = (dict(zip(data["paths"].tolist(), data["vectors"], strict=True)), extractor)
    train = set(lfw_split("train"))
    paths = sorted(p for p in caches[source][0] if p.split("/")[0] in train and p in caches[target][0])
    if photos:
        rng = np.random.default_rng(seed)
        paths = sorted(rng.choice(paths, size=min(photos, len(paths)), replace=False).tolist())
    x = np.stack([caches[source][0][p] for p in paths])
    y = np.stack([caches[target][0][p] for p in paths])
    labels = np.array([p.split("/")[0] for p in paths])
    return RidgeAdapter.fit(x, y, labels, source=source, target=target,
                            target_sha256=caches[target][1].info.sha256 or "", turn=turn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="faceres-1024")
    parser.add_argument("--target", default="dlib-resnet128")
    parser.add_argument("--photos", type=int, default=0, help="calibration photos (0: every training photo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--turn", action="store_true",
                        help="turn outputs to the photos' own cosine from the mean, as the scan's --calibration does")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    adapter = fit_lfw_adapter(args.source, args.target, args.photos, args.seed, args.turn)
    adapter.save(args.out)
    print(f"{adapter.describe()}; fit cosine {adapter.fit_cosine:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
