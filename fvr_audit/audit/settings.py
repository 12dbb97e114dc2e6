"""What a scan is asked to do: its settings and where its galleries come from.

Both are plain frozen values, checked once (:func:`check_settings`) before any work, so a
setting that cannot work is a usage error at the start, not after an hour of attacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fvr_audit.audit.verdict import check_gate
from fvr_audit.engines.registry import DEFAULT_ENGINES
from fvr_audit.errors import InputError
from fvr_audit.execution.settings import ExecutionSettings
from fvr_audit.reconstructors.registry import check_method_settings

#: ``--engine-threshold ENGINE=fmr``: the engine's threshold is set at ``--fmr`` on impostor pairs of its gallery.
THRESHOLD_FROM_FMR = "fmr"


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
    #: ``--fine-tune-steps``: a white-box F gets the adapted generators tuned to it on the leaked
    #: database's other rows (never the targets'), this many steps each; 0 turns tuning off.
    fine_tune_steps: int = 200
    #: ``--rows``: audit exactly these database rows (0-based) instead of sampling ``sample`` of them.
    rows: tuple[int, ...] | None = None
    #: ``--query-budget``: queries to F the whole scan may send (checks, calibration, attacks and
    #: measurement together); what the fixed phases leave is the black-box attack's, per target.
    query_budget: int | None = None
    #: ``--engine-threshold``: engine spec -> a score threshold on the engine's own scale, or
    #: :data:`THRESHOLD_FROM_FMR`. Engines without one return every identity (local) or use
    #: their service default (cloud); below the threshold an engine answers "no match".
    engine_thresholds: Mapping[str, float | str] = field(default_factory=dict)
    #: ``--run-id``: names and tags the cloud engines' collection / person group (None: a fresh one);
    #: the same id resumes an interrupted enrolment.
    run_id: str | None = None
    #: ``--executor``/``--workers``: where the attacks' work units run (the figures do not depend on it).
    execution: ExecutionSettings = ExecutionSettings()
    #: Where finished units are kept until the scan ends (``-o``/.work), so a rerun resumes; None:
    #: a temporary folder (nothing to resume).
    work_dir: Path | None = None


def check_settings(settings: ScanSettings) -> None:
    """Settings that cannot work are usage errors, found before any work (the CLI calls this first)."""
    if settings.sample < 1:
        raise InputError(f"--sample {settings.sample}: must be at least 1")
    if settings.query_budget is not None and settings.query_budget < 1:
        raise InputError(f"--query-budget {settings.query_budget}: must be a positive number of queries")
    if settings.calibration_faces != 0 and settings.calibration_faces < 20:
        raise InputError(f"--calibration-faces {settings.calibration_faces}: give 0 (off) or at least 20 faces")
    if settings.fine_tune_steps < 0:
        raise InputError(f"--fine-tune-steps {settings.fine_tune_steps}: give 0 (off) or a positive number of steps")
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
    for spec, threshold in settings.engine_thresholds.items():
        if spec not in settings.engines and f"local:{spec}" not in settings.engines:
            raise InputError(f"--engine-threshold {spec}=...: no such engine in --engine {','.join(settings.engines)}")
        if isinstance(threshold, str) and threshold != THRESHOLD_FROM_FMR:
            raise InputError(f"--engine-threshold {spec}={threshold}: give a number on the engine's score scale, or 'fmr'")

