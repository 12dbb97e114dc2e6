"""Units run in local worker processes (``--executor processes``).

Spawned, not forked: a worker starts clean and makes its own extractor and attack from the
unit's specs (a forked copy of an onnxruntime session or a torch thread pool is not safe to
use). At most one unit per worker is in flight, so when a worker dies the units it may have
been running are known, and only those are charged an attempt and run again.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from fvr_audit.errors import RemoteError
from fvr_audit.execution.base import MAX_ATTEMPTS, Executor
from fvr_audit.execution.units import UnitResult, WorkUnit
from fvr_audit.execution.worker import run_unit


class ProcessExecutor(Executor):
    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return f"processes ({self.workers} workers)"

    def _fresh_pool(self) -> ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def run(self, units: Sequence[WorkUnit]) -> Iterator[UnitResult]:
        waiting = list(units)
        attempts = {unit.number: 0 for unit in units}
        pool = self._pool or self._fresh_pool()
        running: dict[Future, WorkUnit] = {}
        while waiting or running:
            broken = False
            while waiting and len(running) < self.workers:
                try:
                    future = pool.submit(run_unit, waiting[0])
                except BrokenProcessPool:  # a worker died since the last look
                    broken = True
                    break
                unit = waiting.pop(0)
                attempts[unit.number] += 1
                running[future] = unit
            lost: list[WorkUnit] = []
            if not broken:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = running.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        lost.append(unit)
                        broken = True
                        continue
                    yield result
            if broken:
                # The pool is unusable once one worker died: every unit in flight goes back.
                lost += list(running.values())
                running.clear()
                for unit in lost:
                    if attempts[unit.number] >= MAX_ATTEMPTS:
                        raise RemoteError(
                            f"worker process died {attempts[unit.number]} times running rows "
                            f"{_rows(unit)} (out of memory, or killed?); rerun to resume from the finished units"
                        )
                waiting[:0] = sorted(lost, key=lambda u: u.number)
                pool = self._fresh_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _rows(unit: WorkUnit) -> str:
    rows = list(unit.rows)
    return ",".join(map(str, rows[:5])) + (f",... ({len(rows)} targets)" if len(rows) > 5 else "")
