"""What limits re-identification of reconstructions by an independent judge (issue #12).

Two kinds of measurement, on the targets of ``bench_reconstruction.py`` (same seed, same galleries,
tpr@1 at N = 1000 and the judge's mean cosine to the target photo):

**The image route.** Every reconstruction is drawn in the 200 px canonical frame and cut to each
judge's crop from it. The target *photo* sent along the same route shows what the route itself
costs, before any attack:

* ``photo, judge's own alignment``: the ``original`` row of ``bench_reconstruction.py`` (the ceiling
  the goals are stated against);
* ``photo, canonical frame``: aligned into the canonical frame, then cut as a reconstruction is;
* ``... judge re-detects landmarks``: the canonical frame given to the judge's own detector and
  aligner, as a cloud service or another product would (for information; the scan cuts crops);
* ``... at 100 px`` / ``at 64 px``: the frame low-passed to the eigenface basis's resolution (the
  gradient attack's residual) and to the parametric generators' output size;
* ``... inside F's view, mean face outside``: only what F's crop covers is kept;
* ``... on the eigenface prior``: the frame projected on the shipped basis's eigenfaces (what the
  prior holds without the residual).

**The vector route: how much of the judge's reading F's vector carries.** Whatever an attack
does, the judge's vector of its reconstruction is a function of F's vector v (and of public
models and data). A regression from v to the judge's own vector, fitted on LFW *training*
photos embedded by both (so it uses the judge, which no fair attack may), ranks the targets
against the judge's gallery as an attack would be ranked. It is not a bound, but the best such
function decides what any attack can reach: when regressions of growing capacity and data
saturate, their figure estimates the ceiling of every attack on F's vectors under that judge.

* ``map F -> judge, ridge, n photos``: ridge on n training photos (penalty chosen by cosine on
  held-out training identities);
* ``map F -> judge, MLP``: one hidden layer (1,024 GELU units, dropout 0.2), cosine loss, on every
  training photo.

    python scripts/embed_lfw.py                                        # once: the LFW vector caches
    python benchmarks/bench_judge_limits.py > benchmarks/results_judge_limits_lfw.json
    python benchmarks/bench_judge_limits.py --dataset att --targets 40 > benchmarks/results_judge_limits_att.json

Prints JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DEFAULT_LFW, emit, machine, require_lfw  # noqa: E402
from bench_reconstruction import (  # noqa: E402
    Gallery,
    choose_att_targets,
    choose_targets,
    dataset_embeddings,
    log,
    topk_rows,
)

from fvr_audit.alignment.aligner import FaceAligner, NoFacePolicy  # noqa: E402
from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical  # noqa: E402
from fvr_audit.alignment.images import load_image_rgb  # noqa: E402
from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.reconstructors.eigenbasis import DEFAULT_BASIS_FILE, load_basis, to_canonical_uint8  # noqa: E402
from fvr_audit.reconstructors.views import view_box  # noqa: E402

PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)
RIDGE_PHOTOS = (1000, 3000, None)  # None: every training photo


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def resample(frames: np.ndarray, size: int) -> np.ndarray:
    """Canonical frames low-passed to ``size`` px and back (bilinear both ways)."""
    return np.stack([
        np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR).resize(frames.shape[1:3][::-1], Image.BILINEAR))
        for f in frames
    ])


def fit_ridge(x: np.ndarray, y: np.ndarray, labels: np.ndarray, seed: int):
    """Ridge x -> y; the penalty with the best mean cosine on a fifth of the identities held out."""
    names = np.unique(labels)
    held = np.isin(labels, np.random.default_rng(seed).choice(names, size=len(names) // 5, replace=False))

    def solve(a: np.ndarray, b: np.ndarray, penalty: float):
        mx, my = a.mean(0), b.mean(0)
        w = np.linalg.solve((a - mx).T @ (a - mx) + penalty * np.eye(a.shape[1]), (a - mx).T @ (b - my))
        return lambda q: unit((q - mx) @ w + my)

    scores = {p: float(np.einsum("ij,ij->i", solve(x[~held], y[~held], p)(x[held]), unit(y[held])).mean()) for p in PENALTIES}
    best = max(scores, key=scores.get)
    return solve(x, y, best), best


def fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 20, hidden: int = 1024):
    import torch

    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(unit(y).astype(np.float32))
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Dropout(0.2), torch.nn.Linear(hidden, y.shape[1])
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for lo in range(0, len(xs), 256):
            rows = order[lo : lo + 256]
            loss = 1 - torch.nn.functional.cosine_similarity(net(xs[rows]), ys[rows]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def apply(q: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return unit(net(torch.from_numpy(q.astype(np.float32))).numpy())

    return apply


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--extractor", default="dlib-resnet128", help="F, whose vectors leak")
    parser.add_argument("--engines", default="faceres-1024,mobileface-256", help="the independent judges")
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--topk-seeds", type=int, default=20)
    parser.add_argument("--dataset", choices=["lfw", "att"], default="lfw")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    lfw = require_lfw(args.lfw)
    f = get_extractor(args.extractor)
    judges = {name: get_extractor(name) for name in args.engines.split(",") if name}
    embedded = dataset_embeddings(lfw, [f, *judges.values()], args.dataset)
    train_names = set(lfw_split("train"))
    paths_f, vectors_f = embedded[f.name]
    targets = (choose_att_targets if args.dataset == "att" else choose_targets)(paths_f, args.targets, args.seed)
    target_paths = paths_f[targets]
    target_vectors = vectors_f[targets]
    labels = np.array([p.split("/")[0] for p in target_paths])
    source_dir = {"lfw": lfw, "att": lfw.parent / "att_faces"}[args.dataset]

    def photo_file(rel: str) -> Path:  # AT&T rows are named att_s<i>/<j>.pgm
        return source_dir / rel.removeprefix("att_")

    log(f"aligning {len(targets)} target photos into the canonical frame")
    canonical = FaceAligner([CANONICAL_GEOMETRY], no_face=NoFacePolicy.CENTER)
    frames = np.stack([canonical.align(load_image_rgb(photo_file(p))).crops[0] for p in target_paths])

    basis = load_basis(DEFAULT_BASIS_FILE)
    projected = to_canonical_uint8(np.clip(basis.render_small(basis.project_small(basis.from_canonical(frames))), 0, 255))
    low, high = view_box(f.geometry)
    low, high = round(low), round(high) + 1
    outside = np.broadcast_to(basis.mean_canonical(), frames.shape).copy()
    outside[:, low:high, low:high] = frames[:, low:high, low:high]
    image_rows = {
        "photo, canonical frame": frames,
        "photo, canonical frame at 100 px (the eigenface basis and the gradient's residual)": resample(frames, basis.size),
        "photo, canonical frame at 64 px (the parametric generators' output)": resample(frames, 64),
        f"photo inside F's view (canonical {low}..{high - 1} px), the mean face outside": outside,
        f"photo projected on the eigenface prior ({basis.k} eigenfaces, no residual)": projected,
    }

    # training photos of the maps: LFW training identities, embedded by F and by the judge
    row_f = {p: i for i, p in enumerate(paths_f)}
    result: dict = {
        "benchmark": "judge-limits",
        "machine": machine(),
        "extractor": f.name,
        "dataset": args.dataset,
        "targets": len(targets),
        "seed": args.seed,
        "rows": {},
    }
    for name, judge in judges.items():
        paths_j, vectors_j = embedded[name]
        row_j = {p: i for i, p in enumerate(paths_j)}
        missing = [p for p in target_paths if p not in row_j]
        if missing:
            raise SystemExit(f"{name}: target photos not embedded: {missing[:3]}")
        gallery = Gallery(paths_j, vectors_j, [row_j[p] for p in target_paths])
        truth = np.array([gallery.column[label] for label in labels])
        originals = vectors_j[[row_j[p] for p in target_paths]]

        def row(queries: np.ndarray, gallery=gallery, truth=truth, originals=originals, **extra) -> dict:
            out = topk_rows(gallery.identity_scores(queries), truth, args.topk_seeds)
            kept = {k: out[k] for k in ("tpr@1_N=1000", "ci@1_N=1000", "tpr@5_N=1000", "tpr@1_N=all")}
            kept["cosine_to_target_photo_mean"] = round(float(np.einsum("ij,ij->i", unit(queries), originals).mean()), 4)
            return {**kept, **extra}

        def put(label: str, value: dict, name: str = name) -> None:
            result["rows"][f"{label}|{name}"] = value
            log(f"{name}: {label}: tpr@1 N=1000 {value['tpr@1_N=1000']} (cos {value['cosine_to_target_photo_mean']})")

        put("photo, judge's own alignment", row(originals))
        for label, images in image_rows.items():
            put(label, row(judge.embed(crop_from_canonical(images, judge.geometry))))
        aligner = FaceAligner([judge.geometry], no_face=NoFacePolicy.CENTER)
        aligned = [aligner.align(fr) for fr in frames]
        put("photo, canonical frame, judge re-detects landmarks",
            row(judge.embed(np.stack([a.crops[0] for a in aligned])),
                center_fallback=sum(a.status.value == "center-fallback" for a in aligned)))

        train = [p for p in paths_j if p in row_f and p.split("/")[0] in train_names]
        x = vectors_f[[row_f[p] for p in train]]
        y = vectors_j[[row_j[p] for p in train]]
        train_labels = np.array([p.split("/")[0] for p in train])
        for count in RIDGE_PHOTOS:
            chosen = np.arange(len(train)) if count is None or count >= len(train) else \
                np.sort(np.random.default_rng(args.seed).choice(len(train), size=count, replace=False))
            start = time.perf_counter()
            mapping, penalty = fit_ridge(x[chosen], y[chosen], train_labels[chosen], args.seed)
            put(f"map F -> judge, ridge, {len(chosen)} training photos",
                row(mapping(target_vectors), penalty=penalty, seconds=round(time.perf_counter() - start, 1)))
        start = time.perf_counter()
        mapping = fit_mlp(x, y, args.seed)
        put(f"map F -> judge, MLP, {len(train)} training photos",
            row(mapping(target_vectors), seconds=round(time.perf_counter() - start, 1)))
    emit(result)


if __name__ == "__main__":
    main()
