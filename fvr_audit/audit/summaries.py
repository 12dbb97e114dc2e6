"""The results' summaries of the inputs: database, extractor F, engines, settings, queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fvr_audit.audit.galleries import EngineGallery
from fvr_audit.audit.results import EngineSummary
from fvr_audit.audit.settings import GallerySources, ScanSettings
from fvr_audit.extractors.base import Extractor
from fvr_audit.vectors import VectorDatabase

#: Databases up to this size are hashed into the results (provenance); larger ones are not.
HASH_DATABASE_UP_TO = 1 << 30


def engine_summary(state: EngineGallery) -> EngineSummary:
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
        model=info.model,
        threshold_source=info.threshold_source,
        score_scale=info.score_scale,
        remote=info.remote,
        max_k=info.max_k,
        scores_every_identity=state.scores_every_identity,
    )


def database_summary(db: VectorDatabase) -> dict:
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


def extractor_summary(extractor: Extractor, remote_queries: int = 0) -> dict:
    """F's provenance, and the requests sent to it: by this process, and by workers' own copies of F."""
    info = extractor.info
    return {
        "name": info.name,
        "dim": info.dim,
        "geometry": info.geometry.describe(),
        "preprocessing": info.preprocessing.describe(),
        "source": info.source,
        "license": info.license,
        "sha256": info.sha256,
        "queries_used": extractor.queries_used + remote_queries,
    }


def queries_by_phase(timings: dict, summaries, system_queries: dict[str, int]) -> dict[str, int]:
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


def settings_summary(settings: ScanSettings, sources: GallerySources, gate_n: int) -> dict:
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
        "fine_tune_steps": settings.fine_tune_steps,
        "query_budget": settings.query_budget,
        "method_settings": {k: dict(v) for k, v in settings.method_settings.items()},
        "gallery_folder": None if sources.folder is None else str(sources.folder),
        "gallery_files": {k: str(v) for k, v in sources.files.items()},
        "originals_files": {k: str(v) for k, v in sources.originals.items()},
        "images_root": None if sources.images_root is None else str(sources.images_root),
        "engine_thresholds": {k: v for k, v in settings.engine_thresholds.items()},
        "run_id": settings.run_id,
        "identity_score": "best cosine over the identity's enrolled vectors",
        "top_k_unit": "identities",
    }

