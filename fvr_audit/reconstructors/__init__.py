"""Feature-vector reconstructors: vectors in, face images (canonical frame) out."""

from fvr_audit.reconstructors.base import (
    AttackAccess,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
)
from fvr_audit.reconstructors.registry import available_reconstructors, get_reconstructor

__all__ = [
    "AttackAccess",
    "ReconstructionResult",
    "Reconstructor",
    "ReconstructorInfo",
    "available_reconstructors",
    "get_reconstructor",
]
