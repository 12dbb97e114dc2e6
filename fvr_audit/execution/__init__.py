"""Where reconstruction units run: in this process, in local processes, or on a Ray cluster.

:func:`open_executor` turns ``--executor``/``--workers`` into an :class:`Executor`; the driver
(:func:`fvr_audit.reconstructors.runner.reconstruct_to_folder`) cuts the work into
:class:`WorkUnit` values and writes each :class:`UnitResult` as it arrives.
"""

from __future__ import annotations

from fvr_audit.execution.base import MAX_ATTEMPTS, Executor
from fvr_audit.execution.serial import SerialExecutor
from fvr_audit.execution.settings import ExecutionSettings, ExecutorKind, parse_executor
from fvr_audit.execution.units import UnitResult, WorkUnit, require_specs
from fvr_audit.execution.worker import Resolver

__all__ = [
    "MAX_ATTEMPTS",
    "ExecutionSettings",
    "Executor",
    "ExecutorKind",
    "SerialExecutor",
    "UnitResult",
    "WorkUnit",
    "open_executor",
    "parse_executor",
    "preflight",
    "require_specs",
]


def open_executor(settings: ExecutionSettings, resolve: Resolver | None = None) -> Executor:
    """The executor ``settings`` ask for (close it after use). ``resolve``: the serial executor's
    live extractor and attack (workers make their own from the units' specs)."""
    if settings.kind is ExecutorKind.SERIAL:
        return SerialExecutor(resolve) if resolve is not None else SerialExecutor()
    if settings.kind is ExecutorKind.PROCESSES:
        from fvr_audit.execution.processes import ProcessExecutor

        return ProcessExecutor(settings.worker_count())
    from fvr_audit.execution.ray_executor import RayExecutor

    return RayExecutor(settings)


def preflight(settings: ExecutionSettings) -> None:
    """What can be checked in a second before any work: Ray is installed, a ``ray://`` address
    answers. The rest (joining, workers making their models) fails when the executor opens."""
    if settings.kind in (ExecutorKind.SERIAL, ExecutorKind.PROCESSES):
        return
    import importlib.util

    from fvr_audit.errors import InputError
    from fvr_audit.execution.ray_executor import check_reachable

    if importlib.util.find_spec("ray") is None:
        raise InputError(f"--executor {settings.address or settings.kind.value}: Ray is not installed; "
                         "pip install 'fvr-audit[ray]'")
    if settings.address:
        check_reachable(settings.address)
