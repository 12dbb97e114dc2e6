"""The ``fvr-audit`` command."""

from __future__ import annotations

import typer

from fvr_audit import __version__
from fvr_audit.cli.common import OneLineErrorGroup

app = typer.Typer(
    name="fvr-audit",
    help="Audit how far a face feature-vector database lets faces be reconstructed and re-identified.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrorGroup,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fvr-audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fvr-audit: feature-vector reconstruction privacy audit."""


def _register_commands() -> None:
    # Each concept keeps its commands in its own module; they are attached here.
    from fvr_audit.cli import (
        adapter_cmd,
        demo_cmd,
        engines_cmd,
        extract_cmd,
        extractors_cmd,
        models_cmd,
        reconstruct_cmd,
        scan_cmd,
        survey_cmd,
        train_cmd,
        vectors_cmd,
    )

    app.add_typer(vectors_cmd.app, name="vectors", help="Inspect and validate feature-vector databases.")
    demo_cmd.register(app)
    extractors_cmd.register(app)
    engines_cmd.register(app)
    extract_cmd.register(app)
    scan_cmd.register(app)
    reconstruct_cmd.register(app)
    train_cmd.register(app)
    models_cmd.register(app)
    adapter_cmd.register(app)
    app.add_typer(
        survey_cmd.app, name="survey",
        help="Metric 2: a local survey in which people match reconstructions to photos.",
    )


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":  # `python -m fvr_audit.cli.app` behaves like `python -m fvr_audit`
    main()
