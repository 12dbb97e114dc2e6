"""What a scan would send to cloud engines, and its estimated price, before any call is made.

``scan --dry-run`` prints it and stops; ``--max-cost`` refuses a scan whose estimate is above it.
Counting needs only the gallery folder's listing and the settings: no credentials, no network.
"""

from __future__ import annotations

from fvr_audit.audit.settings import GallerySources, ScanSettings
from fvr_audit.engines.cost import CallPlan, plan_calls
from fvr_audit.engines.registry import is_cloud_engine
from fvr_audit.errors import InputError
from fvr_audit.reconstructors.registry import available_reconstructors


def cloud_plans(settings: ScanSettings, sources: GallerySources, targets: int) -> list[CallPlan]:
    """One plan per cloud engine of the scan: enrolment of every gallery photo, one search per
    target and method (and per target's original photo, with ``--images-root``), deletion.

    The targets' own photos, held out at scan time, are counted as enrolled: the estimate errs high."""
    specs = [spec for spec in dict.fromkeys(settings.engines) if is_cloud_engine(spec)]
    if not specs:
        return []
    if sources.folder is None:
        raise InputError(f"{specs[0]}: enrolls photos; give --gallery DIR (identity folders of photos)")
    from fvr_audit.extraction import discover_images

    records, labelled = discover_images(sources.folder)
    if not labelled:
        raise InputError(f"{sources.folder}: a gallery needs identity folders (DIR/<identity>/<image>), not a flat folder")
    identities = len({r.label for r in records})
    methods = len(settings.methods) if settings.methods is not None else len(available_reconstructors())
    searches = targets * (methods + (1 if sources.images_root is not None else 0))
    return [plan_calls(spec, len(records), identities, searches) for spec in specs]
