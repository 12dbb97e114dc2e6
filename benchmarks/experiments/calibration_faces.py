"""Which of the tool's own faces make the best self-calibration map (issue #12, shared queries).

The self-calibrated map (F's space -> dlib-resnet128's, fitted on 2,000 of the tool's faces, one
query to F each) is what every attack on an unseen F without photos draws from. This experiment
compares recipes for those 2,000 faces by the yardstick of ``bench_map_identification.py``: each
held-out LFW photo's F vector, mapped, identified top-1 among all 5,749 LFW identities in
dlib-resnet128's space (and AT&T's 400 photos among their others plus LFW). Recipes:

* ``generators_z``: the shipped recipe (the three generators on prior vectors; the map's target is
  the vector the generator was asked for);
* ``generators``: the same faces, the target the dlib-resnet128 vector of the face itself;
* ``eigen``: faces drawn from the Gaussian model of the shipped eigenface basis (no generator);
* ``generators_eigen_a``: each generator face plus a random eigenface-space offset of scale ``a``;
* ``generators_eigen_z_a``: the same faces, the map's target the generator's input z;
* ``generators_aug``: generator faces under photometric and geometric jitter;
* ``mixed``: half ``generators_eigen_0.5``, half ``eigen``.

Every recipe spends the same 2,000 queries to F. Each map is fitted without the scan's turn
(``RidgeAdapter.typical_cosine``); the JSON gives the median cosine of the mapped LFW queries to the
map's target mean, beside that of the queries' true dlib-resnet128 vectors. Run:

    python scripts/embed_lfw.py                                       # once: the LFW vector caches
    python benchmarks/experiments/calibration_faces.py > calibration_faces.json

Prints JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent))
from _common import DEFAULT_LFW, emit, machine, require_lfw  # noqa: E402
from bench_map_identification import Identification, att_with_lfw, held_out_queries, load_cache, unit  # noqa: E402
from bench_reconstruction import att_embeddings  # noqa: E402

from fvr_audit.alignment.canonical import crop_from_canonical  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.probes import GENERATORS, draw_prior_vectors, generate_faces  # noqa: E402
from fvr_audit.reconstructors.eigenbasis import load_basis, to_canonical_uint8  # noqa: E402
from fvr_audit.reconstructors.parametric.adapter import PenaltySelection, RidgeAdapter  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def generator_faces(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    z = draw_prior_vectors(count, seed=seed)
    frames = np.empty((count, 200, 200, 3), np.uint8)
    for i, method in enumerate(GENERATORS):
        rows = np.arange(i, count, len(GENERATORS))
        frames[rows] = generate_faces(z[rows], method)
    frames[1::2] = frames[1::2, :, ::-1]
    return z, frames


def eigen_faces(count: int, seed: int, scale: float = 1.0) -> np.ndarray:
    basis = load_basis()
    rng = np.random.default_rng([seed, 0xE16E])
    return to_canonical_uint8(basis.render_small(scale * rng.standard_normal((count, basis.k))))


def plus_eigen(frames: np.ndarray, seed: int, scale: float, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Each face plus a random offset in the eigenface basis (components ``lo``..``hi``; the offset
    at the basis's resolution, upsampled to the canonical frame)."""
    basis = load_basis()
    rng = np.random.default_rng([seed, 0xAD0])
    coefficients = scale * rng.standard_normal((len(frames), basis.k))
    coefficients[:, :lo] = 0
    if hi is not None:
        coefficients[:, hi:] = 0
    offsets = basis.render_small(coefficients) - basis.mean.reshape(basis.size, basis.size, 3)
    up = to_canonical_uint8(offsets + 128.0).astype(np.float32) - 128.0
    return np.clip(frames.astype(np.float32) + up, 0, 255).astype(np.uint8)


def augmented(frames: np.ndarray, seed: int) -> np.ndarray:
    """Random shift (up to 6 px), brightness, contrast and colour balance per face."""
    rng = np.random.default_rng([seed, 0xA06])
    out = np.empty_like(frames)
    for i, face in enumerate(frames):
        dy, dx = rng.integers(-6, 7, size=2)
        moved = np.roll(np.roll(face, dy, axis=0), dx, axis=1).astype(np.float32)
        gain = rng.uniform(0.7, 1.3) * rng.uniform(0.9, 1.1, size=3)
        mean = moved.mean()
        moved = (moved - mean) * rng.uniform(0.7, 1.3) + mean
        out[i] = np.clip(moved * gain + rng.uniform(-25, 25), 0, 255).astype(np.uint8)
    return out


def embed(extractor, frames: np.ndarray, chunk: int = 250) -> np.ndarray:
    out = np.empty((len(frames), extractor.dim), np.float32)
    for lo in range(0, len(frames), chunk):
        out[lo:lo + chunk] = extractor.embed(crop_from_canonical(frames[lo:lo + chunk], extractor.geometry))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="mobileface-256,faceres-1024")
    parser.add_argument("--recipes", default="generators_z,generators,eigen,generators_eigen_0.5,generators_eigen_1.0,generators_aug,mixed")
    parser.add_argument("--faces", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--penalties", action="store_true", help="also a sweep of fixed ridge penalties (LFW)")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    args = parser.parse_args()

    paths, labels, dlib_vectors = load_cache("dlib-resnet128")
    queries = held_out_queries(labels, args.queries)
    lfw = Identification(dlib_vectors, labels, queries)
    dlib = get_extractor("dlib-resnet128")
    sources = [get_extractor(n) for n in args.sources.split(",") if n]
    att_folder = require_lfw(args.lfw).parent / "att_faces"
    att = att_embeddings(att_folder, [dlib, *sources]) if (att_folder / "s1").is_dir() else None
    with_att = None if att is None else att_with_lfw(*att[dlib.name], dlib_vectors, labels)
    source_queries = {}
    for extractor in sources:
        source_paths, _, vectors = load_cache(extractor.name)
        assert np.array_equal(source_paths, paths)
        source_queries[extractor.name] = vectors[queries]

    # the faces of every recipe (F's queries are the same count for each)
    n = args.faces
    z, gen = generator_faces(n, args.seed)
    recipes: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name in args.recipes.split(","):
        if name == "generators_z":
            recipes[name] = (gen, z)
        elif name == "generators":
            recipes[name] = (gen, None)
        elif name == "eigen":
            recipes[name] = (eigen_faces(n, args.seed), None)
        elif name.startswith("eigen_"):
            recipes[name] = (eigen_faces(n, args.seed, float(name.split("_")[1])), None)
        elif name.startswith("generators_eigen_z_"):  # varied faces, the map's target still z
            recipes[name] = (plus_eigen(gen, args.seed, float(name.rsplit("_", 1)[1])), z)
        elif name.startswith("generators_eigen_"):
            recipes[name] = (plus_eigen(gen, args.seed, float(name.rsplit("_", 1)[1])), None)
        elif name.startswith("generators_band"):  # generators_band{lo}-{hi}_{scale}
            band, scale = name[len("generators_band"):].split("_")
            lo, hi = (int(b) for b in band.split("-"))
            recipes[name] = (plus_eigen(gen, args.seed, float(scale), lo, hi), None)
        elif name == "generators_aug":
            recipes[name] = (augmented(gen, args.seed), None)
        elif name == "mixed":
            half = n // 2
            recipes[name] = (np.concatenate([plus_eigen(gen[:half], args.seed, 0.5), eigen_faces(n - half, args.seed + 1)]), None)
        else:
            raise SystemExit(f"unknown recipe {name}")

    result: dict = {"experiment": "calibration_faces", "machine": machine(), "faces": n, "lfw_queries": int(len(queries)),
                    "recipes": {}}
    for name, (frames, target) in recipes.items():
        start = time.perf_counter()
        y = target if target is not None else embed(dlib, frames)
        entry = {}
        for extractor in sources:
            x = embed(extractor, frames)
            adapter = RidgeAdapter.fit(x, y, np.arange(n), source=extractor.name, target=dlib.name,
                                       selection=PenaltySelection.IDENTIFICATION)
            mapped = adapter.transform(source_queries[extractor.name])
            mean = adapter.target_mean / np.linalg.norm(adapter.target_mean)
            scores = {"lfw_top1": lfw.top1(mapped), "map": adapter.describe(),
                      # how close to the average face the map puts real vectors (no turn here), and where
                      # the queries' true dlib-resnet128 vectors lie: RidgeAdapter.typical_cosine's reason
                      "median_cosine_to_mean": round(float(np.median(mapped @ mean)), 4),
                      "true_median_cosine_to_mean": round(float(np.median(dlib_vectors[queries] @ mean)), 4)}
            if with_att is not None:
                scores["att_top1"] = with_att.top1(adapter.transform(unit(att[extractor.name][1])))
            if args.penalties:
                from bench_map_identification import ridge
                sweep = {}
                for penalty in (0.01, 0.1, 0.3, 1.0, 3.0, 10.0):
                    mx, w, my = ridge(unit(x), unit(y), penalty)
                    sweep[str(penalty)] = lfw.top1((source_queries[extractor.name] - mx) @ w + my)
                scores["lfw_top1_fixed_penalty"] = sweep
            entry[extractor.name] = scores
        entry["seconds"] = round(time.perf_counter() - start, 1)
        log(f"{name}: {entry}")
        result["recipes"][name] = entry
    emit(result)


if __name__ == "__main__":
    main()
