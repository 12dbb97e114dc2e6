"""Readers for public face data sets used by benchmarks, training and tests (never shipped)."""
