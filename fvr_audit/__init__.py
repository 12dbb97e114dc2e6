"""fvr-audit: measure how far a leaked face feature-vector database re-identifies people."""

__version__ = "0.1.0"
