"""Units run as Ray tasks (``--executor ray``, ``ray://HOST:PORT``, ``auto``).

``ray`` starts a local runtime with ``--workers`` CPUs (every CPU by default) and shuts it down
afterwards; ``ray://HOST:PORT`` joins a cluster through the Ray client; ``auto`` joins the
cluster ``RAY_ADDRESS`` names, or the one already running on this machine. Each task takes one
CPU. A task whose worker dies (a crash, a node lost) is retried by Ray (``max_retries``); an
error raised by the attack in a worker comes back as that error; everything else Ray raises
(an unreachable or vanished cluster, a worker that cannot make the models) is a one-line
:class:`~fvr_audit.errors.RemoteError` (exit code 3).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence

from fvr_audit.errors import FvrAuditError, InputError, RemoteError
from fvr_audit.execution.base import MAX_ATTEMPTS, Executor
from fvr_audit.execution.settings import RAY_CLIENT_PREFIX, ExecutionSettings, ExecutorKind
from fvr_audit.execution.units import UnitResult, WorkUnit
from fvr_audit.execution.worker import run_unit

#: Seconds to wait for a TCP connection to a ``ray://`` address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "") or type(error).__name__


def check_reachable(address: str) -> None:
    """A wrong ``ray://`` address fails here in seconds (Ray's client retries for about a minute)."""
    host, _, port = address[len(RAY_CLIENT_PREFIX):].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise RemoteError(
            f"--executor {address}: cannot reach the Ray cluster ({error.strerror or error}); check the head "
            "node's address and that its client server listens on that port (ray start --head, port 10001)"
        ) from None


def _remote_unit(unit: WorkUnit) -> UnitResult:
    # Runs in a Ray worker: an error with a user message travels back as one line, tagged with the
    # node, so a worker without the models says so instead of raising a Ray traceback.
    try:
        return run_unit(unit)
    except FvrAuditError as error:
        raise RemoteError(f"Ray worker {socket.gethostname()}: {error}") from None


class RayExecutor(Executor):
    def __init__(self, settings: ExecutionSettings) -> None:
        try:
            import ray
        except ImportError:
            raise InputError(
                f"--executor {settings.address or settings.kind.value}: Ray is not installed; "
                "pip install 'fvr-audit[ray]'"
            ) from None
        self._ray = ray
        self._started_here = False
        if settings.kind is ExecutorKind.AUTO:
            self.address = os.environ.get("RAY_ADDRESS", "").strip() or "auto"
        else:
            self.address = settings.address  # None: a local runtime
        if self.address and self.address.startswith(RAY_CLIENT_PREFIX):
            check_reachable(self.address)
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        try:
            if ray.is_initialized():
                pass  # the caller's own runtime (a script that called ray.init): use it
            elif self.address is None:
                ray.init(num_cpus=settings.worker_count(), **quiet)
                self._started_here = True
            else:
                ray.init(address=self.address, **quiet)
                self._started_here = True
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        except FvrAuditError:
            raise
        except Exception as error:  # Ray raises ConnectionError, RuntimeError, grpc errors...
            where = self.address or "a local runtime"
            raise RemoteError(f"--executor {where}: Ray could not start or join the cluster: {_one_line(error)}") from None
        self._task = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1, retry_exceptions=False)(_remote_unit)

    def describe(self) -> str:
        return f"ray ({self.address or 'local runtime'}, {self.workers} CPUs)"

    def run(self, units: Sequence[WorkUnit]) -> Iterator[UnitResult]:
        ray = self._ray
        pending = {}
        try:
            try:
                for unit in units:
                    pending[self._task.remote(unit)] = unit
            except Exception as error:
                raise self._lost(error) from None
            while pending:
                try:
                    done, _ = ray.wait(list(pending), num_returns=1)
                except Exception as error:
                    raise self._lost(error) from None
                for ref in done:
                    unit = pending.pop(ref)
                    yield self._result(ref, unit)
        finally:
            for ref in pending:  # the caller stopped early (an error): do not leave tasks running
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass

    def _result(self, ref, unit: WorkUnit) -> UnitResult:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, FvrAuditError):
                raise cause from None
            raise RemoteError(f"Ray task for rows {unit.rows[0]}..{unit.rows[-1]} failed: {_one_line(cause or error)}") from None
        except ray.exceptions.WorkerCrashedError:
            raise RemoteError(
                f"Ray workers died {MAX_ATTEMPTS} times running rows {unit.rows[0]}..{unit.rows[-1]} (out of memory, "
                "or killed?); rerun to resume from the finished units"
            ) from None
        except Exception as error:  # the cluster went away, a node was lost for good...
            raise self._lost(error) from None

    def _lost(self, error: BaseException) -> RemoteError:
        return RemoteError(
            f"Ray cluster {self.address or '(local runtime)'} failed: {_one_line(error)}; "
            "rerun to resume from the finished units"
        )

    def close(self) -> None:
        if self._started_here:
            self._started_here = False
            try:
                self._ray.shutdown()
            except Exception:
                pass
