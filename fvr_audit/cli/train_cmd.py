"""``fvr-audit train METHOD --extractor F --faces DIR``: train a parametric reconstructor for any F."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from fvr_audit.cli import options as opt
from fvr_audit.cli.common import console, handle_errors
from fvr_audit.cli.progress import Phase, progress_reporter
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import ExtractorOptions

DATA_FILE = "training-data.npz"


class TrainMethod(str, Enum):
    """The trainable (parametric) reconstruction methods."""

    NBNET = "nbnet"
    VEC2FACE = "vec2face"
    NAIVE = "naive"


def _default_epochs() -> int:
    # From the settings themselves, so the help cannot drift from what a run does.
    from fvr_audit.reconstructors.parametric.training import TrainSettings

    return TrainSettings.epochs


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    @opt.extractor_overrides
    def train_command(
        method: TrainMethod = typer.Argument(..., help="The method to train."),
        extractor: str = opt.ExtractorArg,
        faces: Optional[Path] = typer.Option(
            None, "--faces", help="Identity tree of face photos (one folder per person) to train on."
        ),
        data: Optional[Path] = typer.Option(
            None, "--data", help="A prepared training-data .npz (from an earlier run's work folder) instead of --faces."
        ),
        identities: Optional[Path] = typer.Option(
            None, "--identities", help="Text file of identity folder names: train only on these (e.g. a split list)."
        ),
        work: Optional[Path] = typer.Option(
            None, "--work", help="Folder for the checkpoint, history and prepared data (default ./fvr-train-METHOD-F)."
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --work from its last epoch."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Training epochs (default {_default_epochs()})."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Faces per step (default 32)."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate."),
        identity_weight: Optional[float] = typer.Option(
            None, "--identity-weight", help="Weight of the 1 - cos(F(R(v)), v) loss (0: pixel losses only)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of initialisation, order and the validation split."),
        threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: all usable cores)."),
        export: Optional[Path] = typer.Option(
            None, "--export", help="After training, write the ONNX generator and its manifest entry into this models folder."
        ),
        extractor_options: ExtractorOptions = None,  # type: ignore[assignment]  # from @opt.extractor_overrides
    ) -> None:
        """Train a reconstructor R(v) -> face for F (checkpoint per epoch, resumable, seeded), optionally export it.

        With a differentiable F (the built-in extractors) the identity loss goes through F; with a
        black-box F (ONNX file, HTTP endpoint) vectors are computed once and the pixel (and, for
        vec2face, adversarial) losses train alone. A seeded set of whole identities is held out and
        cosine(F(R(v)), v) on it is printed after every epoch.
        """
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.outputs import check_writable_folder
        from fvr_audit.reconstructors.parametric.store import export_trained
        from fvr_audit.reconstructors.parametric.training import (
            TrainingData,
            default_settings,
            feature_loss_plan,
            prepare_training_data,
            train,
        )

        method = method.value
        settings = default_settings(
            method, epochs=epochs, batch_size=batch_size, lr=lr, identity_weight=identity_weight, seed=seed
        )
        if (faces is None) == (data is None) and not (resume and work and (work / DATA_FILE).exists()):
            raise InputError("train: give exactly one of --faces DIR or --data FILE")
        if faces is not None and not faces.is_dir():
            raise InputError(f"{faces}: not a folder of face photos")
        if threads is not None:
            if threads < 1:
                raise InputError(f"--threads {threads}: must be at least 1")
            import torch

            torch.set_num_threads(threads)
        options = extractor_options
        model = get_extractor(extractor, options)
        opt.announce(model)
        work = work or Path(f"fvr-train-{method}-{model.name.replace('/', '_')}")
        if (work / "checkpoint.pt").exists() and not resume:
            raise InputError(f"{work}: holds a training run already; pass --resume, or choose another --work folder")
        if resume and not (work / "checkpoint.pt").exists():
            if not (work / DATA_FILE).exists():
                raise InputError(
                    f"{work}: --resume, but there is no checkpoint.pt to resume from; "
                    "run without --resume to start a new training, or give the --work folder of the earlier run"
                )
            console.print(f"--resume: no checkpoint in {work} yet; training starts at epoch 1 on its prepared data")
        check_writable_folder(work)
        if export is not None:
            check_writable_folder(export)
        chosen = None
        if identities is not None:
            try:
                chosen = {line.strip() for line in identities.read_text().splitlines() if line.strip()}
            except OSError as exc:
                raise InputError(f"{identities}: unreadable ({exc.strerror})") from exc

        if data is not None:
            dataset = TrainingData.load(data)
        elif (work / DATA_FILE).exists():
            dataset = TrainingData.load(work / DATA_FILE)
            console.print(f"training data: {work / DATA_FILE} (prepared earlier)")
        else:
            from fvr_audit.extraction import discover_images

            count = len(discover_images(faces)[0])
            with progress_reporter() as progress:
                advance = progress.phase("aligning + embedding", count)
                dataset = prepare_training_data(faces, model, identities=chosen, on_progress=advance)
            dataset.save(work / DATA_FILE)
        if dataset.extractor != model.name:
            raise InputError(f"{data or work / DATA_FILE}: vectors made by {dataset.extractor}, not {model.name}")
        console.print(
            f"{method} for {model.name}: {len(dataset.faces)} faces of {len(set(dataset.labels.tolist()))} identities; "
            f"{settings.epochs} epochs, batch {settings.batch_size}"
        )
        console.print(feature_loss_plan(model, settings))
        start = time.perf_counter()
        with progress_reporter() as progress:
            phases: dict[int, Phase] = {}

            def on_step(epoch: int, step: int, steps: int, losses: dict) -> None:
                if epoch not in phases:
                    phases[epoch] = progress.phase(f"epoch {epoch + 1}/{settings.epochs}", steps)
                text = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                phases[epoch].update(completed=step, note=text)

            def on_epoch(report) -> None:
                progress.log(
                    f"epoch {report.epoch}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in report.losses.items())
                    + f"; validation median cos(F(R(v)), v) = {report.validation_cosine:.4f} ({report.seconds:.0f} s)"
                )

            outcome = train(dataset, model, settings, work, resume=resume, on_step=on_step, on_epoch=on_epoch)
        console.print(f"trained in {time.perf_counter() - start:.0f} s; checkpoint {work / 'checkpoint.pt'}")
        if outcome.history:
            console.print(f"validation median cosine: {outcome.history[-1]['validation_cosine']:.4f}")
        if export is not None:
            entry = export_trained(
                work, model, method, data_file=data or (work / DATA_FILE), directory=export, script="fvr-audit train"
            )
            console.print(f"exported {export / entry.file} (sha256 {entry.sha256[:12]}); scan with --models {export}")
