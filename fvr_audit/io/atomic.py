"""Atomic file output: a reader sees either the old file or the whole new one, never half.

Outputs can hold biometric data (vectors, face images), so they are created with mode 0600
unless the caller asks otherwise, and missing folders with mode 0700.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, file_mode: int = 0o600) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt", "w") as f:
    ...     _ = f.write("hello")
    >>> (d / "a.txt").read_text(), oct((d / "a.txt").stat().st_mode & 0o777)
    ('hello', '0o600')
    """
    from fvr_audit.io.outputs import private_mkdir

    target = Path(path)
    private_mkdir(target.parent)  # 0700: what is written here may be biometric data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, file_mode)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, file_mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb", file_mode=file_mode) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, file_mode: int = 0o600) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), file_mode=file_mode)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` unless a file can be written at ``path``: call it before long work,
    so an unwritable output fails in a second with one line, not after an hour with a traceback.

    Tries a real temporary file in the nearest existing folder (permissions alone miss read-only
    mounts and /proc); creates nothing that stays.
    """
    from fvr_audit.errors import InputError

    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a folder; give a file name")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{target}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{target}: cannot write there ({exc.strerror or exc})") from None
