"""Output locations, checked before any long work, and folders private to their owner.

A scan or a reconstruction can run for an hour; finding only at the end that the output cannot
be written loses that hour (and a traceback with exit code 1 reads like the CI gate). So every
command checks its outputs first, by creating and removing a probe file where it will write:
``os.access`` says yes to root on read-only mounts, immutable folders and ``/proc``.

Folders created here are mode 0700: they hold biometric data (vectors, faces).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from fvr_audit.errors import InputError

#: Mode of every folder fvr-audit creates for its outputs.
PRIVATE_DIR_MODE = 0o700


def private_mkdir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and its missing parents with mode 0700; existing folders are left as they are.

    >>> import tempfile
    >>> made = private_mkdir(Path(tempfile.mkdtemp()) / "a" / "b")
    >>> oct(made.stat().st_mode & 0o777), oct(made.parent.stat().st_mode & 0o777)
    ('0o700', '0o700')
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another writer: fine
            folder.mkdir()
            os.chmod(folder, PRIVATE_DIR_MODE)  # explicit: mkdir's mode is cut by the umask
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    return path


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _probe_writable(path: Path, what: Path) -> None:
    """Create and remove a file in folder ``path``; one-line InputError about ``what`` if that fails."""
    if not path.is_dir():
        raise InputError(f"{what}: cannot be created: {path} is not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".fvr-audit-probe-", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        where = "" if path == what else f" (in {path})"
        raise InputError(
            f"{what}: cannot write there{where}: {error.strerror or error}; choose another output location"
        ) from None


def check_output_file(path: str | os.PathLike[str]) -> None:
    """A file output can be written: it is not a folder, and its folder is (or can be made) writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    _probe_writable(_nearest_existing(path.parent), path)


def check_writable_folder(path: str | os.PathLike[str]) -> None:
    """A folder that outputs will be written into exists or can be created, and accepts files.

    A symbolic link as the folder is refused: outputs hold biometric data, and a planted link
    would send them elsewhere.
    """
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: is a symbolic link; give a real folder for the outputs")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder; give a folder for the outputs")
    _probe_writable(path if path.exists() else _nearest_existing(path), path)


def check_output_folder(path: str | os.PathLike[str], *, overwrite: bool = False, resumable: Iterable[str] = ()) -> None:
    """:func:`check_writable_folder`, and writing it mixes nothing: the folder is new, empty (but
    for the ``resumable`` work of an earlier, unfinished run of the same command), or ``overwrite``
    is given (then the caller replaces only what it owns; see :func:`clear_owned`)."""
    path = Path(path)
    check_writable_folder(path)
    if path.is_dir() and not overwrite:
        entries = sorted(entry.name for entry in path.iterdir() if entry.name not in set(resumable))
        if entries:
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            raise InputError(
                f"{path}: not empty (holds {shown}); writing into it would mix two runs: choose a new "
                "folder, or pass --overwrite to replace the outputs of the earlier run"
            )


def clear_owned(path: str | os.PathLike[str], owned: Iterable[str]) -> list[str]:
    """Remove the entries of folder ``path`` named in ``owned`` (files, links, folders; a link is
    removed, never followed); other entries are left alone. Returns the names removed."""
    path = Path(path)
    removed = []
    for name in owned:
        entry = path / name
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            continue
        removed.append(name)
    return removed


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Writes that still fail after the checks (a disk filled, a permission changed meanwhile) end
    as one line and exit code 2, not a traceback with exit code 1 (the CI gate's code)."""
    try:
        yield
    except OSError as error:
        where = error.filename or path
        raise InputError(f"{where}: cannot write ({error.strerror or error})") from None
