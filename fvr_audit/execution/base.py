"""The ``Executor`` seam: units go in, results come out as they finish, wherever they ran."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence

from fvr_audit.execution.units import UnitResult, WorkUnit

#: Attempts per unit when its worker dies under it (a crash, a machine lost), before giving up.
MAX_ATTEMPTS = 3


class Executor(abc.ABC):
    """Runs work units. Implementations: serial (this process), local processes, Ray."""

    #: Units run at once (1 for serial).
    workers: int = 1

    @abc.abstractmethod
    def run(self, units: Sequence[WorkUnit]) -> Iterator[UnitResult]:
        """Submit every unit and yield each result as soon as it is done (in any order).

        A unit whose worker dies is run again (up to :data:`MAX_ATTEMPTS` times in all); a unit
        that fails with an error ends the iteration with that error (remote failures as
        :class:`~fvr_audit.errors.RemoteError`, exit code 3).
        """

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:
        """Release the workers (a local Ray runtime is shut down); safe to call twice."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
