"""Shared CLI plumbing: the console, and turning ``FvrAuditError`` into one line and an exit code."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from typer.core import TyperGroup

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


#: click's exception classes as typer uses them (typer >= 0.26 vendors its own copy of click).
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
#: Raised for a group called without a command (``fvr-audit vectors``); absent from older click.
NoArgsIsHelpError = getattr(sys.modules[ClickException.__module__], "NoArgsIsHelpError", None)


def usage_error_line(error: Exception) -> str:
    """A click usage error (missing argument, bad value, unknown option) as the one-line contract."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    context = getattr(error, "ctx", None)
    if context is not None:
        return f"error: {context.command_path}: {message} (see {context.command_path} --help)"
    return f"error: {message}"


class OneLineErrorGroup(TyperGroup):
    """The root command: click's own usage errors become one ``error: ...`` line (exit 2), not
    the multi-line box typer draws, so every bad input reads the same in a CI log."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as error:
            if NoArgsIsHelpError is not None and isinstance(error, NoArgsIsHelpError):
                # `fvr-audit vectors` alone: the help is the answer, as before
                print(error.ctx.get_help(), file=sys.stderr)
            else:
                print(usage_error_line(error), file=sys.stderr)
            sys.exit(error.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        # Not standalone: click returns an Exit's code instead of exiting; a command's None is 0.
        sys.exit(result if isinstance(result, int) else 0)
