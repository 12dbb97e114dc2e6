"""Matching engines F': enroll a labelled gallery, search queries for their top-K identities."""

from fvr_audit.engines.base import EngineInfo, Gallery, IdentityHits, MatchingEngine
from fvr_audit.engines.local import LocalEngine

__all__ = ["EngineInfo", "Gallery", "IdentityHits", "LocalEngine", "MatchingEngine"]
