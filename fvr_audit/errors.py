"""Errors that reach the user as one line and a meaningful exit code.

Every failure caused by the user's input (a file, a flag, a model) raises a subclass of
:class:`FvrAuditError`. The CLI prints ``error: <message>`` on one line and exits with the
error's ``exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``fvr-audit`` command. They are part of the public interface."""

    OK = 0
    #: ``scan --fail-on-tpr``: the measured re-identification risk is above the gate.
    RISK_ABOVE_THRESHOLD = 1
    #: Bad input: a file, a flag or a model that cannot be used as given.
    BAD_INPUT = 2
    #: A remote service (HTTP extractor, cloud engine, Ray cluster) failed after retries.
    SERVICE_FAILURE = 3
    #: A shipped model file is missing or does not match its manifest hash.
    MODEL_INTEGRITY = 4


class FvrAuditError(Exception):
    """Base class: a message meant for the user, and the exit code that goes with it."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        # One line, always: the CLI contract is "error: <one line>".
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(FvrAuditError):
    """A file or argument given by the user cannot be used (exit code 2)."""

    exit_code = ExitCode.BAD_INPUT


class ServiceError(FvrAuditError):
    """A remote service failed after its retries (exit code 3)."""

    exit_code = ExitCode.SERVICE_FAILURE


class RemoteError(ServiceError):
    """Remote workers failed: a cluster that cannot be reached or goes away, a worker that cannot
    build the extractor or the attack (its models missing), a unit lost more often than it is
    retried (exit code 3, like every remote failure)."""


class ModelIntegrityError(FvrAuditError):
    """A model file is missing, or its sha256 differs from ``models/manifest.json`` (exit code 4)."""

    exit_code = ExitCode.MODEL_INTEGRITY
