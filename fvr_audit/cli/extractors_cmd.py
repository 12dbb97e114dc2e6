"""``fvr-audit extractors``: list the built-in extractors."""

from __future__ import annotations

import json

import typer

from fvr_audit.cli.common import handle_errors
from fvr_audit.cli.console import Align, Column, TextTable, print_table, stdout_console


def register(app: typer.Typer) -> None:
    @app.command("extractors")
    @handle_errors
    def extractors(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List the built-in face extractors: name, dimension, input geometry, source, licence."""
        from fvr_audit.extractors.registry import list_builtin_extractors

        infos = list_builtin_extractors()
        if as_json:
            rows = [
                {
                    "name": i.name,
                    "dim": i.dim,
                    "geometry": i.geometry.describe(),
                    "preprocessing": i.preprocessing.describe(),
                    "source": i.source,
                    "license": i.license,
                    "sha256": i.sha256,
                    "differentiable": i.differentiable,
                }
                for i in infos
            ]
            typer.echo(json.dumps(rows, indent=2))
            return
        columns = ("name", Column("dim", Align.RIGHT), "input geometry", "preprocessing", "source", "licence")
        rows = [
            (i.name, str(i.dim), i.geometry.describe(), i.preprocessing.describe(), i.source, i.license) for i in infos
        ]
        print_table(TextTable.build("Built-in extractors", columns, rows), stdout_console)
