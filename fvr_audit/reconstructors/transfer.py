"""``transfer``: the gradient attack run on a local surrogate recognizer, for an F without gradients.

A black-box F (an HTTP endpoint, a model the interpreter cannot run) gives no gradients, but its
space can be mapped into one whose model the tool holds. The scan's calibration adapter does this
already for the parametric methods: F's answers on 2,000 of the tool's own faces (or on the
operator's ``--calibration`` photos), fitted once for the whole database, map each leaked vector
into dlib-resnet128's space (on real LFW photos the self-calibrated map lands at median cosine
0.95 from the true dlib-resnet128 vector for faceres-1024, 0.90 for mobileface-256). There the
white-box gradient attack (:mod:`.gradient`) draws a face that dlib-resnet128 reads as the mapped
vector: unlike a generator's face, it is optimised for this very target, and unlike the
black-box search it costs F nothing per target. F is queried once per target afterwards, only to
report how close F finds the face.

So its queries to F are the shared calibration (counted once for the database) plus one per
target. It used dlib-resnet128 (and the calibration), which then does not judge it. When F is
dlib-resnet128 itself there is nothing to transfer: the gradient attack runs on F directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.base import (
    AttackAccess,
    ProgressCallback,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
)
from fvr_audit.reconstructors.gradient import PRESETS, GradientReconstructor, GradientSettings
from fvr_audit.reconstructors.gradient import REFERENCE as GRADIENT_REFERENCE
from fvr_audit.reconstructors.parametric.self_calibration import is_map_target

REFERENCE = (
    "Transfer through a surrogate recognizer: a ridge map between feature spaces (cf. G. Mai et al., 'On the "
    "reconstruction of face images from deep face templates', TPAMI 2018, on mapping between recognizers) and "
    f"the gradient attack on the surrogate; {GRADIENT_REFERENCE}"
)


class TransferReconstructor(Reconstructor):
    """Gradient attack on the adapter's target recognizer at the mapped vectors (see the module docstring)."""

    def __init__(self, settings: GradientSettings, adapter=None) -> None:
        self.settings = settings.validate()
        self.adapter = adapter
        self._gradient = GradientReconstructor(self.settings)
        self._surrogate: Extractor | None = None

    @property
    def info(self) -> ReconstructorInfo:
        surrogate = self.adapter.target if self.adapter is not None else "a local surrogate"
        return ReconstructorInfo(
            name="transfer",
            access=AttackAccess.BLACK_BOX,
            description=(
                f"gradient attack on {surrogate} at F's vector mapped into its space by the calibration adapter "
                "(shared by the whole database); F answers one query per target, only to report the similarity"
            ),
            reference=REFERENCE,
            models=(self.settings.basis,),
            # with F's own gradients, gradient is the stronger use of the time (README: 0.77 x the
            # photo under mobileface-256 against 0.41 x)
            stands_in_for="gradient",
        )

    def supports(self, extractor: Extractor) -> str | None:
        if self.adapter is None:
            return (f"{extractor.name} is attacked by gradient directly" if is_map_target(extractor)
                    else "needs the calibration adapter from F's space into a local recognizer's (the scan makes one)")
        if self.adapter.source != extractor.name:
            return f"the adapter maps {self.adapter.source} vectors, not {extractor.name}"
        try:
            crop_from_canonical(np.zeros((1, 200, 200, 3), np.uint8), extractor.geometry)
        except InputError as exc:
            return f"transfer draws in the canonical frame and cannot cut {extractor.name}'s crop ({exc})"
        return self._gradient.supports(self._surrogate_model())

    def _surrogate_model(self) -> Extractor:
        from fvr_audit.extractors.registry import get_extractor

        if self._surrogate is None:
            self._surrogate = get_extractor(self.adapter.target)
        return self._surrogate

    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds: Sequence[int] | None = None,
    ) -> ReconstructionResult:
        start = time.perf_counter()
        targets = self.checked_targets(vectors, extractor)
        surrogate = self._surrogate_model()
        drawn = self._gradient.reconstruct(
            self.adapter.transform(targets), surrogate, seed=seed, on_progress=on_progress, target_seeds=target_seeds
        )
        # one query per target: how close F itself finds the face (what the report's similarity means)
        similarity = np.einsum(
            "nd,nd->n", extractor.embed(crop_from_canonical(drawn.images, extractor.geometry)), targets
        ).astype(np.float32)
        return ReconstructionResult(
            images=drawn.images,
            similarity=similarity,
            queries=np.ones(len(targets), np.int64),
            seconds=time.perf_counter() - start,
            models_used=tuple(dict.fromkeys((extractor.name, *drawn.models_used,
                                             f"adapter {self.adapter.source}->{self.adapter.target} ({self.adapter.describe()})"))),
            settings={
                "preset_resolved": asdict(self.settings),
                "surrogate": surrogate.name,
                "adapter": self.adapter.describe(),
                "surrogate_similarity_median": round(float(np.median(drawn.similarity)), 4) if len(targets) else None,
            },
        )


def create_transfer(preset: str = "default", adapter=None, **settings) -> TransferReconstructor:
    """Registry factory. ``preset`` and keyword settings are the gradient attack's
    (:class:`~fvr_audit.reconstructors.gradient.GradientSettings`); ``adapter`` maps F's vectors
    into the surrogate's space (the scan passes its calibration adapter)."""
    if preset not in PRESETS:
        raise InputError(f"transfer: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    unknown = set(settings) - set(GradientSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"transfer: unknown setting(s) {', '.join(sorted(unknown))}")
    chosen = {key: value for key, value in settings.items() if value is not None}
    return TransferReconstructor(replace(replace(GradientSettings(), **PRESETS[preset]), **chosen), adapter)
