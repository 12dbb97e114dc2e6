"""Synthetic vector databases for scan tests: clustered unit vectors stand in for a recognizer's space."""

from __future__ import annotations

import numpy as np


def clustered(identities: int, per_identity: int, dim: int, noise: float, seed: int = 0):
    """Unit vectors around one random centre per identity: a stand-in for a recognizer's space."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim))
    vectors = np.repeat(centres, per_identity, axis=0) + noise * rng.normal(size=(identities * per_identity, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat([f"id{i:04d}" for i in range(identities)], per_identity)
    paths = np.array([f"{label}/{j}.jpg" for label, j in zip(labels, np.tile(np.arange(per_identity), identities))])
    return vectors.astype(np.float32), labels, paths


def write_two_engine_databases(folder):
    """db.npz (dlib-resnet128's 128-d space) and faceres.npz (1024-d), 300 identities x 3 each."""
    vectors, labels, paths = clustered(300, 3, 128, noise=0.6)
    np.savez(folder / "db.npz", vectors=vectors, labels=labels, paths=paths)
    faceres, f_labels, f_paths = clustered(300, 3, 1024, noise=0.9, seed=1)
    np.savez(folder / "faceres.npz", vectors=faceres, labels=f_labels, paths=f_paths)
    return folder
