"""Where reconstruction work runs: ``--executor`` and ``--workers``, parsed once into a frozen value.

>>> parse_executor("ray://head:10001", 4)
ExecutionSettings(kind=<ExecutorKind.RAY: 'ray'>, address='ray://head:10001', workers=4)
>>> parse_executor("processes", None).describe()
'processes'
>>> parse_executor("mpi", None)
Traceback (most recent call last):
fvr_audit.errors.InputError: --executor 'mpi': use one of serial, processes, ray, auto, or ray://HOST:PORT
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from fvr_audit.errors import InputError


class ExecutorKind(str, Enum):
    """The fixed ``--executor`` choices (``ray://HOST:PORT`` is RAY with an address)."""

    #: In this process, unit after unit (the default).
    SERIAL = "serial"
    #: Local worker processes (spawned, so nothing of this process's state is shared).
    PROCESSES = "processes"
    #: Ray: a local runtime started for the run, or a cluster at an address.
    RAY = "ray"
    #: Ray: join the cluster already running (``RAY_ADDRESS``, or the one started on this machine).
    AUTO = "auto"


RAY_CLIENT_PREFIX = "ray://"


@dataclass(frozen=True)
class ExecutionSettings:
    kind: ExecutorKind = ExecutorKind.SERIAL
    #: ``ray://HOST:PORT`` of a cluster to join; None starts a local runtime (``ray``) or finds one (``auto``).
    address: str | None = None
    #: ``--workers``: parallel workers (local processes, or the CPUs of a local Ray runtime); None: every CPU.
    workers: int | None = None

    def worker_count(self) -> int:
        """Workers to start locally: ``--workers``, else every CPU of this machine."""
        return self.workers or os.cpu_count() or 1

    def describe(self) -> str:
        if self.kind is ExecutorKind.SERIAL:
            return "serial"
        where = self.address or self.kind.value
        return where if self.workers is None else f"{where}, {self.workers} workers"


def parse_executor(text: str, workers: int | None) -> ExecutionSettings:
    """``--executor TEXT --workers N`` as settings; a one-line InputError for anything else."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    value = text.strip()
    if value.startswith(RAY_CLIENT_PREFIX):
        host, _, port = value[len(RAY_CLIENT_PREFIX):].rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--executor {value}: expected ray://HOST:PORT (the Ray client port, usually 10001)")
        return ExecutionSettings(ExecutorKind.RAY, value, workers)
    try:
        kind = ExecutorKind(value.lower())
    except ValueError:
        choices = ", ".join(k.value for k in ExecutorKind)
        raise InputError(f"--executor {text!r}: use one of {choices}, or ray://HOST:PORT") from None
    return ExecutionSettings(kind, None, workers)
