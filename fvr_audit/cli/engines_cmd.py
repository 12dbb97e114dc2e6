"""``fvr-audit engines``: list the matching engines F'; clean up what killed cloud runs left behind."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import typer

from fvr_audit.cli.common import handle_errors
from fvr_audit.cli.console import Align, Column, TextTable, print_table, stdout_console
from fvr_audit.engines.cloud import LeftOver
from fvr_audit.errors import InputError

app = typer.Typer(no_args_is_help=True, add_completion=False)


class CleanupTarget(str, Enum):
    ALL = "all"
    AWS = "aws:rekognition"
    AZURE = "azure:face"


@dataclass(frozen=True)
class Backend:
    """One cloud engine's leftovers: how to find them and delete one."""

    engine: str
    find: Callable[[str | None], list[LeftOver]]
    delete: Callable[[LeftOver], None]


def _aws_backend(region: str | None) -> Backend:
    from fvr_audit.engines import aws

    client = aws.rekognition_client(region)
    return Backend(aws.ENGINE, lambda run_id: aws.find_leftovers(client, run_id=run_id),
                   lambda leftover: aws.delete_leftover(client, leftover))


def _azure_backend(endpoint: str | None) -> Backend:
    from fvr_audit.engines import azure

    admin, _ = azure.face_clients(endpoint)
    return Backend(azure.ENGINE, lambda run_id: azure.find_leftovers(admin, run_id=run_id),
                   lambda leftover: azure.delete_leftover(admin, leftover))


def _sdk(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@app.command("list")
@handle_errors
def list_engines() -> None:
    """List the engines a scan can use as F': local models and cloud services (no network call)."""
    from fvr_audit.engines.aws import DEFAULT_THRESHOLD as AWS_THRESHOLD
    from fvr_audit.engines.aws import MAX_SEARCH_FACES
    from fvr_audit.engines.azure import DEFAULT_THRESHOLD as AZURE_THRESHOLD
    from fvr_audit.engines.azure import ENDPOINT_ENV, KEY_ENV, MAX_CANDIDATES
    from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS

    rows = [
        (f"local:{name}", "local", "vectors", "every identity", "none unless --fmr/--threshold", "cosine", "built in")
        for name in sorted(BUILTIN_EXTRACTORS)
    ]
    rows.append(("local:<model.onnx | https://url>", "local", "vectors", "every identity",
                 "none unless --fmr/--threshold", "cosine", "your model or endpoint"))
    aws_ready = "boto3 installed" if _sdk("boto3") else "pip install 'fvr-audit[aws]'"
    rows.append(("aws:rekognition", "cloud", "photos", f"top {MAX_SEARCH_FACES} faces",
                 f"{AWS_THRESHOLD:g} (service default)", "similarity 0-100",
                 f"{aws_ready}; credentials from boto3's chain"))
    azure_ready = "SDK installed" if _sdk("azure.ai.vision.face") else "pip install 'fvr-audit[azure]'"
    configured = "set" if os.environ.get(ENDPOINT_ENV) else "not set"
    rows.append(("azure:face", "cloud", "photos", f"top {MAX_CANDIDATES} persons", f"{AZURE_THRESHOLD:g} (sent)",
                 "confidence 0-1",
                 f"{azure_ready}; {ENDPOINT_ENV} {configured}, {KEY_ENV} or azure-identity; Limited Access"))
    columns = ("engine", "kind", "enrolls", "answers", "threshold", "scores", "needs")
    print_table(TextTable.build("Matching engines (F')", columns, rows), stdout_console)


@app.command("cleanup")
@handle_errors
def cleanup(
    engine: CleanupTarget = typer.Option(CleanupTarget.ALL, "--engine", help="Which cloud engine's resources."),
    run_id: str = typer.Option(None, "--run-id", help="Only this run's collection / person group."),
    yes: bool = typer.Option(False, "--yes", help="Delete what is listed (without it, only list)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List only, even with --yes."),
    region: str = typer.Option(None, "--region", help="AWS region (default: boto3's configuration)."),
    endpoint: str = typer.Option(None, "--endpoint", help="Azure Face endpoint (default: $AZURE_FACE_ENDPOINT)."),
) -> None:
    """Delete the collections / person groups that killed scans left (named fvr-audit-<run id> and tagged).

    Lists them first; deletes only with --yes. Resources not made by fvr-audit are never touched.
    """
    if run_id is not None:
        from fvr_audit.engines.cloud import check_run_id

        check_run_id(run_id)
    wanted = [CleanupTarget.AWS, CleanupTarget.AZURE] if engine is CleanupTarget.ALL else [engine]
    backends: list[Backend] = []
    for target in wanted:
        try:
            backends.append(_aws_backend(region) if target is CleanupTarget.AWS else _azure_backend(endpoint))
        except InputError as error:
            if engine is not CleanupTarget.ALL:
                raise
            print(f"note: skipped {target.value}: {error}", file=sys.stderr)
    if not backends:
        raise InputError("engines cleanup: no cloud engine is configured (see the notes above)")
    found: list[tuple[Backend, LeftOver]] = []
    for backend in backends:
        found.extend((backend, leftover) for leftover in backend.find(run_id))
    rows = [(lo.engine, lo.name, lo.run_id, lo.detail) for _, lo in found]
    columns = ("engine", "resource", "run id", Column("detail", Align.LEFT))
    print_table(TextTable.build(f"Left over by fvr-audit runs: {len(found)}", columns, rows), stdout_console)
    if not found:
        return
    if dry_run or not yes:
        print(f"note: nothing deleted; run again with --yes to delete these {len(found)}", file=sys.stderr)
        return
    for backend, leftover in found:
        backend.delete(leftover)
        print(f"deleted {leftover.engine} {leftover.name}", file=sys.stderr)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="engines", help="List matching engines; clean up cloud resources of killed runs.")
