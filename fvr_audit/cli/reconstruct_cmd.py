"""``fvr-audit reconstruct VECTORS --method NAME --extractor F -o DIR``: faces from feature vectors."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from fvr_audit.cli import options as opt
from fvr_audit.cli.common import console, handle_errors
from fvr_audit.cli.progress import progress_reporter
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import ExtractorOptions
from fvr_audit.reconstructors.parametric.self_calibration import is_map_target

METHOD_HELP = (
    "Reconstruction method: eigenfaces (black-box, any F), gradient (white-box, torch F), "
    "transfer (gradient on dlib-resnet128 through a calibration adapter: any F but dlib-resnet128), "
    "refine (black-box eigenface search started from the naive generator's face), "
    "or a trained one: nbnet, vec2face, naive (see `fvr-audit models`)."
)
PRESET_HELP = (
    "Named settings: default (strong; eigenfaces 50 x 64 = 3,200 queries per target), "
    "paper (eigenfaces: the paper's 2,000 x 64 = 128,000), fast (quick runs), demo."
)


def register(app: typer.Typer) -> None:
    @app.command("reconstruct")
    @handle_errors
    @opt.extractor_overrides
    def reconstruct(
        vectors: Path = typer.Argument(..., help="Vector database (.npy or .npz) made by the extractor F."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for the PNGs and reconstructions.json."),
        method: str = typer.Option("eigenfaces", "--method", "-m", help=METHOD_HELP),
        extractor: str = opt.ExtractorArg,
        preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
        iterations: Optional[int] = typer.Option(None, "--iterations", help="Iterations (eigenfaces) or Adam steps (gradient)."),
        batch: Optional[int] = typer.Option(None, "--batch", help="eigenfaces: candidates per iteration (paper: 64)."),
        query_budget: Optional[int] = typer.Option(
            None, "--query-budget", help="Most queries to F per target (an HTTP endpoint's cost)."
        ),
        target_similarity: Optional[float] = typer.Option(
            None, "--target-similarity", help="Stop a target once cosine(F(x), v) reaches this."
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed (each target's draws depend only on it and the row)."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Reconstruct only the first N vectors."),
        rows: Optional[str] = typer.Option(
            None, "--rows", help="Reconstruct exactly these rows (0-based, comma-separated, in this order), e.g. a scan's "
            "targets: same rows, seed and settings give the scan's images.",
        ),
        chunk: Optional[int] = typer.Option(None, "--chunk", help="Targets advanced together (and saved) per chunk."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        models: list[Path] = typer.Option(
            [], "--models", help="nbnet/vec2face/naive/refine: extra models folder with trained reconstructors; repeatable."
        ),
        adapter: Optional[Path] = typer.Option(
            None, "--adapter", help="nbnet/vec2face/naive/refine/transfer: an adapter .npz (fvr-audit adapter) mapping F's vectors to another F."
        ),
        executor: str = opt.ExecutorOpt,
        workers: Optional[int] = opt.WorkersOpt,
        extractor_options: ExtractorOptions = None,  # type: ignore[assignment]  # from @opt.extractor_overrides
    ) -> None:
        """Reconstruct a face from every vector; write one PNG each and reconstructions.json (resumable)."""
        from fvr_audit.execution import ExecutorKind, open_executor, parse_executor, preflight, require_specs
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.io.outputs import check_writable_folder
        from fvr_audit.reconstructors.runner import build_reconstructor, reconstruct_to_folder
        from fvr_audit.vectors import load_vectors

        if limit is not None and limit < 1:
            raise InputError(f"--limit {limit}: must be at least 1")
        if chunk is not None and chunk < 1:
            raise InputError(f"--chunk {chunk}: must be at least 1")
        # Before any work; a non-empty folder is fine here: it is how a run resumes.
        check_writable_folder(output)
        execution = parse_executor(executor, workers)
        preflight(execution)
        options = extractor_options
        model = get_extractor(extractor, options)
        opt.announce(model)
        flags = {"preset": preset, "iterations": iterations, "batch": batch, "query_budget": query_budget,
                 "target_similarity": target_similarity}
        attack = build_reconstructor(method, **flags, **_adapted_extras(method, models, adapter))
        reason = attack.supports(model)
        if reason and adapter is None and method in _adapted_methods() and not is_map_target(model):
            # No generator (or gradients) of its own for F: reach it through the tool's own faces, as scan does.
            from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate

            with progress_reporter(quiet=quiet) as progress:
                calibration = self_calibrate(model, on_progress=progress.phase("self-calibration", 2000))
            if not quiet:
                console.print(calibration.describe())
            attack = build_reconstructor(method, **flags, **_adapted_extras(method, models, None),
                                         adapter=calibration.adapter)
            reason = attack.supports(model)
        if reason:
            raise InputError(f"{method}: {reason}")
        db = load_vectors(vectors, expected_dim=model.dim, extractor_name=model.name, allow_duplicates=True)
        db.check_made_by(model.name)
        for warning in db.warnings:
            if not quiet:
                console.print(f"[yellow]warning:[/] {warning}")
        chosen = None if rows is None else _parse_rows(rows, db.n)
        vectors_in = db.vectors if chosen is None else np.asarray(db.vectors[chosen], dtype=np.float32)
        labels_in = None if db.labels is None else list(np.asarray(db.labels)[chosen] if chosen is not None else db.labels)
        count = len(vectors_in)
        total = count if limit is None else min(limit, count)
        if not quiet:
            console.print(
                f"{total} of {count} vectors -> {attack.name} ({attack.info.access.value}) against {model.name}; "
                f"output {output}"
            )
        if execution.kind is not ExecutorKind.SERIAL:
            require_specs(model, [attack], execution)
        with progress_reporter(quiet=quiet) as progress, ExitStack() as stack:
            pool = None if execution.kind is ExecutorKind.SERIAL else stack.enter_context(open_executor(execution))
            advance = progress.phase("reconstruct", total)
            run = reconstruct_to_folder(
                vectors_in,
                model,
                attack,
                output,
                labels=labels_in,
                rows=chosen,
                seed=seed,
                chunk_size=chunk,
                limit=limit,
                on_progress=advance,
                source=str(vectors),
                executor=pool,
            )
            advance.update(completed=total)
        wanted = set(range(total) if chosen is None else chosen[:total])
        records = [r for r in run.manifest.get("targets", []) if r["index"] in wanted]
        if records and not quiet:
            sims = sorted(r["similarity"] for r in records)
            queries = [r["queries"] for r in records]
            console.print(
                f"similarity to target (F's cosine): median {sims[len(sims) // 2]:.3f}, min {sims[0]:.3f}; "
                f"queries per target: mean {sum(queries) / len(queries):.0f}; models used: "
                + ", ".join(run.manifest.get("models_used", []))
            )
        typer.echo(
            f"wrote {output}: {run.done_now} reconstructed now, {run.skipped} already done "
            f"({len(records)} of {total}) in {run.seconds:.1f} s",
            err=True,
        )


def _parse_rows(text: str, n: int) -> list[int]:
    """'5,2,9' -> [5, 2, 9] (order kept: units are cut in this order).

    >>> _parse_rows("5, 2,9", 10)
    [5, 2, 9]
    >>> _parse_rows("1,1", 10)
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --rows '1,1': each row at most once
    """
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--rows {text!r}: expected comma-separated whole numbers") from None
    if not values:
        raise InputError(f"--rows {text!r}: give at least one row")
    if len(set(values)) != len(values):
        raise InputError(f"--rows {text!r}: each row at most once")
    outside = [v for v in values if not 0 <= v < n]
    if outside:
        raise InputError(f"--rows {outside[0]}: the vectors have rows 0 to {n - 1}")
    return values


def _adapted_methods() -> tuple[str, ...]:
    from fvr_audit.reconstructors.registry import ADAPTED_METHODS

    return ADAPTED_METHODS


def _adapted_extras(method: str, models: list[Path], adapter: Optional[Path]) -> dict:
    """--models (the trained methods) and --adapter (those and transfer); an error for the others
    (never silently ignored)."""
    from fvr_audit.reconstructors.registry import ADAPTED_METHODS, GENERATOR_METHODS

    if models and method not in GENERATOR_METHODS:
        raise InputError(f"{method}: --models applies to {', '.join(GENERATOR_METHODS)} only")
    if adapter is not None and method not in ADAPTED_METHODS:
        raise InputError(f"{method}: --adapter applies to {', '.join(ADAPTED_METHODS)} only")
    extras: dict = {"models": tuple(models)} if method in GENERATOR_METHODS else {}
    if adapter is not None:
        from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter

        extras["adapter"] = RidgeAdapter.load(adapter)
    return extras
