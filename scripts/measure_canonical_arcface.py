"""Can mobileface's arcface-5pt crop be cut from the canonical 200px dlib frame (padding 0.5) by a
fixed similarity warp? LFW subset (first 60 same + 60 different pairs per fold = 1200 pairs).

    python scripts/measure_canonical_arcface.py

Prints the mean ArcFace points (eye centres, nose tip, mouth corners) of canonical chips, which
fvr_audit/alignment/canonical.py uses as CANONICAL_ARCFACE_POINTS, and mobileface's verification
accuracy with its own landmarks vs the fixed warp.
"""
import sys, time, json
from pathlib import Path
import numpy as np, onnxruntime as ort, dlib
from fvr_audit.alignment import FaceAligner, NoFacePolicy, load_image_rgb
from fvr_audit.alignment.aligner import ARCFACE_TEMPLATE_112, warp_to_template, dlib_model_file
from fvr_audit.datasets.lfw import read_lfw_pairs
from fvr_audit.extractors.base import AlignmentTemplate as T, FaceGeometry, l2_normalize
from fvr_audit.metrics.verification import kfold_verification_accuracy
from fvr_audit.model_store import model_path
LFW = Path("/work/shared/data/lfw-deepfunneled")
pairs, count = [], {}
for p in read_lfw_pairs(LFW / "pairs.txt"):
    k = (p.fold, p.same)
    if count.get(k, 0) < 60: count[k] = count.get(k, 0) + 1; pairs.append(p)
images = sorted({p.first for p in pairs} | {p.second for p in pairs})
G_CANON, G_ARC, G_DLIB = FaceGeometry(200, T.DLIB_5PT, 0.5), FaceGeometry(112, T.ARCFACE_5PT), FaceGeometry(112, T.DLIB_5PT, 0.4)
aligner = FaceAligner([G_CANON, G_ARC, G_DLIB], no_face=NoFacePolicy.CENTER)
crops = {g: [] for g in (G_CANON, G_ARC, G_DLIB)}
for rel in images:
    face = aligner.align(load_image_rgb(LFW / rel))
    for g, c in zip(aligner.geometries, face.crops): crops[g].append(c)
canon = np.stack(crops[G_CANON])
# the five arcface points inside canonical chips: 68-point landmarks on the chip itself, averaged
shape68 = dlib.shape_predictor(str(dlib_model_file("shape_predictor_68_face_landmarks.dat")))
detector = dlib.get_frontal_face_detector()
pts = []
for chip in canon[:400]:
    found = detector(chip, 0)
    if not found: continue
    p = np.array([(q.x, q.y) for q in shape68(chip, max(found, key=lambda r: r.area())).parts()], float)
    pts.append(np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]))
mean_pts = np.mean(pts, 0)
print("faces used", len(pts), "mean arcface points in canonical frame", mean_pts.round(1).tolist(), file=sys.stderr)
fixed = np.stack([warp_to_template(c, mean_pts, ARCFACE_TEMPLATE_112, 112) for c in canon])
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2
s = ort.InferenceSession(str(model_path("mobileface-256.onnx")), opts, providers=["CPUExecutionProvider"])
def emb(x): return l2_normalize(np.concatenate([s.run(None, {"data": x[i:i+64].astype(np.float32)})[0] for i in range(0, len(x), 64)]))
idx = {r: i for i, r in enumerate(images)}
a = np.array([idx[p.first] for p in pairs]); b = np.array([idx[p.second] for p in pairs])
same = np.array([p.same for p in pairs]); folds = np.array([p.fold for p in pairs])
for label, x in (("arcface-5pt (own landmarks)", np.stack(crops[G_ARC])), ("arcface via fixed warp of canonical frame", fixed), ("dlib-5pt 0.4", np.stack(crops[G_DLIB]))):
    v = emb(x); acc = kfold_verification_accuracy(np.einsum("ij,ij->i", v[a], v[b]), same, folds)
    print(f"{label}: {acc.mean:.4f} +- {acc.std_error:.4f}", flush=True)
print("mean_pts", json.dumps(mean_pts.round(2).tolist()))
