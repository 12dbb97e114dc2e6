"""Read arrays from ``.npy`` and ``.npz`` files without copying them and without unpickling.

The header of each array is read first (:class:`StoredArray`), so the caller can reject a
wrong dtype or shape before a single data byte is read. Data is then memory-mapped when it
sits uncompressed in the file: a whole ``.npy``, or an ``.npz`` member stored with
``ZIP_STORED`` (what ``numpy.savez`` writes). Compressed members (``numpy.savez_compressed``)
cannot be mapped and are decompressed into memory.

Nothing here ever unpickles: object dtypes are refused from the header alone.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.lib.format as npy_format

from fvr_audit.errors import InputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
#: Pickle protocols 2..5 start with PROTO (0x80) and the protocol number.
PICKLE_MAGICS = tuple(bytes([0x80, proto]) for proto in range(2, 6))

#: What to tell the user to do after "it contains Python objects".
NEVER_UNPICKLE = "contains Python objects (pickled); fvr-audit never unpickles untrusted files"

#: A compressed member may declare at most this many times its stored size (a deflate bomb
#: declares ~1000x; float vectors compress ~1.1x, repeated labels a few tens)...
MAX_EXPANSION = 200
#: ...once it declares more than this many bytes (small members of repeated strings may exceed it).
EXPANSION_CHECKED_ABOVE = 64 << 20

_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes, APPNOTE 4.3.7
_COPY_BLOCK = 16 * 1024 * 1024
#: What reading a damaged or unusual member raises: bad CRC, broken deflate stream, premature end,
#: encryption (RuntimeError), an unsupported compression method (NotImplementedError).
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, OSError)


@dataclass(frozen=True)
class StoredArray:
    """An array's header, read from the file; :meth:`load` maps or reads its data.

    ``where`` names the array in messages: the file for a ``.npy``, ``file: 'key'`` for an
    ``.npz`` member.
    """

    where: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    #: True when :meth:`load` returns an ``np.memmap`` (uncompressed data in the file).
    memory_mappable: bool
    _loader: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def load(self) -> np.ndarray:
        """The data: a read-only memmap when ``memory_mappable``, else a read-only array in memory."""
        return self._loader()


def sniff(path: Path) -> str:
    """``"npy"`` or ``"npz"`` from the file's first bytes (not its name); InputError otherwise.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(folder / "v.npy", np.ones((1, 2), np.float32)); sniff(folder / "v.npy")
    'npy'
    >>> p = folder / "v.csv"; _ = p.write_bytes(b"id,x,y\\n1,2,3\\n"); sniff(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    fvr_audit.errors.InputError: ...: not a NumPy .npy or .npz file (it starts with b'id,x,y\\n1'); ...
    """
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory; give a .npy or .npz file")
        if path.exists() and not path.is_file():
            # a named pipe or a device: opening it could block forever, and it cannot be memory-mapped
            raise InputError(f"{path}: not a regular file (a pipe, socket or device); give a .npy or .npz file")
        with open(path, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read the file ({error.strerror or error})") from None
    if not head:
        raise InputError(f"{path}: the file is empty (0 bytes); export the vectors again with numpy.save")
    if head.startswith(NPY_MAGIC) or NPY_MAGIC.startswith(head):
        return "npy"
    if head.startswith(ZIP_MAGICS):
        return "npz"
    if head.startswith(PICKLE_MAGICS):
        raise InputError(
            f"{path}: is a Python pickle, not a NumPy .npy/.npz file; fvr-audit never unpickles untrusted "
            "files; save the vectors with numpy.save or numpy.savez"
        )
    raise InputError(
        f"{path}: not a NumPy .npy or .npz file (it starts with {head!r}); "
        "save the vectors with numpy.save (.npy) or numpy.savez (.npz)"
    )


def _read_header(handle: BinaryIO, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Magic, version and header dict of a ``.npy`` stream positioned at its start."""
    try:
        major, minor = npy_format.read_magic(handle)
        if (major, minor) == (1, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(handle)
        elif (major, minor) in ((2, 0), (3, 0)):
            # 3.0 only differs by a UTF-8 header, needed for non-Latin-1 field names of
            # structured dtypes, which are refused below anyway.
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(handle)
        else:
            raise InputError(
                f"{where}: unsupported .npy format version {major}.{minor}; save it again with numpy.save"
            )
    except (ValueError, struct.error, UnicodeDecodeError) as error:
        # numpy says "EOF: reading array header, expected 118 bytes got 50" or "Cannot parse header".
        raise InputError(
            f"{where}: truncated or corrupt .npy header ({error}); copy or export the file again"
        ) from None
    if any(dim < 0 for dim in shape):
        raise InputError(f"{where}: corrupt .npy header (negative shape {shape}); export the file again")
    if dtype.hasobject:
        raise InputError(f"{where}: {NEVER_UNPICKLE}; save a numeric or string array instead")
    return tuple(shape), bool(fortran_order), dtype


def _check_length(where: str, shape: tuple[int, ...], dtype: np.dtype, available: int) -> None:
    needed = math.prod(shape) * dtype.itemsize
    if available < needed:
        raise InputError(
            f"{where}: truncated: the header declares shape {shape} {dtype.name} ({needed} bytes of data) "
            f"but only {available} bytes are present; copy or export the file again"
        )


def _memmap(path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype, fortran: bool) -> np.ndarray:
    if math.prod(shape) == 0:  # mmap cannot map zero bytes; an empty array is the same thing
        return np.empty(shape, dtype)
    # mode "r": a read-only mapping; nothing the audit does can write to the user's file.
    try:
        return np.memmap(
            path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
        )
    except (OSError, ValueError) as error:  # e.g. a file system without mmap support
        raise InputError(f"{path}: cannot memory-map the file ({error}); copy it to a local disk") from None


def open_npy(path: Path) -> StoredArray:
    """Header of a ``.npy`` file; ``load()`` memory-maps it (``np.load(mmap_mode="r")`` does the same).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.eye(3, dtype=np.float32))
    >>> a = open_npy(p); a.shape, a.dtype.name, a.memory_mappable, type(a.load()).__name__
    ((3, 3), 'float32', True, 'memmap')
    """
    where = str(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < len(NPY_MAGIC) + 2:
            raise InputError(
                f"{where}: truncated .npy file ({size} bytes, shorter than the .npy header); "
                "copy or export the file again"
            )
        shape, fortran, dtype = _read_header(handle, where)
        offset = handle.tell()
    _check_length(where, shape, dtype, size - offset)
    return StoredArray(
        where, shape, dtype, fortran, True, lambda: _memmap(path, offset, shape, dtype, fortran)
    )


def _stored_member(path: Path, handle: BinaryIO, info: zipfile.ZipInfo, where: str) -> StoredArray:
    """An uncompressed member: find its data in the zip file so it can be memory-mapped."""
    handle.seek(info.header_offset)
    raw = handle.read(_ZIP_LOCAL_HEADER.size)
    if len(raw) < _ZIP_LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise InputError(f"{where}: corrupt .npz (bad local zip header); copy or export the file again")
    fields = _ZIP_LOCAL_HEADER.unpack(raw)
    name_length, extra_length = fields[-2], fields[-1]
    member_start = info.header_offset + _ZIP_LOCAL_HEADER.size + name_length + extra_length
    handle.seek(member_start)
    shape, fortran, dtype = _read_header(handle, where)
    data_offset = handle.tell()
    file_size = os.fstat(handle.fileno()).st_size
    # The member ends at its declared size, or earlier if the file itself is cut short.
    member_end = min(member_start + info.file_size, file_size)
    _check_length(where, shape, dtype, member_end - data_offset)
    return StoredArray(
        where, shape, dtype, fortran, True, lambda: _memmap(path, data_offset, shape, dtype, fortran)
    )


def _read_compressed(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """Decompress a member into one preallocated buffer (no intermediate bytes copies)."""
    try:
        with zf.open(info) as member:
            shape, fortran, dtype = _read_header(member, where)
            out = np.empty(math.prod(shape) * dtype.itemsize, np.uint8)
            view = memoryview(out)
            filled = 0
            while filled < len(out):
                got = member.readinto(view[filled : filled + _COPY_BLOCK])
                if not got:
                    break
                filled += got
    except _ZIP_READ_ERRORS as error:
        raise InputError(
            f"{where}: cannot decompress ({error}); the file is truncated or corrupt; copy or export it again"
        ) from None
    _check_length(where, shape, dtype, filled)
    array = out.view(dtype).reshape(shape, order="F" if fortran else "C")
    array.flags.writeable = False
    return array


def memory_limit() -> int:
    """Most bytes one array may take when it must be decompressed into memory: the machine's RAM."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit we can know
        return 1 << 62


def _check_compressed_sizes(info: zipfile.ZipInfo, where: str, shape, dtype: np.dtype, header_bytes: int) -> None:
    """Before allocating: the array's declared size must fit the member's declared size, the member's
    expansion must be plausible, and the whole must fit in memory (all from headers alone)."""
    needed = math.prod(shape) * dtype.itemsize
    if needed > info.file_size - header_bytes:
        raise InputError(
            f"{where}: corrupt .npz: the header declares shape {shape} {dtype.name} ({needed} bytes) but the "
            f"member holds {max(0, info.file_size - header_bytes)} bytes of data; copy or export the file again"
        )
    if info.file_size > EXPANSION_CHECKED_ABOVE and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
        raise InputError(
            f"{where}: refusing to decompress {info.compress_size} bytes into {info.file_size} bytes "
            f"({info.file_size // max(info.compress_size, 1)}x, more than vectors ever compress); "
            "the file looks like a decompression bomb; save the vectors with numpy.savez"
        )
    if needed > memory_limit():
        raise InputError(
            f"{where}: compressed array of {needed} bytes does not fit in this machine's memory; save it "
            "uncompressed with numpy.savez (then it is memory-mapped) or split it"
        )


def _compressed_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> StoredArray:
    try:
        with zf.open(info) as member:
            shape, fortran, dtype = _read_header(member, where)
            header_bytes = member.tell()
    except _ZIP_READ_ERRORS as error:
        raise InputError(
            f"{where}: cannot decompress ({error}); the file is truncated or corrupt; copy or export it again"
        ) from None
    _check_compressed_sizes(info, where, shape, dtype, header_bytes)
    return StoredArray(where, shape, dtype, fortran, False, lambda: _read_compressed(zf, info, where))


class NpzArchive:
    """An open ``.npz``: member names, and each member's header on demand.

    Headers are read only for the members asked for, so a stray non-array file in the
    archive is listed by :meth:`keys` but never parsed.
    """

    def __init__(self, path: Path, zf: zipfile.ZipFile, handle: BinaryIO) -> None:
        self.path = path
        self._zf = zf
        self._handle = handle
        # np.savez stores key "vectors" as member "vectors.npy"; np.load strips the suffix too.
        self._members = {
            info.filename.removesuffix(".npy"): info for info in zf.infolist() if not info.is_dir()
        }

    def keys(self) -> list[str]:
        return list(self._members)

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def array(self, key: str) -> StoredArray:
        """The member's header; its ``load()`` works while the archive is open."""
        info = self._members[key]
        where = f"{self.path}: '{key}'"
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:  # bit 0: encrypted
            return _stored_member(self.path, self._handle, info, where)
        return _compressed_member(self._zf, info, where)


@contextlib.contextmanager
def open_npz(path: Path) -> Iterator[NpzArchive]:
    """Open an ``.npz`` for :class:`NpzArchive`; memmaps made from it stay valid after closing.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npz"
    >>> np.savez(p, vectors=np.eye(2, dtype=np.float32), labels=np.array(["a", "b"]))
    >>> with open_npz(p) as npz:
    ...     sorted(npz.keys()), npz.array("vectors").memory_mappable, npz.array("labels").load().tolist()
    (['labels', 'vectors'], True, ['a', 'b'])
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(
            f"{path}: cannot read the .npz archive ({error}); the file is truncated or corrupt; "
            "copy or export it again"
        ) from None
    with zf, open(path, "rb") as handle:
        yield NpzArchive(path, zf, handle)


def take_rows(vectors: np.ndarray, rows) -> np.ndarray:
    """``vectors[rows]`` as an array in memory; from a memory-mapped file, read without mapping it.

    Reading scattered rows through a memory map faults in far more than the rows: the kernel maps
    pages around each fault (up to 2 MB folios), so drawing 1,000 targets from a 5 GB database
    left gigabytes of it resident in the process. Here each row of a C-ordered read-only
    ``np.memmap`` is read with one ``pread`` into the result instead; anything else is indexed.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.npy"
    >>> np.save(p, np.arange(12, dtype=np.float32).reshape(6, 2))
    >>> mapped = np.load(p, mmap_mode="r")
    >>> take_rows(mapped, [4, 1]).tolist(), take_rows(mapped[2:], [0]).tolist()
    ([[8.0, 9.0], [2.0, 3.0]], [[4.0, 5.0]])
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    position = _file_position(vectors)
    if position is None:
        return np.array(vectors[rows])
    n_rows = vectors.shape[0]
    outside = rows[(rows < 0) | (rows >= n_rows)]
    if outside.size:
        raise IndexError(f"row {int(outside[0])} is out of bounds for {n_rows} rows")
    row_bytes = vectors.strides[0]
    out = np.empty((rows.size, *vectors.shape[1:]), vectors.dtype)
    with open(vectors.filename, "rb") as handle:
        for index, row in enumerate(rows.tolist()):
            target = memoryview(out[index]).cast("B")
            if os.preadv(handle.fileno(), [target], position + row * row_bytes) != row_bytes:
                raise InputError(f"{vectors.filename}: the file is shorter than its header says; copy it again")
    return out


def _file_position(vectors: np.ndarray) -> int | None:
    """Where ``vectors[0]`` lies in its file, for a C-ordered read-only memmap of a 2-D array; else None."""
    mapping = getattr(vectors, "_mmap", None)
    if (
        not isinstance(vectors, np.memmap)
        or mapping is None
        or getattr(vectors, "mode", None) != "r"
        or vectors.filename is None
        or vectors.ndim != 2
        or not vectors.flags.c_contiguous
        or not hasattr(os, "preadv")
    ):
        return None
    try:
        mapping_address = np.frombuffer(mapping, np.uint8, count=1).ctypes.data
    except (ValueError, TypeError):
        return None
    # np.memmap maps from the offset rounded down to the allocation granularity; a slice keeps
    # its base's ``offset``, so its own start is found from its address within the mapping.
    mapped_from = vectors.offset - vectors.offset % mmap.ALLOCATIONGRANULARITY
    return mapped_from + vectors.ctypes.data - mapping_address
