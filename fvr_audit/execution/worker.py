"""What a worker does with a unit: make (once per process) the extractor and the attack the unit
names, compute with the unit's threads, and return the result as plain arrays."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fvr_audit.execution.units import UnitResult, WorkUnit
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.base import Reconstructor

#: Resolves a unit to the extractor and attack it needs.
Resolver = Callable[[WorkUnit], tuple[Extractor, Reconstructor]]

#: This process's extractors and attacks, keyed by their specs: built once, reused by every unit.
_BUILT: dict[tuple, tuple[Extractor, Reconstructor]] = {}


def build_from_specs(unit: WorkUnit) -> tuple[Extractor, Reconstructor]:
    """The unit's extractor and attack, made from its specs on first use in this process."""
    from fvr_audit.extractors.dlib_resnet import THREADS_ENV

    key = (unit.extractor, unit.method, unit.threads)
    if key not in _BUILT:
        if unit.extractor is None or unit.method is None:
            raise ValueError("a unit without specs can only run in the process that made it")
        # onnxruntime sessions take their threads from the environment when they are made
        os.environ[THREADS_ENV] = str(unit.threads)
        extractor = unit.extractor.build()
        reconstructor = unit.method.build()
        reason = reconstructor.supports(extractor)
        if reason:
            from fvr_audit.errors import InputError

            raise InputError(f"{reconstructor.name}: {reason}")
        _BUILT[key] = (extractor, reconstructor)
    return _BUILT[key]


@contextlib.contextmanager
def compute_threads(threads: int) -> Iterator[None]:
    """torch and the BLAS under numpy compute with ``threads`` threads inside; the previous counts
    come back after. Both split some reductions by thread count, so the floats (and the PNGs) are
    the same wherever a unit runs only if the count is: a Ray worker starts with 1
    (OMP_NUM_THREADS=1), this process with one per core."""
    from threadpoolctl import threadpool_limits

    # torch only when already loaded: attacks that use it load it when they check F (supports()),
    # and the parametric attacks must run on onnxruntime alone, never importing it.
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_unit(unit: WorkUnit, resolve: Resolver = build_from_specs, on_progress=None) -> UnitResult:
    """Reconstruct the unit's targets; the extractor and attack come from ``resolve``.
    ``on_progress``: the attack's reports while it runs (in targets; in this process only)."""
    if resolve is build_from_specs:  # in a worker, never in the driver
        _maybe_crash(unit)
    extractor, reconstructor = resolve(unit)
    before = extractor.queries_used
    with compute_threads(unit.threads):
        result = reconstructor.reconstruct(unit.vectors, extractor, target_seeds=list(unit.seeds), on_progress=on_progress)
    settings = dict(result.settings or {})
    traces = settings.pop("trace", None) or [[] for _ in unit.rows]
    return UnitResult(
        number=unit.number,
        rows=unit.rows,
        images=np.asarray(result.images, dtype=np.uint8),
        similarity=np.asarray(result.similarity, dtype=np.float32),
        queries=np.asarray(result.queries, dtype=np.int64),
        seconds=float(result.seconds),
        models_used=tuple(result.models_used),
        settings=settings,
        traces=tuple(traces),
        checkpoints=tuple(result.checkpoints),
        service_queries=int(extractor.queries_used - before),
        worker=worker_name(),
    )


def _maybe_crash(unit: WorkUnit) -> None:
    if unit.crash_marker is None:
        return
    marker = Path(unit.crash_marker)
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return  # crashed once already: this is the retry
    os._exit(17)

