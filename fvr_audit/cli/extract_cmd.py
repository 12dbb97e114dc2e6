"""``fvr-audit extractors``: list the built-in extractors."""

import typer


def register(app: typer.Typer) -> None:
    pass
