"""Face detection and alignment: photos in, crops in each extractor's geometry out."""

from fvr_audit.alignment.aligner import (
    AlignedFace,
    FaceAligner,
    FaceStatus,
    NoFacePolicy,
)
from fvr_audit.alignment.images import load_image_rgb

__all__ = ["AlignedFace", "FaceAligner", "FaceStatus", "NoFacePolicy", "load_image_rgb"]
