"""Load a feature-vector database (``.npy`` or ``.npz``) and validate it.

A database is N feature vectors of dimension D, one per row, plus optional per-row arrays:

* ``.npy``: the N x D float array alone. It is memory-mapped, so a 1M x 512 float32 database
  (2 GB) costs no copy.
* ``.npz``: ``vectors`` (required), and optionally ``labels`` (the identity of each row:
  strings, or integers turned into strings), ``paths`` (the image each row came from, strings)
  and ``ids`` (integers or strings). Uncompressed members (``numpy.savez``) are memory-mapped in
  place inside the zip; compressed ones (``numpy.savez_compressed``) are read into memory.

Every problem is one line naming the file, the first offending row and how many rows, and
what to do; it raises :class:`~fvr_audit.errors.InputError` (exit code 2). Nothing is ever
unpickled, and the input file is only ever opened read-only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.vectors import checks
from fvr_audit.vectors.npyfile import NpzArchive, StoredArray, open_npy, open_npz, sniff

#: The arrays of an ``.npz`` that fvr-audit reads; ``vectors`` is required.
NPZ_KEYS = ("vectors", "labels", "paths", "ids")

MEMORY_MAPPED = "memory-mapped"
LOADED = "loaded"

#: ``progress(description, total)`` returns a function that advances that phase by n (the shape of
#: ``ProgressReporter.phase`` and of the scan's progress factory).
ProgressFactory = Callable[[str, int], Callable[[int], None]]
#: Passes over fewer bytes than this show no progress: they take about a second, and a phase line
#: before a one-line error would only be noise.
PROGRESS_FROM_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays elementwise has no truth value
class VectorDatabase:
    """A validated feature-vector database.

    ``vectors`` is a read-only native float32 [N, D] array: the file's own memory map where
    possible, else a copy. ``labels`` and ``paths`` are str arrays, ``ids`` as stored.

    >>> db = VectorDatabase(Path("db.npy"), np.eye(3, dtype=np.float32), labels=np.array(["a", "a", "b"]))
    >>> db.n, db.dim, db.has_labels, db.is_memory_mapped
    (3, 3, True, False)
    >>> db.identity_counts()
    {'a': 2, 'b': 1}
    """

    path: Path
    vectors: np.ndarray
    labels: np.ndarray | None = None
    paths: np.ndarray | None = None
    ids: np.ndarray | None = None
    #: ``"npy"`` or ``"npz"``, from the file's content.
    format: str = "npy"
    #: dtype of the vectors in the file (``vectors`` itself is always float32).
    source_dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    #: ``"memory-mapped"`` or ``"loaded"`` (into memory); ``storage_note`` says from what, or why.
    storage: str = LOADED
    storage_note: str = ""
    #: Problems that do not stop an audit (duplicates when allowed, ignored npz arrays...).
    warnings: tuple[str, ...] = ()
    #: The row checks' findings and norms; None when loaded with ``check=False``.
    scan: checks.RowScan | None = None
    #: Scalar members of an ``.npz`` (``fvr-audit extract`` writes ``extractor``, ``fvr_audit_version``).
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of vectors (rows)."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of each vector."""
        return int(self.vectors.shape[1])

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def has_paths(self) -> bool:
        return self.paths is not None

    @property
    def has_ids(self) -> bool:
        return self.ids is not None

    @property
    def is_memory_mapped(self) -> bool:
        return isinstance(self.vectors, np.memmap)

    @property
    def extractor(self) -> str | None:
        """The extractor the file says made the vectors (``extractor`` metadata), if it says."""
        value = self.metadata.get("extractor")
        return str(value) if value is not None else None

    def check_made_by(self, extractor_name: str) -> None:
        """InputError when the file says another extractor made its vectors: they could not be
        compared with ``extractor_name``'s, whatever their dimension.

        >>> db = VectorDatabase(Path("db.npz"), np.eye(2, dtype=np.float32), metadata={"extractor": "faceres-1024"})
        >>> db.check_made_by("faceres-1024"); db.check_made_by("dlib-resnet128")
        Traceback (most recent call last):
        fvr_audit.errors.InputError: db.npz: made by faceres-1024, not dlib-resnet128; run with --extractor faceres-1024
        """
        if self.extractor and self.extractor != extractor_name:
            raise InputError(
                f"{self.path}: made by {self.extractor}, not {extractor_name}; run with --extractor {self.extractor}"
            )

    def identity_counts(self) -> dict[str, int]:
        """Vectors per identity (label), sorted by label; empty without labels."""
        if self.labels is None:
            return {}
        names, counts = np.unique(self.labels, return_counts=True)
        return {str(name): int(count) for name, count in zip(names, counts, strict=True)}


def _load_checked_vectors(
    stored: StoredArray, expected_dim: int | None, extractor_name: str | None
) -> np.ndarray:
    """Header checks first (nothing read yet), then map or read the data."""
    checks.check_vector_dtype(stored.dtype, stored.where)
    checks.check_rank(stored.shape, stored.where)
    checks.check_not_empty(stored.shape, stored.where)
    checks.check_dim(stored.shape[1], expected_dim, stored.where, extractor_name)
    return stored.load()


def _load_row_array(npz: NpzArchive, key: str, n_rows: int) -> np.ndarray:
    stored = npz.array(key)
    checks.check_row_array(key, stored.shape, stored.dtype, n_rows, stored.where)
    array = stored.load()
    if key in ("labels", "paths"):
        array = checks.as_strings(array, stored.where)
    return array


def _read_metadata(npz: NpzArchive) -> tuple[dict[str, str | int | float | bool], list[str]]:
    """Scalar members become metadata; any other unknown member is reported as ignored."""
    metadata: dict[str, str | int | float | bool] = {}
    ignored: list[str] = []
    for key in npz:
        if key in NPZ_KEYS:
            continue
        try:
            stored = npz.array(key)
        except InputError:  # not even a readable .npy: not ours to judge, just skipped
            ignored.append(key)
            continue
        if stored.shape == () and stored.dtype.kind in "USbiuf":
            value = stored.load().item()
            metadata[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        else:
            ignored.append(key)
    return metadata, ignored


def _storage_note(stored: StoredArray, fmt: str, source_dtype: np.dtype, converted: bool) -> str:
    if converted:
        what = source_dtype.name + ("" if source_dtype.isnative else " (non-native byte order)")
        return f"converted from {what} to float32; save native float32 to memory-map it"
    if not stored.memory_mappable:
        return (
            "'vectors' is compressed in the .npz (numpy.savez_compressed); "
            "save with numpy.savez or numpy.save to memory-map it"
        )
    return "the .npy file" if fmt == "npy" else "an uncompressed .npz member, in place"


def _metadata_warnings(
    path: Path, labels: np.ndarray | None, ids: np.ndarray | None, ignored: list[str], vectors: np.ndarray
) -> list[str]:
    found: list[str] = []
    if ignored:
        names = ", ".join(f"'{key}'" for key in ignored)
        found.append(f"{path}: ignored array(s) {names}; fvr-audit reads {', '.join(NPZ_KEYS)}")
    if labels is not None:
        empty = checks.RowFinding.of(labels == "")
        if empty.count:
            found.append(
                f"{path}: 'labels': {checks.rows_phrase(empty.count, 'has', 'have')} an empty label "
                f"(first at row index {empty.first}); they all count as one identity"
            )
    if ids is not None:
        repeated = np.ones(ids.size, bool)
        repeated[np.unique(ids, return_index=True)[1]] = False  # the first row of each id
        found_repeats = checks.RowFinding.of(repeated)
        if found_repeats.count:
            found.append(
                f"{path}: 'ids': {checks.rows_phrase(found_repeats.count, 'repeats', 'repeat')} an earlier "
                f"row's id (first at row index {found_repeats.first}); rows cannot be told apart by id"
            )
    if vectors.ndim == 2 and not vectors.flags.c_contiguous:
        found.append(
            f"{path}: vectors are stored column-major (Fortran order); searches will copy them; "
            "save numpy.ascontiguousarray(vectors)"
        )
    return found


def _phase(progress: ProgressFactory | None, description: str, data: np.ndarray) -> Callable[[int], None] | None:
    """A progress phase counted in rows for a pass over ``data``, when it is large enough to show one.

    The phase starts with the pass's first chunk (the first ``on_rows`` call), so a pass that is
    skipped (native float32 needs no conversion) prints nothing.
    """
    if progress is None or data.nbytes < PROGRESS_FROM_BYTES:
        return None
    advance: Callable[[int], None] | None = None

    def on_rows(count: int) -> None:
        nonlocal advance
        if advance is None:
            advance = progress(description, int(data.shape[0]))
        advance(count)

    return on_rows


def load_vectors(
    path: str | os.PathLike[str],
    *,
    expected_dim: int | None = None,
    check: bool = True,
    allow_duplicates: bool = False,
    extractor_name: str | None = None,
    progress: ProgressFactory | None = None,
) -> VectorDatabase:
    """Load and validate a ``.npy`` or ``.npz`` feature-vector database.

    * ``expected_dim``: the extractor's dimension; a mismatch is an error (None: no check).
      ``extractor_name`` names the extractor in that message.
    * ``check``: run the row checks (NaN/Inf, all-zero rows, duplicates; one chunked pass over
      the data). Shape, dtype and per-row arrays are always checked: they are read from headers.
    * ``allow_duplicates``: duplicated rows become a warning in ``warnings`` instead of an error.
      An enrolled database should not hold the same vector twice, and each copy would count
      separately in top-K metrics.
    * ``progress``: shows each pass over the data (a conversion to float32, the row checks) as a
      phase counted in rows, for databases of at least :data:`PROGRESS_FROM_BYTES`.

    Memory: a memory-mapped database is read in chunks whose pages are released as the pass goes
    on; what stays is about 50 bytes per row (a squared norm, a hash and the sort that finds
    duplicates), some 500 MB for 10 million rows, whatever the dimension.

    The format comes from the file's first bytes, not its name.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> vectors = np.eye(4, 8, dtype=np.float32)
    >>> np.save(folder / "db.npy", vectors)
    >>> db = load_vectors(folder / "db.npy", expected_dim=8)
    >>> db.n, db.dim, db.storage, db.is_memory_mapped, db.scan.norms.l2_normalised
    (4, 8, 'memory-mapped', True, True)
    >>> np.savez_compressed(folder / "db.npz", vectors=vectors, labels=np.array([7, 7, 9, 9]))
    >>> db = load_vectors(folder / "db.npz")
    >>> db.storage, db.labels.tolist()
    ('loaded', ['7', '7', '9', '9'])
    """
    if expected_dim is not None and expected_dim < 1:
        raise ValueError(f"expected_dim must be positive, got {expected_dim}")
    path = Path(path)
    fmt = sniff(path)
    labels = paths = ids = None
    ignored: list[str] = []
    metadata: dict[str, str | int | float | bool] = {}
    if fmt == "npy":
        stored = open_npy(path)
        raw = _load_checked_vectors(stored, expected_dim, extractor_name)
    else:
        with open_npz(path) as npz:
            if "vectors" not in npz:
                held = ", ".join(f"'{key}'" for key in npz) or "no arrays"
                raise InputError(
                    f"{path}: no 'vectors' array in the .npz (it holds: {held}); "
                    "save it with numpy.savez(path, vectors=..., labels=...)"
                )
            stored = npz.array("vectors")
            raw = _load_checked_vectors(stored, expected_dim, extractor_name)
            n_rows = stored.shape[0]
            labels = _load_row_array(npz, "labels", n_rows) if "labels" in npz else None
            paths = _load_row_array(npz, "paths", n_rows) if "paths" in npz else None
            ids = _load_row_array(npz, "ids", n_rows) if "ids" in npz else None
            metadata, ignored = _read_metadata(npz)

    vectors = checks.to_float32(raw, stored.where, on_rows=_phase(progress, f"convert {stored.where} to float32", raw))
    converted = vectors is not raw
    if not isinstance(vectors, np.memmap):
        vectors.flags.writeable = False  # the same contract as a read-only memory map

    source_dtype = stored.dtype
    unit_tolerance = 1e-2 if source_dtype.itemsize == 2 else checks.UNIT_NORM_TOLERANCE
    warnings = _metadata_warnings(path, labels, ids, ignored, vectors)
    scan = None
    if check:
        on_rows = _phase(progress, f"check the rows of {stored.where}", vectors)
        scan = checks.scan_rows(vectors, unit_tolerance=unit_tolerance, on_rows=on_rows)
        warnings += checks.check_scan(scan, stored.where, allow_duplicates=allow_duplicates)

    return VectorDatabase(
        path=path,
        vectors=vectors,
        labels=labels,
        paths=paths,
        ids=ids,
        format=fmt,
        source_dtype=source_dtype,
        storage=MEMORY_MAPPED if isinstance(vectors, np.memmap) else LOADED,
        storage_note=_storage_note(stored, fmt, source_dtype, converted),
        warnings=tuple(warnings),
        scan=scan,
        metadata=metadata,
    )
