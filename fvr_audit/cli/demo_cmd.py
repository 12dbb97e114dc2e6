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

#: The demo must finish in under 3 minutes on 2 CPU cores with every attack: a newcomer's first
#: command. Real audits should use the (stronger) defaults of ``fvr-audit scan``.
#: 16 of the 60 demo identities: the verdict's interval still supports its level (the strongest
#: attacks re-identify nearly all of them, 95% lower bound far above the 10% high-risk line).
#: Eigenfaces and gradient, each about half of the time, cost in proportion to the targets.
DEMO_TARGETS = 16
DEMO_METHOD_SETTINGS: dict[str, dict] = {
    # 129 queries per target: 2,064 dlib embeddings in all, batched 256 per call.
    "eigenfaces": {"preset": "demo"},
    # the same search from the naive generator's face, on half the demo budget (4 x 16 + 1 = 65
    # queries per target) and with small steps: it starts from a face F already reads as the
    # person, and the demo's large first steps (14 px RMS) would walk away from it. Its surrogate
    # guidance (mobileface-256, not a demo judge) uses the map shipped for dlib-resnet128: no queries
    "refine": {"preset": "demo", "iterations": 4, "step": 2.0, "step_final": 1.0},
    # At most 24 Adam steps, all targets in one batch, plateau stop.
    "gradient": {"preset": "demo"},
}
#: The demo galleries enrol 600 identities each: N = 600 is the gate.
DEMO_NS = (50, 100, 300, 600)
#: Phases after the reconstructions, named as the scan's progress names them.
AFTER_RECONSTRUCTION = ("re-identify", "match against the database", "report")


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


def demo_methods(extractor) -> list[str]:
    """Every installed attack that can run against the demo's F, in registry order (``transfer``
    stands in for missing gradients, which dlib-resnet128 has).

    >>> from fvr_audit.extractors.registry import get_extractor
    >>> demo_methods(get_extractor("dlib-resnet128"))
    ['eigenfaces', 'gradient', 'nbnet', 'vec2face', 'naive', 'refine']
    """
    from fvr_audit.reconstructors.registry import available_reconstructors, get_reconstructor

    return [m for m in available_reconstructors() if get_reconstructor(m).supports(extractor) is None]


class PhasePlan:
    """Names each phase as it starts with its place in the plan and what is left after it.

    Wraps a progress factory (``progress(description, total)``): the scan names its phases
    ("reconstruct: gradient", "re-identify: local:faceres-1024"); the plan prefixes them.

    >>> plan = PhasePlan(["eigenfaces", "gradient"])
    >>> plan.describe("reconstruct: eigenfaces")
    '1/5 reconstruct: eigenfaces (left: gradient, re-identify, match against the database, report)'
    >>> plan.describe("re-identify: local:dlib-resnet128")
    '3/5 re-identify: local:dlib-resnet128 (left: match against the database, report)'
    """

    def __init__(self, methods) -> None:
        self.phases = [*methods, *AFTER_RECONSTRUCTION]

    def position(self, description: str) -> int | None:
        kind, _, name = description.partition(": ")
        key = name if kind == "reconstruct" else kind
        return self.phases.index(key) if key in self.phases else None

    def describe(self, description: str) -> str:
        at = self.position(description)
        if at is None:
            return description
        left = self.phases[at + 1 :]
        return f"{at + 1}/{len(self.phases)} {description} (left: {', '.join(left) or 'nothing'})"

    def wrap(self, progress):
        return lambda description, total: progress(self.describe(description), total)


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
        """Audit the shipped demo database (16 of its 60 held-out LFW identities) with every installed reconstructor."""
        import dataclasses

        from fvr_audit.audit.scan import ScanSettings, run_scan
        from fvr_audit.cli.scan_cmd import write_scan_outputs
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.atomic import atomic_write_text, check_writable
        from fvr_audit.model_store import model_path, models_dir

        if summary_md is not None:
            check_writable(summary_md)
        targets, sources = demo_sources(models_dir() / "demo")
        for path in [targets, *sources.files.values(), *sources.originals.values()]:
            model_path(str(path.relative_to(models_dir())))  # present and matching the manifest
        if images_root is not None:
            sources = dataclasses.replace(sources, images_root=images_root)
        dlib = get_extractor("dlib-resnet128")
        methods = demo_methods(dlib)
        if not methods:
            console.print("No reconstructors are installed yet: only the reference rows (original, random) are measured.")
        plan = PhasePlan(methods)
        console.print(
            f"demo: {DEMO_TARGETS} targets; {len(methods)} attacks ({', '.join(methods) or 'none'}), "
            f"then {', '.join(AFTER_RECONSTRUCTION)}; about 2 minutes on 2 idle cores"
        )
        settings = ScanSettings(
            sample=DEMO_TARGETS,
            ns=DEMO_NS,
            methods=tuple(methods),
            method_settings={m: s for m, s in DEMO_METHOD_SETTINGS.items() if m in methods},
        )
        with progress_reporter(quiet=quiet) as progress:
            outcome = run_scan(targets, dlib, settings, sources, progress=plan.wrap(progress.phase))
        console.print(plan.describe("report: html" + (", pdf" if pdf else "")))
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
