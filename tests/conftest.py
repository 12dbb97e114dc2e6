"""Shared fixtures. Real-data tests skip with a reason when ../shared/data is absent (a user's clone)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: ``FVR_AUDIT_SHARED_DATA`` overrides where the face data sets live (default: ../shared/data).
SHARED_DATA = Path(os.environ.get("FVR_AUDIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
LFW_DIR = SHARED_DATA / "lfw-deepfunneled"

# No test may reach a cloud service: boto3's credential chain would otherwise probe the
# instance-metadata address when no credentials are set (issue 11).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW deep-funneled folder; skips the test when it is not there."""
    if not (LFW_DIR / "pairs.txt").exists():
        pytest.skip(f"real-data test: LFW not found at {LFW_DIR} (present in CI via ../shared/data)")
    return LFW_DIR


@pytest.fixture(scope="session")
def dlib_module():
    """dlib-bin, the reference implementation; skips where it is not installed."""
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib-bin is not installed")
    import dlib

    return dlib
