"""``fvr-audit scan``: the paper's Metric 1 on the operator's own vectors.

Targets are sampled from the database (one per identity, seeded); each reconstruction method
turns their vectors into faces; every engine F' embeds its crop of those faces and ranks its
enrolled identities; tpr/fpr/no-match are swept over K and N against chance. Two reference rows
make the figures readable: "original" (the target's own photo, the ceiling) and "random".
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fvr_audit import __version__
from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical
from fvr_audit.audit.results import (
    AuditResults,
    RiskLevel,
    EngineSummary,
    MethodSummary,
    Record,
    SameClassFalsePositives,
    Target,
    Verification,
)
from fvr_audit.audit.fairness import Judging, judging
from fvr_audit.audit.system_match import measure_against_database
from fvr_audit.audit.verdict import check_gate, decide_verdict
from fvr_audit.engines.base import Gallery
from fvr_audit.engines.local import LocalEngine
from fvr_audit.engines.registry import DEFAULT_ENGINES, create_engine
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, WhiteBox, l2_normalize
from fvr_audit.metrics.topk import (
    same_class_false_positive_share,
    success_attack_rate,
    threshold_at_fmr,
    topk_outcomes,
    topk_sweep,
    wilson_interval,
)
from fvr_audit.reconstructors.registry import available_reconstructors, check_method_settings, get_reconstructor
from fvr_audit.vectors import VectorDatabase, load_vectors

#: Gallery vectors used as impostor probes to set the verification threshold.
IMPOSTOR_PROBES = 2000
#: Databases up to this size are hashed into the results (provenance); larger ones are not.
HASH_DATABASE_UP_TO = 1 << 30


@dataclass(frozen=True)
class GallerySources:
    """Where each engine's gallery, and the targets' original photos, come from."""

    #: ``--gallery DIR``: identity folders of photos, embedded by every engine.
    folder: Path | None = None
    #: ``--gallery ENGINE=FILE``: labelled vectors already in that engine's space.
    files: Mapping[str, Path] = field(default_factory=dict)
    #: ``--originals ENGINE=FILE``: the target photos' vectors in that engine's space (by path).
    originals: Mapping[str, Path] = field(default_factory=dict)
    #: ``--images-root DIR``: the database's ``paths`` resolved against it give the original photos.
    images_root: Path | None = None


@dataclass(frozen=True)
class ScanSettings:
    sample: int = 100
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10, 25)
    ns: tuple[int, ...] = (50, 100, 500, 1000, 5000)
    #: Random gallery subsets drawn per N.
    draws: int = 5
    #: Reconstruction methods; ``None`` means every installed one.
    methods: tuple[str, ...] | None = None
    engines: tuple[str, ...] = DEFAULT_ENGINES
    gate_k: int = 1
    #: N of the verdict and of ``--fail-on-tpr``; ``None``: the largest N evaluated.
    gate_n: int | None = None
    fmr: float = 1e-3
    method_settings: Mapping[str, dict] = field(default_factory=dict)
    allow_duplicates: bool = False
    #: Extra models folders searched for trained reconstructors (``--models``).
    model_dirs: tuple[Path, ...] = ()
    #: ``--calibration DIR``: face photos to fit an adapter from F's space into that of an extractor
    #: with pretrained reconstructors, when F has none of its own.
    calibration: Path | None = None
    #: Without ``--calibration``: the tool's own synthetic faces embedded by F to fit that adapter
    #: (``--calibration-faces``; 0 turns self-calibration off).
    calibration_faces: int = 2000
    #: ``--rows``: audit exactly these database rows (0-based) instead of sampling ``sample`` of them.
    rows: tuple[int, ...] | None = None
    #: ``--query-budget``: queries to F the whole scan may send (checks, calibration, attacks and
    #: measurement together); what the fixed phases leave is the black-box attack's, per target.
    query_budget: int | None = None


@dataclass(frozen=True)
class ScanOutput:
    results: AuditResults
    #: method -> uint8 [T, 200, 200, 3] reconstructions (canonical frame), in target order.
    reconstructions: dict[str, np.ndarray]
    #: target position -> uint8 canonical crop of the original photo, when photos were available.
    originals: dict[int, np.ndarray]


#: ``progress(description, total)`` returns a function that advances that task by n.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class _EngineState:
    spec: str
    engine: LocalEngine
    is_f: bool
    gallery: Gallery
    #: "database", "folder" or "file": how targets' own entries are found and held out.
    kind: str
    row_ids: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def run_scan(
    database: VectorDatabase | str | Path,
    extractor: Extractor,
    settings: ScanSettings = ScanSettings(),
    sources: GallerySources = GallerySources(),
    *,
    progress: ProgressFactory = _no_progress,
    on_message: Callable[[str], None] = lambda line: None,
) -> ScanOutput:
    """Run the whole audit and return its results (nothing is written here).

    ``on_message`` receives one-line findings as they happen (checks of F, calibration), which
    also end up in the results' notes."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    queries_at_start = extractor.queries_used  # before anything reads F's dimension (an endpoint probes for it)
    db = database if isinstance(database, VectorDatabase) else load_vectors(
        database, expected_dim=extractor.dim, allow_duplicates=settings.allow_duplicates
    )
    if db.dim != extractor.dim:
        raise InputError(
            f"{db.path}: vectors have dimension {db.dim} but extractor {extractor.name} produces "
            f"{extractor.dim}-dimensional vectors; give the extractor that made these vectors"
        )
    db.check_made_by(extractor.name)
    labelled = db.has_labels
    if not labelled:
        _check_unlabelled(db, sources)
    check_settings(settings)
    _check_extractor(extractor, notes, on_message)
    timings["check_queries"] = extractor.queries_used - queries_at_start
    adapter = _calibration_adapter(settings, extractor, notes, progress, timings)
    settings = _apply_query_budget(settings, extractor, db, notes, timings, queries_at_start)
    reconstructors = _reconstructors(settings, extractor, notes, adapter)
    if isinstance(extractor, WhiteBox) and any(r.name == "gradient" for r in reconstructors):
        if extractor.white_box_check:
            notes.append(extractor.white_box_check)
            on_message(extractor.white_box_check)

    mark = time.perf_counter()
    engines = _build_engines(db, extractor, settings, sources, progress) if labelled else []
    timings["galleries_seconds"] = time.perf_counter() - mark

    if labelled:
        rows = _sample_targets(db, engines, settings)
        if settings.rows is None and len(rows) < settings.sample:
            notes.append(
                f"{len(rows)} targets evaluated (asked for {settings.sample}): only {len(rows)} identities "
                "have a vector in every engine's gallery besides the target's own"
            )
        if sources.images_root is not None and db.paths is not None:
            _photos_under_root(sources.images_root, db, rows)  # refused now, not after the attacks ran
        labels = np.asarray(db.labels)[rows].astype(str)
    else:
        rows = _sample_rows(db, settings)
        labels = _row_names(db, rows)
        notes.append(UNLABELLED_NOTE)
    for state in engines:
        _hold_out_targets(state, db, rows)
        state.engine.enroll(state.gallery)
        identities = len(state.engine.identities)
        if max(settings.ks) > identities:
            raise InputError(
                f"--k {max(settings.ks)}: exceeds the {identities} identities enrolled in "
                f"{state.engine.name}'s gallery ({state.gallery.source}); lower --k or enlarge the gallery"
            )
    target_vectors = l2_normalize(np.asarray(db.vectors[rows], dtype=np.float32))

    # Reconstruct.
    reconstructions: dict[str, np.ndarray] = {}
    summaries: list[MethodSummary] = []
    for reconstructor in reconstructors:
        mark = time.perf_counter()
        advance = progress(f"reconstruct: {reconstructor.name}", len(rows))
        before = extractor.queries_used
        result = reconstructor.reconstruct(target_vectors, extractor, seed=settings.seed, on_progress=advance)
        reconstructions[reconstructor.name] = result.images
        timings[f"reconstruct_{reconstructor.name}_seconds"] = time.perf_counter() - mark
        summaries.append(_method_summary(reconstructor, result, extractor.queries_used - before))

    # Every query set, per engine: method -> [T, G] identity scores.
    scores: dict[str, dict[str, np.ndarray]] = {s.engine.name: {} for s in engines}
    mark = time.perf_counter()
    for state in engines:
        advance = progress(f"re-identify: {state.engine.name}", len(reconstructions) + 2)
        for summary in summaries:
            if judging(summary.models_used, state.engine.extractor.name, engine_is_f=state.is_f) is Judging.USED:
                notes.append(
                    f"{summary.name} used {state.engine.extractor.name}, so it is not evaluated by "
                    f"{state.engine.name}: an attack may never use the engine that judges it"
                )
                continue
            crops = crop_from_canonical(reconstructions[summary.name], state.engine.info.geometry)
            scores[state.engine.name][summary.name] = state.engine.identity_scores(crops)
            advance(1)
        original = _original_vectors(state, db, rows, sources)
        if original is not None:
            scores[state.engine.name]["original"] = state.engine.identity_scores_of_vectors(original)
        else:
            state.notes.append("no original photos or vectors: the 'original' row is missing")
        advance(1)
        rng = np.random.default_rng([settings.seed, 7])
        scores[state.engine.name]["random"] = rng.random((len(rows), len(state.engine.identities)))
        advance(1)
    timings["reidentify_seconds"] = time.perf_counter() - mark

    # Metrics.
    mark = time.perf_counter()
    records: list[Record] = []
    same_class: list[SameClassFalsePositives] = []
    verification: list[Verification] = []
    for engine_index, state in enumerate(engines):
        engine = state.engine
        true_index = np.searchsorted(engine.identities, labels)
        impostors = _impostor_scores(engine, settings.seed)
        fmr_threshold = threshold_at_fmr(impostors, settings.fmr)
        for method_index, (method, matrix) in enumerate(scores[engine.name].items()):
            rng = np.random.default_rng([settings.seed, engine_index, method_index])
            for rates in topk_sweep(
                matrix, true_index, list(settings.ks), list(settings.ns),
                seeds=settings.draws, threshold=engine.threshold, rng=rng,
            ):
                records.append(
                    Record(method, engine.name, rates.k, rates.n, rates.tpr, rates.fpr, rates.no_match,
                           rates.tpr_ci, rates.baseline, rates.queries, rates.seeds)
                )
            true_scores = matrix[np.arange(len(rows)), true_index]
            others = matrix.copy()
            others[np.arange(len(rows)), true_index] = -np.inf
            hit, false_positive, _ = topk_outcomes(true_scores, others, settings.gate_k, engine.threshold)
            same_class.append(
                SameClassFalsePositives(
                    method, engine.name, settings.gate_k, len(engine.identities), int(false_positive.sum()),
                    same_class_false_positive_share(others.argmax(axis=1), false_positive),
                )
            )
            if method == "random":
                continue  # random scores are not cosines: a threshold on them means nothing
            sar = success_attack_rate(true_scores, fmr_threshold)
            verification.append(
                Verification(method, engine.name, settings.fmr, fmr_threshold, sar,
                             wilson_interval(sar * len(rows), len(rows)), int(impostors.size))
            )
    timings["metrics_seconds"] = time.perf_counter() - mark

    # The deployed system itself: F against every row of the leaked database (needs no labels).
    mark = time.perf_counter()
    system_records, system_verification, system_summary, system_queries = measure_against_database(
        db, extractor, rows, reconstructions, ks=settings.ks, ns=settings.ns, fmr=settings.fmr, seed=settings.seed, progress=progress
    )
    timings["system_match_seconds"] = time.perf_counter() - mark
    gate_n = settings.gate_n or max(settings.ns)
    # Metric 1 by independent engines is the stronger statement; the system's own figures set the
    # verdict only when nothing else was measured (no labels, or no engine).
    verdict = decide_verdict(records, settings.gate_k, gate_n)
    if verdict.level is RiskLevel.NOT_ASSESSED:
        verdict = decide_verdict(system_records, settings.gate_k, gate_n)
    records.extend(system_records)
    verification.extend(system_verification)
    timings["total_seconds"] = time.perf_counter() - started
    for state in engines:
        notes.extend(f"{state.engine.name}: {note}" for note in state.notes)

    results = AuditResults(
        tool_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        database=_database_summary(db),
        extractor={**_extractor_summary(extractor), "queries_by_phase": _queries_by_phase(timings, summaries, system_queries)},
        settings=_settings_summary(settings, sources, gate_n),
        targets=tuple(
            Target(int(row), str(label), None if db.paths is None else str(db.paths[row]))
            for row, label in zip(rows, labels)
        ),
        methods=tuple(summaries),
        engines=(*(_engine_summary(state) for state in engines), system_summary),
        records=tuple(records),
        same_class_false_positives=tuple(same_class),
        verification=tuple(verification),
        verdict=verdict,
        timings={k: round(v, 2) for k, v in timings.items()},
        notes=tuple(notes),
    )
    return ScanOutput(results, reconstructions, _original_images(db, rows, sources))


UNLABELLED_NOTE = (
    "the database has no labels: measured what the leaked vectors alone allow, in the deployed system's own "
    "terms (system:F rows: F ranks each reconstruction against every row of the database, and accepts it at the "
    "--fmr threshold). An independent-engine check (Metric 1) needs labels (the identity of each row, e.g. "
    "fvr-audit extract writes them from identity folders) and photos of the same people (--gallery DIR); it would "
    "add whether another recognizer, the kind an attacker uses, re-identifies the reconstructed faces"
)


def _check_unlabelled(db: VectorDatabase, sources: GallerySources) -> None:
    if db.n < 2:
        raise InputError(f"{db.path}: {db.n} row; the audit compares reconstructions with the other rows, so it needs at least 2")
    given = [flag for flag, value in (("--gallery", sources.folder or sources.files), ("--originals", sources.originals),
                                       ("--images-root", sources.images_root)) if value]
    if given:
        raise InputError(
            f"{db.path}: no 'labels' array, but {given[0]} was given: independent engines judge re-identification "
            "against each target's true identity, so the database needs labels (fvr-audit extract writes them); "
            f"without {given[0]} the scan measures what the vectors alone allow"
        )


def _sample_rows(db: VectorDatabase, settings: ScanSettings) -> np.ndarray:
    """``--sample`` rows of an unlabelled database, uniformly at random (seeded), in row order.

    The same draw as :func:`_sample_targets` makes when every row is its own identity and every
    identity is eligible, so labelling such a database does not change its targets."""
    if settings.rows is not None:
        return _given_rows(db, settings)
    rng = np.random.default_rng(settings.seed)
    return np.sort(rng.permutation(db.n)[: settings.sample]).astype(np.int64)


def _given_rows(db: VectorDatabase, settings: ScanSettings) -> np.ndarray:
    rows = np.asarray(settings.rows, dtype=np.int64)
    if rows.size == 0:
        raise InputError("--rows: give at least one row")
    bad = rows[(rows < 0) | (rows >= db.n)]
    if bad.size:
        raise InputError(f"--rows: row {int(bad[0])} is outside {db.path} (rows 0 to {db.n - 1})")
    if len(np.unique(rows)) != len(rows):
        raise InputError("--rows: a row is given twice")
    return np.sort(rows)


def _row_names(db: VectorDatabase, rows: np.ndarray) -> np.ndarray:
    """Each target's name: its ``ids`` entry when the database has ids, else ``row <index>``."""
    if db.ids is not None:
        return np.asarray(db.ids)[rows].astype(str)
    return np.array([f"row {int(r)}" for r in rows])


def _apply_query_budget(settings, extractor, db, notes, timings, queries_at_start) -> ScanSettings:
    """Fit the scan into ``--query-budget`` queries to F, or refuse before any attack query.

    Fixed costs: what the checks and calibration already spent, one query per target and method
    to measure each reconstruction (its similarity, and its rank in the database), and the
    eigenfaces attack's final scoring; the rest is the eigenfaces attack's, per target.
    """
    if settings.query_budget is None:
        return settings
    budget = settings.query_budget
    targets = min(settings.sample, db.n)
    methods = list(settings.methods) if settings.methods is not None else available_reconstructors()
    spent = extractor.queries_used - queries_at_start
    measurement = 2 * targets * len(methods)  # similarity as F sees it, and the database ranking
    left = budget - spent - measurement
    plan = f"{spent} spent on checks and calibration, at most {measurement} to measure {len(methods)} methods x {targets} targets"
    eigen = dict(settings.method_settings.get("eigenfaces", {}))
    if "eigenfaces" in methods and "query_budget" not in eigen:
        per_target = left // targets if targets else 0
        least = get_reconstructor("eigenfaces", **eigen).settings.batch + 1
        if per_target < least:
            raise InputError(
                f"--query-budget {budget}: too small ({plan}, leaving {max(left, 0)} for eigenfaces: fewer than one "
                f"iteration, {least}, per target); raise it, lower --sample, or leave eigenfaces out with --methods"
            )
        eigen["query_budget"] = int(per_target)
        notes.append(f"--query-budget {budget}: {plan}; eigenfaces gets {per_target} queries per target")
        return replace(settings, method_settings={**settings.method_settings, "eigenfaces": eigen})
    if left < 0:
        raise InputError(f"--query-budget {budget}: too small ({plan}); raise it or lower --sample")
    return settings


def _check_extractor(extractor: Extractor, notes: list[str], on_message) -> None:
    """A user's model (ONNX file, endpoint) is checked on the tool's own faces before any attack:
    NaN or constant outputs stop the scan; a preprocessing that looks wrong is warned about."""
    from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS
    from fvr_audit.extractors.sanity import check_extractor

    if extractor.name in BUILTIN_EXTRACTORS:
        return
    check, warnings = check_extractor(extractor)
    on_message(f"{extractor.name}: embeddings checked on the tool's own faces: {check.describe()}")
    notes.extend(warnings)


def check_settings(settings: ScanSettings) -> None:
    """Settings that cannot work are usage errors, found before any work (the CLI calls this first)."""
    if settings.sample < 1:
        raise InputError(f"--sample {settings.sample}: must be at least 1")
    if settings.query_budget is not None and settings.query_budget < 1:
        raise InputError(f"--query-budget {settings.query_budget}: must be a positive number of queries")
    if settings.calibration_faces != 0 and settings.calibration_faces < 20:
        raise InputError(f"--calibration-faces {settings.calibration_faces}: give 0 (off) or at least 20 faces")
    if not settings.ks or min(settings.ks) < 1:
        raise InputError(f"--k {list(settings.ks)}: every K must be a positive whole number")
    if not settings.ns or min(settings.ns) < 2:
        raise InputError(f"--n {list(settings.ns)}: every N must be at least 2 identities")
    check_gate(settings.gate_k, settings.gate_n, settings.ks, settings.ns)
    check_method_settings(settings.method_settings, settings.methods)
    if settings.draws < 1:
        raise InputError(f"--draws {settings.draws}: must be at least 1")
    if not 0 < settings.fmr < 1:
        raise InputError(f"--fmr {settings.fmr}: must be between 0 and 1")


PARAMETRIC_METHODS = ("nbnet", "vec2face", "naive")


def _calibration_adapter(settings: ScanSettings, extractor: Extractor, notes: list[str], progress, timings: dict):
    """The adapter F -> dlib-resnet128 for the parametric methods, when F has no generator of its own:
    fitted on ``--calibration`` photos when given, else self-calibrated on the tool's own faces."""
    from fvr_audit.extractors.registry import DEFAULT_EXTRACTOR, get_extractor
    from fvr_audit.reconstructors.parametric.store import find_reconstructor

    wanted = [m for m in (settings.methods or PARAMETRIC_METHODS) if m in PARAMETRIC_METHODS]
    own = [m for m in wanted if find_reconstructor(m, extractor.name, extractor.info.sha256, settings.model_dirs)[0]]
    if not wanted or len(own) == len(wanted):
        if settings.calibration is not None:
            notes.append(f"--calibration ignored: {extractor.name} has its own trained reconstructors")
        return None
    mark = time.perf_counter()
    target = get_extractor(DEFAULT_EXTRACTOR)
    if settings.calibration is not None:
        from fvr_audit.extraction import discover_images
        from fvr_audit.reconstructors.parametric.adapter import fit_adapter_from_photos

        if not Path(settings.calibration).is_dir():
            raise InputError(f"{settings.calibration}: --calibration needs a folder of face photos")
        count = len(discover_images(settings.calibration)[0])
        adapter = fit_adapter_from_photos(
            settings.calibration, extractor, target,
            on_progress=progress(f"calibration: {extractor.name} -> {target.name}", count),
        )
        adapter = adapter.with_origin(f"{adapter.samples} photos of {adapter.identities} identities in {settings.calibration}",
                                      time.perf_counter() - mark)
        how = f"through an adapter fitted on your photos ({adapter.describe()})"
    elif settings.calibration_faces > 0:
        from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate

        calibration = self_calibrate(
            extractor, faces=settings.calibration_faces,
            on_progress=progress(f"self-calibration: {extractor.name} -> {target.name}", settings.calibration_faces),
        )
        adapter = calibration.adapter
        how = f"through an adapter {calibration.describe()}; {calibration.queries} queries to F"
        timings["calibration_queries"] = calibration.queries
    else:
        return None
    timings["calibration_seconds"] = time.perf_counter() - mark
    notes.append(
        f"parametric methods attack {extractor.name} with the generators shipped for {target.name}, {how}. "
        f"They used {target.name}, so it does not judge them. Stronger: --calibration DIR (your own face photos) "
        f"or a generator trained for {extractor.name} (fvr-audit train)"
    )
    return adapter


def _reconstructors(settings: ScanSettings, extractor: Extractor, notes: list[str], adapter=None) -> list:
    explicit = settings.methods is not None
    names = list(settings.methods) if explicit else available_reconstructors()
    chosen = []
    for name in names:
        extra = dict(settings.method_settings.get(name, {}))
        if name in PARAMETRIC_METHODS:
            extra.setdefault("models", tuple(settings.model_dirs))
        reconstructor = get_reconstructor(name, **extra)
        reason = reconstructor.supports(extractor)
        if reason and adapter is not None and name in PARAMETRIC_METHODS:
            # no generator of its own for F: reuse one trained for the adapter's target space
            reconstructor = get_reconstructor(name, **extra, adapter=adapter)
            reason = reconstructor.supports(extractor)
        if reason:
            if explicit:
                raise InputError(f"--methods {name}: cannot attack {extractor.name}: {reason}")
            notes.append(f"{name} skipped: {reason}")
            continue
        chosen.append(reconstructor)
    if not chosen:
        notes.append("no reconstruction method is installed or applicable: only reference rows were measured")
    return chosen


def _build_engines(db, extractor, settings, sources, progress) -> list[_EngineState]:
    specs = list(dict.fromkeys(settings.engines))
    engines = [create_engine(spec) for spec in specs]
    unknown = set(sources.files) - {e.name for e in engines} - set(specs)
    if unknown:
        raise InputError(f"--gallery {sorted(unknown)[0]}=...: no such engine in --engine {','.join(specs)}")
    # Without 'paths' a target's own photo in the folder can only be recognised by content: the
    # folder is then also embedded by F, and a photo whose F vector is the database row's is that row.
    by_content = extractor if sources.folder and db.paths is None else None
    folder_galleries, folder_rows = (
        _embed_gallery_folder(sources.folder, engines, progress, db=db, extractor=by_content)
        if sources.folder else ({}, None)
    )
    states = []
    for spec, engine in zip(specs, engines):
        is_f = engine.same_model_as(extractor)
        file = sources.files.get(engine.name) or sources.files.get(spec)
        if file is not None:
            gallery_db = load_vectors(file, expected_dim=engine.extractor.dim, allow_duplicates=True)
            if not gallery_db.has_labels:
                raise InputError(f"{file}: no 'labels' array; a gallery must say who each vector is")
            recorded = gallery_db.extractor
            if recorded and recorded != engine.extractor.name:
                raise InputError(
                    f"{file}: made by extractor {recorded}, but it is the gallery of {engine.name}; "
                    "vectors of different extractors cannot be compared"
                )
            gallery = Gallery(
                np.asarray(gallery_db.vectors, np.float32), np.asarray(gallery_db.labels).astype(str),
                f"vectors from {file}", None if gallery_db.paths is None else np.asarray(gallery_db.paths).astype(str),
            )
            states.append(_EngineState(spec, engine, is_f, gallery, "file"))
        elif engine.name in folder_galleries:
            states.append(_EngineState(spec, engine, is_f, folder_galleries[engine.name], "folder", row_ids=folder_rows))
        elif is_f:
            gallery = Gallery(
                db.vectors, np.asarray(db.labels).astype(str),
                "the database's other vectors of each identity (each target's own vector held out)",
                None if db.paths is None else np.asarray(db.paths).astype(str),
            )
            states.append(_EngineState(spec, engine, is_f, gallery, "database", row_ids=np.arange(db.n)))
        else:
            raise InputError(
                f"{engine.name}: no gallery to enroll; give --gallery DIR (identity folders of photos) "
                f"or --gallery {engine.name}=vectors.npz"
            )
    return states


#: Cosine at or above which a gallery photo's F vector is taken for a database row's own vector:
#: the same photo through the same extractor (photos of one person rarely pass 0.95).
SAME_PHOTO_COSINE = 0.999


def _embed_gallery_folder(
    folder: Path, engines, progress, *, db: VectorDatabase | None = None, extractor: Extractor | None = None
) -> tuple[dict[str, Gallery], np.ndarray | None]:
    """Each engine's gallery from the folder; with ``extractor`` (F), also the database row each
    photo is, by content (-1: none), for databases without 'paths'."""
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction import discover_images, embed_records

    records, labelled = discover_images(folder)
    if not labelled:
        raise InputError(f"{folder}: a gallery needs identity folders (DIR/<identity>/<image>), not a flat folder")
    models = list({e.extractor.name: e.extractor for e in engines}.values())
    if extractor is not None and extractor.name not in {m.name for m in models}:
        models.append(extractor)
    run = embed_records(
        records, models, no_face=NoFacePolicy.SKIP,
        on_progress=progress(f"embed gallery {folder}", len(records)),
    )
    kept = [records[i] for i in run.kept]
    labels = np.array([r.label for r in kept])
    paths = np.array([r.relative for r in kept])
    skipped = len(records) - len(kept)
    galleries = {
        e.name: Gallery(
            run.vectors[e.extractor.name], labels,
            f"photos in {folder} embedded by {e.extractor.name} ({len(kept)} faces"
            + (f"; {skipped} images without a usable face left out)" if skipped else ")"),
            paths,
        )
        for e in engines
    }
    rows = None if extractor is None or db is None else _rows_by_content(db, run.vectors[extractor.name])
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
    # chunked (128 MB of scores at a time): a database may hold millions of rows
    chunk = max(1, scores_per_chunk // max(1, len(photos)))
    for lo in range(0, db.n, chunk):
        block = l2_normalize(np.asarray(db.vectors[lo : lo + chunk], np.float32))
        scores = photos @ block.T
        if scores.size == 0:
            continue
        top = scores.argmax(axis=1)
        value = scores[np.arange(len(photos)), top]
        better = value > best
        best[better], rows[better] = value[better], lo + top[better]
    rows[best < SAME_PHOTO_COSINE] = -1
    return rows


def _own_entry(state: _EngineState, db: VectorDatabase, row: int) -> np.ndarray:
    """Mask of the gallery entries that are the target's own photo (to hold out)."""
    gallery = state.gallery
    if state.row_ids is not None:  # the database itself, or a folder matched by content
        return state.row_ids == row
    if gallery.paths is not None and db.paths is not None:
        return gallery.paths == str(db.paths[row])
    return np.zeros(len(gallery.labels), bool)


def _sample_targets(db: VectorDatabase, engines: list[_EngineState], settings: ScanSettings) -> np.ndarray:
    """One row per identity (seeded), among rows whose identity every engine can still find."""
    labels = np.asarray(db.labels).astype(str)
    eligible = np.ones(db.n, bool)
    for state in engines:
        names, counts = np.unique(state.gallery.labels, return_counts=True)
        count_of = dict(zip(names.tolist(), counts.tolist()))
        in_gallery = np.array([count_of.get(label, 0) for label in labels])
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
        rows = _given_rows(db, settings)
        unfit = rows[~eligible[rows]]
        if unfit.size:
            raise InputError(
                f"--rows: row {int(unfit[0])} ({labels[unfit[0]]}) cannot be evaluated: its identity has no vector, in "
                "some engine's gallery, other than its own"
            )
        return rows
    rng = np.random.default_rng(settings.seed)
    candidates = np.flatnonzero(eligible)
    identities = np.unique(labels[candidates])
    chosen = rng.permutation(identities)[: settings.sample]
    rows = [int(rng.choice(candidates[labels[candidates] == name])) for name in chosen]
    return np.array(sorted(rows), dtype=np.int64)


def _hold_out_targets(state: _EngineState, db: VectorDatabase, rows: np.ndarray) -> None:
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


def _original_vectors(state: _EngineState, db, rows, sources: GallerySources) -> np.ndarray | None:
    """The targets' own photos as seen by this engine, if they can be had."""
    if state.is_f:
        return np.asarray(db.vectors[rows], dtype=np.float32)  # F(original) is the stored vector
    file = sources.originals.get(state.engine.name) or sources.originals.get(state.spec)
    if file is not None:
        originals = load_vectors(file, expected_dim=state.engine.extractor.dim, allow_duplicates=True)
        if originals.paths is None or db.paths is None:
            raise InputError(f"{file}: originals need 'paths' (and the database too) to be matched to targets")
        position = {str(p): i for i, p in enumerate(originals.paths)}
        missing = [str(db.paths[r]) for r in rows if str(db.paths[r]) not in position]
        if missing:
            raise InputError(f"{file}: no original vector for target photo {missing[0]} ({len(missing)} missing)")
        return np.asarray(originals.vectors[[position[str(db.paths[r])] for r in rows]], dtype=np.float32)
    if sources.images_root is not None and db.paths is not None:
        from fvr_audit.alignment.aligner import NoFacePolicy
        from fvr_audit.extraction.pipeline import align_paths

        paths = _photos_under_root(sources.images_root, db, rows)
        crops = []
        for path, face in zip(paths, align_paths(paths, [state.engine.info.geometry], no_face=NoFacePolicy.CENTER)):
            if not face.status.usable:
                raise InputError(f"{path}: original photo of a target unusable ({face.status.value}: {face.reason})")
            crops.append(face.crops[0])
        return state.engine.embed(np.stack(crops))
    return None


def _photos_under_root(root: Path, db, rows) -> list[str]:
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


def _original_images(db, rows, sources: GallerySources) -> dict[int, np.ndarray]:
    if sources.images_root is None or db.paths is None:
        return {}
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction.pipeline import align_paths

    paths = _photos_under_root(sources.images_root, db, rows)
    return {
        position: face.crops[0]
        for position, face in enumerate(align_paths(paths, [CANONICAL_GEOMETRY], no_face=NoFacePolicy.CENTER))
        if face.status.usable
    }


def _impostor_scores(engine: LocalEngine, seed: int) -> np.ndarray:
    """Scores of gallery vectors against identities other than their own (a sample of probes)."""
    gallery = engine.gallery
    rng = np.random.default_rng([seed, 11])
    probes = rng.choice(len(gallery.vectors), size=min(IMPOSTOR_PROBES, len(gallery.vectors)), replace=False)
    matrix = engine.identity_scores_of_vectors(gallery.vectors[probes])
    own = np.searchsorted(engine.identities, np.asarray(gallery.labels)[probes].astype(str))
    matrix[np.arange(len(probes)), own] = np.nan
    return matrix[~np.isnan(matrix)]


def _method_summary(reconstructor, result, service_queries: int = 0) -> MethodSummary:
    info = reconstructor.info
    queries = np.asarray(result.queries)
    similarity = np.asarray(result.similarity, dtype=np.float64)
    return MethodSummary(
        name=info.name,
        access=info.access.value,
        description=info.description,
        reference=info.reference,
        models_used=tuple(result.models_used),
        queries_per_target_mean=float(queries.mean()) if queries.size else 0.0,
        queries_per_target_max=int(queries.max()) if queries.size else 0,
        queries_total=int(queries.sum()),
        seconds=float(result.seconds),
        similarity_median=float(np.median(similarity)) if similarity.size else None,
        similarity_min=float(similarity.min()) if similarity.size else None,
        similarity_max=float(similarity.max()) if similarity.size else None,
        settings=dict(result.settings),
        service_queries=int(service_queries),
    )


def _engine_summary(state: _EngineState) -> EngineSummary:
    info = state.engine.info
    return EngineSummary(
        name=info.name,
        description=info.description,
        dim=info.dim or 0,
        geometry=info.geometry.describe(),
        sha256=info.sha256,
        gallery_source=state.gallery.source,
        gallery_identities=len(state.engine.identities),
        gallery_vectors=len(state.gallery.labels),
        threshold=info.threshold,
        is_f=state.is_f,
        model=state.engine.extractor.name,
    )


def _database_summary(db: VectorDatabase) -> dict:
    from fvr_audit.model_store import sha256_file

    path = Path(db.path)
    size = path.stat().st_size
    return {
        "path": str(path),
        "n": int(db.n),
        "dim": int(db.dim),
        "identities": int(len(np.unique(np.asarray(db.labels)))) if db.has_labels else None,
        "labelled": bool(db.has_labels),
        "bytes": int(size),
        "sha256": sha256_file(path) if size <= HASH_DATABASE_UP_TO else None,
    }


def _extractor_summary(extractor: Extractor) -> dict:
    info = extractor.info
    return {
        "name": info.name,
        "dim": info.dim,
        "geometry": info.geometry.describe(),
        "preprocessing": info.preprocessing.describe(),
        "source": info.source,
        "license": info.license,
        "sha256": info.sha256,
        "queries_used": extractor.queries_used,
    }


def _queries_by_phase(timings: dict, summaries, system_queries: dict[str, int]) -> dict[str, int]:
    """Requests to F per phase when F is a service (0 for local models, whose queries cost nothing);
    they add up to the total the extractor counted, retries included."""
    phases = {
        "check": int(timings.pop("check_queries", 0)),
        "calibration": int(timings.pop("calibration_queries", 0)),
    }
    for summary in summaries:
        phases[f"attack {summary.name}"] = int(summary.service_queries)
    phases["database ranking"] = int(sum(system_queries.values()))
    phases["total"] = sum(phases.values())
    return phases


def _settings_summary(settings: ScanSettings, sources: GallerySources, gate_n: int) -> dict:
    return {
        "sample": settings.sample,
        "rows": None if settings.rows is None else list(settings.rows),
        "seed": settings.seed,
        "k": list(settings.ks),
        "n": list(settings.ns),
        "draws_per_n": settings.draws,
        "methods": None if settings.methods is None else list(settings.methods),
        "engines": list(settings.engines),
        "gate_k": settings.gate_k,
        "gate_n": gate_n,
        "fmr": settings.fmr,
        "calibration": None if settings.calibration is None else str(settings.calibration),
        "calibration_faces": settings.calibration_faces,
        "query_budget": settings.query_budget,
        "method_settings": {k: dict(v) for k, v in settings.method_settings.items()},
        "gallery_folder": None if sources.folder is None else str(sources.folder),
        "gallery_files": {k: str(v) for k, v in sources.files.items()},
        "originals_files": {k: str(v) for k, v in sources.originals.items()},
        "images_root": None if sources.images_root is None else str(sources.images_root),
        "identity_score": "best cosine over the identity's enrolled vectors",
        "top_k_unit": "identities",
    }
