"""How much identity survives the map from F's space into dlib-resnet128's (issue #12).

Every attack that does not use F's own gradients (the parametric methods through an adapter,
``transfer``) draws from F's vector mapped into dlib-resnet128's space. Cosine to the true vector
is the wrong yardstick there (dlib-resnet128's impostor pairs sit at median cosine 0.84), so this
measures identification: each held-out LFW photo's F vector, mapped, is ranked against every other
LFW photo's true dlib-resnet128 vector (5,749 identities, an identity scoring its best photo), and
top-1 is the share ranked first; the same for each of the 400 AT&T photos against its 39 others'
and all of LFW (a second data set, when ``att_faces`` lies beside LFW). Maps compared, per F:

* ``self-calibrated``: the scan's map (the tool's own faces; the strongest ridge penalty that keeps
  the held-out faces identifiable);
* ``self-calibrated, cosine rule``: the same faces, the penalty of the best cross-validated cosine
  (the scan's rule before issue #12's map change);
* ``self-calibrated, penalty x``: the same faces, the ridge penalty fixed instead (a sweep);
* ``photos``: a ridge fitted on LFW *training* photos (what ``--calibration DIR`` gave until the
  eleventh session); ``photos_turned``: the same, its outputs turned to the photos' own cosine from
  the mean (what ``--calibration DIR`` gives now);
* ``true``: the dlib-resnet128 vector itself (the ceiling).

    python scripts/embed_lfw.py                                   # once: the LFW vector caches
    python benchmarks/bench_map_identification.py > benchmarks/results_map_identification.json

Prints JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import DEFAULT_LFW, emit, machine, require_lfw  # noqa: E402
from bench_reconstruction import att_embeddings  # noqa: E402

from fvr_audit.datasets.lfw import lfw_split  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter  # noqa: E402
from fvr_audit.reconstructors.parametric.self_calibration import (  # noqa: E402
    DEFAULT_FACES,
    _embedded_synthetic_faces,
    cache_dir,
    self_calibrate,
)

PENALTIES = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def load_cache(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(cache_dir() / "lfw" / f"{name}.npz", allow_pickle=False) as data:
        return data["paths"].astype(str), data["labels"].astype(str), unit(data["vectors"].astype(np.float32))


def ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source mean, weights, target mean) of the ridge map x -> y with a fixed penalty."""
    mx, my = x.mean(0), y.mean(0)
    a = x - mx
    weights = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (y - my))
    return mx, weights, my


class Identification:
    """Top-1 identification in dlib-resnet128's space: each query photo's mapped vector ranked against
    every *other* photo's true dlib-resnet128 vector, an identity scoring its best photo."""

    def __init__(self, dlib: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> None:
        self.queries = queries
        identities, owner = np.unique(labels, return_inverse=True)
        self.order = np.argsort(owner, kind="stable")
        self.bounds = np.searchsorted(owner[self.order], np.arange(len(identities) + 1))
        self.truth = np.searchsorted(identities, labels[queries])
        self.gallery = dlib

    def top1(self, mapped: np.ndarray) -> float:
        scores = unit(mapped) @ self.gallery.T
        scores[np.arange(len(self.queries)), self.queries] = -np.inf  # not the photo itself
        best = np.maximum.reduceat(scores[:, self.order], self.bounds[:-1], axis=1)
        return round(float((best.argmax(1) == self.truth).mean()), 4)


def held_out_queries(labels: np.ndarray, count: int) -> np.ndarray:
    """Rows of the first photo of each of the first ``count`` held-out LFW identities (not in the
    training split) that have another photo to be found by."""
    train = set(lfw_split("train"))
    rows_of: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        rows_of.setdefault(label, []).append(row)
    return np.array([rows[0] for name, rows in sorted(rows_of.items()) if name not in train and len(rows) > 1][:count])


def att_with_lfw(att_paths: np.ndarray, att_dlib: np.ndarray, dlib: np.ndarray, labels: np.ndarray) -> Identification:
    """Every AT&T photo a query, the gallery its other photos plus all of LFW (one joint gallery)."""
    return Identification(np.concatenate([unit(att_dlib), dlib]),
                          np.concatenate([[p.split("/")[0] for p in att_paths], labels]), np.arange(len(att_paths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", default="faceres-1024,mobileface-256")
    parser.add_argument("--queries", type=int, default=300, help="held-out LFW identities, one photo each")
    parser.add_argument("--photos", type=int, default=6000, help="training photos for the photo-fitted map")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    args = parser.parse_args()

    paths, labels, dlib = load_cache("dlib-resnet128")
    train = set(lfw_split("train"))
    queries = held_out_queries(labels, args.queries)
    lfw = Identification(dlib, labels, queries)
    # AT&T: every one of its 400 photos a query, the gallery its other photos plus all of LFW
    att_folder = require_lfw(args.lfw).parent / "att_faces"
    surrogate = get_extractor("dlib-resnet128")
    sources = [get_extractor(n) for n in args.sources.split(",") if n]
    att = att_embeddings(att_folder, [surrogate, *sources]) if (att_folder / "s1").is_dir() else None

    with_att = None
    if att is not None:  # built once: every map is scored against the same joint gallery
        with_att = att_with_lfw(*att[surrogate.name], dlib, labels)
    lfw_queries = {surrogate.name: dlib[queries]}  # each F's LFW query vectors (filled as each F is read)

    def scored(source: str, transform) -> dict:
        out = {"lfw_top1": lfw.top1(transform(lfw_queries[source]))}
        if with_att is not None:
            out["att_top1"] = with_att.top1(transform(unit(att[source][1])))
        return out

    training = np.flatnonzero([label in train for label in labels])[: args.photos]
    result: dict = {
        "benchmark": "map_identification",
        "machine": machine(),
        "lfw_queries": int(len(queries)),
        "lfw_gallery_identities": int(len(np.unique(labels))),
        "att_queries": 0 if att is None else int(len(att[surrogate.name][0])),
        "true_dlib_vector": scored(surrogate.name, lambda v: v),
        "sources": {},
    }
    if att is None:
        log(f"{att_folder}: AT&T faces not found; LFW only")
    log(f"the true dlib-resnet128 vector: {result['true_dlib_vector']}")
    for extractor in sources:
        name = extractor.name
        source_paths, _, vectors = load_cache(name)
        if not np.array_equal(source_paths, paths):
            raise SystemExit(f"{name}: its LFW cache lists other photos than dlib-resnet128's; rerun scripts/embed_lfw.py")
        lfw_queries[name] = vectors[queries]
        entry: dict = {}
        calibration = self_calibrate(extractor)
        entry["self_calibrated"] = {**scored(name, calibration.adapter.transform), "map": calibration.adapter.describe()}
        log(f"{name}: self-calibrated {entry['self_calibrated']}")
        embedded, z = _embedded_synthetic_faces([extractor, surrogate], DEFAULT_FACES, 0)
        by_cosine = RidgeAdapter.fit(embedded, z, np.arange(len(z)), source=name, target=surrogate.name).with_origin(
            f"{len(z)} synthetic faces (self-calibration)", 0.0)
        entry["self_calibrated_cosine_rule"] = {**scored(name, by_cosine.transform), "map": by_cosine.describe()}
        log(f"{name}: self-calibrated, penalty by cosine {entry['self_calibrated_cosine_rule']}")
        entry["self_calibrated_fixed_penalty"] = {}
        for penalty in PENALTIES:
            mx, w, my = ridge(unit(embedded), unit(z), penalty)
            entry["self_calibrated_fixed_penalty"][str(penalty)] = scored(name, lambda v, mx=mx, w=w, my=my: (v - mx) @ w + my)
        log(f"{name}: fixed penalties {entry['self_calibrated_fixed_penalty']}")
        # what the scan's --calibration fits; the same map unturned is what it fitted before
        turned = RidgeAdapter.fit(vectors[training], dlib[training], labels[training], source=name,
                                  target=surrogate.name, turn=True)
        photo_map = replace(turned, typical_cosine=0.0)
        # why the turn: the ridge pulls real vectors towards its mean (median cosine of the mapped LFW
        # queries to the map's mean, beside that of their true dlib-resnet128 vectors)
        mean = unit(turned.target_mean[None])[0]
        cosine_to_mean = {"mapped": round(float(np.median(photo_map.transform(lfw_queries[name]) @ mean)), 4),
                          "true": round(float(np.median(unit(lfw_queries[surrogate.name]) @ mean)), 4)}
        entry["photos"] = {**scored(name, photo_map.transform), "map": photo_map.describe(),
                           "lfw_median_cosine_to_mean": cosine_to_mean}
        log(f"{name}: photo-fitted {entry['photos']}")
        entry["photos_turned"] = {**scored(name, turned.transform), "map": turned.describe()}
        log(f"{name}: photo-fitted, turned {entry['photos_turned']}")
        result["sources"][name] = entry
    emit(result)


if __name__ == "__main__":
    main()
