"""Reconstruct a vector set into a folder, resumably: the code path of ``fvr-audit reconstruct`` and scan.

The folder holds one PNG per target (``00000.png``: the canonical 200 x 200 frame, named by the
target's row in the vector set) and ``reconstructions.json``:

.. code-block:: json

    {"format": "fvr-audit-reconstructions", "version": 1, "method": "eigenfaces",
     "access": "black-box", "extractor": "dlib-resnet128", "extractor_sha256": "...",
     "vectors_sha256": "...", "count": 100, "seed": 0, "settings": {...},
     "models_used": ["dlib-resnet128", "eigenfaces-lfw-train-100.npz"], "complete": true,
     "targets": [{"index": 0, "label": "Jane_Doe", "file": "00000.png", "similarity": 0.97,
                  "queries": 3200, "seconds": 41.2, "trace": [[320, 0.61], ...],
                  "checkpoints": [[192, "checkpoints/00000-q000192.png"], ...]}, ...]}

A query-driven attack also leaves the faces it held after fewer queries (``checkpoints/``), from
which re-identification is read against queries.

Targets are reconstructed in work units (``chunk_size`` targets, advancing together in batched
calls to F) that an executor (:mod:`fvr_audit.execution`: this process, local processes, Ray)
runs; as each unit finishes its PNGs and then the JSON are written atomically, so a killed run
loses at most the units in progress, and running again with the same vectors, method, settings
and seed skips every finished target. A folder made with other settings is refused rather than
mixed. Images are written with mode 0600: reconstructions are biometric data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, l2_normalize
from fvr_audit.io.atomic import atomic_write_bytes, atomic_write_text
from fvr_audit.io.outputs import private_mkdir
from fvr_audit.execution import Executor, SerialExecutor, WorkUnit
from fvr_audit.reconstructors.base import Reconstructor, target_seed

MANIFEST = "reconstructions.json"
FORMAT = "fvr-audit-reconstructions"
#: Subfolder of the earlier (checkpoint) faces of a query-driven attack.
CHECKPOINTS = "checkpoints"
VERSION = 1
#: Targets per work unit (they advance together in batched calls to F, and are saved together).
#: Small enough that a few dozen targets keep several workers busy; the same on every executor.
DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class ReconstructionRun:
    """What :func:`reconstruct_to_folder` did."""

    folder: Path
    manifest: dict
    #: Targets reconstructed by this call (the rest were already in the folder).
    done_now: int
    skipped: int
    seconds: float
    #: Requests to F this call sent, by whichever copy of F ran the units (0 for local models).
    service_queries: int = 0


def vectors_digest(vectors: np.ndarray) -> str:
    """sha256 of the float32 vectors (resume refuses a folder made from other vectors).

    >>> vectors_digest(np.zeros((2, 3), np.float32))[:12]
    '910238ea1f5f'
    """
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _settings_of(reconstructor: Reconstructor) -> dict:
    settings = getattr(reconstructor, "settings", None)
    if settings is None:
        return {}
    from dataclasses import asdict, is_dataclass

    raw = asdict(settings) if is_dataclass(settings) else dict(settings)
    return json.loads(json.dumps(raw))  # tuples -> lists, as they come back from the JSON


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); delete it or use another output folder") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not an fvr-audit reconstructions file; delete it or use another output folder")
    targets = manifest.get("targets", [])
    if not isinstance(targets, list) or not all(
        isinstance(r, dict) and isinstance(r.get("index"), int) and isinstance(r.get("file"), str) for r in targets
    ):
        raise InputError(f"{path}: malformed 'targets' (each needs an index and a file); delete it or use another output folder")
    return manifest


def reconstruct_to_folder(
    vectors: np.ndarray,
    extractor: Extractor,
    reconstructor: Reconstructor,
    folder: str | Path,
    *,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    source: str = "",
    rows: Sequence[int] | None = None,
    executor: Executor | None = None,
    restart_on_mismatch: bool = False,
) -> ReconstructionRun:
    """Reconstruct every row of ``vectors`` (made by ``extractor``) into ``folder``, resuming.

    The one reconstruction driver of ``reconstruct`` and ``scan``: the targets are cut into units
    of ``chunk_size`` (the same units on every executor: batching moves floats), ``executor``
    runs them (default: serially in this process, with ``extractor`` and ``reconstructor``
    themselves), and each unit's PNGs and then the manifest are written as it finishes.

    ``rows``: the targets' ids (database rows; default 0..N-1): file names and seeds
    (:func:`~fvr_audit.reconstructors.base.target_seed`) derive from them, so a target gets the
    same face from ``scan`` and ``reconstruct``. ``limit``: only the first ``limit`` targets
    (the rest are left for a later call). ``on_progress(n)``: n more targets done.
    ``restart_on_mismatch``: a folder made with other inputs is emptied instead of refused (a
    scan's own work folder).
    """
    start = time.perf_counter()
    folder = Path(folder)
    vectors = np.asarray(vectors, dtype=np.float32) if not isinstance(vectors, np.memmap) else vectors
    if vectors.ndim != 2 or len(vectors) == 0:
        raise InputError(f"reconstruct: expected a non-empty [N, D] vector array, got shape {vectors.shape}")
    if labels is not None and len(labels) != len(vectors):
        raise InputError(f"reconstruct: {len(labels)} labels for {len(vectors)} vectors")
    ids = [int(r) for r in (range(len(vectors)) if rows is None else rows)]
    if len(ids) != len(vectors) or len(set(ids)) != len(ids):
        raise InputError(f"reconstruct: {len(ids)} distinct rows needed for {len(vectors)} vectors")
    reason = reconstructor.supports(extractor)
    if reason:
        raise InputError(f"{reconstructor.name}: {reason}")
    if folder.is_symlink():
        raise InputError(f"{folder}: is a symbolic link; give a real folder for the reconstructions")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    private_mkdir(folder)

    info = reconstructor.info
    header = {
        "format": FORMAT,
        "version": VERSION,
        "method": info.name,
        "access": info.access.value,
        "reference": info.reference,
        "extractor": extractor.name,
        "extractor_sha256": extractor.info.sha256,
        "extractor_geometry": extractor.geometry.describe(),
        "vectors_sha256": vectors_digest(vectors),
        "count": int(len(vectors)),
        "seed": int(seed),
        "settings": _settings_of(reconstructor),
        "source": source,
    }
    if rows is not None:
        header["rows_sha256"] = hashlib.sha256(np.asarray(ids, np.int64).tobytes()).hexdigest()
    chunk = chunk_size or DEFAULT_CHUNK
    header["chunk"] = int(chunk)  # units of other sizes would batch, and round, differently
    manifest = _read_manifest(folder)
    if manifest is not None:
        keys = (*RESUME_KEYS, *(["rows_sha256"] if rows is not None else []))
        stale = [key for key in keys if manifest.get(key) != header[key]]
        if stale and restart_on_mismatch:
            _empty_folder(folder)
            manifest = None
        elif stale:
            key = stale[0]
            raise InputError(
                f"{folder / MANIFEST}: made with a different {key} ({manifest.get(key)!r} vs {header[key]!r}); "
                "use another output folder, or delete this one to start over"
            )
    if manifest is not None:
        records = {int(r["index"]): r for r in manifest.get("targets", [])}
        models_used = list(manifest.get("models_used", []))
        result_settings = dict(manifest.get("result_settings", {}))
    else:
        records, models_used, result_settings = {}, [], {}
    # A record counts as done only if its image is there too (the PNGs are written first).
    records = {i: r for i, r in records.items() if (folder / r["file"]).exists()}
    wanted = ids if limit is None else ids[: max(0, limit)]
    position = {row: i for i, row in enumerate(ids)}

    def write_manifest() -> None:
        body = dict(header)
        body["models_used"] = models_used
        body["result_settings"] = result_settings
        body["complete"] = len(records) == len(vectors)
        body["targets"] = [records[i] for i in sorted(records, key=position.get)]
        atomic_write_text(folder / MANIFEST, json.dumps(body, indent=1) + "\n")

    service_queries = 0  # requests to F by the units (an endpoint's cost)
    if manifest is None:
        write_manifest()
    units = plan_units(wanted, chunk, records, vectors, position, seed, extractor, reconstructor)
    todo = sum(len(unit.rows) for unit in units)
    label_of = (lambda row: None) if labels is None else (lambda row: str(labels[position[row]]))
    owned = executor is None
    within_unit = [0.0]  # targets' worth of the running unit already reported by the attack itself

    def partial(step: float) -> None:
        within_unit[0] += step
        on_progress(step)

    executor = executor or SerialExecutor(lambda unit: (extractor, reconstructor), on_progress=partial if on_progress else None)
    try:
        for result in executor.run(units):
            per_target_seconds = result.seconds / max(1, len(result.rows))
            if result.checkpoints:
                private_mkdir(folder / CHECKPOINTS)
            for j, row in enumerate(result.rows):
                file = f"{row:05d}.png"
                atomic_write_bytes(folder / file, png_bytes(result.images[j]))
                earlier = []  # [queries, file] of each checkpoint face, written before the record names it
                for checkpoint in result.checkpoints:
                    name = f"{CHECKPOINTS}/{row:05d}-q{checkpoint.queries:06d}.png"
                    atomic_write_bytes(folder / name, png_bytes(checkpoint.images[j]))
                    earlier.append([int(checkpoint.queries), name])
                records[row] = {
                    "index": int(row),
                    "label": label_of(row),
                    "file": file,
                    "similarity": round(float(result.similarity[j]), 6),
                    "queries": int(result.queries[j]),
                    "seconds": round(per_target_seconds, 3),
                    "trace": result.traces[j] if j < len(result.traces) else [],
                    **({"checkpoints": earlier} if earlier else {}),
                }
            service_queries += result.service_queries
            for name in result.models_used:
                if name not in models_used:
                    models_used.append(name)
            if not result_settings:
                result_settings.update(json.loads(json.dumps(result.settings, default=str)))
            write_manifest()
            remainder = len(result.rows) - within_unit[0]
            within_unit[0] = 0.0
            if on_progress and remainder > 1e-9:
                on_progress(remainder)
    finally:
        if owned:
            executor.close()
    if not units:
        write_manifest()
    final = _read_manifest(folder) or {}
    return ReconstructionRun(folder, final, todo, len(wanted) - todo, time.perf_counter() - start, service_queries)


#: What a resumed folder must share with the run resuming it.
RESUME_KEYS = ("method", "extractor", "extractor_sha256", "vectors_sha256", "count", "seed", "settings")

#: Test hook (see :attr:`fvr_audit.execution.units.WorkUnit.crash_marker`): a marker file path;
#: the second unit of a run then makes its worker exit abruptly the first time it runs.
CRASH_MARKER_ENV = "FVR_AUDIT_TEST_CRASH_MARKER"


def plan_units(wanted, chunk, records, vectors, position, seed, extractor, reconstructor) -> list[WorkUnit]:
    """Units of ``chunk`` consecutive wanted targets, cut the same way on every executor and on
    a resumed run (a unit finished before is left out; a half-finished one keeps its rest)."""
    from fvr_audit.extractors.dlib_resnet import backend_threads
    from fvr_audit.extractors.registry import spec_of

    threads = backend_threads()
    marker = os.environ.get(CRASH_MARKER_ENV) or None
    units = []
    for lo in range(0, len(wanted), chunk):
        rows = tuple(row for row in wanted[lo : lo + chunk] if row not in records)
        if not rows:
            continue
        units.append(WorkUnit(
            number=lo // chunk,
            method=reconstructor.origin,
            extractor=spec_of(extractor),
            rows=rows,
            # normalised here, once for every caller: scan and reconstruct hand over the same bits
            vectors=l2_normalize(np.ascontiguousarray(vectors[[position[row] for row in rows]], dtype=np.float32)),
            seeds=tuple(target_seed(seed, row) for row in rows),
            threads=threads,
            crash_marker=marker if lo // chunk == 1 else None,
        ))
    return units


def _empty_folder(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            import shutil

            shutil.rmtree(entry)
        else:
            entry.unlink()


def build_reconstructor(
    method: str,
    *,
    preset: str | None = None,
    iterations: int | None = None,
    batch: int | None = None,
    query_budget: int | None = None,
    target_similarity: float | None = None,
    **extra,
) -> Reconstructor:
    """A reconstructor from the settings the CLI (reconstruct, scan) exposes; ``None`` keeps the default.

    A setting the method does not take is an error naming the method, never silently ignored.

    >>> build_reconstructor("gradient", batch=64)
    Traceback (most recent call last):
    ...
    fvr_audit.errors.InputError: gradient: does not take --batch (it takes: --iterations, --preset, --query-budget, --target-similarity)
    """
    from fvr_audit.reconstructors.registry import get_reconstructor

    flags = {
        "preset": preset,
        "iterations": iterations,
        "batch": batch,
        "query_budget": query_budget,
        "target_similarity": target_similarity,
    }
    accepted = {
        "eigenfaces": {"preset", "iterations", "batch", "query_budget", "target_similarity"},
        "refine": {"preset", "iterations", "batch", "query_budget", "target_similarity"},
        "gradient": {"preset", "iterations", "query_budget", "target_similarity"},
        "transfer": {"preset", "iterations", "target_similarity"},
        "nbnet": set(),
        "vec2face": set(),
        "naive": set(),
    }.get(method)
    given = {key: value for key, value in flags.items() if value is not None}
    if accepted is not None:
        refused = sorted(set(given) - accepted)
        if refused:
            takes = ", ".join("--" + key.replace("_", "-") for key in sorted(accepted))
            raise InputError(
                f"{method}: does not take {', '.join('--' + key.replace('_', '-') for key in refused)} (it takes: {takes})"
            )
    given.update({key: value for key, value in extra.items() if value is not None})
    try:
        return get_reconstructor(method, **given)
    except TypeError as exc:  # a factory without one of these keywords
        flags_given = ", ".join("--" + key.replace("_", "-") for key in given)
        raise InputError(f"{method}: does not take one of {flags_given} ({exc})") from None


def load_checkpoints(folder: str | Path, manifest: dict) -> dict[int, np.ndarray]:
    """queries -> uint8 [N, 200, 200, 3] earlier faces, in target order, for each checkpoint every
    target of the folder has (an attack without checkpoints: empty)."""
    folder = Path(folder)
    targets = manifest.get("targets", [])
    per_target = [dict((int(q), str(f)) for q, f in t.get("checkpoints", [])) for t in targets]
    common = set.intersection(*(set(c) for c in per_target)) if per_target else set()
    out = {}
    for queries in sorted(common):
        images = []
        for files in per_target:
            path = folder / files[queries]
            if path.parent.resolve() != (folder / CHECKPOINTS).resolve():
                raise InputError(f"{folder / MANIFEST}: checkpoint file {files[queries]!r} is outside {CHECKPOINTS}/")
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
        out[queries] = np.stack(images)
    return out


def load_reconstructions(folder: str | Path) -> tuple[dict, np.ndarray]:
    """(manifest, uint8 [N, 200, 200, 3] images in target order) of a reconstructions folder."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise InputError(f"{folder}: no {MANIFEST}; not a reconstructions folder")
    images = []
    for record in manifest["targets"]:
        with Image.open(folder / record["file"]) as image:
            images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if not images:
        return manifest, np.zeros((0, 200, 200, 3), np.uint8)
    return manifest, np.stack(images)
