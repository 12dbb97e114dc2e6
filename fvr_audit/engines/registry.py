"""Engine specs on the command line: ``local:<extractor>`` (any extractor spec after the colon).

>>> parse_engine_spec("local:faceres-1024"), parse_engine_spec("faceres-1024")
(('local', 'faceres-1024'), ('local', 'faceres-1024'))
"""

from __future__ import annotations

from fvr_audit.engines.base import MatchingEngine
from fvr_audit.errors import InputError

DEFAULT_ENGINES = ("local:dlib-resnet128", "local:faceres-1024")
#: Cloud engines plug in through the same MatchingEngine interface; not shipped in this version.
PLANNED_ENGINES = ("aws:rekognition", "azure:face")


#: Said in the README and in every report that used the engine (by spec prefix).
LIMITED_ACCESS_NOTES = {
    "azure:": (
        "Azure Face identification is a Limited Access service: Microsoft grants it only to eligible customers "
        "for approved use cases (https://aka.ms/facerecognition); an audit of your own database for privacy "
        "risk must be covered by your approval."
    ),
}


def parse_engine_spec(spec: str) -> tuple[str, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind in ("http", "https") or "/" in kind:
        return "local", spec
    return kind, target


def create_engine(spec: str, *, threshold: float | None = None) -> MatchingEngine:
    """A matching engine from its spec; ``local:`` wraps any extractor spec. ``threshold`` is on
    the engine's own score scale; below it the engine answers "no match"."""
    kind, target = parse_engine_spec(spec)
    if kind == "local":
        from fvr_audit.engines.local import LocalEngine
        from fvr_audit.extractors.registry import get_extractor

        return LocalEngine(get_extractor(target), threshold=threshold, threshold_source="--engine-threshold")
    if spec in PLANNED_ENGINES:
        raise InputError(f"{spec}: this engine is not available in this version yet; use local:<extractor>")
    raise InputError(f"{spec}: unknown engine; use local:<extractor name, .onnx file or URL>")
