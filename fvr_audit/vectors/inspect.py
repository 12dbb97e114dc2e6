"""Summaries of a feature-vector database, for ``fvr-audit vectors inspect``."""

from __future__ import annotations

from typing import Any

import numpy as np

from fvr_audit.vectors.checks import scan_rows
from fvr_audit.vectors.database import VectorDatabase

#: Identities need at least this many vectors to give both a gallery and a probe image.
MIN_IMAGES_FOR_GALLERY = 2


def identity_summary(labels: np.ndarray) -> dict[str, Any]:
    """Identities and images per identity.

    >>> identity_summary(np.array(["a", "a", "b", "c", "c", "c"]))
    {'identities': 3, 'images_per_identity': {'min': 1, 'median': 2.0, 'max': 3}, 'identities_with_2_or_more': 2, 'vectors_of_those': 5}
    """
    _, counts = np.unique(labels, return_counts=True)
    usable = counts >= MIN_IMAGES_FOR_GALLERY
    return {
        "identities": int(counts.size),
        "images_per_identity": {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "max": int(counts.max()),
        },
        f"identities_with_{MIN_IMAGES_FOR_GALLERY}_or_more": int(np.count_nonzero(usable)),
        "vectors_of_those": int(counts[usable].sum()),
    }


def summarize(db: VectorDatabase) -> dict[str, Any]:
    """A JSON-ready summary of ``db`` (the ``--json`` output of ``vectors inspect``).

    >>> db = VectorDatabase(__import__("pathlib").Path("db.npy"), np.eye(2, dtype=np.float32))
    >>> s = summarize(db)
    >>> s["count"], s["dim"], s["storage"], s["norms"]["l2_normalised"], s["labels"]
    (2, 2, 'loaded', True, None)
    """
    scan = db.scan if db.scan is not None else scan_rows(db.vectors)
    norms = None
    if scan.norms is not None:
        norms = {
            "min": scan.norms.min,
            "median": scan.norms.median,
            "max": scan.norms.max,
            "l2_normalised": scan.norms.l2_normalised,
            "rows_not_unit_norm": scan.norms.not_unit,
        }
    return {
        "path": str(db.path),
        "format": db.format,
        "count": db.n,
        "dim": db.dim,
        "dtype": db.source_dtype.name,
        "storage": db.storage,
        "storage_note": db.storage_note,
        "norms": norms,
        "labels": identity_summary(db.labels) if db.labels is not None else None,
        "metadata": dict(db.metadata),
        "has_paths": db.has_paths,
        "has_ids": db.has_ids,
        "duplicates": {
            "count": scan.duplicates.count,
            "first_pair": list(scan.duplicates.first_pair) if scan.duplicates.first_pair else None,
        },
        "warnings": list(db.warnings),
    }


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (field, value) rows, for the CLI's table (titled with ``summary["path"]``)."""
    rows: list[tuple[str, str]] = []

    def add(field: str, value: str) -> None:
        rows.append((field, value))

    add(
        "vectors", f"{summary['count']} x {summary['dim']} {summary['dtype']} ({summary['format']})"
    )
    add("storage", f"{summary['storage']} ({summary['storage_note']})")
    for key, value in summary["metadata"].items():
        add(key, str(value))
    norms = summary["norms"]
    if norms is not None:
        unit = "yes" if norms["l2_normalised"] else f"no ({norms['rows_not_unit_norm']} rows off unit norm)"
        add(
            "L2 norms",
            f"min {_fmt(norms['min'])}, median {_fmt(norms['median'])}, max {_fmt(norms['max'])}; "
            f"normalised: {unit}",
        )
    labels = summary["labels"]
    if labels is None:
        add("labels", "none (identities unknown)")
    else:
        per = labels["images_per_identity"]
        usable = labels[f"identities_with_{MIN_IMAGES_FOR_GALLERY}_or_more"]
        add("identities", str(labels["identities"]))
        add("images per identity", f"min {per['min']}, median {per['median']:g}, max {per['max']}")
        add(
            f"identities with >= {MIN_IMAGES_FOR_GALLERY}",
            f"{usable} ({labels['vectors_of_those']} vectors)",
        )
    add(
        "paths / ids", f"{'yes' if summary['has_paths'] else 'no'} / {'yes' if summary['has_ids'] else 'no'}"
    )
    duplicates = summary["duplicates"]
    if duplicates["count"]:
        earlier, later = duplicates["first_pair"]
        add("duplicates", f"{duplicates['count']} (first: row {later} = row {earlier})")
    else:
        add("duplicates", "none")
    for index, warning in enumerate(summary["warnings"] or ["none"]):
        add("warnings" if index == 0 else "", warning)
    return rows
