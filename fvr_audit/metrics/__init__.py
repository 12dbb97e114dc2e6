"""Metrics: pure, typed functions with citations and doctests that pin their values."""
