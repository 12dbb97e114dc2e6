"""``fvr-audit demo``: the embedded default job, runnable with no arguments on a fresh clone."""

from __future__ import annotations

import typer
from rich.table import Table

from fvr_audit.cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo() -> None:
        """Run the built-in audit on the shipped demo data (offline, from the repository alone)."""
        from fvr_audit.extractors.registry import list_builtin_extractors

        # Loading each built-in verifies its model file against models/manifest.json.
        infos = list_builtin_extractors()
        table = Table(title="Extractors ready (model files verified against models/manifest.json)")
        for column in ("name", "dim", "input geometry", "sha256"):
            table.add_column(column)
        for info in infos:
            table.add_row(info.name, str(info.dim), info.geometry.describe(), (info.sha256 or "")[:16])
        console.print(table)
        console.print(
            "No reconstructors are installed yet, so there is nothing to scan: the demo audit "
            "(reconstruct, re-identify, report) arrives with the reconstructors."
        )
