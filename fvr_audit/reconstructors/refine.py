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

Surrogate guidance (default, ``surrogate=auto``; :mod:`.guidance`): each iteration, 4 of the
search's 32 antithetic directions come from a local recognizer that is not F (mobileface-256 for
dlib-resnet128 and faceres-1024, dlib-resnet128 for mobileface-256): the gradient, in the eigenface
coefficients, of its cosine to F's vector mapped into its space by a map shipped in ``models/``
(fitted on LFW training photos), or by the user's ``--calibration`` adapter. F's answers still pick
the step. Figures with and without it: the README's "Stronger attacks". ``surrogate=none`` turns it
off; the surrogate is recorded in ``models_used``, so it never judges ``refine``.

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
from fvr_audit.reconstructors.guidance import (
    AUTO,
    NONE,
    GuideSettings,
    SurrogateGuide,
    check_surrogate_name,
    choose_surrogate,
    surrogate_map,
)
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
    #: Surrogate guidance (:mod:`.guidance`): a built-in recognizer that is not F, "auto" (the first
    #: of mobileface-256, dlib-resnet128 that is not F) or "none". It proposes directions; F decides.
    surrogate: str = AUTO
    #: Antithetic pairs per iteration taken from the surrogate's gradient (the first pure, the rest mixed
    #: with random directions at weight ``guide_mix``).
    guided: int = 4
    guide_mix: float = 0.7
    #: Synthetic faces the map from F's space into the surrogate's is fitted on (queries to F, once per F).
    surrogate_faces: int = 2000


class RefineReconstructor(Reconstructor):
    """Eigenface search from the ``naive`` generator's face (see the module docstring)."""

    def __init__(
        self, settings: EigenfacesSettings, *, models: tuple[Path, ...] = (), adapter=None, **guidance
    ) -> None:
        from fvr_audit.reconstructors.parametric import ParametricReconstructor

        self.start = ParametricReconstructor(START_METHOD, models=models, adapter=adapter)
        search = {f.name: getattr(settings, f.name) for f in fields(EigenfacesSettings)}
        self.settings = RefineSettings(**search, start_generators=tuple(self.start.settings["generators"]),
                                       start_adapter=self.start.settings["adapter"], **guidance)
        self.search = EigenfacesReconstructor(self.settings)
        self.guide_settings = GuideSettings(self.settings.guided, self.settings.guide_mix).validate(
            self.settings.batch // 2
        )
        if self.settings.surrogate not in (AUTO, NONE) and self.settings.update != "es":
            raise InputError("refine: surrogate guidance needs update 'es' (antithetic directions)")
        check_surrogate_name(self.settings.surrogate)
        if self.settings.surrogate_faces < 10:
            raise InputError(f"refine: surrogate_faces {self.settings.surrogate_faces} must be at least 10")

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
        if self.settings.surrogate not in (AUTO, NONE, ""):
            try:  # a named surrogate that is F itself: said when the attacks are chosen, not at refine's turn
                choose_surrogate(self.settings.surrogate, extractor)
            except InputError as exc:
                return str(exc)
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
        guide, guidance = self._guide(targets, extractor, seed, target_seeds)
        found = self.search.search(
            targets, extractor, start_faces=first.images, seed=seed, on_progress=on_progress,
            target_seeds=target_seeds, guide=guide,
        )
        return replace(
            found,
            queries=found.queries + first.queries,
            seconds=time.perf_counter() - began,
            models_used=tuple(dict.fromkeys((*found.models_used, *first.models_used, *guidance.pop("models")))),
            settings={
                **found.settings,
                "preset_resolved": asdict(self.settings),
                "start": START_METHOD,
                "start_settings": self.start.settings,
                "start_similarity_median": round(float(np.median(first.similarity)), 4) if len(targets) else None,
                "guidance": guidance,
            },
        )

    def _guide(self, targets: np.ndarray, extractor: Extractor, seed: int, target_seeds) -> tuple:
        """(the surrogate guide or None, what the report records of it: surrogate, map, queries per
        database, and the models it adds to ``models_used``)."""
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.reconstructors.base import seeds_for

        s = self.settings
        name, why = choose_surrogate(s.surrogate, extractor, self.adapter)
        if name is None or s.guided == 0 or len(targets) == 0:
            return None, {"surrogate": None, "why": why if name is None else "guided=0", "models": (),
                          "queries_per_database": 0}
        surrogate = get_extractor(name)
        map_began = time.perf_counter()
        found = surrogate_map(extractor, surrogate, faces=s.surrogate_faces, start_adapter=self.adapter)
        guide = SurrogateGuide(surrogate, found.adapter.transform(targets), self.search.basis,
                               seeds_for(len(targets), seed, target_seeds), self.guide_settings)
        return guide, {
            "surrogate": name,
            "why": why,
            "map": found.adapter.describe(),
            "map_kind": found.kind,
            # a synthetic map's faces are embedded by F once per F (then cached): shared by every target
            "queries_per_database": found.queries,
            "map_seconds": round(time.perf_counter() - map_began, 2),
            "models": (name, f"adapter {found.adapter.describe()}"),
        }


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
    guidance = {k: v for k in GUIDANCE_SETTINGS if (v := settings.pop(k, None)) is not None}
    unknown = set(settings) - set(EigenfacesSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"refine: unknown setting(s) {', '.join(sorted(unknown))}")
    from fvr_audit.reconstructors.eigenfaces import create_eigenfaces

    search = create_eigenfaces(preset, **settings)  # the same preset rules as eigenfaces
    return RefineReconstructor(search.settings, models=tuple(models), adapter=adapter, **guidance)


#: Refine's own settings beside the eigenface search's.
GUIDANCE_SETTINGS = ("surrogate", "guided", "guide_mix", "surrogate_faces")
