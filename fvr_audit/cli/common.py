"""Shared CLI plumbing: the console, and turning ``FvrAuditError`` into one line and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from fvr_audit.cli.console import console, stdout_console  # noqa: F401  (the commands' consoles)
from fvr_audit.errors import FvrAuditError

F = TypeVar("F", bound=Callable)


def fail(error: FvrAuditError) -> typer.Exit:
    """Print ``error: <message>`` on one line (stderr) and return the Exit to raise."""
    # Plain print, not rich: rich would wrap a long path across lines and the contract is one line.
    print(f"error: {error}", file=sys.stderr)
    return typer.Exit(code=int(error.exit_code))


def handle_errors(func: F) -> F:
    """Decorator for commands: FvrAuditError -> one-line message and its exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FvrAuditError as error:
            raise fail(error) from None

    return wrapper  # type: ignore[return-value]
