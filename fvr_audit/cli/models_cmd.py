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
        from fvr_audit.errors import ModelIntegrityError
        from fvr_audit.model_store import file_status, load_manifest, models_dir
        from fvr_audit.reconstructors.parametric.store import list_reconstructor_files

        recon = list_reconstructor_files(tuple(extra or ()))
        others = [e for e in load_manifest(models_dir()).values() if e.kind != "reconstructor"]
        # Each file is hashed: a listing must never vouch for a file that differs from its manifest.
        recon_status = [file_status(f.path.name, f.entry, f.path.parent) for f in recon]
        other_status = [file_status(e.file, e) for e in others]
        if as_json:
            rows = [
                {"file": str(f.path), "sha256": f.entry.sha256, "size": f.entry.size, "status": status, **(f.details or {})}
                for f, status in zip(recon, recon_status)
            ]
            files = [
                {"file": e.file, "kind": e.kind, "sha256": e.sha256, "size": e.size, "source": e.source, "status": status}
                for e, status in zip(others, other_status)
            ]
            typer.echo(json.dumps({"reconstructors": rows, "other_files": files}, indent=2))
        else:
            _print_tables(recon, recon_status, others, other_status)
        bad = [(f.path, s) for f, s in zip(recon, recon_status) if s != "ok"]
        bad += [(models_dir() / e.file, s) for e, s in zip(others, other_status) if s != "ok"]
        if bad:
            path, status = bad[0]
            more = f" ({len(bad)} files)" if len(bad) > 1 else ""
            raise ModelIntegrityError(
                f"{path}: {'missing' if status == 'missing' else 'sha256 differs from its manifest'}{more}; "
                "reinstall or rebuild it"
            )


def _print_tables(recon, recon_status, others, other_status) -> None:
    rows = []
    for f, status in zip(recon, recon_status):
        d = f.details
        trained = f"{d.get('training_images')} photos of {d.get('training_identities')} identities; {d.get('training_data', '')}"
        rows.append(
            (
                f.method, f.extractor, trained, f"{d.get('validation_median_cosine', float('nan')):.3f}",
                str(f.path.name), f.entry.sha256[:16], status,
            )
        )
    columns = ("method", "extractor", "training data", Column("val. cos", Align.RIGHT), "file", "sha256", "status")
    print_table(TextTable.build("Trained reconstructors", columns, rows), stdout_console)
    other_rows = [(e.file, e.kind, f"{e.size / 1e6:.1f} MB", e.sha256[:16], status) for e, status in zip(others, other_status)]
    columns = ("file", "kind", Column("size", Align.RIGHT), "sha256", "status")
    print_table(TextTable.build("Other model files", columns, other_rows), stdout_console)
