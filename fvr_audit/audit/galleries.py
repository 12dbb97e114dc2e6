"""Each engine's gallery: what it enrolls, which targets it can judge, and their own photos held out.

A gallery comes from ``--gallery DIR`` (identity folders of photos: embedded by local engines,
uploaded as photos by cloud engines), from ``--gallery ENGINE=FILE`` (vectors already in a local
engine's space), or, for F itself, from the database's own other rows. A target's own photo is
never in the gallery that judges its reconstruction: it is found by path, or by content (an
identical F vector) when the database has no paths, and held out.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY
from fvr_audit.audit.settings import THRESHOLD_FROM_FMR, GallerySources, ScanSettings
from fvr_audit.audit.targets import given_rows
from fvr_audit.engines.base import Gallery, GalleryKind, MatchingEngine, ScoresEveryIdentity
from fvr_audit.engines.cloud import new_run_id
from fvr_audit.engines.registry import create_engine, is_cloud_engine
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, l2_normalize
from fvr_audit.vectors import VectorDatabase, load_vectors
from fvr_audit.vectors.checks import chunk_rows, row_blocks
from fvr_audit.vectors.npyfile import take_rows
from fvr_audit.vectors.sampling import counts_in, one_row_per_identity


@dataclass
class EngineGallery:
    """One engine F' of the scan with the gallery it enrolls."""

    spec: str
    engine: MatchingEngine
    #: The engine runs F itself: the same-system baseline.
    is_f: bool
    gallery: Gallery
    #: "database", "folder" or "file": how targets' own entries are found and held out.
    kind: str
    row_ids: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    #: Scores of gallery vectors against other identities, once enrolled (local engines; computed
    #: once, shared by an ``--fmr`` threshold and the verification view).
    impostors: np.ndarray | None = None

    @property
    def scores_every_identity(self) -> bool:
        return isinstance(self.engine, ScoresEveryIdentity)


def open_engines(
    db: VectorDatabase, extractor: Extractor, settings: ScanSettings, sources: GallerySources, progress, stack: ExitStack
) -> list[EngineGallery]:
    """Every ``--engine`` with its gallery (not yet enrolled); each engine is closed by ``stack``."""
    specs = list(dict.fromkeys(settings.engines))
    run_id = settings.run_id or new_run_id()
    engines = []
    for spec in specs:
        threshold = settings.engine_thresholds.get(spec, settings.engine_thresholds.get(spec.partition(":")[2]))
        given = None if threshold is None or threshold == THRESHOLD_FROM_FMR else float(threshold)
        engines.append(stack.enter_context(
            create_engine(spec, threshold=given, threshold_source="--engine-threshold" if given is not None else "",
                          run_id=run_id if is_cloud_engine(spec) else None)
        ))
    unknown = set(sources.files) - {e.name for e in engines} - set(specs)
    if unknown:
        raise InputError(f"--gallery {sorted(unknown)[0]}=...: no such engine in --engine {','.join(specs)}")
    photo_engines = [e for e in engines if e.info.gallery_kind is GalleryKind.PHOTOS]
    if photo_engines and sources.folder is None:
        raise InputError(
            f"{photo_engines[0].name}: enrolls photos; give --gallery DIR (identity folders of photos of the "
            "database's people and of others)"
        )
    # Without 'paths' a target's own photo in the folder can only be recognised by content: the
    # folder is then also embedded by F, and a photo whose F vector is the database row's is that row.
    by_content = extractor if sources.folder and db.paths is None else None
    folder_galleries, folder_rows = (
        _folder_galleries(sources.folder, engines, progress, db=db, extractor=by_content)
        if sources.folder else ({}, None)
    )
    states = []
    for spec, engine in zip(specs, engines):
        is_f = engine.same_model_as(extractor)
        cloud_note = (
            [f"run id {run_id}: what it enrolls is named fvr-audit-{run_id} and deleted when the scan ends; after a "
             f"killed scan, fvr-audit engines cleanup --engine {spec} --run-id {run_id} --yes deletes it"]
            if is_cloud_engine(spec) else []
        )
        file = sources.files.get(engine.name) or sources.files.get(spec)
        if file is not None:
            if engine.info.gallery_kind is not GalleryKind.VECTORS:
                raise InputError(f"--gallery {engine.name}={file}: {engine.name} enrolls photos, not vectors; give --gallery DIR")
            states.append(EngineGallery(spec, engine, is_f, _vector_file_gallery(file, engine), "file"))
        elif engine.name in folder_galleries:
            states.append(EngineGallery(spec, engine, is_f, folder_galleries[engine.name], "folder", row_ids=folder_rows,
                                        notes=cloud_note))
        elif is_f:
            gallery = Gallery(
                db.vectors, np.asarray(db.labels).astype(str),
                "the database's other vectors of each identity (each target's own vector held out)",
                None if db.paths is None else np.asarray(db.paths).astype(str),
            )
            states.append(EngineGallery(spec, engine, is_f, gallery, "database", row_ids=np.arange(db.n)))
        else:
            raise InputError(
                f"{engine.name}: no gallery to enroll; give --gallery DIR (identity folders of photos) "
                f"or --gallery {engine.name}=vectors.npz"
            )
    return states


def _vector_file_gallery(file: Path, engine: MatchingEngine) -> Gallery:
    info = engine.info
    gallery_db = load_vectors(file, expected_dim=info.dim, allow_duplicates=True)
    if not gallery_db.has_labels:
        raise InputError(f"{file}: no 'labels' array; a gallery must say who each vector is")
    recorded = gallery_db.extractor
    if recorded and recorded != info.model:
        raise InputError(
            f"{file}: made by extractor {recorded}, but it is the gallery of {engine.name}; "
            "vectors of different extractors cannot be compared"
        )
    return Gallery(
        np.asarray(gallery_db.vectors, np.float32), np.asarray(gallery_db.labels).astype(str),
        f"vectors from {file}", None if gallery_db.paths is None else np.asarray(gallery_db.paths).astype(str),
    )


def enroll_all(states: list[EngineGallery], db: VectorDatabase, rows: np.ndarray, ks, fmr: float, seed: int,
               thresholds) -> None:
    """Hold each target's own entry out of every gallery, enroll, and set thresholds taken from ``--fmr``."""
    from fvr_audit.audit.measure import impostor_threshold

    for state in states:
        hold_out_targets(state, db, rows)
        state.engine.enroll(state.gallery)
        identities = len(state.engine.identities)
        if max(ks) > identities:
            raise InputError(
                f"--k {max(ks)}: exceeds the {identities} identities enrolled in "
                f"{state.engine.name}'s gallery ({state.gallery.source}); lower --k or enlarge the gallery"
            )
        wanted = thresholds.get(state.spec, thresholds.get(state.spec.partition(":")[2]))
        if wanted == THRESHOLD_FROM_FMR:
            if not isinstance(state.engine, ScoresEveryIdentity):
                raise InputError(
                    f"--engine-threshold {state.spec}=fmr: {state.engine.name} does not give the scores of impostor "
                    "pairs; give its threshold as a number on its own scale"
                )
            threshold, pairs = impostor_threshold(state, fmr, seed)
            state.engine.set_threshold(threshold, f"--fmr {fmr:g} on {pairs} impostor pairs of its gallery")


#: Cosine at or above which a gallery photo's F vector is taken for a database row's own vector:
#: the same photo through the same extractor (photos of one person rarely pass 0.95).
SAME_PHOTO_COSINE = 0.999


def _folder_galleries(
    folder: Path, engines: list[MatchingEngine], progress, *, db: VectorDatabase | None = None,
    extractor: Extractor | None = None,
) -> tuple[dict[str, Gallery], np.ndarray | None]:
    """Each engine's gallery from the folder: embedded by local engines, as photos for the others;
    with ``extractor`` (F), also the database row each photo is, by content (-1: none), for
    databases without 'paths'."""
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction import discover_images, embed_records

    records, labelled = discover_images(folder)
    if not labelled:
        raise InputError(f"{folder}: a gallery needs identity folders (DIR/<identity>/<image>), not a flat folder")
    local = [e for e in engines if isinstance(e, ScoresEveryIdentity)]
    models = list({e.extractor.name: e.extractor for e in local}.values())
    if extractor is not None and extractor.name not in {m.name for m in models}:
        models.append(extractor)
    if models:
        run = embed_records(
            records, models, no_face=NoFacePolicy.SKIP,
            on_progress=progress(f"embed gallery {folder}", len(records)),
        )
        kept, vectors = [records[i] for i in run.kept], run.vectors
    else:  # only engines that enroll photos: nothing to embed here
        kept, vectors = list(records), {}
    labels = np.array([r.label for r in kept])
    paths = np.array([r.relative for r in kept])
    skipped = len(records) - len(kept)
    left_out = f"; {skipped} images without a usable face left out" if skipped else ""
    galleries = {
        e.name: (
            Gallery(vectors[e.extractor.name], labels, f"photos in {folder} embedded by {e.extractor.name} "
                    f"({len(kept)} faces{left_out})", paths, folder)
            if isinstance(e, ScoresEveryIdentity)
            else Gallery(None, labels, f"photos in {folder}, enrolled in {e.name} ({len(kept)} photos{left_out})",
                         paths, folder)
        )
        for e in engines
    }
    rows = None if extractor is None or db is None else _rows_by_content(db, vectors[extractor.name])
    return galleries, rows


def _rows_by_content(db: VectorDatabase, photos: np.ndarray, scores_per_chunk: int = 1 << 25) -> np.ndarray:
    """For each photo's F vector, the database row holding the same vector (cosine >= SAME_PHOTO_COSINE), or -1.

    >>> db = VectorDatabase(Path("db.npy"), np.eye(3, dtype=np.float32))
    >>> _rows_by_content(db, np.array([[0, 1, 0], [1, 1, 0]], np.float32)).tolist()
    [1, -1]
    """
    photos = l2_normalize(np.asarray(photos, np.float32))
    best = np.full(len(photos), -np.inf, np.float32)
    rows = np.full(len(photos), -1, np.int64)
    # chunked (128 MB of scores, 64 MB of rows at a time): a database may hold millions of rows
    chunk = max(1, min(scores_per_chunk // max(1, len(photos)), chunk_rows(db.dim, 64 << 20)))
    for lo, stored in row_blocks(db.vectors, chunk):
        block = l2_normalize(np.asarray(stored, np.float32))
        scores = photos @ block.T
        if scores.size == 0:
            continue
        top = scores.argmax(axis=1)
        value = scores[np.arange(len(photos)), top]
        better = value > best
        best[better], rows[better] = value[better], lo + top[better]
    rows[best < SAME_PHOTO_COSINE] = -1
    return rows


def _own_entry(state: EngineGallery, db: VectorDatabase, row: int) -> np.ndarray:
    """Mask of the gallery entries that are the target's own photo (to hold out)."""
    gallery = state.gallery
    if state.row_ids is not None:  # the database itself, or a folder matched by content
        return state.row_ids == row
    if gallery.paths is not None and db.paths is not None:
        return gallery.paths == str(db.paths[row])
    return np.zeros(len(gallery.labels), bool)


def sample_targets(db: VectorDatabase, engines: list[EngineGallery], settings: ScanSettings) -> np.ndarray:
    """One row per identity (seeded), among rows whose identity every engine can still find."""
    labels = np.asarray(db.labels).astype(str)
    eligible = np.ones(db.n, bool)
    for state in engines:
        in_gallery = counts_in(labels, state.gallery.labels)
        own = np.zeros(db.n, int)
        if state.row_ids is not None:
            matched = state.row_ids[state.row_ids >= 0]
            own = np.bincount(matched, minlength=db.n)[: db.n]
        elif state.gallery.paths is not None and db.paths is not None:
            own = np.isin(np.asarray(db.paths).astype(str), state.gallery.paths).astype(int)
        eligible &= in_gallery - own >= 1
    if not eligible.any():
        raise InputError(
            f"{db.path}: no target can be evaluated: no identity has a gallery vector, in every engine, "
            "other than the target's own (give --gallery DIR with other photos of the same people)"
        )
    if settings.rows is not None:
        rows = given_rows(db, settings)
        unfit = rows[~eligible[rows]]
        if unfit.size:
            raise InputError(
                f"--rows: row {int(unfit[0])} ({labels[unfit[0]]}) cannot be evaluated: its identity has no vector, in "
                "some engine's gallery, other than its own"
            )
        return rows
    return one_row_per_identity(labels, eligible, settings.sample, settings.seed)


def hold_out_targets(state: EngineGallery, db: VectorDatabase, rows: np.ndarray) -> None:
    mask = np.zeros(len(state.gallery.labels), bool)
    for row in rows:
        mask |= _own_entry(state, db, int(row))
    state.gallery = state.gallery.without(mask)
    if state.row_ids is not None:
        state.row_ids = state.row_ids[~mask]
    if state.kind == "folder" and state.row_ids is not None:
        state.notes.append(
            f"{int(mask.sum())} gallery photos held out as targets' own photos, found by content (an identical "
            "vector under F) because the database has no 'paths'"
        )


def original_vectors(state: EngineGallery, db, rows, sources: GallerySources) -> np.ndarray | None:
    """The targets' own photos as seen by a local engine, if they can be had."""
    assert isinstance(state.engine, ScoresEveryIdentity)
    if state.is_f:
        return take_rows(db.vectors, rows)  # F(original) is the stored vector
    file = sources.originals.get(state.engine.name) or sources.originals.get(state.spec)
    if file is not None:
        originals = load_vectors(file, expected_dim=state.engine.info.dim, allow_duplicates=True)
        if originals.paths is None or db.paths is None:
            raise InputError(f"{file}: originals need 'paths' (and the database too) to be matched to targets")
        position = {str(p): i for i, p in enumerate(originals.paths)}
        missing = [str(db.paths[r]) for r in rows if str(db.paths[r]) not in position]
        if missing:
            raise InputError(f"{file}: no original vector for target photo {missing[0]} ({len(missing)} missing)")
        return np.asarray(originals.vectors[[position[str(db.paths[r])] for r in rows]], dtype=np.float32)
    crops = original_crops(state, db, rows, sources)
    return None if crops is None else state.engine.embed(crops)


def original_crops(state: EngineGallery, db, rows, sources: GallerySources) -> np.ndarray | None:
    """The targets' own photos cut to the engine's crop, when ``--images-root`` gives them."""
    if sources.images_root is None or db.paths is None:
        return None
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction.pipeline import align_paths

    paths = photos_under_root(sources.images_root, db, rows)
    crops = []
    for path, face in zip(paths, align_paths(paths, [state.engine.info.geometry], no_face=NoFacePolicy.CENTER)):
        if not face.status.usable:
            raise InputError(f"{path}: original photo of a target unusable ({face.status.value}: {face.reason})")
        crops.append(face.crops[0])
    return np.stack(crops)


def photos_under_root(root: Path, db, rows) -> list[str]:
    """The targets' photos, ``--images-root`` joined with each row's path; a path that leads
    outside the root (``../``, an absolute path, a link) is refused: it would be read and shown."""
    base = Path(root).resolve()
    photos = []
    for row in rows:
        relative = str(db.paths[row])
        photo = (base / relative).resolve()
        if not photo.is_relative_to(base):
            raise InputError(
                f"{db.path}: 'paths' row {int(row)} ({relative!r}) leads outside --images-root {root}; "
                "paths must be relative to that folder"
            )
        photos.append(str(photo))
    return photos


def original_images(db, rows, sources: GallerySources) -> dict[int, np.ndarray]:
    if sources.images_root is None or db.paths is None:
        return {}
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction.pipeline import align_paths

    paths = photos_under_root(sources.images_root, db, rows)
    return {
        position: face.crops[0]
        for position, face in enumerate(align_paths(paths, [CANONICAL_GEOMETRY], no_face=NoFacePolicy.CENTER))
        if face.status.usable
    }


