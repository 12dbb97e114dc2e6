"""Checks on a feature-vector database, each one small, each failure one actionable line.

Two kinds of checks:

* header checks (rank, dtype, size, dimension, per-row arrays) look only at shape and dtype
  and raise :class:`~fvr_audit.errors.InputError` before any data is read;
* row checks (NaN/Inf, all-zero rows, exact duplicates) need the data. :func:`scan_rows` reads
  it once, chunk by chunk, so a memory-mapped 1M x 512 database is never copied whole: per row
  it keeps only a squared norm (float64) and a 64-bit hash of the row's bytes.

Row indices in messages are 0-based, as in numpy (``vectors[17]``).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.vectors.npyfile import take_rows

#: Bytes of float32 data handled per chunk by the row checks. Each chunk is read twice (norms,
#: then hashes) and the hasher's buffers are as big: at 1 MiB they stay in cache, which measured
#: almost twice as fast as 8 MiB chunks, while per-chunk Python overhead is still negligible.
CHUNK_BYTES = 1024 * 1024
#: ``abs(norm - 1)`` below which a row counts as L2-normalised (float16 sources get 1e-2).
UNIT_NORM_TOLERANCE = 1e-3

_FLOAT_KINDS_HINT = "feature vectors must be float16, float32 or float64"


def rows_phrase(count: int, singular: str = "", plural: str = "") -> str:
    """``"1 row is"`` / ``"3 rows are"``.

    >>> rows_phrase(1, "contains", "contain"), rows_phrase(3, "contains", "contain"), rows_phrase(2)
    ('1 row contains', '3 rows contain', '2 rows')
    """
    text = f"{count} row" if count == 1 else f"{count} rows"
    verb = singular if count == 1 else plural
    return f"{text} {verb}" if verb else text


# --------------------------------------------------------------------------- header checks


def check_vector_dtype(dtype: np.dtype, where: str) -> None:
    """Feature vectors are real floating point: float16, float32 or float64.

    >>> check_vector_dtype(np.dtype("float16"), "db.npy")
    >>> check_vector_dtype(np.dtype("int8"), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: has dtype int8, not floating point; feature vectors must be float16, float32 or float64; if they are quantised codes, dequantise them first, otherwise convert with vectors.astype(numpy.float32)
    """
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return
    if dtype.kind in "iu":
        hint = (
            "if they are quantised codes, dequantise them first, "
            "otherwise convert with vectors.astype(numpy.float32)"
        )
    elif dtype.kind == "b":
        hint = "binary codes are not supported; export the float vectors the codes were made from"
    elif dtype.kind == "c":
        hint = "complex values are not feature vectors; export the real-valued vectors"
    elif dtype.kind == "f":  # float128 and friends: no extractor emits them, and they are not portable
        hint = "convert with vectors.astype(numpy.float32)"
    else:  # strings, structured records, datetimes
        hint = "save a plain N x D float array with numpy.save"
    raise InputError(f"{where}: has dtype {dtype.name}, not floating point; {_FLOAT_KINDS_HINT}; {hint}")


def check_rank(shape: tuple[int, ...], where: str) -> None:
    """A database is 2-D: one vector per row.

    >>> check_rank((10, 512), "db.npy")
    >>> check_rank((512,), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: expected a 2-D array (N vectors x D dimensions), got a 1-D array of shape (512,); save a single vector as vectors.reshape(1, -1)
    >>> check_rank((10, 2, 512), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: expected a 2-D array (N vectors x D dimensions), got a 3-D array of shape (10, 2, 512); reshape it to N x D, e.g. vectors.reshape(-1, 512)
    """
    if len(shape) == 2:
        return
    got = f"got a {len(shape)}-D array of shape {shape}"
    if len(shape) == 0:
        hint = "save an N x D array of vectors, not a scalar"
    elif len(shape) == 1:
        hint = "save a single vector as vectors.reshape(1, -1)"
    else:
        hint = f"reshape it to N x D, e.g. vectors.reshape(-1, {shape[-1]})"
    raise InputError(f"{where}: expected a 2-D array (N vectors x D dimensions), {got}; {hint}")


def check_not_empty(shape: tuple[int, int], where: str) -> None:
    """At least one vector, of at least one dimension.

    >>> check_not_empty((0, 512), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: the database is empty (shape (0, 512): no vectors); extract at least one vector
    """
    if shape[0] == 0:
        raise InputError(
            f"{where}: the database is empty (shape {shape}: no vectors); extract at least one vector"
        )
    if shape[1] == 0:
        raise InputError(
            f"{where}: the vectors have no dimensions (shape {shape}); export the extractor's output vectors"
        )


def check_dim(dim: int, expected_dim: int | None, where: str, extractor: str | None = None) -> None:
    """The vectors' dimension is the one the extractor produces (no check when ``expected_dim`` is None).

    >>> check_dim(512, None, "db.npy")
    >>> check_dim(128, 512, "db.npy", extractor="arcface-r100")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: the vectors have dimension 128 but extractor 'arcface-r100' produces 512-dimensional vectors; give vectors made by that extractor, or choose the extractor that made these
    """
    if expected_dim is None or dim == expected_dim:
        return
    producer = f"extractor '{extractor}' produces" if extractor else "the extractor is expected to produce"
    raise InputError(
        f"{where}: the vectors have dimension {dim} but {producer} {expected_dim}-dimensional vectors; "
        "give vectors made by that extractor, or choose the extractor that made these"
    )


#: Per-row arrays of an .npz: accepted dtype kinds, and what they must be (for the message).
ROW_ARRAY_KINDS: dict[str, tuple[str, str]] = {
    "labels": ("USiu", "labels must be strings or integers (the identity of each row)"),
    "paths": ("US", "paths must be strings (the image each row came from)"),
    "ids": ("USiu", "ids must be integers or strings (one identifier per row)"),
}


def check_row_array(key: str, shape: tuple[int, ...], dtype: np.dtype, n_rows: int, where: str) -> None:
    """``labels``/``paths``/``ids``: 1-D, one entry per row of ``vectors``, of an accepted dtype.

    >>> check_row_array("labels", (3,), np.dtype("int64"), 3, "db.npz: 'labels'")
    >>> check_row_array("labels", (2,), np.dtype("<U5"), 3, "db.npz: 'labels'")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npz: 'labels': has 2 entries but 'vectors' has 3 rows; give exactly one entry per row
    >>> check_row_array("paths", (3,), np.dtype("float64"), 3, "db.npz: 'paths'")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npz: 'paths': has dtype float64; paths must be strings (the image each row came from)
    """
    kinds, requirement = ROW_ARRAY_KINDS[key]
    if dtype.kind not in kinds:
        raise InputError(f"{where}: has dtype {dtype.name}; {requirement}")
    if len(shape) != 1:
        raise InputError(f"{where}: has shape {shape}; expected one entry per row, shape ({n_rows},)")
    if shape[0] != n_rows:
        raise InputError(
            f"{where}: has {shape[0]} entries but 'vectors' has {n_rows} rows; give exactly one entry per row"
        )


def as_strings(array: np.ndarray, where: str) -> np.ndarray:
    """Labels/paths as a ``str`` array: integers are formatted, bytes decoded as UTF-8.

    >>> as_strings(np.array([7, 12]), "x").tolist(), as_strings(np.array([b"a"]), "x").tolist()
    (['7', '12'], ['a'])
    """
    if array.dtype.kind == "U":
        return array
    if array.dtype.kind == "S":
        try:
            return np.char.decode(array, "utf-8")
        except UnicodeDecodeError:
            raise InputError(
                f"{where}: holds bytes that are not valid UTF-8; save it as a str array"
            ) from None
    return array.astype(str)


# --------------------------------------------------------------------------- row checks


@dataclass(frozen=True)
class RowFinding:
    """Rows failing one check: how many, and the first one (0-based)."""

    count: int = 0
    first: int | None = None

    @classmethod
    def of(cls, mask: np.ndarray) -> RowFinding:
        """
        >>> RowFinding.of(np.array([False, True, True]))
        RowFinding(count=2, first=1)
        """
        hits = np.flatnonzero(mask)
        return cls(int(hits.size), int(hits[0]) if hits.size else None)


@dataclass(frozen=True)
class DuplicateFinding:
    """Rows whose bytes equal an earlier row's; ``first_pair`` is (earlier, later) for the first such row."""

    count: int = 0
    first_pair: tuple[int, int] | None = None


@dataclass(frozen=True)
class NormStats:
    """L2 norms of the finite rows."""

    min: float
    median: float
    max: float
    #: Rows whose norm differs from 1 by more than the tolerance.
    not_unit: int

    @property
    def l2_normalised(self) -> bool:
        return self.not_unit == 0


@dataclass(frozen=True)
class RowScan:
    """What one pass over the data found."""

    nonfinite: RowFinding
    zero: RowFinding
    duplicates: DuplicateFinding
    norms: NormStats | None  # None when no row is finite


def row_sq_norms(chunk: np.ndarray) -> np.ndarray:
    """Squared L2 norm of each row, accumulated in float64.

    In float64 a float32 square never overflows and never underflows to 0, so the squared
    norm alone tells whether a row has a NaN/Inf (not finite) or is all zeros (exactly 0):
    one pass gives norms, :func:`nonfinite_rows` and :func:`zero_rows`.

    >>> row_sq_norms(np.array([[3, 4], [0, 0]], np.float32)).tolist()
    [25.0, 0.0]
    """
    return np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)


def nonfinite_rows(sq_norms: np.ndarray) -> np.ndarray:
    """Rows holding a NaN or an infinity.

    >>> x = np.array([[1, 0], [np.nan, 0], [0, -np.inf], [3e38, 3e38]], np.float32)
    >>> nonfinite_rows(row_sq_norms(x)).tolist()
    [False, True, True, False]
    """
    return ~np.isfinite(sq_norms)


def zero_rows(sq_norms: np.ndarray) -> np.ndarray:
    """Rows that are all zeros (a failed extraction, typically). The smallest subnormal counts as non-zero.

    >>> x = np.array([[0, 0], [-0.0, 0], [1e-45, 0]], np.float32)
    >>> zero_rows(row_sq_norms(x)).tolist()
    [True, True, False]
    """
    return sq_norms == 0


@functools.lru_cache(maxsize=8)
def _hash_multipliers(n_words: int) -> np.ndarray:
    # Fixed seed: the same row hashes the same in every run. Odd multipliers are invertible mod 2**64.
    rng = np.random.default_rng(0x5EED_F00D)
    return rng.integers(0, 2**63, size=n_words, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


class RowHasher:
    """A 64-bit hash of each row's float32 bytes; equal rows hash equally (``-0.0`` counts as ``0.0``).

    Rows are read as 64-bit words, each word is xor-shifted (so sign bits reach the low bits)
    and the words are combined with random odd multipliers. Collisions are possible, so
    :func:`find_duplicates` compares the rows themselves before reporting them.

    The work buffers are allocated once for chunks of up to ``max_rows`` rows: allocating fresh
    ones per chunk costs more in page faults than the hashing itself.

    >>> hasher = RowHasher(max_rows=8, dim=3)
    >>> x = np.array([[1, 2, 3], [1, 2, 3], [1, 2, -3], [-0.0, 1, 1], [0, 1, 1]], np.float32)
    >>> h = hasher(x); bool(h[0] == h[1]), bool(h[0] == h[2]), bool(h[3] == h[4])
    (True, False, True)
    >>> bool(np.array_equal(hasher(x[2:]), h[2:]))  # the same row hashes the same in any chunk
    True
    """

    def __init__(self, max_rows: int, dim: int) -> None:
        self.dim = dim
        words = (dim + 1) // 2  # float32 pairs; an odd last float is paired with a zero
        self._rows = np.zeros((max_rows, 2 * words), np.float32)  # the padding column stays 0
        self._mixed = np.empty((max_rows, words), np.uint64)
        self._multipliers = _hash_multipliers(words)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        n_rows = chunk.shape[0]
        rows = self._rows[:n_rows]
        np.add(chunk, np.float32(0), out=rows[:, : self.dim], dtype=np.float32)  # copy; -0.0 -> +0.0
        words = rows.view(np.uint64)
        mixed = self._mixed[:n_rows]
        np.right_shift(words, np.uint64(29), out=mixed)
        np.bitwise_xor(mixed, words, out=mixed)
        return mixed @ self._multipliers


def row_hashes(chunk: np.ndarray) -> np.ndarray:
    """:class:`RowHasher` for a single chunk.

    >>> x = np.array([[1, 2], [1, 2], [2, 1]], np.float32)
    >>> h = row_hashes(x); bool(h[0] == h[1]), bool(h[0] == h[2])
    (True, False)
    """
    return RowHasher(chunk.shape[0], chunk.shape[1])(chunk)


def _rows_equal(vectors: np.ndarray, left: np.ndarray, right: np.ndarray, batch: int) -> np.ndarray:
    """``vectors[left[k]] == vectors[right[k]]`` row-wise, read in batches."""
    equal = np.empty(left.size, bool)
    for start in range(0, left.size, batch):
        stop = start + batch
        equal[start:stop] = np.all(
            take_rows(vectors, left[start:stop]) == take_rows(vectors, right[start:stop]), axis=1
        )
    return equal


def find_duplicates(vectors: np.ndarray, hashes: np.ndarray, *, batch_rows: int = 4096) -> DuplicateFinding:
    """Rows equal to an earlier row, from :func:`row_hashes` confirmed by comparing the rows.

    >>> x = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], np.float32)
    >>> find_duplicates(x, row_hashes(x))
    DuplicateFinding(count=3, first_pair=(0, 2))
    """
    n = hashes.size
    if n < 2:
        return DuplicateFinding()
    order = np.argsort(hashes, kind="stable")  # stable: within equal hashes, row indices ascend
    sorted_hashes = hashes[order]
    repeats = sorted_hashes[1:] == sorted_hashes[:-1]
    if not repeats.any():
        return DuplicateFinding()
    is_group_start = np.concatenate(([True], ~repeats))
    group_start = np.maximum.accumulate(np.where(is_group_start, np.arange(n), 0))
    later_pos = np.flatnonzero(~is_group_start)  # sorted positions that repeat an earlier hash
    earlier, later = order[group_start[later_pos]], order[later_pos]
    equal = _rows_equal(vectors, earlier, later, batch_rows)

    if not equal.all():
        # A hash collision between different rows: settle those groups by exact row bytes.
        collided = np.unique(group_start[later_pos[~equal]])
        in_collided = np.isin(group_start[later_pos], collided)
        earlier, later = earlier[~in_collided], later[~in_collided]
        group_ends = np.append(np.flatnonzero(is_group_start), n)
        extra_earlier: list[int] = []
        extra_later: list[int] = []
        for start in collided:
            stop = group_ends[np.searchsorted(group_ends, start, side="right")]
            first_seen: dict[bytes, int] = {}
            for row in order[start:stop]:  # ascending row indices
                key = (np.asarray(vectors[row], np.float32) + np.float32(0)).tobytes()
                if key in first_seen:
                    extra_earlier.append(first_seen[key])
                    extra_later.append(int(row))
                else:
                    first_seen[key] = int(row)
        earlier = np.concatenate((earlier, np.asarray(extra_earlier, dtype=earlier.dtype)))
        later = np.concatenate((later, np.asarray(extra_later, dtype=later.dtype)))

    if later.size == 0:
        return DuplicateFinding()
    first = int(np.argmin(later))
    return DuplicateFinding(int(later.size), (int(earlier[first]), int(later[first])))


def _release_pages(vectors: np.ndarray, start: int, stop: int) -> None:
    """Drop the pages of rows ``start:stop`` from this process's memory map once they are checked.

    A read-only file mapping is backed by the page cache: dropping our reference costs
    nothing and a later access faults the page back in. Without this, checking a 2 GB
    database would leave 2 GB counted in the process's resident set. Best effort: ignored
    for anything but a C-ordered read-only ``np.memmap``.
    """
    mapping = getattr(vectors, "_mmap", None)
    if mapping is None or getattr(vectors, "mode", None) != "r" or not vectors.flags.c_contiguous:
        return
    with contextlib.suppress(AttributeError, OSError, ValueError, TypeError):
        mapping_address = np.frombuffer(mapping, np.uint8, count=1).ctypes.data
        row_bytes = vectors.shape[1] * vectors.itemsize
        begin = vectors.ctypes.data - mapping_address + start * row_bytes
        end = vectors.ctypes.data - mapping_address + stop * row_bytes
        begin -= begin % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_DONTNEED, begin, end - begin)


def row_blocks(
    vectors: np.ndarray, rows_per_block: int, *, on_rows: Callable[[int], None] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, block)`` for consecutive blocks of ``rows_per_block`` rows: the one way to pass
    over a whole database.

    Once the caller asks for the next block, the previous block's pages are released from a
    memory map (:func:`_release_pages`), so a pass over a 5 GB file never leaves it resident
    whole, and ``on_rows(count)`` reports the rows done. A caller must not keep a block beyond
    its iteration (it would still read correctly, from the file, but count again as resident).

    >>> [(start, block.tolist()) for start, block in row_blocks(np.arange(5.0).reshape(5, 1), 2)]
    [(0, [[0.0], [1.0]]), (2, [[2.0], [3.0]]), (4, [[4.0]])]
    """
    if rows_per_block < 1:
        raise ValueError(f"rows_per_block must be positive, got {rows_per_block}")
    n_rows = vectors.shape[0]
    for start in range(0, n_rows, rows_per_block):
        stop = min(n_rows, start + rows_per_block)
        yield start, vectors[start:stop]
        _release_pages(vectors, start, stop)
        if on_rows is not None:
            on_rows(stop - start)


def chunk_rows(dim: int, chunk_bytes: int | None = None) -> int:
    """Rows per chunk for ``dim``-dimensional float32 vectors (``chunk_bytes`` defaults to :data:`CHUNK_BYTES`).

    >>> chunk_rows(512), chunk_rows(512, 8 * 1024 * 1024)
    (512, 4096)
    """
    return max(1, (chunk_bytes or CHUNK_BYTES) // max(1, dim * 4))


def scan_rows(
    vectors: np.ndarray,
    *,
    chunk_bytes: int | None = None,
    unit_tolerance: float = UNIT_NORM_TOLERANCE,
    on_rows: Callable[[int], None] | None = None,
) -> RowScan:
    """One chunked pass over float32 ``vectors``: NaN/Inf rows, zero rows, duplicates and norms.

    ``on_rows(count)`` is called after each chunk with the rows it held (a progress bar).

    Memory: the hasher's two chunk-sized buffers, plus about 50 bytes per row (squared norm,
    hash, and the sort that finds duplicates): some 50 MB for a million rows, whatever D.

    >>> x = np.array([[3, 4], [0, 0], [0.6, 0.8], [3, 4]], np.float32)
    >>> s = scan_rows(x, chunk_bytes=8)
    >>> s.zero, s.duplicates, s.norms.max, s.norms.not_unit
    (RowFinding(count=1, first=1), DuplicateFinding(count=1, first_pair=(0, 3)), 5.0, 3)
    """
    n_rows, dim = vectors.shape
    step = chunk_rows(dim, chunk_bytes)
    sq_norms = np.empty(n_rows, np.float64)
    hashes = np.empty(n_rows, np.uint64)
    hasher = RowHasher(min(step, n_rows), dim)
    for start, chunk in row_blocks(vectors, step, on_rows=on_rows):
        stop = start + chunk.shape[0]
        sq_norms[start:stop] = row_sq_norms(chunk)
        hashes[start:stop] = hasher(chunk)

    finite = np.isfinite(sq_norms)
    norms = None
    if finite.any():
        values = np.sqrt(sq_norms[finite])
        norms = NormStats(
            min=float(values.min()),
            median=float(np.median(values)),
            max=float(values.max()),
            not_unit=int(np.count_nonzero(np.abs(values - 1.0) > unit_tolerance)),
        )
    return RowScan(
        nonfinite=RowFinding.of(nonfinite_rows(sq_norms)),
        zero=RowFinding.of(zero_rows(sq_norms)),
        duplicates=find_duplicates(vectors, hashes, batch_rows=step),
        norms=norms,
    )


def duplicates_message(finding: DuplicateFinding, where: str, *, as_error: bool) -> str:
    """The line for duplicated rows, as an error or as a warning.

    >>> duplicates_message(DuplicateFinding(2, (0, 5)), "db.npy", as_error=False)
    'db.npy: 2 rows duplicate an earlier row (first: row index 5 equals row index 0); each copy counts separately in top-K metrics'
    """
    earlier, later = finding.first_pair or (0, 0)
    text = (
        f"{where}: {rows_phrase(finding.count, 'duplicates', 'duplicate')} an earlier row "
        f"(first: row index {later} equals row index {earlier})"
    )
    if as_error:
        return (
            f"{text}; exact duplicates distort top-K metrics; remove them, "
            "or pass --allow-duplicates to only warn"
        )
    return f"{text}; each copy counts separately in top-K metrics"


def check_scan(scan: RowScan, where: str, *, allow_duplicates: bool = False) -> list[str]:
    """Raise for the first problem the scan found; return warnings (duplicates, when allowed).

    >>> x = np.array([[1, 0], [np.inf, 0], [np.nan, 1]], np.float32)
    >>> check_scan(scan_rows(x), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: 2 rows contain NaN or Inf (first at row index 1); remove or re-extract those rows
    >>> x = np.array([[1, 0], [0, 0]], np.float32)
    >>> check_scan(scan_rows(x), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: 1 row is all zeros (first at row index 1); a zero vector usually means a failed extraction; remove or re-extract those rows
    """
    if scan.nonfinite.count:
        raise InputError(
            f"{where}: {rows_phrase(scan.nonfinite.count, 'contains', 'contain')} NaN or Inf "
            f"(first at row index {scan.nonfinite.first}); remove or re-extract those rows"
        )
    if scan.zero.count:
        raise InputError(
            f"{where}: {rows_phrase(scan.zero.count, 'is', 'are')} all zeros (first at row index {scan.zero.first}); "
            "a zero vector usually means a failed extraction; remove or re-extract those rows"
        )
    if scan.duplicates.count:
        if not allow_duplicates:
            raise InputError(duplicates_message(scan.duplicates, where, as_error=True))
        return [duplicates_message(scan.duplicates, where, as_error=False)]
    return []


def to_float32(
    vectors: np.ndarray,
    where: str,
    *,
    chunk_bytes: int | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``vectors`` itself when already native float32, else a read-only float32 copy made chunk by chunk
    (``on_rows`` as for :func:`scan_rows`; not called when nothing is converted).

    A float64 value beyond the float32 range would silently become Inf: that is an error.

    >>> to_float32(np.ones((2, 2), np.float64), "db.npy").dtype
    dtype('float32')
    >>> to_float32(np.array([[1.0, 0], [1e39, 0]]), "db.npy")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: db.npy: 1 row has values beyond the float32 range (first at row index 1); rescale the vectors (e.g. L2-normalise them)
    """
    if vectors.dtype == np.float32 and vectors.dtype.isnative:
        return vectors
    out = np.empty(vectors.shape, np.float32)
    overflow = np.zeros(vectors.shape[0], bool)
    step = chunk_rows(vectors.shape[1], chunk_bytes)
    for start, source in row_blocks(vectors, step, on_rows=on_rows):
        stop = start + source.shape[0]
        with np.errstate(over="ignore"):
            out[start:stop] = source
        if vectors.dtype.itemsize > 4:
            overflow[start:stop] = np.any(np.isinf(out[start:stop]) & np.isfinite(source), axis=1)
    found = RowFinding.of(overflow)
    if found.count:
        raise InputError(
            f"{where}: {rows_phrase(found.count, 'has', 'have')} values beyond the float32 range "
            f"(first at row index {found.first}); rescale the vectors (e.g. L2-normalise them)"
        )
    out.flags.writeable = False
    return out
