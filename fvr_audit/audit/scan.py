"""``fvr-audit scan``: the paper's Metric 1 on the operator's own vectors.

Targets are sampled from the database (one per identity, seeded); each reconstruction method
turns their vectors into faces; every engine F' re-identifies its crop of those faces among its
enrolled identities; tpr/fpr/no-match are swept over K and N against chance. Two reference rows
make the figures readable: "original" (the target's own photo, the ceiling) and "random".

This module only orders the phases; each lives in its own module: :mod:`.attacks` (which attacks,
with what), :mod:`.galleries` (engines and what they enroll), :mod:`.measure` (Metric 1),
:mod:`.system_match` (F against the leaked database) and :mod:`.verdict`.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvr_audit import __version__
from fvr_audit.audit import attacks, galleries, measure, summaries, targets
from fvr_audit.audit.results import AuditResults, RiskLevel, Target
from fvr_audit.audit.settings import GallerySources, ScanSettings, check_settings
from fvr_audit.audit.system_match import measure_against_database, system_query_curve
from fvr_audit.audit.verdict import decide_verdict
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, WhiteBox
from fvr_audit.reconstructors.registry import PARAMETRIC_METHODS
from fvr_audit.vectors import VectorDatabase, load_vectors
from fvr_audit.vectors.npyfile import take_rows

__all__ = ["GallerySources", "PARAMETRIC_METHODS", "ScanOutput", "ScanSettings", "check_settings", "run_scan"]


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
    also end up in the results' notes. Every engine opened is closed before this returns, also
    when it fails (a cloud engine deletes its collection)."""
    with ExitStack() as engines_open:
        return _run(database, extractor, settings, sources, progress, on_message, engines_open)


def _run(database, extractor: Extractor, settings: ScanSettings, sources: GallerySources, progress, on_message,
         engines_open: ExitStack) -> ScanOutput:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    # Inputs, and the attacks they allow.
    queries_at_start = extractor.queries_used  # before anything reads F's dimension (an endpoint probes for it)
    db = _load_database(database, extractor, settings, progress)
    labelled = db.has_labels
    if not labelled:
        targets.check_unlabelled(db, sources)
    check_settings(settings)
    attacks.check_extractor(extractor, notes, on_message)
    timings["check_queries"] = extractor.queries_used - queries_at_start
    adapter = attacks.calibration_adapter(settings, extractor, notes, progress, timings)
    settings = attacks.apply_query_budget(settings, extractor, db, notes, timings, queries_at_start)
    reconstructors = attacks.choose_reconstructors(settings, extractor, notes, adapter)
    if isinstance(extractor, WhiteBox) and extractor.white_box_check and any(r.name == "gradient" for r in reconstructors):
        notes.append(extractor.white_box_check)
        on_message(extractor.white_box_check)

    # Engines, their galleries, and the targets every engine can judge.
    mark = time.perf_counter()
    engines = galleries.open_engines(db, extractor, settings, sources, progress, engines_open) if labelled else []
    if labelled:
        rows = galleries.sample_targets(db, engines, settings)
        if settings.rows is None and len(rows) < settings.sample:
            notes.append(
                f"{len(rows)} targets evaluated (asked for {settings.sample}): only {len(rows)} identities "
                "have a vector in every engine's gallery besides the target's own"
            )
        if sources.images_root is not None and db.paths is not None:
            galleries.photos_under_root(sources.images_root, db, rows)  # refused now, not after the attacks ran
        labels = np.asarray(db.labels)[rows].astype(str)
    else:
        rows = targets.sample_rows(db, settings)
        labels = targets.row_names(db, rows)
        notes.append(targets.UNLABELLED_NOTE)
    galleries.enroll_all(engines, db, rows, settings.ks, settings.fmr, settings.seed, settings.engine_thresholds)
    timings["galleries_seconds"] = time.perf_counter() - mark

    # Reconstruct (adapted generators first tuned to a white-box F on the other rows).
    reconstructors = attacks.tune_parametric(reconstructors, settings, extractor, db, rows, notes, progress, timings)
    target_vectors = take_rows(db.vectors, rows)  # as stored: the driver normalises, as for reconstruct
    reconstructions, methods, checkpoints = attacks.reconstruct_all(
        reconstructors, target_vectors, extractor, settings.seed, progress, timings,
        rows=rows, execution=settings.execution, work_dir=settings.work_dir,
    )
    notes.extend(attacks.guidance_notes(methods))

    # Re-identify and measure, engine by engine.
    mark = time.perf_counter()
    answers = [measure.reidentify(s, reconstructions, methods, db, rows, sources, settings, progress) for s in engines]
    timings["reidentify_seconds"] = time.perf_counter() - mark
    mark = time.perf_counter()
    measured = [measure.metric1(s, a, labels, settings, i) for i, (s, a) in enumerate(zip(engines, answers))]
    gate_n = settings.gate_n or max(settings.ns)
    curve = [
        point
        for i, (s, a) in enumerate(zip(engines, answers))
        for point in measure.query_curve(s, a, checkpoints, methods, labels, settings, i, gate_n)
    ]
    timings["metrics_seconds"] = time.perf_counter() - mark

    # The deployed system itself: F against every row of the leaked database (needs no labels).
    mark = time.perf_counter()
    system_records, system_verification, system_summary, system_queries = measure_against_database(
        db, extractor, rows, reconstructions, ks=settings.ks, ns=settings.ns, fmr=settings.fmr, seed=settings.seed,
        progress=progress,
    )
    system_curve, curve_queries = system_query_curve(
        db, extractor, rows, checkpoints, system_records, {m.name: m.queries_per_target_max for m in methods},
        gate_k=settings.gate_k, gate_n=gate_n,
    )
    curve += system_curve
    for method, spent in curve_queries.items():
        system_queries[method] = system_queries.get(method, 0) + spent
    timings["system_match_seconds"] = time.perf_counter() - mark

    # Verdict: Metric 1 by independent engines is the stronger statement; the system's own figures
    # set it only when nothing else was measured (no labels, or no engine).
    records = [r for m in measured for r in m.records]
    verdict = decide_verdict(records, settings.gate_k, gate_n)
    if verdict.level is RiskLevel.NOT_ASSESSED:
        verdict = decide_verdict(system_records, settings.gate_k, gate_n)
    timings["total_seconds"] = time.perf_counter() - started
    for state in engines:
        notes.extend(f"{state.engine.name}: {note}" for note in state.notes)

    results = AuditResults(
        tool_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        database=summaries.database_summary(db),
        extractor={
            **summaries.extractor_summary(extractor, remote_queries=int(timings.pop("remote_queries", 0))),
            "queries_by_phase": summaries.queries_by_phase(timings, methods, system_queries),
        },
        settings=summaries.settings_summary(settings, sources, gate_n),
        targets=tuple(
            Target(int(row), str(label), None if db.paths is None else str(db.paths[row]))
            for row, label in zip(rows, labels)
        ),
        methods=tuple(methods),
        engines=(*(summaries.engine_summary(state) for state in engines), system_summary),
        records=(*records, *system_records),
        same_class_false_positives=tuple(x for m in measured for x in m.same_class),
        verification=(*(v for m in measured for v in m.verification), *system_verification),
        verdict=verdict,
        timings={k: round(v, 2) for k, v in timings.items()},
        notes=tuple(notes),
        query_curve=tuple(curve),
    )
    return ScanOutput(results, reconstructions, galleries.original_images(db, rows, sources))


def _load_database(database, extractor: Extractor, settings: ScanSettings, progress) -> VectorDatabase:
    db = database if isinstance(database, VectorDatabase) else load_vectors(
        database, expected_dim=extractor.dim, allow_duplicates=settings.allow_duplicates, progress=progress
    )
    if db.dim != extractor.dim:
        raise InputError(
            f"{db.path}: vectors have dimension {db.dim} but extractor {extractor.name} produces "
            f"{extractor.dim}-dimensional vectors; give the extractor that made these vectors"
        )
    db.check_made_by(extractor.name)
    return db
