"""Writing ``.npz`` vector databases atomically, with only plain (non-object) arrays."""

from __future__ import annotations

import os

import numpy as np

from fvr_audit.io.atomic import atomic_write


def save_npz(path: str | os.PathLike[str], *, compress: bool = False, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` atomically (mode 0600: vectors are biometric data).

    Object arrays are refused, so every file we write loads with ``allow_pickle=False``.
    Stored (uncompressed) by default so readers can memory-map the members.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "db.npz"
    >>> save_npz(p, vectors=np.eye(2, dtype=np.float32), labels=np.array(["a", "b"]))
    >>> sorted(np.load(p, allow_pickle=False).files)
    ['labels', 'vectors']
    """
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise TypeError(f"{name}: object arrays would need pickle to load; convert to str or numbers")
    with atomic_write(path, "wb") as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)
