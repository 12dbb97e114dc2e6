"""Face feature extractors: the ``Extractor`` interface and the registry of built-ins."""

from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    FaceGeometry,
    Layout,
    Preprocessing,
    l2_normalize,
)
from fvr_audit.extractors.registry import ExtractorOptions, get_extractor, list_builtin_extractors

__all__ = [
    "AlignmentTemplate",
    "ChannelOrder",
    "Extractor",
    "ExtractorInfo",
    "ExtractorOptions",
    "FaceGeometry",
    "Layout",
    "Preprocessing",
    "get_extractor",
    "l2_normalize",
    "list_builtin_extractors",
]
