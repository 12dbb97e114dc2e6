"""The work of a reconstruction, cut into units that any executor can run anywhere.

A unit carries specs and plain arrays only (the extractor's spec and options, the attack's name
and settings, the targets' rows, vectors and seeds, the threads to compute with): it pickles to a
few kilobytes, and a worker rebuilds the extractor and the attack from it once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fvr_audit.extractors.registry import ExtractorSpec
from fvr_audit.reconstructors.registry import ReconstructorSpec


@dataclass(frozen=True)
class WorkUnit:
    """Some targets of one attack."""

    #: Position of the unit in its run (results come back in any order).
    number: int
    method: ReconstructorSpec | None
    extractor: ExtractorSpec | None
    #: The targets' rows in the vector set (their ids, and what their seeds derive from).
    rows: tuple[int, ...]
    #: float32 [len(rows), D]: the targets' vectors.
    vectors: np.ndarray = field(compare=False, repr=False)
    #: One seed per target (:func:`~fvr_audit.reconstructors.base.target_seed`).
    seeds: tuple[int, ...] = ()
    #: torch and onnxruntime threads: the same in every executor, so the floats are the same.
    threads: int = 2
    #: Test hook: a worker process (never the driver) exits abruptly while a unit with this set
    #: runs for the first time (the marker file is created then), as a crashed machine would.
    crash_marker: str | None = None


@dataclass(frozen=True)
class UnitResult:
    """What a worker sends back for a unit: the attack's result for its targets."""

    number: int
    rows: tuple[int, ...]
    #: uint8 [T, 200, 200, 3] canonical faces.
    images: np.ndarray = field(repr=False)
    similarity: np.ndarray = field(repr=False)
    queries: np.ndarray = field(repr=False)
    seconds: float
    models_used: tuple[str, ...]
    #: The attack's result settings without the per-target traces (which are in ``traces``).
    settings: dict = field(default_factory=dict, repr=False)
    traces: tuple = field(default=(), repr=False)
    #: Earlier faces of a query-driven attack (``Checkpoint``s, images in the unit's target order).
    checkpoints: tuple = field(default=(), repr=False)
    #: Requests the worker's own copy of F sent (an endpoint's cost; 0 for local models).
    service_queries: int = 0
    #: Where it ran (host and process), for messages.
    worker: str = ""


def require_specs(extractor, reconstructors, execution) -> None:
    """Workers make F and the attacks again from their specs: both must have one (a one-line
    InputError otherwise, before any work)."""
    from fvr_audit.errors import InputError
    from fvr_audit.extractors.registry import spec_of

    where = f"--executor {execution.address or execution.kind.value}"
    if spec_of(extractor) is None:
        raise InputError(f"{where}: {extractor.name} was not made from a name, an .onnx file or a URL, so workers "
                         "cannot make it again; use --executor serial")
    for reconstructor in reconstructors:
        if reconstructor.origin is None:
            raise InputError(f"{where}: {reconstructor.name} was not made by name, so workers cannot make it again; "
                             "use --executor serial")
