"""Writing ``.npz`` files atomically, with only plain (non-object) arrays; reading them back safely."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError
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


def load_npz(path: str | os.PathLike[str], keys: Iterable[str], *, what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` that fvr-audit wrote (``what`` names it in errors), read with
    the vector databases' checks: never unpickled, declared sizes checked against the file before
    anything is allocated (a 320-byte file cannot ask for terabytes), one-line InputError otherwise.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> save_npz(p, weights=np.eye(2, dtype=np.float32))
    >>> load_npz(p, ["weights"], what="an adapter")["weights"].shape
    (2, 2)
    >>> np.save(p.with_suffix(".npy"), np.eye(2))
    >>> load_npz(p.with_suffix(".npy"), ["weights"], what="an adapter")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    fvr_audit.errors.InputError: ...a.npy: a .npy array, not an .npz archive; give an adapter (.npz)
    """
    from fvr_audit.vectors.npyfile import NPY_MAGIC, PICKLE_MAGICS, ZIP_MAGICS, open_npz, sniff

    path = Path(path)
    head = b""
    if path.is_file():
        with open(path, "rb") as handle:
            head = handle.read(8)
    if head.startswith(NPY_MAGIC):
        raise InputError(f"{path}: a .npy array, not an .npz archive; give {what} (.npz)")
    if head and not head.startswith(ZIP_MAGICS + PICKLE_MAGICS):
        raise InputError(f"{path}: not {what} (not an .npz archive)")
    sniff(path)  # missing, a folder, a pipe, empty, a pickle: its one-line errors
    arrays = {}
    with open_npz(path) as npz:
        for key in keys:
            if key not in npz:
                raise InputError(f"{path}: no '{key}' array; not {what}")
            # copy: a memory map must not outlive the archive's handle in callers that keep it
            arrays[key] = np.array(npz.array(key).load())
    return arrays
