"""``fvr-audit adapter --extractor F --calibration DIR -o adapter.npz``: map F's vectors to dlib-resnet128's."""

from __future__ import annotations

from pathlib import Path

import typer

from fvr_audit.cli import options as opt
from fvr_audit.cli.common import console, handle_errors
from fvr_audit.cli.progress import progress_reporter
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import ExtractorOptions


def register(app: typer.Typer) -> None:
    @app.command("adapter")
    @handle_errors
    @opt.extractor_overrides
    def adapter(
        calibration: Path = typer.Option(..., "--calibration", help="Folder of face photos (identity folders help cross-validation)."),
        output: Path = typer.Option(..., "--output", "-o", help="Adapter file to write (.npz)."),
        extractor: str = opt.ExtractorArg,
        target: str = typer.Option("dlib-resnet128", "--target", help="Extractor whose trained reconstructors will be reused."),
        extractor_options: ExtractorOptions = None,  # type: ignore[assignment]  # from @opt.extractor_overrides
    ) -> None:
        """Fit a ridge map from F's vectors to the target extractor's on calibration photos (for `reconstruct --adapter`)."""
        from fvr_audit.extraction import discover_images
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.outputs import check_output_file, writing
        from fvr_audit.reconstructors.parametric.adapter import fit_adapter_from_photos

        if not calibration.is_dir():
            raise InputError(f"{calibration}: not a folder of face photos")
        check_output_file(output)  # before the calibration work
        options = extractor_options
        source_model = get_extractor(extractor, options)
        opt.announce(source_model)
        target_model = get_extractor(target)
        if source_model.name == target_model.name:
            raise InputError(f"--target {target}: the same extractor as --extractor; no adapter is needed")
        count = len(discover_images(calibration)[0])
        with progress_reporter() as progress:
            advance = progress.phase("calibration", count)
            fitted = fit_adapter_from_photos(calibration, source_model, target_model, on_progress=advance)
        with writing(output):
            fitted.save(output)
        console.print(f"wrote {output}: {fitted.describe()} (cosine on the fit itself {fitted.fit_cosine:.3f})")
