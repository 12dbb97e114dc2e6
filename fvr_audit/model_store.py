"""The shipped model files in ``models/`` and their manifest.

``models/manifest.json`` maps each file name to its sha256, size, source (package and version),
licence and the repository script that produced it. :func:`model_path` refuses a file whose hash
differs from the manifest: an audit run on a silently swapped model would be worthless.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fvr_audit.errors import FvrAuditError, InputError, ModelIntegrityError

#: Overrides the models folder (e.g. for an installed, non-editable package).
MODELS_DIR_ENV = "FVR_AUDIT_MODELS"


@dataclass(frozen=True)
class ModelEntry:
    """One file of ``models/manifest.json``."""

    file: str
    sha256: str
    size: int
    kind: str
    source: str
    license: str
    script: str
    description: str = ""
    #: Kind-specific facts (a reconstructor's method, extractor, training data and validation score).
    details: dict | None = None


def models_dir() -> Path:
    """The folder holding the shipped models: ``$FVR_AUDIT_MODELS`` or the repository's ``models/``."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


#: What each manifest entry must hold, and of which JSON type.
_REQUIRED_FIELDS = {"file": str, "sha256": str, "size": int, "kind": str, "source": str, "license": str, "script": str}


def _manifest_error(directory: Path) -> type[FvrAuditError]:
    """A broken shipped manifest is a model-integrity failure (exit 4); a user's ``--models``
    folder is bad input (exit 2)."""
    return ModelIntegrityError if directory.resolve() == models_dir().resolve() else InputError


def load_manifest(directory: Path | None = None) -> dict[str, ModelEntry]:
    """Read the manifest; an absent manifest is an empty one. Every entry is checked for its
    fields and their types, so a malformed manifest is one line, never a traceback."""
    directory = directory or models_dir()
    manifest_file = directory / "manifest.json"
    if not manifest_file.exists():
        return {}
    error = _manifest_error(directory)
    try:
        raw = json.loads(manifest_file.read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{manifest_file}: not a readable JSON manifest ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("files", []), list):
        raise error(f'{manifest_file}: not an fvr-audit manifest (expected {{"version": 1, "files": [...]}})')
    entries = {}
    for position, item in enumerate(raw.get("files", [])):
        if not isinstance(item, dict):
            raise error(f"{manifest_file}: files[{position}] is not an object")
        for name, kind in _REQUIRED_FIELDS.items():
            if not isinstance(item.get(name), kind) or isinstance(item.get(name), bool):
                raise error(
                    f"{manifest_file}: files[{position}] ({item.get('file', '?')}) lacks {name!r} "
                    f"(a {kind.__name__}); rebuild the manifest"
                )
        if not isinstance(item.get("details", {}), (dict, type(None))):
            raise error(f"{manifest_file}: files[{position}] ({item['file']}): 'details' is not an object")
        known = {k: item[k] for k in ModelEntry.__dataclass_fields__ if k in item}
        entries[item["file"]] = ModelEntry(**known)
    return entries


@lru_cache(maxsize=None)
def _verified(path: str, sha256: str, mtime_ns: int, size: int) -> bool:
    # Cached per (path, mtime, size): hashing 20 MB on every call would dominate short commands.
    return sha256_file(path) == sha256


def file_status(file: str, entry: ModelEntry, directory: Path | None = None) -> str:
    """``"ok"``, ``"missing"`` or ``"altered"``: whether the file on disk is the one its manifest lists."""
    path = (directory or models_dir()) / file
    if not path.is_file():
        return "missing"
    stat = path.stat()
    return "ok" if _verified(str(path), entry.sha256, stat.st_mtime_ns, stat.st_size) else "altered"


def model_path(file: str, directory: Path | None = None) -> Path:
    """Path of a shipped model file, after checking it against the manifest.

    Raises :class:`ModelIntegrityError` when the file is not in the manifest, missing, or altered.
    """
    directory = directory or models_dir()
    entry = load_manifest(directory).get(file)
    path = directory / file
    if entry is None:
        raise ModelIntegrityError(f"{path}: not listed in {directory / 'manifest.json'}; refusing an unverified model")
    if not path.exists():
        raise ModelIntegrityError(f"{path}: model file missing (manifest lists it); reinstall or rebuild it with {entry.script}")
    stat = path.stat()
    if not _verified(str(path), entry.sha256, stat.st_mtime_ns, stat.st_size):
        raise ModelIntegrityError(
            f"{path}: sha256 differs from models/manifest.json; the file was altered or is incomplete "
            f"(rebuild it with {entry.script})"
        )
    return path


def register_model(
    file: str,
    *,
    kind: str,
    source: str,
    license: str,
    script: str,
    description: str = "",
    details: dict | None = None,
    directory: Path | None = None,
    file_mode: int = 0o600,
) -> ModelEntry:
    """Add or update a manifest entry for a file already written in the models folder.

    Used by the repository scripts that build model files, so every shipped file is traceable.
    """
    from fvr_audit.io.atomic import atomic_write_text

    directory = directory or models_dir()
    manifest_file = directory / "manifest.json"
    load_manifest(directory)  # a malformed manifest is an error here too, not a traceback
    raw = json.loads(manifest_file.read_text()) if manifest_file.exists() else {"version": 1, "files": []}
    path = directory / file
    entry = ModelEntry(
        file=file,
        sha256=sha256_file(path),
        size=path.stat().st_size,
        kind=kind,
        source=source,
        license=license,
        script=script,
        description=description,
        details=details,
    )
    files = [item for item in raw["files"] if item["file"] != file]
    files.append({k: v for k, v in entry.__dict__.items() if v is not None})
    raw["files"] = sorted(files, key=lambda item: item["file"])
    atomic_write_text(manifest_file, json.dumps(raw, indent=2) + "\n", file_mode=file_mode)
    return entry
