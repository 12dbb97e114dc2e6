"""Build ``models/dlib-resnet128-vector-prior.npz``: a Gaussian model of dlib-resnet128 vectors.

    python scripts/embed_lfw.py                  # once: the LFW vector cache
    python scripts/build_vector_prior.py

Mean and Cholesky factor of the covariance of the L2-normalised dlib-resnet128 vectors of the LFW
*training* identities (``fvr_audit/datasets/splits/lfw_train.txt``), each identity weighted
equally. The tool draws its own synthetic faces from it (``fvr_audit/probes.py``): new vectors
are drawn from the Gaussian and rendered by the shipped generators. No evaluation or demo identity
enters it; it holds no vector of any person, only two summary arrays.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.io.npz import save_npz  # noqa: E402
from fvr_audit.model_store import models_dir, register_model  # noqa: E402
from fvr_audit.probes import PRIOR_FILE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fvr-audit" / "lfw")
    args = parser.parse_args()
    with np.load(args.cache / "dlib-resnet128.npz", allow_pickle=False) as data:
        vectors, labels = np.asarray(data["vectors"], np.float64), np.asarray(data["labels"]).astype(str)
    train = np.isin(labels, lfw_split("train"))
    x, names = vectors[train], labels[train]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, inverse, counts = np.unique(names, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    weights /= weights.sum()
    mean = weights @ x
    centred = x - mean
    cov = (centred * weights[:, None]).T @ centred
    factor = np.linalg.cholesky(cov + 1e-9 * np.eye(len(mean)))
    out = models_dir() / PRIOR_FILE
    save_npz(
        out,
        mean=mean.astype(np.float32),
        factor=factor.astype(np.float32),
        samples=np.array(len(x)),
        identities=np.array(len(counts)),
        split=np.array("lfw_train"),
    )
    register_model(
        PRIOR_FILE,
        kind="vector-prior",
        source=(
            f"mean and covariance (Cholesky factor) of the dlib-resnet128 vectors of {len(x)} LFW deep-funneled photos "
            f"of {len(counts)} training identities (fvr_audit/datasets/splits/lfw_train.txt), identities weighted equally"
        ),
        license="derived from LFW (research use); two summary arrays, no vector of any person",
        script="scripts/build_vector_prior.py",
        description="Gaussian model of dlib-resnet128 vectors: the tool draws its own synthetic faces from it",
    )
    print(f"wrote {out} from {len(x)} vectors of {len(counts)} identities", file=sys.stderr)


if __name__ == "__main__":
    main()
