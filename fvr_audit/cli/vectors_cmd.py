"""``fvr-audit vectors ...`` commands.

``vectors inspect`` prints its table on stdout: the table is the command's result (pipe it,
page it). With ``--json`` stdout holds only the JSON object. Progress of the checks of a large
database (a bar in a terminal, plain timed lines in a log) goes to stderr, like every command's.
Errors always go to stderr as one ``error: ...`` line, with exit code 2 for a file that cannot be used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fvr_audit.cli.common import handle_errors
from fvr_audit.cli.console import TextTable, print_table, stdout_console
from fvr_audit.cli.progress import progress_reporter

app = typer.Typer(no_args_is_help=True)


@app.command("inspect")
@handle_errors
def inspect_command(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="A .npy (N x D floats) or .npz (vectors, labels, paths, ids) file."
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON object on stdout instead of a table.")
    ] = False,
    expected_dim: Annotated[
        int | None,
        typer.Option(
            "--expected-dim", min=1, help="Fail unless the vectors have this dimension (the extractor's)."
        ),
    ] = None,
    allow_duplicates: Annotated[
        bool,
        typer.Option("--allow-duplicates", help="Report duplicated rows as a warning instead of failing."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress (shown only for large databases, on stderr).")
    ] = False,
) -> None:
    """Summarise a feature-vector database: size, storage, norms, identities, duplicates.

    Runs the checks every audit runs on its vectors: exit code 0 means the file is usable.
    """
    # Imported here so `fvr-audit --help` does not pay for numpy.
    from fvr_audit.vectors.database import load_vectors
    from fvr_audit.vectors.inspect import summarize, summary_rows

    with progress_reporter(quiet=quiet) as progress:
        db = load_vectors(
            file, expected_dim=expected_dim, allow_duplicates=allow_duplicates, progress=progress.phase
        )
    summary = summarize(db)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        table = TextTable.build(str(summary["path"]), ("field", "value"), summary_rows(summary), show_header=False)
        print_table(table, stdout_console)
