"""``refine``: the black-box eigenface search started from a trained generator's face.

The eigenfaces attack (:mod:`.eigenfaces`) starts every target at the mean face and spends its
queries finding a face at all. A parametric generator (``naive``) draws, for free, a face that F
already reads as the person (median cosine 0.98 for dlib-resnet128) but that it drew for every
vector alike, with one epoch of training. ``refine`` starts the search at the generator's face:
the face is projected on the eigenfaces and what the projection misses is kept as a fixed
per-target residual, so the search moves that very face along the eigenfaces, with F's answers
on this target's candidates. Measured on the 100 held-out LFW targets of the README's tables,
3,166 queries per target on average, tpr@1 at N = 1000 ("Stronger attacks"): faceres-1024 0.31
(eigenfaces) and 0.41 (naive) -> 0.46, mobileface-256 0.26 (naive) -> 0.36, with F =
dlib-resnet128. With F = mobileface-256 as a black box, its generator reached through the
self-calibrated map (20 targets, faceres-1024): 0.22 (eigenfaces) and 0.34 (naive) -> 0.34.

Queries to F: the search's, per target, exactly as eigenfaces counts them. The generator costs
none, but it is part of the attack: its models (and, through an adapter, the recognizer whose
space it draws from) are recorded as used, so they never judge ``refine``. Where the generator
cannot reach F (no generator trained for F, no adapter), ``refine`` says so, as the generator does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.base import (
    AttackAccess,
    ProgressCallback,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
)
from fvr_audit.reconstructors.eigenfaces import PRESETS, EigenfacesReconstructor, EigenfacesSettings
from fvr_audit.reconstructors.eigenfaces import REFERENCE as EIGENFACES_REFERENCE
from fvr_audit.reconstructors.registry import GENERATOR_OF

#: The generator whose face the search starts from (the strongest shipped parametric method).
START_METHOD = GENERATOR_OF["refine"]

REFERENCE = (
    "Black-box search warm-started from a parametric reconstruction (issue 12's direction; cf. the "
    f"initialisation of query-based attacks from a transfer prior); {EIGENFACES_REFERENCE}"
)


@dataclass(frozen=True)
class RefineSettings(EigenfacesSettings):
    """The search's settings, and which generator it starts from: a resumed folder made from another
    generator (retrained, tuned, another adapter) is refused rather than mixed."""

    #: The start generator's candidate files (``name:sha256 prefix``) and adapter, as ``naive`` records them.
    start_generators: tuple[str, ...] = ()
    start_adapter: str | None = None


class RefineReconstructor(Reconstructor):
    """Eigenface search from the ``naive`` generator's face (see the module docstring)."""

    def __init__(self, settings: EigenfacesSettings, *, models: tuple[Path, ...] = (), adapter=None) -> None:
        from fvr_audit.reconstructors.parametric import ParametricReconstructor

        self.start = ParametricReconstructor(START_METHOD, models=models, adapter=adapter)
        search = {f.name: getattr(settings, f.name) for f in fields(EigenfacesSettings)}
        self.settings = RefineSettings(**search, start_generators=tuple(self.start.settings["generators"]),
                                       start_adapter=self.start.settings["adapter"])
        self.search = EigenfacesReconstructor(self.settings)

    @property
    def adapter(self):
        return self.start.adapter

    @property
    def info(self) -> ReconstructorInfo:
        return ReconstructorInfo(
            name="refine",
            access=AttackAccess.BLACK_BOX,
            description=(
                f"black-box eigenface search (queries to F only) started from the {START_METHOD} generator's face "
                "instead of the mean face"
            ),
            reference=REFERENCE,
            models=(self.settings.basis,),
        )

    def supports(self, extractor: Extractor) -> str | None:
        return self.start.supports(extractor) or self.search.supports(extractor)

    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds: Sequence[int] | None = None,
    ) -> ReconstructionResult:
        began = time.perf_counter()
        targets = self.checked_targets(vectors, extractor)
        first = self.start.reconstruct(targets, extractor, seed=seed, target_seeds=target_seeds)
        found = self.search.search(
            targets, extractor, start_faces=first.images, seed=seed, on_progress=on_progress, target_seeds=target_seeds
        )
        return replace(
            found,
            queries=found.queries + first.queries,
            seconds=time.perf_counter() - began,
            models_used=tuple(dict.fromkeys((*found.models_used, *first.models_used))),
            settings={
                **found.settings,
                "preset_resolved": asdict(self.settings),
                "start": START_METHOD,
                "start_settings": self.start.settings,
                "start_similarity_median": round(float(np.median(first.similarity)), 4) if len(targets) else None,
            },
        )


def create_refine(preset: str = "default", models: tuple = (), adapter=None, **settings) -> RefineReconstructor:
    """Registry factory. ``preset`` and keyword settings are the eigenface search's
    (:class:`~fvr_audit.reconstructors.eigenfaces.EigenfacesSettings`); ``models`` and ``adapter``
    reach the start generator, as for ``naive``.

    >>> r = create_refine(preset="fast")
    >>> r.info.name, r.info.access.value, r.settings.batch
    ('refine', 'black-box', 32)
    """
    if preset not in PRESETS:
        raise InputError(f"refine: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    unknown = set(settings) - set(EigenfacesSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"refine: unknown setting(s) {', '.join(sorted(unknown))}")
    from fvr_audit.reconstructors.eigenfaces import create_eigenfaces

    search = create_eigenfaces(preset, **settings)  # the same preset rules as eigenfaces
    return RefineReconstructor(search.settings, models=tuple(models), adapter=adapter)
