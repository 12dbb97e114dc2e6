"""A synthetic, clearly fake AuditResults for rendering tests (report layout, not measurements)."""

from __future__ import annotations

import numpy as np

from fvr_audit.audit.results import (
    AuditResults,
    EngineSummary,
    MethodSummary,
    QueryCurvePoint,
    Record,
    SameClassFalsePositives,
    Target,
    Verification,
)
from fvr_audit.audit.verdict import decide_verdict
from fvr_audit.metrics.topk import random_baseline, wilson_interval

ENGINES = ("local:dlib-resnet128", "local:faceres-1024")
METHODS = ("eigenfaces", "gradient", "original", "random")
KS = (1, 5, 10, 25)
NS = (50, 100, 500, 1000)


def sample_results(targets: int = 12) -> AuditResults:
    """Records with a fixed, made-up shape: stronger for gradient, chance for random."""
    strength = {"eigenfaces": 0.5, "gradient": 0.8, "original": 0.95, "random": 0.0}
    records = []
    for method in METHODS:
        for engine in ENGINES:
            for k in KS:
                for n in NS:
                    base = random_baseline(k, n)
                    tpr = base if method == "random" else min(1.0, strength[method] + 0.02 * k - 0.00005 * n)
                    tpr = max(tpr, base)
                    records.append(
                        Record(method, engine, k, n, tpr, 1 - tpr, 0.0, wilson_interval(tpr * targets, targets), base, targets, 3)
                    )
    methods = tuple(
        MethodSummary(
            name=m,
            access={"eigenfaces": "black-box", "gradient": "white-box"}.get(m, "reference"),
            description=f"synthetic {m}",
            reference="(synthetic)",
            models_used=("dlib-resnet128",) if m in ("eigenfaces", "gradient") else (),
            queries_per_target_mean=1280.0 if m == "eigenfaces" else 0.0,
            queries_per_target_max=1280 if m == "eigenfaces" else 0,
            queries_total=1280 * targets if m == "eigenfaces" else 0,
            seconds=12.5,
            similarity_median=0.9 if m in ("eigenfaces", "gradient") else None,
            similarity_min=0.8 if m in ("eigenfaces", "gradient") else None,
            similarity_max=0.97 if m in ("eigenfaces", "gradient") else None,
            settings=_method_settings(m, targets),
        )
        for m in METHODS
        if m not in ("original", "random")
    )
    engines = tuple(
        EngineSummary(
            name=e,
            description="local recognizer",
            dim=128 if "dlib" in e else 1024,
            geometry="150x150 dlib-5pt padding 0.25",
            sha256="0" * 64,
            gallery_source="the database's other vectors of each identity (target held out)" if "dlib" in e else "gallery folder photos",
            gallery_identities=1000,
            gallery_vectors=2400,
            threshold=None,
            is_f="dlib" in e,
        )
        for e in ENGINES
    )
    same_class = tuple(
        SameClassFalsePositives(m, e, 1, 1000, 3, 0.33) for m in ("eigenfaces", "gradient") for e in ENGINES
    )
    verification = tuple(
        Verification(m, e, 1e-3, 0.5, 0.7, wilson_interval(0.7 * targets, targets), 100000)
        for m in ("eigenfaces", "gradient")
        for e in ENGINES
    )
    return AuditResults(
        tool_version="0.0.0-test",
        created="2026-01-01T00:00:00Z",
        database={"path": "synthetic.npz", "n": 100, "dim": 128},
        extractor={"name": "dlib-resnet128", "dim": 128, "sha256": "1" * 64},
        settings={"sample": targets, "seed": 0, "k": list(KS), "n": list(NS), "gate_k": 1, "gate_n": 1000},
        targets=tuple(Target(i, f"person_{i}", f"person_{i}/0.jpg") for i in range(targets)),
        methods=methods,
        engines=engines,
        records=tuple(records),
        same_class_false_positives=same_class,
        verification=verification,
        verdict=decide_verdict(records, 1, 1000),
        timings={"total_seconds": 42.0},
        notes=("synthetic results for layout tests",),
        query_curve=tuple(
            QueryCurvePoint("eigenfaces", e, q, 1, 1000, tpr if "dlib" in e else tpr * 0.7, wilson_interval(tpr * targets, targets), q == 1280)
            for e in ENGINES
            for q, tpr in ((160, 0.1), (320, 0.2), (640, 0.35), (1280, 0.5) if "dlib" in e else (1280, 0.4))
        ),
    )


def _method_settings(method: str, targets: int) -> dict:
    """What the attacks record: resolved settings and a per-target similarity trace (40 points),
    the shape that once filled 16 report pages with numbers."""
    rng = np.random.default_rng(len(method))
    step = 32 if method == "eigenfaces" else 1
    trace = [
        [[step * (i + 1), round(float(0.95 - 0.5 * np.exp(-i / 8) - 0.02 * rng.random()), 5)] for i in range(40)]
        for _ in range(targets)
    ]
    return {
        "preset_resolved": {"iterations": 40, "batch": step, "blob_sigma": [4.0, 30.0], "update": "es"},
        "iterations_run": 40,
        "trace": trace,
    }


def sample_images(targets: int = 12, size: int = 200) -> np.ndarray:
    """Smooth synthetic stand-ins for face images (no real faces)."""
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for i in range(targets):
        r = 0.5 + 0.5 * np.sin(6 * x + i)
        g = 0.5 + 0.5 * np.cos(5 * y + 2 * i)
        b = ((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1).astype(float)
        images.append(np.stack([r, g, b], -1))
    return (np.stack(images) * 255).astype(np.uint8)
