"""Which database rows are audited, and what each target is called."""

from __future__ import annotations

import numpy as np

from fvr_audit.audit.settings import GallerySources, ScanSettings
from fvr_audit.errors import InputError
from fvr_audit.vectors import VectorDatabase
from fvr_audit.vectors import sampling

UNLABELLED_NOTE = (
    "the database has no labels: measured what the leaked vectors alone allow, in the deployed system's own "
    "terms (system:F rows: F ranks each reconstruction against every row of the database, and accepts it at the "
    "--fmr threshold). An independent-engine check (Metric 1) needs labels (the identity of each row, e.g. "
    "fvr-audit extract writes them from identity folders) and photos of the same people (--gallery DIR); it would "
    "add whether another recognizer, the kind an attacker uses, re-identifies the reconstructed faces"
)


def check_unlabelled(db: VectorDatabase, sources: GallerySources) -> None:
    if db.n < 2:
        raise InputError(f"{db.path}: {db.n} row; the audit compares reconstructions with the other rows, so it needs at least 2")
    given = [flag for flag, value in (("--gallery", sources.folder or sources.files), ("--originals", sources.originals),
                                       ("--images-root", sources.images_root)) if value]
    if given:
        raise InputError(
            f"{db.path}: no 'labels' array, but {given[0]} was given: independent engines judge re-identification "
            "against each target's true identity, so the database needs labels (fvr-audit extract writes them); "
            f"without {given[0]} the scan measures what the vectors alone allow"
        )


def sample_rows(db: VectorDatabase, settings: ScanSettings) -> np.ndarray:
    """``--sample`` rows of an unlabelled database, uniformly at random (seeded), in row order.

    The same draw as :func:`fvr_audit.audit.galleries.sample_targets` makes when every row is its own identity and every
    identity is eligible, so labelling such a database does not change its targets."""
    if settings.rows is not None:
        return given_rows(db, settings)
    return sampling.sample_rows(db.n, settings.sample, settings.seed)


def given_rows(db: VectorDatabase, settings: ScanSettings) -> np.ndarray:
    rows = np.asarray(settings.rows, dtype=np.int64)
    if rows.size == 0:
        raise InputError("--rows: give at least one row")
    bad = rows[(rows < 0) | (rows >= db.n)]
    if bad.size:
        raise InputError(f"--rows: row {int(bad[0])} is outside {db.path} (rows 0 to {db.n - 1})")
    if len(np.unique(rows)) != len(rows):
        raise InputError("--rows: a row is given twice")
    return np.sort(rows)


def row_names(db: VectorDatabase, rows: np.ndarray) -> np.ndarray:
    """Each target's name: its ``ids`` entry when the database has ids, else ``row <index>``."""
    if db.ids is not None:
        return np.asarray(db.ids)[rows].astype(str)
    return np.array([f"row {int(r)}" for r in rows])

