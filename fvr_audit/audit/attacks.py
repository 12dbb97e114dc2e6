"""The attacks of a scan: which reconstructors run against F, with what, and their figures.

Choosing them (a generator of F's own, or the shipped ones through an adapter fitted on the
user's photos or self-calibrated on the tool's own faces), fitting them into a query budget,
and summarising each run for the results.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fvr_audit.audit.results import MethodSummary
from fvr_audit.audit.settings import ScanSettings
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.registry import PARAMETRIC_METHODS, available_reconstructors, get_reconstructor

def apply_query_budget(settings, extractor, db, notes, timings, queries_at_start) -> ScanSettings:
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


def choose_reconstructors(settings: ScanSettings, extractor: Extractor, notes: list[str], adapter=None) -> list:
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



def reconstruct_all(reconstructors, target_vectors: np.ndarray, extractor: Extractor, seed: int, progress, timings: dict):
    """Run every attack on the targets: method -> uint8 canonical images, and each method's summary."""
    reconstructions: dict[str, np.ndarray] = {}
    summaries: list[MethodSummary] = []
    for reconstructor in reconstructors:
        mark = time.perf_counter()
        advance = progress(f"reconstruct: {reconstructor.name}", len(target_vectors))
        before = extractor.queries_used
        result = reconstructor.reconstruct(target_vectors, extractor, seed=seed, on_progress=advance)
        reconstructions[reconstructor.name] = result.images
        timings[f"reconstruct_{reconstructor.name}_seconds"] = time.perf_counter() - mark
        summaries.append(method_summary(reconstructor, result, extractor.queries_used - before))
    return reconstructions, summaries
