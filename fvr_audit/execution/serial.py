"""Units run one after another in this process, with the caller's own extractor and attack."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fvr_audit.execution.base import Executor
from fvr_audit.execution.units import UnitResult, WorkUnit
from fvr_audit.execution.worker import Resolver, build_from_specs, run_unit


class SerialExecutor(Executor):
    """``--executor serial``: no workers. ``resolve`` gives the live extractor and attack of the
    caller (nothing is rebuilt, so extractors made without a spec run here too)."""

    workers = 1

    def __init__(self, resolve: Resolver = build_from_specs, on_progress=None) -> None:
        self.resolve = resolve
        #: The attack's own reports within a unit (in targets), e.g. every iteration of eigenfaces:
        #: only a unit run here can report before it ends.
        self.on_progress = on_progress

    def describe(self) -> str:
        return "serial"

    def run(self, units: Sequence[WorkUnit]) -> Iterator[UnitResult]:
        for unit in units:
            yield run_unit(unit, self.resolve, self.on_progress)
