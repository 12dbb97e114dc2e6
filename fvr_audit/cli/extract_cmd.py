"""``fvr-audit extract DIR -o vectors.npz``: build a vector database from photos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from fvr_audit import __version__
from fvr_audit.alignment.aligner import FaceStatus, NoFacePolicy
from fvr_audit.cli import options as opt
from fvr_audit.cli.common import console, handle_errors
from fvr_audit.cli.console import Align, Column, TextTable, print_table
from fvr_audit.cli.progress import progress_reporter
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import ExtractorOptions


def register(app: typer.Typer) -> None:
    @app.command("extract")
    @handle_errors
    @opt.extractor_overrides
    def extract(
        images: Path = typer.Argument(..., help="Folder of photos: DIR/<identity>/<image> (labelled) or flat."),
        output: Path = typer.Option(..., "--output", "-o", help="Vector database to write (.npz)."),
        extractor: str = opt.ExtractorArg,
        aligned: bool = typer.Option(False, "--aligned", help="Inputs are already aligned crops: skip detection."),
        no_face: NoFacePolicy = typer.Option(
            NoFacePolicy.SKIP,
            "--no-face",
            help="Images without a detected face: skip them, or place landmarks in a centred box (centred portraits).",
        ),
        workers: Optional[int] = typer.Option(None, "--workers", help="Detection processes (default: cores)."),
        compress: bool = typer.Option(False, "--compress", help="Compress the .npz (then it cannot be memory-mapped)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
        extractor_options: ExtractorOptions = None,  # type: ignore[assignment]  # from @opt.extractor_overrides
    ) -> None:
        """Detect, align and embed every face photo under IMAGES; write vectors, labels and paths."""
        from fvr_audit.extraction import discover_images, embed_records
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.npz import save_npz
        from fvr_audit.io.outputs import check_output_file, writing

        if output.suffix.lower() != ".npz":
            raise InputError(f"{output}: output must end in .npz (vectors, labels and paths are stored together)")
        if output.exists() and output.is_dir():
            raise InputError(f"{output}: is a folder; give a file name ending in .npz")
        check_output_file(output)  # before the work, not after an hour of it
        records, labelled = discover_images(images)
        options = extractor_options
        model = get_extractor(extractor, options)
        opt.announce(model)
        if not quiet:
            console.print(
                f"{len(records)} images ({'identity folders' if labelled else 'flat folder, no labels'}) -> "
                f"{model.name} ({model.dim}-d, {model.geometry.describe()})"
            )

        with progress_reporter(quiet=quiet) as progress:
            advance = progress.phase("align + embed", len(records))
            run = embed_records(
                records,
                [model],
                no_face=no_face,
                aligned_input=aligned,
                workers=workers,
                on_progress=advance,
            )

        unusable = len(records) - len(run.kept)
        if len(run.kept) == 0:
            hint = "; the inputs look pre-cropped: try --aligned" if not aligned else ""
            raise InputError(
                f"{images}: no usable face in {len(records)} images "
                f"({_count_text(run.counts)}){hint}; nothing was written"
            )
        kept = [records[i] for i in run.kept]
        _check_rows(run.vectors[model.name], kept, model.name, output)
        arrays = {
            "vectors": run.vectors[model.name],
            "paths": np.array([r.relative for r in kept]),
            "extractor": np.array(model.name),
            "fvr_audit_version": np.array(__version__),
        }
        if labelled:
            arrays["labels"] = np.array([r.label for r in kept])
        if model.info.sha256:
            arrays["extractor_sha256"] = np.array(model.info.sha256)
        with writing(output):
            save_npz(output, compress=compress, **arrays)

        if not quiet:
            rows = [(status.value, str(run.counts[status])) for status in FaceStatus if run.counts.get(status)]
            title = f"{images}: {len(records)} images in {run.seconds:.1f} s"
            print_table(TextTable.build(title, ("outcome", Column("images", Align.RIGHT)), rows), console)
            for i, reason in enumerate(run.reasons):
                if reason:
                    console.print(f"  skipped {records[i].relative}: {reason}")
                    break
        typer.echo(
            f"wrote {output}: {len(run.kept)} vectors ({model.dim}-d); "
            f"{unusable} of {len(records)} images had no usable face"
            + (f" ({_count_text(run.counts, usable=False)})" if unusable else ""),
            err=True,
        )


def _check_rows(vectors: np.ndarray, kept, model_name: str, output: Path) -> None:
    """The row checks every reader runs (`vectors inspect`, scan), before writing: a model that
    outputs NaN or zeros must not leave a database that every later command rejects."""
    from fvr_audit.vectors import checks

    scan = checks.scan_rows(np.ascontiguousarray(vectors, dtype=np.float32))
    for finding, what in ((scan.nonfinite, "NaN or Inf"), (scan.zero, "an all-zero vector")):
        if finding.count:
            raise InputError(
                f"{model_name}: output {what} for {finding.count} of {len(kept)} photos (first: "
                f"{kept[finding.first].relative}); the model is broken or its preprocessing wrong; "
                f"nothing was written to {output}"
            )


def _count_text(counts, *, usable: bool | None = None) -> str:
    return ", ".join(
        f"{status.value}: {n}"
        for status, n in counts.items()
        if n and (usable is None or status.usable == usable)
    )
