"""``fvr-audit survey ...``: Metric 2, people matching reconstructions to photos.

``build`` makes a survey folder from a finished scan; ``tokens add`` invites participants (one
link per line on stdout, never wrapped); ``serve`` runs the local web server; ``analyze`` writes
the figures (and, with ``--scan``, the scan report's Metric 2 section); ``export``/``import``
move answers as CSV to and from other survey platforms.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from fvr_audit.cli.common import handle_errors
from fvr_audit.errors import InputError

app = typer.Typer(no_args_is_help=True)
tokens_app = typer.Typer(no_args_is_help=True)
app.add_typer(tokens_app, name="tokens", help="Participant links.")


class NoFace(str, Enum):
    skip = "skip"
    center = "center"


class ExportWhat(str, Enum):
    answers = "answers"
    questions = "questions"


@app.command("build")
@handle_errors
def build_command(
    scan_dir: Path = typer.Argument(..., metavar="SCAN_DIR", help="Output folder of a finished `fvr-audit scan` (results.json, reconstructions/)."),
    gallery: Path = typer.Option(..., "--gallery", help="Photos of the people: DIR/<identity>/<photo>, identities named as the scan's labels."),
    output: Path = typer.Option(..., "--output", "-o", help="New folder for the survey (manifest, images)."),
    engine: str = typer.Option("local:faceres-1024", "--engine", help="Engine F' whose top-K are the candidates (never one an attack used)."),
    k: int = typer.Option(5, "--k", help="Candidates per question (the paper: 5)."),
    per_method: int = typer.Option(5, "--per-method", help="Reconstructions asked about per method (the paper: 5)."),
    attention: int = typer.Option(2, "--attention", help="Attention checks (a real photo of one of the candidates)."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Methods to ask about, comma-separated (default: all the scan ran)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the question picks and candidate order."),
    no_face: NoFace = typer.Option(NoFace.skip, "--no-face", help="Gallery photos without a detected face: skip, or center (photos framed on one face)."),
) -> None:
    """Make a survey from SCAN_DIR: reconstructions beside an engine's top-K photos."""
    from fvr_audit.cli.progress import progress_reporter
    from fvr_audit.survey.build import BuildSettings, build_survey

    settings = BuildSettings(
        k=k, per_method=per_method, attention_checks=attention, seed=seed, engine=engine,
        methods=None if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip()),
        no_face=no_face.value,
    )
    with progress_reporter(quiet=False) as progress:
        manifest = build_survey(scan_dir, gallery, output, settings, progress=progress.phase)
    attention_count = sum(1 for q in manifest.questions if q.kind.value == "attention")
    typer.echo(
        f"survey: {output} ({len(manifest.questions)} questions: {len(manifest.questions) - attention_count} "
        f"reconstructions of {', '.join(manifest.methods)}, {attention_count} attention checks; K = {manifest.k})",
        err=True,
    )
    typer.echo(f"next: fvr-audit survey tokens add 20 {output}", err=True)


@tokens_app.command("add")
@handle_errors
def tokens_add_command(
    count: int = typer.Argument(..., metavar="N", help="Participants to invite."),
    folder: Path = typer.Argument(..., metavar="SURVEY_DIR", help="The survey folder."),
    base_url: str = typer.Option(
        "http://127.0.0.1:8765", "--base-url", help="Where participants reach `survey serve` (your proxy's https address in a real study)."
    ),
) -> None:
    """Add N participants; print one link per line on stdout (give one to each person)."""
    from fvr_audit.survey.manifest import load_manifest
    from fvr_audit.survey.store import SurveyStore

    if not 1 <= count <= 100_000:
        raise InputError(f"N {count}: give 1 to 100000 participants")
    if not base_url.startswith(("http://", "https://")):
        raise InputError(f"--base-url {base_url}: expected an http:// or https:// address")
    load_manifest(folder)
    tokens = SurveyStore(folder).add_participants(count)
    base = base_url.rstrip("/")
    # Plain writes, not rich: a link must never be wrapped or shortened, in a terminal or a file.
    sys.stdout.write("".join(f"{base}/s/{token}/\n" for token in tokens))


@app.command("serve")
@handle_errors
def serve_command(
    folder: Path = typer.Argument(..., metavar="SURVEY_DIR", help="The survey folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No request log."),
) -> None:
    """Serve the survey until interrupted (Ctrl-C). Answers are saved as they are given."""
    from fvr_audit.survey.server import serve

    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: expected 0 to 65535")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        typer.echo(
            f"warning: listening on {host}: reachable from other machines over plain http; put an https proxy in front",
            err=True,
        )

    def ready(url: str) -> None:
        typer.echo(f"serving {folder} at {url}/s/<token>/ (links: fvr-audit survey tokens add N {folder}); Ctrl-C stops", err=True)
        print(url, flush=True)

    try:
        serve(folder, host, port, on_ready=ready, log=None if quiet else (lambda line: print(line, file=sys.stderr)))
    except OSError as error:
        raise InputError(f"--host {host} --port {port}: cannot listen ({error.strerror or error})") from None


@app.command("analyze")
@handle_errors
def analyze_command(
    folder: Path = typer.Argument(..., metavar="SURVEY_DIR", help="The survey folder."),
    scan: Optional[Path] = typer.Option(None, "--scan", help="Also write SCAN/metric2.json and re-render that scan's report with a Metric 2 section."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    resamples: int = typer.Option(2000, "--resamples", help="Bootstrap resamples."),
    max_attention_failures: int = typer.Option(0, "--max-attention-failures", help="Failed attention checks a participant may have and still count."),
    as_json: bool = typer.Option(False, "--json", help="Print analysis.json to stdout."),
) -> None:
    """Matching accuracy per method against 1/K, quartiles, confidence; writes SURVEY_DIR/analysis.json."""
    from fvr_audit.io.atomic import atomic_write_text
    from fvr_audit.io.outputs import check_output_file, writing
    from fvr_audit.survey.analyze import analyze_folder
    from fvr_audit.survey.manifest import ANALYSIS_NAME
    from fvr_audit.survey.scan_report import attach_to_scan

    if resamples < 100:
        raise InputError(f"--resamples {resamples}: use at least 100 for a 95% interval")
    if max_attention_failures < 0:
        raise InputError(f"--max-attention-failures {max_attention_failures}: cannot be negative")
    check_output_file(folder / ANALYSIS_NAME)
    if scan is not None:
        check_output_file(scan / "metric2.json")
    analysis = analyze_folder(folder, seed=seed, resamples=resamples, max_attention_failures=max_attention_failures)
    text = json.dumps(analysis, indent=2, allow_nan=False) + "\n"
    with writing(folder):
        atomic_write_text(folder / ANALYSIS_NAME, text)
    if scan is not None:
        written = attach_to_scan(scan, analysis)
        typer.echo(f"report: {written.get('html')}", err=True)
    if as_json:
        sys.stdout.write(text)
    else:
        _print_summary(analysis)


def _print_summary(analysis: dict) -> None:
    from fvr_audit.cli.console import TextTable, print_table, stdout_console
    from fvr_audit.report.render import ci, pct

    people = analysis["participants"]
    typer.echo(
        f"participants: {people['included']} counted of {people['answered']} who answered "
        f"({people['excluded_attention']} left out for attention checks); chance 1/K = {pct(analysis['baseline'])}"
    )
    table = TextTable.build(
        "Metric 2: matching accuracy per method",
        ["method", "accuracy", "95% interval", "answers", "participants", "confident", "median s"],
        [
            [
                m["method"], pct(m["accuracy"]), ci(m["accuracy_ci"]), str(m["answers"]), str(m["participants"]),
                pct(m["confidence"]["confident"]), "—" if m["median_seconds"] is None else f"{m['median_seconds']:.1f}",
            ]
            for m in analysis["methods"]
        ],
    )
    print_table(table, stdout_console)


@app.command("export")
@handle_errors
def export_command(
    folder: Path = typer.Argument(..., metavar="SURVEY_DIR", help="The survey folder."),
    output: Path = typer.Option(..., "--output", "-o", help="CSV file to write."),
    what: ExportWhat = typer.Option(ExportWhat.answers, "--what", help="answers (with the answer key: keep private) or questions (to rebuild the survey elsewhere)."),
) -> None:
    """Write the stored answers (or the questions) as CSV."""
    from fvr_audit.io.atomic import atomic_write_text
    from fvr_audit.io.outputs import check_output_file, writing
    from fvr_audit.survey.csvio import answers_csv, questions_csv
    from fvr_audit.survey.manifest import load_manifest
    from fvr_audit.survey.store import SurveyStore

    manifest = load_manifest(folder)
    check_output_file(output)
    text = questions_csv(manifest) if what is ExportWhat.questions else answers_csv(manifest, SurveyStore(folder).answers())
    with writing(output):
        atomic_write_text(output, text)
    typer.echo(f"wrote {output} ({text.count(chr(10)) - 1} rows)", err=True)


@app.command("import")
@handle_errors
def import_command(
    folder: Path = typer.Argument(..., metavar="SURVEY_DIR", help="The survey folder."),
    csv_file: Path = typer.Argument(..., metavar="CSV", help="Answers: columns token, question, choice (1..K or none), confidence (1-5); seconds, answered_at optional."),
) -> None:
    """Add answers collected elsewhere (all rows or none)."""
    from fvr_audit.survey.csvio import import_answers
    from fvr_audit.survey.manifest import load_manifest

    manifest = load_manifest(folder)
    count = import_answers(folder, csv_file, manifest)
    typer.echo(f"imported {count} answers into {folder}", err=True)
