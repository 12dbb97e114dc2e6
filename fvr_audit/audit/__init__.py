"""The audit: sample targets, reconstruct, re-identify with each engine F', measure, decide."""
