"""CLI options shared by every command that takes ``--extractor`` (extract, scan, reconstruct)."""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from typing import Optional, TypeVar

import typer

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import AlignmentTemplate, ChannelOrder, Layout
from fvr_audit.extractors.registry import DEFAULT_EXTRACTOR, ExtractorOptions

EXTRACTOR_HELP = (
    "Extractor F: a built-in name (see `fvr-audit extractors`), a path to an .onnx model, or an http(s):// endpoint."
)

ExtractorArg = typer.Option(DEFAULT_EXTRACTOR, "--extractor", "-e", help=EXTRACTOR_HELP)
InputSizeOpt = typer.Option(None, "--input-size", help="ONNX/HTTP: square input side in pixels (overrides the guess).")
MeanOpt = typer.Option(None, "--mean", help="ONNX: per-channel mean on 0..255, one value or three (R,G,B).")
StdOpt = typer.Option(None, "--std", help="ONNX: per-channel std on 0..255, one value or three (R,G,B).")
ChannelOrderOpt = typer.Option(None, "--channel-order", help="ONNX: channel order the model expects.")
LayoutOpt = typer.Option(None, "--layout", help="ONNX: tensor layout the model expects.")
CropOpt = typer.Option(None, "--crop", help="ONNX/HTTP: alignment template for crops.")
PaddingOpt = typer.Option(None, "--padding", help="ONNX/HTTP: dlib-5pt chip padding (share of the face added per side).")


def parse_triplet(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """'127.5' or '123,117,104' -> a 3-tuple of floats.

    >>> parse_triplet("127.5", "--mean"), parse_triplet("1, 2,3", "--std")
    ((127.5, 127.5, 127.5), (1.0, 2.0, 3.0))
    """
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected one number or three comma-separated numbers") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{flag} {text!r}: expected one number or three comma-separated numbers, got {len(values)}")
    return values  # type: ignore[return-value]


def build_extractor_options(
    input_size: Optional[int],
    mean: Optional[str],
    std: Optional[str],
    channel_order: Optional[ChannelOrder],
    layout: Optional[Layout],
    crop: Optional[AlignmentTemplate],
    padding: Optional[float],
    timeout: Optional[float] = None,
    retries: Optional[int] = None,
    concurrency: Optional[int] = None,
) -> ExtractorOptions:
    """Turn the raw flag values into validated :class:`ExtractorOptions`."""
    if input_size is not None and input_size <= 0:
        raise InputError(f"--input-size {input_size}: must be a positive number of pixels")
    if padding is not None and not 0 <= padding <= 2:
        raise InputError(f"--padding {padding}: must be between 0 and 2")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise InputError(f"--timeout {timeout:g}: must be a positive number of seconds")
    if retries is not None and retries < 0:
        raise InputError(f"--retries {retries}: must be 0 or more")
    if concurrency is not None and concurrency < 1:
        raise InputError(f"--concurrency {concurrency}: must be 1 or more")
    std_values = parse_triplet(std, "--std")
    if std_values is not None and any(v == 0 for v in std_values):
        raise InputError(f"--std {std}: a standard deviation of 0 would divide by zero")
    return ExtractorOptions(
        input_size=input_size,
        mean=parse_triplet(mean, "--mean"),
        std=std_values,
        channel_order=channel_order,
        layout=layout,
        crop=crop,
        padding=padding,
        timeout=timeout,
        retries=retries,
        concurrency=concurrency,
    )


ExecutorOpt = typer.Option(
    "serial", "--executor",
    help="Where reconstruction units run: serial (this process), processes (local worker processes), ray (a local "
    "Ray runtime), ray://HOST:PORT (join a Ray cluster), auto (join the cluster RAY_ADDRESS names, or the local one). "
    "The same seed gives the same images on every executor.",
)
WorkersOpt = typer.Option(
    None, "--workers", help="processes/ray: parallel workers (default: every CPU of this machine)."
)


TimeoutOpt = typer.Option(
    None, "--timeout", help="HTTP: most seconds one request may take in total, from connecting to the last byte (default 30)."
)
RetriesOpt = typer.Option(None, "--retries", help="HTTP: retries of a failed request (429, 5xx, timeout) after the first (default 4).")
ConcurrencyOpt = typer.Option(None, "--concurrency", help="HTTP: requests in flight at once (default 4).")


def announce(model) -> None:
    """Print what the user must know about the extractor just created: the ONNX preprocessing
    guessed, and warnings (credentials over plain http)."""
    from fvr_audit.cli.common import console

    for line in getattr(getattr(model, "guess", None), "describe_lines", lambda: [])():
        console.print(f"[yellow]{line}[/]")
    for warning in getattr(model, "warnings", ()):
        print(f"warning: {warning}", file=sys.stderr)  # plain: one line, never wrapped


#: The override flags, as (parameter, annotation, typer option); one list for every command.
OVERRIDE_PARAMETERS: tuple[tuple[str, object, object], ...] = (
    ("input_size", Optional[int], InputSizeOpt),
    ("mean", Optional[str], MeanOpt),
    ("std", Optional[str], StdOpt),
    ("channel_order", Optional[ChannelOrder], ChannelOrderOpt),
    ("layout", Optional[Layout], LayoutOpt),
    ("crop", Optional[AlignmentTemplate], CropOpt),
    ("padding", Optional[float], PaddingOpt),
    ("timeout", Optional[float], TimeoutOpt),
    ("retries", Optional[int], RetriesOpt),
    ("concurrency", Optional[int], ConcurrencyOpt),
)

F = TypeVar("F", bound=Callable)


def extractor_overrides(func: F) -> F:
    """Give a command the ``--input-size ... --padding`` flags; it receives them parsed and validated
    as one ``extractor_options: ExtractorOptions`` keyword (place under ``handle_errors``, so a bad
    value is a one-line error)."""
    signature = inspect.signature(func)
    kept = [p for p in signature.parameters.values() if p.name != "extractor_options"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        for name, annotation, option in OVERRIDE_PARAMETERS
    ]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        values = [kwargs.pop(name, None) for name, _, _ in OVERRIDE_PARAMETERS]
        values = [None if isinstance(v, typer.models.OptionInfo) else v for v in values]
        return func(*args, extractor_options=build_extractor_options(*values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
