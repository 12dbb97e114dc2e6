"""Build the eigenface basis used by the eigenfaces and gradient reconstructors (run once).

    python scripts/build_eigenbasis.py --lfw ../shared/data/lfw-deepfunneled

Aligns photos of the LFW *training* identities only (``fvr_audit/datasets/splits/lfw_train.txt``;
no evaluation identity ever enters the basis) to the canonical reconstruction frame (a dlib
5-point chip with padding 0.5) at a reduced resolution, adds their mirror images, and keeps the
leading principal components (randomised SVD, seeded). Writes ``models/<name>.npz``:

* ``mean`` float32 [size*size*3]: the mean face, HWC order, 0..255;
* ``components`` float16 [K, size*size*3]: orthonormal eigenfaces, strongest first;
* ``stddev`` float32 [K]: standard deviation of the training faces along each eigenface;
* ``explained_variance_ratio`` float32 [K]; ``size``, ``padding``, ``samples``, ``identities``;

and registers it in ``models/manifest.json``. Only this derived basis is written into the
repository, never a face image or crop. The photos are read, aligned and discarded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.alignment.aligner import NoFacePolicy  # noqa: E402
from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY  # noqa: E402
from fvr_audit.datasets.lfw import lfw_identities, lfw_split  # noqa: E402
from fvr_audit.extraction.pipeline import align_paths  # noqa: E402
from fvr_audit.extractors.base import FaceGeometry  # noqa: E402
from fvr_audit.io.atomic import atomic_write  # noqa: E402
from fvr_audit.model_store import models_dir, register_model  # noqa: E402
from fvr_audit.reconstructors.eigenbasis import DEFAULT_BASIS_FILE  # noqa: E402

DEFAULT_LFW = REPO_ROOT.parent / "shared" / "data" / "lfw-deepfunneled"


def randomized_pca(x: np.ndarray, k: int, *, oversample: int = 32, power_iters: int = 3, seed: int = 0):
    """Top-``k`` right singular vectors and singular values of the centred ``x`` [N, D] (Halko et al. 2011).

    >>> rng = np.random.default_rng(1); a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 40))
    >>> v, s = randomized_pca(a - a.mean(0), 5)
    >>> u, s_exact, vt = np.linalg.svd(a - a.mean(0), full_matrices=False)
    >>> bool(np.allclose(s, s_exact[:5], rtol=1e-4))
    True
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    width = min(k + oversample, n, d)
    y = x @ rng.standard_normal((d, width)).astype(x.dtype)
    q, _ = np.linalg.qr(y)
    for _ in range(power_iters):
        z, _ = np.linalg.qr(x.T @ q)
        q, _ = np.linalg.qr(x @ z)
    b = q.T @ x  # [width, D]
    _, s, vt = np.linalg.svd(b.astype(np.float64), full_matrices=False)
    return vt[:k].astype(np.float32), s[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--size", type=int, default=100, help="basis resolution (the canonical frame is 200)")
    parser.add_argument("--components", type=int, default=384)
    parser.add_argument("--max-per-identity", type=int, default=4, help="photos per training identity (seeded)")
    parser.add_argument("--no-flip", action="store_true", help="do not add mirror images")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--output", default=DEFAULT_BASIS_FILE, help="file name inside models/")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    if not (args.lfw / "pairs.txt").exists():
        sys.exit(f"error: {args.lfw}: LFW deep-funneled folder not found (use --lfw DIR)")
    start = time.perf_counter()
    identities = lfw_identities(args.lfw)
    train = [name for name in lfw_split("train") if name in identities]
    eval_names = set(lfw_split("eval"))
    assert not eval_names & set(train), "train and eval identities overlap"
    rng = np.random.default_rng(args.seed)
    paths = []
    for name in train:
        images = identities[name]
        if len(images) > args.max_per_identity:
            images = sorted(rng.choice(images, size=args.max_per_identity, replace=False).tolist())
        paths.extend(str(args.lfw / rel) for rel in images)
    geometry = FaceGeometry(args.size, CANONICAL_GEOMETRY.template, CANONICAL_GEOMETRY.padding)
    print(f"aligning {len(paths)} photos of {len(train)} training identities to {geometry.describe()}", file=sys.stderr)

    crops = []
    for i, face in enumerate(align_paths(paths, [geometry], no_face=NoFacePolicy.SKIP, workers=args.workers)):
        if face.status.usable:
            crops.append(face.crops[0])
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1}/{len(paths)} aligned, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    faces = np.stack(crops)
    if not args.no_flip:
        faces = np.concatenate([faces, faces[:, :, ::-1]])
    x = faces.reshape(len(faces), -1).astype(np.float32)
    del faces, crops
    mean = x.mean(axis=0)
    x -= mean
    total_variance = float((x.astype(np.float64) ** 2).sum() / (len(x) - 1))
    print(f"PCA of {x.shape[0]} x {x.shape[1]} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    components, singular = randomized_pca(x, args.components, seed=args.seed)
    variance = singular**2 / (len(x) - 1)
    # Sign convention: each eigenface's largest-magnitude entry positive (stable across rebuilds).
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components *= signs[:, None]

    out = models_dir() / args.output
    with atomic_write(out, "wb", file_mode=0o644) as handle:
        np.savez(
            handle,
            mean=mean.astype(np.float32),
            components=components.astype(np.float16),
            stddev=np.sqrt(variance).astype(np.float32),
            explained_variance_ratio=(variance / total_variance).astype(np.float32),
            size=np.array(args.size),
            padding=np.array(geometry.padding),
            samples=np.array(len(x)),
            identities=np.array(len(train)),
            flipped=np.array(not args.no_flip),
            split=np.array("lfw_train"),
        )
    explained = float(variance.sum() / total_variance)
    entry = register_model(
        args.output,
        kind="eigenface-basis",
        source=(
            f"PCA of {len(x)} aligned faces ({len(x) // (1 if args.no_flip else 2)} photos"
            f"{'' if args.no_flip else ' + mirror images'}) of {len(train)} LFW deep-funneled training "
            f"identities (fvr_audit/datasets/splits/lfw_train.txt, <= {args.max_per_identity} photos each, "
            f"seed {args.seed}); no evaluation identity"
        ),
        license="derived from LFW (research use); basis only, no images",
        script="scripts/build_eigenbasis.py",
        description=(
            f"eigenfaces in the canonical frame ({args.size}x{args.size} dlib-5pt padding {geometry.padding:g}, "
            f"upsampled to {CANONICAL_GEOMETRY.size}), {args.components} components float16 explaining "
            f"{explained:.1%} of the variance; mean float32"
        ),
    )
    print(
        f"wrote {out} ({entry.size / 1e6:.1f} MB, {args.components} components, {explained:.1%} of the variance) "
        f"in {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
