"""Putting a survey's analysis into its scan's report: ``SCAN_DIR/metric2.json`` and a re-render.

The report is rendered again from the scan's own ``results.json`` and the images in the scan
folder (``reconstructions/``, and ``originals/`` when the scan kept them), so the Metric 1 figures
are exactly those of the scan; only the Metric 2 section (and the sentences that mention it) are
new. A survey built from another scan is refused: its answers are about other faces.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError

METRIC2_NAME = "metric2.json"
#: What the HTML report of a redacted scan says; a re-render keeps the redaction.
REDACTED_MARK = 'class="redacted-note"'


def attach_to_scan(scan_dir: Path, analysis: dict) -> dict[str, Path]:
    """Write ``scan_dir/metric2.json`` and re-render the scan's report.html (and report.pdf when it
    had one); return the paths written."""
    from fvr_audit.audit.results import results_from_json
    from fvr_audit.io.atomic import atomic_write_text
    from fvr_audit.io.outputs import writing
    from fvr_audit.report import ReportFormat, render_report

    scan_dir = Path(scan_dir)
    results_path = scan_dir / "results.json"
    try:
        data = results_path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{results_path}: missing; --scan takes the output folder of `fvr-audit scan`") from None
    expected = (analysis.get("scan") or {}).get("results_sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise InputError(
            f"{results_path}: not the scan this survey was built from (its results.json differs); "
            f"give --scan {(analysis.get('scan') or {}).get('folder', 'the original scan folder')}"
        )
    try:
        results = results_from_json(json.loads(data), source=str(results_path))
    except ValueError as error:
        raise InputError(f"{results_path}: unreadable ({error})") from None
    formats = {ReportFormat.HTML} | ({ReportFormat.PDF} if (scan_dir / "report.pdf").exists() else set())
    redact = _was_redacted(scan_dir / "report.html")
    images = _scan_images(scan_dir, results)
    with writing(scan_dir):
        # render_report renders every format before it writes any: a rendering error leaves the folder as it was.
        written = render_report(results, scan_dir, images=images, formats=formats, redact=redact, metric2=analysis)
        atomic_write_text(scan_dir / METRIC2_NAME, json.dumps(analysis, indent=2, allow_nan=False) + "\n")
    return {"metric2": scan_dir / METRIC2_NAME, **{fmt.value: path for fmt, path in written.items()}}


def _was_redacted(html: Path) -> bool:
    try:
        return REDACTED_MARK in html.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return False


def _scan_images(scan_dir: Path, results):
    from fvr_audit.alignment.images import load_image_rgb
    from fvr_audit.report import ReportImages

    indices = [t.index for t in results.targets]
    reconstructions: dict[str, dict[int, np.ndarray]] = {}
    for method in results.methods:
        folder = scan_dir / "reconstructions" / method.name
        faces = {i: load_image_rgb(folder / f"{i:06d}.png") for i in indices if (folder / f"{i:06d}.png").is_file()}
        if faces:
            reconstructions[method.name] = faces
    originals_dir = scan_dir / "originals"
    originals = {i: load_image_rgb(originals_dir / f"{i:06d}.png") for i in indices if (originals_dir / f"{i:06d}.png").is_file()}
    images = ReportImages(reconstructions, originals or None)
    return images if images else None
