"""Helpers shared by the benchmark scripts (JSON output, locating LFW)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LFW = Path(os.environ.get("FVR_AUDIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "lfw-deepfunneled"


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def emit(result: dict) -> None:
    """Print the benchmark's JSON on stdout (progress goes to stderr)."""
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


def require_lfw(path: Path) -> Path:
    if not (path / "pairs.txt").exists():
        sys.exit(f"error: {path}: LFW deep-funneled folder with pairs.txt not found (use --lfw DIR)")
    return path
