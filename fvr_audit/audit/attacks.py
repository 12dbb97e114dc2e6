"""The attacks of a scan: which reconstructors run against F, with what, and their figures.

Choosing them (a generator of F's own, or the shipped ones through an adapter fitted on the
user's photos or self-calibrated on the tool's own faces), fitting them into a query budget,
and summarising each run for the results.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np

from fvr_audit.audit.results import MethodSummary
from fvr_audit.audit.settings import ScanSettings
from fvr_audit.errors import InputError
from fvr_audit.execution.settings import ExecutionSettings
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.base import ReconstructionResult
from fvr_audit.reconstructors.registry import (
    ADAPTED_METHODS,
    GENERATOR_METHODS,
    GENERATOR_OF,
    PARAMETRIC_METHODS,
    SEARCH_METHODS,
    available_reconstructors,
    get_reconstructor,
)
from fvr_audit.reconstructors.runner import load_checkpoints, load_reconstructions, reconstruct_to_folder

def apply_query_budget(settings, extractor, db, notes, timings, queries_at_start) -> ScanSettings:
    """Fit the scan into ``--query-budget`` queries to F, or refuse before any attack query.

    Fixed costs: what the checks and calibration already spent, one query per target and method
    to measure each reconstruction (its similarity, and its rank in the database), one per target
    and checkpoint to rank the search attacks' earlier faces, and their final scoring; the rest
    is shared equally by the search attacks (eigenfaces, refine), per target.
    """
    if settings.query_budget is None:
        return settings
    budget = settings.query_budget
    targets = min(settings.sample, db.n)
    methods = list(settings.methods) if settings.methods is not None else available_reconstructors()
    spent = extractor.queries_used - queries_at_start
    searches = {m: dict(settings.method_settings.get(m, {})) for m in SEARCH_METHODS if m in methods}
    resolved = {m: get_reconstructor(m, **given).settings for m, given in searches.items()}
    measurement = 2 * targets * len(methods)  # similarity as F sees it, and the database ranking
    for search in resolved.values():  # earlier faces, ranked in the database for the curve against queries
        measurement += targets * search.checkpoints
    left = budget - spent - measurement
    plan = f"{spent} spent on checks and calibration, at most {measurement} to measure {len(methods)} methods x {targets} targets"
    sharing = [m for m, given in searches.items() if "query_budget" not in given]
    if sharing:
        per_target = left // (targets * len(sharing)) if targets else 0
        least = max(resolved[m].batch + 1 for m in sharing)
        names = " and ".join(sharing)
        if per_target < least:
            raise InputError(
                f"--query-budget {budget}: too small ({plan}, leaving {max(left, 0)} for {names}: fewer than one "
                f"iteration, {least}, per target each); raise it, lower --sample, or leave {names} out with --methods"
            )
        chosen = {**settings.method_settings}
        for m in sharing:
            chosen[m] = {**searches[m], "query_budget": int(per_target)}
        notes.append(f"--query-budget {budget}: {plan}; {names} get{'s' if len(sharing) == 1 else ''} "
                     f"{per_target} queries per target{' each' if len(sharing) > 1 else ''}")
        return replace(settings, method_settings=chosen)
    if left < 0:
        raise InputError(f"--query-budget {budget}: too small ({plan}); raise it or lower --sample")
    return settings


def check_extractor(extractor: Extractor, notes: list[str], on_message) -> None:
    """A user's model (ONNX file, endpoint) is checked on the tool's own faces before any attack:
    NaN or constant outputs stop the scan; a preprocessing that looks wrong is warned about."""
    from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS
    from fvr_audit.extractors.sanity import check_extractor as check_embeddings

    if extractor.name in BUILTIN_EXTRACTORS:
        return
    check, warnings = check_embeddings(extractor)
    on_message(f"{extractor.name}: embeddings checked on the tool's own faces: {check.describe()}")
    notes.extend(warnings)


def calibration_adapter(settings: ScanSettings, extractor: Extractor, notes: list[str], progress, timings: dict):
    """The adapter F -> dlib-resnet128 for the parametric methods, when F has no generator of its own:
    fitted on ``--calibration`` photos when given, else self-calibrated on the tool's own faces."""
    from fvr_audit.extractors.registry import DEFAULT_EXTRACTOR, get_extractor
    from fvr_audit.reconstructors.parametric.self_calibration import is_map_target
    from fvr_audit.reconstructors.parametric.store import find_reconstructor

    wanted = [m for m in (settings.methods or available_reconstructors()) if m in ADAPTED_METHODS]
    if is_map_target(extractor):  # nothing to map: only the generators' methods may still lack a generator
        wanted = [m for m in wanted if m in GENERATOR_METHODS]
    own = [m for m in wanted
           if m in GENERATOR_METHODS
           and find_reconstructor(GENERATOR_OF[m], extractor.name, extractor.info.sha256, settings.model_dirs)[0]]
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
        if calibration.queries:  # a service: what it was paid
            spent = f"{calibration.queries} queries to F"
        elif calibration.cached:
            spent = "no queries to F this time"
        else:  # a local model counts no service queries, yet it did embed every face
            spent = f"{calibration.faces} faces embedded by F locally (no service queries)"
        how = f"through an adapter {calibration.describe()}; {spent}"
        timings["calibration_queries"] = calibration.queries
    else:
        return None
    timings["calibration_seconds"] = time.perf_counter() - mark
    notes.append(
        f"parametric methods attack {extractor.name} with the generators shipped for {target.name} (transfer, where it "
        f"runs, with the gradient attack on {target.name}), {how}. "
        f"They used {target.name}, so it does not judge them. Stronger: --calibration DIR (your own face photos) "
        f"or a generator trained for {extractor.name} (fvr-audit train)"
    )
    return adapter


def choose_reconstructors(settings: ScanSettings, extractor: Extractor, notes: list[str], adapter=None) -> list:
    explicit = settings.methods is not None
    names = list(settings.methods) if explicit else available_reconstructors()
    chosen = []
    for name in names:
        extra = dict(settings.method_settings.get(name, {}))
        if name in GENERATOR_METHODS:
            extra.setdefault("models", tuple(settings.model_dirs))
        reconstructor = get_reconstructor(name, **extra)
        reason = reconstructor.supports(extractor)
        if reason and adapter is not None and name in ADAPTED_METHODS:
            # no generator (or gradients) of its own for F: reach it through the adapter's target space
            reconstructor = get_reconstructor(name, **extra, adapter=adapter)
            reason = reconstructor.supports(extractor)
        if reason:
            if explicit:
                raise InputError(f"--methods {name}: cannot attack {extractor.name}: {reason}")
            notes.append(f"{name} skipped: {reason}")
            continue
        stands_in_for = reconstructor.info.stands_in_for
        if stands_in_for and not explicit and any(r.name == stands_in_for for r in chosen):
            notes.append(f"{name} skipped: {stands_in_for} attacks {extractor.name} with its own gradients "
                         f"(--methods {name} runs it too)")
            continue
        chosen.append(reconstructor)
    if not chosen:
        notes.append("no reconstruction method is installed or applicable: only reference rows were measured")
    return chosen


#: Database rows drawn (seeded) to tune a generator to F: more than the steps x batch it draws.
MAX_TUNING_ROWS = 4000


def tune_parametric(reconstructors: list, settings: ScanSettings, extractor: Extractor, db, target_rows, notes: list[str],
                    progress, timings: dict) -> list:
    """The adapted parametric attacks, each replaced by its generator tuned to a white-box F when that
    helps (:mod:`fvr_audit.reconstructors.parametric.fine_tuning`); trained on the database's rows
    other than the targets' (and, with labels, other than their identities')."""
    from fvr_audit.extractors.base import white_box_forward
    from fvr_audit.reconstructors.parametric import ParametricReconstructor
    from fvr_audit.reconstructors.parametric.fine_tuning import FineTuneSettings, fine_tune
    from fvr_audit.vectors.npyfile import take_rows

    adapted = [r for r in reconstructors if isinstance(r, ParametricReconstructor) and r.adapter is not None]
    if not adapted or settings.fine_tune_steps == 0:
        return reconstructors
    forward, reason = white_box_forward(extractor)
    if forward is None:
        notes.append(f"parametric methods not tuned to {extractor.name}: tuning needs its gradients ({reason.split(';')[0]})")
        return reconstructors
    excluded = np.zeros(db.n, bool)
    excluded[np.asarray(target_rows, np.int64)] = True
    if db.has_labels:
        labels = np.asarray(db.labels).astype(str)
        excluded |= np.isin(labels, labels[np.asarray(target_rows, np.int64)])
    candidates = np.flatnonzero(~excluded)
    tune = FineTuneSettings(steps=settings.fine_tune_steps, seed=settings.seed)
    if len(candidates) < tune.min_rows + 2:
        notes.append(
            f"parametric methods not tuned to {extractor.name}: the database has {len(candidates)} rows besides the "
            f"targets' (at least {tune.min_rows + 2} are needed)"
        )
        return reconstructors
    picked = np.sort(np.random.default_rng([settings.seed, 0x7E]).choice(
        candidates, size=min(MAX_TUNING_ROWS, len(candidates)), replace=False))
    rows = np.asarray(take_rows(db.vectors, picked), np.float32)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    chosen = []
    tuned_folders: dict[str, Path] = {}
    for reconstructor in reconstructors:
        if reconstructor not in adapted:
            chosen.append(reconstructor)
            continue
        mark = time.perf_counter()
        tuned = fine_tune(
            reconstructor.name, reconstructor.generator_file(extractor), reconstructor.adapter, extractor, rows, tune,
            on_progress=progress(f"fine-tune: {reconstructor.name} to {extractor.name}", tune.steps),
        )
        timings[f"fine_tune_{reconstructor.name}_seconds"] = time.perf_counter() - mark
        notes.append(tuned.describe())
        if not tuned.kept:
            chosen.append(reconstructor)
            continue
        tuned_folders[reconstructor.name] = tuned.folder
        chosen.append(_with_tuned_generator(reconstructor.name, tuned.folder, settings, extractor))
    # the methods that draw from a tuned generator without being it (refine) draw from the tuned one too
    return [_with_tuned_generator(r.name, tuned_folders[GENERATOR_OF[r.name]], settings, extractor)
            if r.name not in PARAMETRIC_METHODS and GENERATOR_OF.get(r.name) in tuned_folders and r.adapter is not None
            else r for r in chosen]


def _with_tuned_generator(name: str, folder: Path, settings: ScanSettings, extractor: Extractor):
    """``name`` made again to find its generator in ``folder`` (tuned to F) before the user's models."""
    extra = dict(settings.method_settings.get(name, {}))
    extra["models"] = (folder, *settings.model_dirs)
    replacement = get_reconstructor(name, **extra)
    reason = replacement.supports(extractor)
    if reason:  # the tuned file was written for this F: not finding it is a bug, not a user error
        raise RuntimeError(f"{name}: the generator tuned to {extractor.name} is not found ({reason})")
    return replacement


def method_summary(reconstructor, result, service_queries: int = 0) -> MethodSummary:
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



def reconstruct_all(reconstructors, target_vectors: np.ndarray, extractor: Extractor, seed: int, progress, timings: dict,
                    *, rows=None, execution: ExecutionSettings = ExecutionSettings(), work_dir: Path | None = None):
    """Run every attack on the targets: method -> uint8 canonical images, each method's summary, and
    method -> {queries: earlier faces} of the query-driven attacks (for re-identification vs queries).

    Through the one reconstruction driver (:func:`~fvr_audit.reconstructors.runner.reconstruct_to_folder`)
    on ``execution``'s executor: target ``rows`` (database rows; default 0..T-1) seed each target,
    and each finished unit is saved in ``work_dir/<method>/`` (a temporary folder when None), so a
    scan killed midway and run again with the same inputs redoes only the units in progress.
    Requests that workers' own copies of F sent are added to ``timings["remote_queries"]``.
    """
    from fvr_audit.execution import ExecutorKind, open_executor, require_specs

    rows = list(range(len(target_vectors))) if rows is None else [int(r) for r in rows]
    reconstructions: dict[str, np.ndarray] = {}
    summaries: list[MethodSummary] = []
    checkpoints: dict[str, dict[int, np.ndarray]] = {}
    if not reconstructors:
        return reconstructions, summaries, checkpoints
    remote = execution.kind is not ExecutorKind.SERIAL
    if remote:
        require_specs(extractor, reconstructors, execution)
    with ExitStack() as stack:
        executor = stack.enter_context(open_executor(execution)) if remote else None
        for reconstructor in reconstructors:
            mark = time.perf_counter()
            advance = progress(f"reconstruct: {reconstructor.name}", len(target_vectors))
            if work_dir is not None:
                folder = Path(work_dir) / reconstructor.name
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fvr-audit-work-")))
            before = extractor.queries_used
            run = reconstruct_to_folder(
                target_vectors, extractor, reconstructor, folder, seed=seed, rows=rows, executor=executor,
                on_progress=advance, restart_on_mismatch=True,
            )
            here = extractor.queries_used - before
            timings["remote_queries"] = timings.get("remote_queries", 0) + run.service_queries - here
            manifest, images = load_reconstructions(folder)
            reconstructions[reconstructor.name] = images
            earlier = load_checkpoints(folder, manifest)
            if earlier:
                checkpoints[reconstructor.name] = earlier
            seconds = time.perf_counter() - mark
            timings[f"reconstruct_{reconstructor.name}_seconds"] = seconds
            summaries.append(method_summary(reconstructor, result_of(manifest, images, seconds), run.service_queries))
    return reconstructions, summaries, checkpoints


def guidance_notes(summaries: list[MethodSummary]) -> list[str]:
    """One line per attack that a surrogate recognizer guided, or that ran without one and why (refine).

    >>> guided = {"surrogate": "mobileface-256", "map_kind": "shipped", "map": "ridge dlib-resnet128->mobileface-256"}
    >>> refine = MethodSummary("refine", "black-box", "", "", (), 0.0, 0, 0, 0.0, None, None, None, {"guidance": guided})
    >>> print(*guidance_notes([refine]))
    refine was guided by mobileface-256 (its gradient proposes search directions, F's answers pick the step) through the shipped map (ridge dlib-resnet128->mobileface-256); mobileface-256 does not judge refine
    """
    notes = []
    for summary in summaries:
        guidance = summary.settings.get("guidance")
        if not guidance:
            continue
        surrogate = guidance.get("surrogate")
        if surrogate:
            notes.append(
                f"{summary.name} was guided by {surrogate} (its gradient proposes search directions, F's answers pick the "
                f"step) through the {guidance.get('map_kind')} map ({guidance.get('map')}); {surrogate} does not judge "
                f"{summary.name}"
            )
        else:
            notes.append(f"{summary.name}: {guidance.get('why')}")
    return notes


def result_of(manifest: dict, images: np.ndarray, seconds: float) -> ReconstructionResult:
    """A reconstructions folder's manifest read back as the attack's result for all its targets."""
    targets = manifest["targets"]
    return ReconstructionResult(
        images=images,
        similarity=np.array([t["similarity"] for t in targets], np.float32),
        queries=np.array([t["queries"] for t in targets], np.int64),
        seconds=seconds,
        models_used=tuple(manifest.get("models_used", [])),
        settings={**manifest.get("result_settings", {}), "trace": [t.get("trace", []) for t in targets]},
    )
