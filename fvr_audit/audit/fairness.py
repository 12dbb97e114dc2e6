"""The fairness rule, in one place: an attack is never judged by an engine whose model it used.

An attack records every model it touched (``models_used``: F, surrogates, the recognizer its
generator was trained with). An engine F' whose model is among them would judge its own work, so
that pair is not measured (the scan), not gated (CI), and flagged (the report). F' = F, the
attacked extractor itself, is the paper's same-system baseline: measured, and labelled as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum


class Judging(str, Enum):
    """How an engine stands to an attack."""

    #: The engine is F itself: the same-system baseline.
    SAME_SYSTEM = "f"
    #: The attack used the engine's model: the engine may not judge it.
    USED = "violation"
    #: An independent judge.
    INDEPENDENT = "independent"


def judging(models_used: Sequence[str], engine_model: str, *, engine_is_f: bool) -> Judging:
    """The engine's standing to judge an attack that used ``models_used``.

    >>> judging(["dlib-resnet128", "eigenfaces-lfw-train-100.npz"], "dlib-resnet128", engine_is_f=False).value
    'violation'
    >>> judging(["faceres-1024"], "faceres-1024", engine_is_f=True).value
    'f'
    >>> judging(["faceres-1024"], "mobileface-256", engine_is_f=False).value
    'independent'
    """
    if engine_is_f:
        return Judging.SAME_SYSTEM
    return Judging.USED if engine_model in models_used else Judging.INDEPENDENT


def engine_model(engine_name: str, model: str = "") -> str:
    """The name of the model behind an engine: recorded in results, else read from ``local:<model>``.

    >>> engine_model("local:faceres-1024"), engine_model("local:/x/user.onnx", "user.onnx")
    ('faceres-1024', 'user.onnx')
    """
    return model or engine_name.split(":", 1)[-1]
