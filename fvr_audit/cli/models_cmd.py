"""``fvr-audit models``: the shipped model files (extractors, bases, reconstructors) and their provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fvr_audit.cli.common import handle_errors
from fvr_audit.cli.console import Align, Column, TextTable, print_table, stdout_console


def register(app: typer.Typer) -> None:
    @app.command("models")
    @handle_errors
    def models(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        extra: Optional[list[Path]] = typer.Option(None, "--models", help="Also list this models folder (repeatable)."),
    ) -> None:
        """List the trained reconstructors (method, extractor, training data, hash) and the other model files."""
        from fvr_audit.model_store import load_manifest, models_dir
        from fvr_audit.reconstructors.parametric.store import list_reconstructor_files

        recon = list_reconstructor_files(tuple(extra or ()))
        others = [e for e in load_manifest(models_dir()).values() if e.kind != "reconstructor"]
        if as_json:
            rows = [
                {"file": str(f.path), "sha256": f.entry.sha256, "size": f.entry.size, **(f.details or {})} for f in recon
            ]
            files = [{"file": e.file, "kind": e.kind, "sha256": e.sha256, "size": e.size, "source": e.source} for e in others]
            typer.echo(json.dumps({"reconstructors": rows, "other_files": files}, indent=2))
            return
        rows = []
        for f in recon:
            d = f.details
            trained = f"{d.get('training_images')} photos of {d.get('training_identities')} identities; {d.get('training_data', '')}"
            rows.append(
                (
                    f.method, f.extractor, trained, f"{d.get('validation_median_cosine', float('nan')):.3f}",
                    str(f.path.name), f.entry.sha256[:16],
                )
            )
        columns = ("method", "extractor", "training data", Column("val. cos", Align.RIGHT), "file", "sha256")
        print_table(TextTable.build("Trained reconstructors", columns, rows), stdout_console)
        other_rows = [(e.file, e.kind, f"{e.size / 1e6:.1f} MB", e.sha256[:16]) for e in others]
        columns = ("file", "kind", Column("size", Align.RIGHT), "sha256")
        print_table(TextTable.build("Other model files", columns, other_rows), stdout_console)
