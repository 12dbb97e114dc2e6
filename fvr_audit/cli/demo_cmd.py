"""``fvr-audit demo``: the embedded default audit, offline, from the repository alone."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvr_audit.cli.ci_summary import summary_markdown, summary_table
from fvr_audit.cli.common import console, handle_errors
from fvr_audit.cli.console import print_table
from fvr_audit.cli.progress import progress_reporter
from fvr_audit.errors import ExitCode

#: Demo settings chosen so the whole demo finishes within 10 minutes on 2 CPU cores; real audits
#: should use the (stronger) defaults of ``fvr-audit scan``.
DEMO_METHOD_SETTINGS: dict[str, dict] = {
    # 20 x 32 = 640 queries per target: 38,400 dlib embeddings for 60 targets.
    "eigenfaces": {"preset": "fast", "iterations": 20},
    "gradient": {"preset": "fast"},
}
DEMO_NS = (50, 100, 500, 1000)


def demo_sources(directory: Path):
    """The shipped demo database and, per engine, its gallery and the targets' original vectors."""
    from fvr_audit.audit.scan import GallerySources

    return directory / "demo-targets.npz", GallerySources(
        files={
            "local:dlib-resnet128": directory / "demo-gallery-dlib-resnet128.npz",
            "local:faceres-1024": directory / "demo-gallery-faceres-1024.npz",
        },
        originals={"local:faceres-1024": directory / "demo-originals-faceres-1024.npz"},
    )


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        output: Path = typer.Option(Path("fvr-audit-demo"), "--output", "-o", help="Folder for the demo report."),
        pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also render report.pdf."),
        images_root: Optional[Path] = typer.Option(
            None, "--images-root", help="LFW folder, if you have it: shows the original photos beside reconstructions."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
        summary_md: Optional[Path] = typer.Option(
            None, "--summary-md", help="Also write the verdict and summary table as Markdown (a CI job summary page)."
        ),
    ) -> None:
        """Audit the shipped demo database (60 held-out LFW identities) with every installed reconstructor."""
        import dataclasses

        from fvr_audit.audit.scan import ScanSettings, run_scan
        from fvr_audit.cli.scan_cmd import write_scan_outputs
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.atomic import atomic_write_text, check_writable
        from fvr_audit.model_store import model_path, models_dir
        from fvr_audit.reconstructors.registry import available_reconstructors

        if summary_md is not None:
            check_writable(summary_md)
        targets, sources = demo_sources(models_dir() / "demo")
        for path in [targets, *sources.files.values(), *sources.originals.values()]:
            model_path(str(path.relative_to(models_dir())))  # present and matching the manifest
        if images_root is not None:
            sources = dataclasses.replace(sources, images_root=images_root)
        methods = available_reconstructors()
        if not methods:
            console.print("No reconstructors are installed yet: only the reference rows (original, random) are measured.")
        settings = ScanSettings(
            sample=60,
            ns=DEMO_NS,
            methods=tuple(methods),
            method_settings={m: s for m, s in DEMO_METHOD_SETTINGS.items() if m in methods},
        )
        with progress_reporter(quiet=quiet) as progress:
            outcome = run_scan(targets, get_extractor("dlib-resnet128"), settings, sources, progress=progress.phase)
        written = write_scan_outputs(outcome, output, pdf=pdf, redact=False)
        results = outcome.results
        print_table(summary_table(results), console)
        console.print(f"[bold]verdict: {results.verdict.level.value.upper()}[/] {results.verdict.rule}")
        console.print(f"demo finished in {results.timings['total_seconds']:.0f} s")
        typer.echo(f"report: {written.get('html', output / 'results.json')}", err=True)
        if summary_md is not None:
            atomic_write_text(summary_md, summary_markdown(results))
        if results.verdict.level.value == "not-assessed":
            raise typer.Exit(int(ExitCode.OK))
