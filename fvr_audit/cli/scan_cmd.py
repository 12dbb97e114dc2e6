"""``fvr-audit scan VECTORS --extractor F``: reconstruct, re-identify, measure, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from fvr_audit.cli import options as opt
from fvr_audit.cli.ci_summary import junit_xml, summary_markdown, summary_table
from fvr_audit.cli.common import console, handle_errors, stdout_console
from fvr_audit.cli.console import print_table
from fvr_audit.cli.progress import progress_reporter
from fvr_audit.errors import ExitCode, InputError
from fvr_audit.extractors.registry import ExtractorOptions


def parse_int_list(text: str, flag: str) -> tuple[int, ...]:
    """'1,5,10' -> (1, 5, 10).

    >>> parse_int_list("1, 5,25", "--k")
    (1, 5, 25)
    """
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected comma-separated whole numbers") from None
    if not values:
        raise InputError(f"{flag} {text!r}: give at least one value")
    return tuple(sorted(set(values)))


def split_engine_assignment(item: str, flag: str, expected: str) -> tuple[str, str]:
    """'faceres-1024=g.npz' -> ('local:faceres-1024', 'g.npz'): an engine spec (``local:`` by default) and its value.

    >>> split_engine_assignment("aws:rekognition=90", "--engine-threshold", "ENGINE=VALUE")
    ('aws:rekognition', '90')
    """
    name, sep, value = item.rpartition("=")
    if not sep or not name or not value:
        raise InputError(f"{flag} {item!r}: expected {expected}")
    return (name if ":" in name else f"local:{name}"), value


def parse_assignments(items: list[str], flag: str) -> dict[str, Path]:
    """['local:faceres-1024=g.npz'] -> {'local:faceres-1024': Path('g.npz')}."""
    expected = "ENGINE=FILE, e.g. local:faceres-1024=gallery.npz"
    return {name: Path(value) for name, value in (split_engine_assignment(i, flag, expected) for i in items)}


def parse_engine_thresholds(items: list[str]) -> dict[str, float | str]:
    """['local:faceres-1024=fmr', 'aws:rekognition=90'] -> {'local:faceres-1024': 'fmr', 'aws:rekognition': 90.0}.

    >>> parse_engine_thresholds(["faceres-1024=fmr", "aws:rekognition=90"])
    {'local:faceres-1024': 'fmr', 'aws:rekognition': 90.0}
    """
    parsed: dict[str, float | str] = {}
    for item in items:
        name, value = split_engine_assignment(item, "--engine-threshold", "ENGINE=VALUE or ENGINE=fmr, e.g. aws:rekognition=90")
        if value.strip().lower() == "fmr":
            parsed[name] = "fmr"
            continue
        try:
            parsed[name] = float(value)
        except ValueError:
            raise InputError(f"--engine-threshold {item!r}: {value!r} is neither a number nor 'fmr'") from None
    return parsed


def parse_method_options(items: list[str]) -> dict[str, dict]:
    """['eigenfaces.iterations=200'] -> {'eigenfaces': {'iterations': 200}}.

    >>> parse_method_options(["eigenfaces.iterations=200", "gradient.lr=0.05", "gradient.flip=false"])
    {'eigenfaces': {'iterations': 200}, 'gradient': {'lr': 0.05, 'flip': False}}
    """
    settings: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise InputError(f"--set {item!r}: expected METHOD.SETTING=VALUE, e.g. eigenfaces.iterations=200")
        settings.setdefault(method, {})[name.replace("-", "_")] = _scalar(value)
    return settings


def _scalar(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def register(app: typer.Typer) -> None:
    @app.command("scan")
    @handle_errors
    @opt.extractor_overrides
    def scan(
        vectors: Path = typer.Argument(..., help="Vector database (.npy or .npz with labels) made by the extractor F."),
        extractor: str = opt.ExtractorArg,
        output: Path = typer.Option(Path("fvr-audit-report"), "--output", "-o", help="Folder for results.json and the reports."),
        methods: Optional[str] = typer.Option(None, "--methods", help="Reconstruction methods, comma-separated (default: all installed)."),
        engines: str = typer.Option(
            "local:dlib-resnet128,local:faceres-1024", "--engine", help="Secondary recognizers F', comma-separated."
        ),
        gallery: list[str] = typer.Option(
            [], "--gallery", help="DIR of identity folders (photos, embedded by every engine), or ENGINE=vectors.npz; repeatable."
        ),
        originals: list[str] = typer.Option(
            [], "--originals", help="ENGINE=vectors.npz: the target photos' vectors in that engine (matched by paths)."
        ),
        images_root: Optional[Path] = typer.Option(
            None, "--images-root", help="Folder against which the database's paths give the targets' original photos."
        ),
        sample: int = typer.Option(100, "--sample", help="Targets to reconstruct (one per identity, seeded)."),
        seed: int = typer.Option(0, "--seed", help="Seed of target sampling, attacks and gallery subsets."),
        k: str = typer.Option("1,5,10,25", "--k", help="Top-K values."),
        n: str = typer.Option("50,100,500,1000,5000", "--n", help="Enrolled-identity counts N (capped by the gallery)."),
        draws: int = typer.Option(5, "--draws", help="Random gallery subsets per N."),
        gate_k: int = typer.Option(1, "--gate-k", help="K of the verdict and of --fail-on-tpr."),
        gate_n: Optional[int] = typer.Option(None, "--gate-n", help="N of the verdict and of --fail-on-tpr (default: largest N)."),
        fail_on_tpr: Optional[float] = typer.Option(
            None, "--fail-on-tpr", help="Exit 1 when any attack's tpr at (gate K, gate N) exceeds this (CI gating)."
        ),
        fmr: float = typer.Option(1e-3, "--fmr", help="False-match rate of the verification view."),
        engine_threshold: list[str] = typer.Option(
            [], "--engine-threshold",
            help="ENGINE=VALUE (on the engine's own score scale) or ENGINE=fmr (set at --fmr on impostor pairs): "
            "below it the engine answers 'no match'; repeatable. Default: local engines rank every identity, "
            "cloud engines use their service default.",
        ),
        pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also render report.pdf."),
        redact: bool = typer.Option(False, "--redact", help="Pixelate every face in the report (for wide circulation)."),
        as_json: bool = typer.Option(False, "--json", help="Print results.json to stdout."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary table."),
        set_: list[str] = typer.Option([], "--set", help="Method setting METHOD.NAME=VALUE, e.g. eigenfaces.iterations=200."),
        allow_duplicates: bool = typer.Option(False, "--allow-duplicates", help="Warn about duplicated rows instead of failing."),
        models: list[Path] = typer.Option(
            [], "--models", help="Extra models folder with trained reconstructors (from `fvr-audit train --export`); repeatable."
        ),
        calibration: Optional[Path] = typer.Option(
            None, "--calibration", help="Face photos to map F's vectors into dlib-resnet128 space when F has no trained reconstructor."
        ),
        calibration_faces: int = typer.Option(
            2000, "--calibration-faces",
            help="Without --calibration: synthetic faces the tool draws and F embeds to adapt the shipped generators (0: off).",
        ),
        fine_tune_steps: int = typer.Option(
            200, "--fine-tune-steps",
            help="White-box F without generators of its own: tune the adapted generators to F on the database's "
            "other rows (never the targets'), this many steps each (0: off).",
        ),
        rows: Optional[str] = typer.Option(
            None, "--rows", help="Audit exactly these database rows (0-based, comma-separated) instead of --sample random ones."
        ),
        query_budget: Optional[int] = typer.Option(
            None, "--query-budget",
            help="Queries to F the whole scan may send (checks, calibration, attacks, measuring); "
            "what is left after the fixed costs is the eigenfaces attack's, per target.",
        ),
        summary_md: Optional[Path] = typer.Option(
            None, "--summary-md", help="Also write the verdict and summary table as Markdown (a CI job summary page)."
        ),
        junit: Optional[Path] = typer.Option(
            None, "--junit", help="Also write JUnit XML, one test per attack x engine at the gate (needs --fail-on-tpr)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run",
            help="Print the requests each cloud engine would get and their estimated price, then stop (no credentials, no calls).",
        ),
        max_cost: Optional[float] = typer.Option(
            None, "--max-cost", help="Stop before the first cloud request when the estimated price is above this many USD."
        ),
        run_id: Optional[str] = typer.Option(
            None, "--run-id",
            help="Name and tag of the cloud engines' collection / person group (default: a fresh one); the same id resumes an interrupted enrolment.",
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Write into a non-empty -o folder, replacing an earlier run's outputs (other files are kept)."
        ),
        executor: str = opt.ExecutorOpt,
        workers: Optional[int] = opt.WorkersOpt,
        extractor_options: ExtractorOptions = None,  # type: ignore[assignment]  # from @opt.extractor_overrides
    ) -> None:
        """Reconstruct faces from VECTORS, re-identify them with each engine F', write results and reports."""
        from fvr_audit.audit.plan import cloud_plans
        from fvr_audit.audit.scan import GallerySources, ScanSettings, check_settings, run_scan
        from fvr_audit.engines.cloud import check_run_id
        from fvr_audit.engines.cost import check_cost, render_plans
        from fvr_audit.engines.registry import check_cloud_access, is_cloud_engine
        from fvr_audit.execution import parse_executor, preflight
        from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS, get_extractor
        from fvr_audit.io.atomic import atomic_write_text, check_writable
        from fvr_audit.io.outputs import check_output_folder, clear_owned

        if fail_on_tpr is not None and not 0 <= fail_on_tpr <= 1:
            raise InputError(f"--fail-on-tpr {fail_on_tpr}: must be a rate between 0 and 1")
        if junit is not None and fail_on_tpr is None:
            raise InputError(f"--junit {junit}: needs --fail-on-tpr, the tpr each gate is tested against")
        execution = parse_executor(executor, workers)
        folders = [Path(g) for g in gallery if "=" not in g]
        if len(folders) > 1:
            raise InputError(f"--gallery: give at most one folder of photos (got {len(folders)})")
        settings = ScanSettings(
            sample=sample,
            seed=seed,
            ks=parse_int_list(k, "--k"),
            ns=parse_int_list(n, "--n"),
            draws=draws,
            methods=None if methods is None else tuple(m.strip() for m in methods.split(",") if m.strip()),
            engines=tuple(e.strip() for e in engines.split(",") if e.strip()),
            gate_k=gate_k,
            gate_n=gate_n,
            fmr=fmr,
            method_settings=parse_method_options(set_),
            allow_duplicates=allow_duplicates,
            model_dirs=tuple(models),
            calibration=calibration,
            calibration_faces=calibration_faces,
            fine_tune_steps=fine_tune_steps,
            query_budget=query_budget,
            rows=None if rows is None else parse_int_list(rows, "--rows"),
            engine_thresholds=parse_engine_thresholds(engine_threshold),
            run_id=None if run_id is None else check_run_id(run_id),
            execution=execution,
            work_dir=output / WORK_DIR,
        )
        check_settings(settings)
        sources = GallerySources(
            folder=folders[0] if folders else None,
            files=parse_assignments([g for g in gallery if "=" in g], "--gallery"),
            originals=parse_assignments(originals, "--originals"),
            images_root=images_root,
        )
        if max_cost is not None and max_cost < 0:
            raise InputError(f"--max-cost {max_cost}: must be a price in USD, 0 or more")
        if dry_run or max_cost is not None:
            # Before the extractor is even opened: a dry run sends nothing, anywhere.
            plans = cloud_plans(settings, sources, _planned_targets(vectors, settings))
            if dry_run:
                if plans:
                    render_plans(plans, stdout_console)
                else:
                    typer.echo("dry run: no cloud engine in --engine; nothing would be billed")
                return
            check_cost(plans, max_cost)
        for spec in settings.engines:
            if is_cloud_engine(spec):
                check_cloud_access(spec)
        # Before any work: a scan can take an hour, and finding then that -o is unusable loses it.
        # A folder holding only a killed scan's finished units is where that scan resumes.
        check_output_folder(output, overwrite=overwrite, resumable=(WORK_DIR,))
        preflight(execution)
        for path in (summary_md, junit):
            if path is not None:
                check_writable(path)
        options = extractor_options
        model = get_extractor(extractor, options)
        if model.name in BUILTIN_EXTRACTORS and extractor not in BUILTIN_EXTRACTORS:
            typer.echo(
                f"{extractor}: byte-for-byte the shipped {model.name} (same sha256): audited as that built-in, "
                "with its exact preprocessing and its shipped generators",
                err=True,
            )
        opt.announce(model)

        with progress_reporter(quiet=quiet) as progress:
            outcome = run_scan(
                vectors, model, settings, sources, progress=progress.phase,
                on_message=lambda line: None if quiet else typer.echo(line, err=True),
            )
        written = write_scan_outputs(outcome, output, pdf=pdf, redact=redact)
        clear_owned(output, (WORK_DIR,))  # the outputs are complete: nothing left to resume
        results = outcome.results
        if as_json:
            sys.stdout.write(results.to_json())
        if not quiet:
            print_table(summary_table(results), console)
            console.print(f"[bold]verdict: {results.verdict.level.value.upper()}[/] {results.verdict.rule}")
            for note in results.notes:
                console.print(f"note: {note}")
        typer.echo(f"report: {written.get('html', output / 'results.json')}", err=True)
        if summary_md is not None:
            atomic_write_text(summary_md, summary_markdown(results, limit=fail_on_tpr))
        if junit is not None:
            atomic_write_text(junit, junit_xml(results, fail_on_tpr))
        if fail_on_tpr is not None:
            exceeded = gate_exceeded(results, fail_on_tpr)
            if exceeded:
                typer.echo(f"fail-on-tpr: {exceeded}", err=True)
                raise typer.Exit(int(ExitCode.RISK_ABOVE_THRESHOLD))


#: Inside ``-o``: each attack's finished work units until the scan's outputs are written.
WORK_DIR = ".work"


def _planned_targets(vectors: Path, settings) -> int:
    """Targets a scan of ``vectors`` would reconstruct (read from the file's header and labels only)."""
    from fvr_audit.vectors import load_vectors

    if settings.rows is not None:
        return len(settings.rows)
    db = load_vectors(vectors, allow_duplicates=True)
    people = len(np.unique(np.asarray(db.labels))) if db.has_labels else db.n
    return min(settings.sample, people)


def gate_exceeded(results, limit: float) -> str | None:
    """Why the CI gate fails (an attack's tpr at the gate above ``limit``, or no attack measured there), or None."""
    from fvr_audit.audit.verdict import gate_failure

    return gate_failure(results.records, results.settings["gate_k"], results.settings["gate_n"], limit)


def owned_outputs() -> tuple[str, ...]:
    """The entries of an output folder that a scan writes (and replaces with --overwrite)."""
    try:
        from fvr_audit.report.formats import FORMATTERS

        reports = tuple(dict.fromkeys(f.filename for f in FORMATTERS.values()))
    except ImportError:
        reports = ()
    # metric2.json: a survey's analysis of an earlier run's faces (fvr-audit survey analyze --scan) is stale now.
    return tuple(dict.fromkeys(
        ("results.json", *reports, "report.html", "report.pdf", "reconstructions", "originals", "metric2.json")
    ))


def write_scan_outputs(outcome, output: Path, *, pdf: bool, redact: bool) -> dict[str, Path]:
    """results.json, reconstructions/<method>/<target>.png, originals/<target>.png (the aligned photos,
    when the scan had them), report.html (+ .pdf); all 0600, atomic.

    An earlier run's outputs in ``output`` are removed first (a stale report.pdf or a PNG of another
    target must not pass for this run's); anything else in the folder is left alone.
    """
    from fvr_audit.io.outputs import writing

    with writing(output):
        return _write_scan_outputs(outcome, output, pdf=pdf, redact=redact)


def _write_scan_outputs(outcome, output: Path, *, pdf: bool, redact: bool) -> dict[str, Path]:
    from fvr_audit.io.atomic import atomic_write_bytes, atomic_write_text
    from fvr_audit.io.outputs import clear_owned, private_mkdir

    if output.is_symlink():
        raise InputError(f"{output}: is a symbolic link; give a real folder for the outputs")
    private_mkdir(output)
    clear_owned(output, owned_outputs())
    written: dict[str, Path] = {}
    for method, images in outcome.reconstructions.items():
        for target, image in zip(outcome.results.targets, images):
            atomic_write_bytes(output / "reconstructions" / method / f"{target.index:06d}.png", _png(image))
    # The aligned photos too, so that the report can be rendered again from this folder (survey analyze --scan).
    for position, image in (outcome.originals or {}).items():
        atomic_write_bytes(output / "originals" / f"{outcome.results.targets[position].index:06d}.png", _png(image))
    try:
        from fvr_audit.report import ReportFormat, ReportImages, render_report
    except ImportError:
        atomic_write_text(output / "results.json", outcome.results.to_json())
        written["json"] = output / "results.json"
        return written
    formats = {ReportFormat.JSON, ReportFormat.HTML} | ({ReportFormat.PDF} if pdf else set())
    # Keyed by the target's database row, so a face can never be shown under another name.
    images = ReportImages.from_arrays(
        outcome.reconstructions,
        [target.index for target in outcome.results.targets],
        originals=outcome.originals or None,
    )
    for fmt, path in render_report(outcome.results, output, images=images, formats=formats, redact=redact).items():
        written[fmt.value] = path
    return written


def _png(image) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
