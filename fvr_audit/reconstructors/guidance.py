"""Surrogate guidance for the black-box eigenface search: where to look, from a local recognizer.

The search (:mod:`.eigenfaces`) estimates each step from random antithetic directions and F's
answers on them. A local recognizer S that is not F (the *surrogate*) offers, for free, a good
guess of a useful direction: the gradient, in the eigenface coefficients, of S's cosine between
the current face and the target vector mapped into S's space (a ridge map fitted on photos: shipped
for the built-in F, or the user's ``--calibration`` adapter; see :func:`photo_map`). Each iteration, ``guided`` of a target's antithetic
directions are replaced by that gradient (the first pure, the others mixed with the random ones at
weight ``mix``), all at the search's step size; F's answers still rank every direction and decide
the step, so S only proposes. This is prior-guided random gradient-free search (Cheng, Dong, Pang,
Su and Zhu, "Improving black-box adversarial attacks with a transfer-based prior", NeurIPS 2019)
applied to face recovery, the issue's "surrogate-guided search".

Measured on the 100 held-out LFW targets (F = dlib-resnet128, S = mobileface-256, 3,201 queries per
target, tpr@1 at N = 1000 under faceres-1024): see :mod:`.refine` and the README. S touched the
attack, so it is recorded in ``models_used`` and never judges it (:mod:`fvr_audit.audit.fairness`).
A shipped or calibration map costs no queries; the synthetic map, used only for a surrogate named by
the user, costs ``faces`` queries to F once per F (cached): queries per database, not per target.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, white_box_forward
from fvr_audit.reconstructors.eigenbasis import EigenBasis
from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter

#: Surrogates tried in turn when none is named: the first that is not F. faceres-1024 is never
#: chosen by itself, because it is the scan's default independent judge, and a surrogate may not judge.
AUTO_SURROGATES: tuple[str, ...] = ("mobileface-256", "dlib-resnet128")
#: ``surrogate`` values meaning "choose one" and "no guidance".
AUTO, NONE = "auto", "none"
#: Tag of the guidance's own random stream in each target's seed (its random views of the face).
_STREAM = 0x5A6D


def choose_surrogate(requested: str, extractor: Extractor, start_adapter: RidgeAdapter | None = None) -> tuple[str | None, str]:
    """(the surrogate's built-in name, or None for no guidance; why), for ``surrogate=requested``.

    ``auto`` takes the first of :data:`AUTO_SURROGATES` that is not F and that F's vectors can be
    mapped to through photos (:func:`photo_map`); a map from the tool's synthetic faces guided no
    better than none (20 LFW targets), so ``auto`` does not spend F's queries on one. A surrogate
    whose model is F's own (same name or sha256) would make the attack white-box: refused when
    named, skipped when chosen.

    >>> from fvr_audit.extractors.registry import get_extractor
    >>> choose_surrogate("auto", get_extractor("dlib-resnet128"))[0]
    'mobileface-256'
    >>> choose_surrogate("auto", get_extractor("mobileface-256"))[0]
    'dlib-resnet128'
    >>> choose_surrogate("none", get_extractor("mobileface-256"))
    (None, 'surrogate guidance off (surrogate=none)')
    """
    from fvr_audit.extractors.registry import get_extractor

    if requested in ("", NONE):
        return None, "surrogate guidance off (surrogate=none)"
    check_surrogate_name(requested)
    names = AUTO_SURROGATES if requested == AUTO else (requested,)
    for name in names:
        candidate = get_extractor(name)
        if name == extractor.name or (candidate.info.sha256 and candidate.info.sha256 == extractor.info.sha256):
            if requested != AUTO:
                raise InputError(f"refine: surrogate {name} is F itself; a black-box attack may not use F's gradients")
            continue
        if requested == AUTO and photo_map(extractor, candidate, start_adapter) is None:
            continue
        how = "chosen: the first built-in recognizer that is not F and has a photo-fitted map" if requested == AUTO else "named"
        return name, f"surrogate {name} ({how})"
    return None, (
        f"surrogate guidance off: no map fitted on photos from {extractor.name}'s space into a built-in recognizer's "
        "(shipped for the built-in recognizers; --calibration DIR fits one into dlib-resnet128's); "
        "name one with --set refine.surrogate=NAME to use the weaker synthetic map"
    )


def check_surrogate_name(requested: str) -> None:
    """A ``surrogate`` setting is auto, none, or a built-in recognizer's name (checked when refine is
    made, before a scan's other attacks run).

    >>> check_surrogate_name("arcface")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: refine: surrogate 'arcface' is not a built-in recognizer; use one of dlib-resnet128, faceres-1024, mobileface-256, auto or none
    """
    from fvr_audit.extractors.registry import BUILTIN_EXTRACTORS

    if requested not in (AUTO, NONE, "", *BUILTIN_EXTRACTORS):
        raise InputError(
            f"refine: surrogate {requested!r} is not a built-in recognizer; use one of {', '.join(BUILTIN_EXTRACTORS)}, "
            f"{AUTO} or {NONE}"
        )


def shipped_map_file(source: str, target: str) -> str:
    """The shipped map's file name (``scripts/build_surrogate_maps.py`` builds it).

    >>> shipped_map_file("dlib-resnet128", "mobileface-256")
    'surrogate-map-dlib-resnet128-to-mobileface-256.npz'
    """
    return f"surrogate-map-{source}-to-{target}.npz"


@dataclass(frozen=True)
class SurrogateMap:
    """The map giving the surrogate its target vectors, and what it cost."""

    adapter: RidgeAdapter
    #: "shipped" (LFW training photos), "calibration" (the user's photos: refine's own start adapter)
    #: or "synthetic" (the tool's own faces; weaker).
    kind: str
    #: Queries to F the map costs the attack, once per F and database (0 for a shipped map or one the
    #: scan already fitted and counted); a synthetic map found in the cache counts them all the same.
    queries: int


def photo_map(extractor: Extractor, surrogate: Extractor, start_adapter: RidgeAdapter | None = None) -> SurrogateMap | None:
    """A map from F's space into the surrogate's fitted on photos: the shipped one when F is the
    built-in model it was fitted for (by sha256), or refine's start adapter when it was fitted on the
    user's photos into this surrogate's space; None when there is neither."""
    from fvr_audit.model_store import load_manifest, model_path

    file = shipped_map_file(extractor.name, surrogate.name)
    entry = load_manifest().get(file)
    fitted_for = (entry.details.get("source_sha256"), entry.details.get("target_sha256")) if entry and entry.details else None
    # fitted for exactly these two models (by content: a file named like a built-in is not enough)
    if fitted_for is not None and fitted_for == (extractor.info.sha256, surrogate.info.sha256):
        return SurrogateMap(_load_shipped(str(model_path(file))), "shipped", 0)
    if start_adapter is not None and start_adapter.from_photos and start_adapter.target == surrogate.name:
        return SurrogateMap(start_adapter, "calibration", 0)
    return None


@functools.lru_cache(maxsize=None)
def _load_shipped(path: str) -> RidgeAdapter:
    # model_path has checked the file against the manifest; the map is read once per process
    return RidgeAdapter.load(Path(path))


def surrogate_map(extractor: Extractor, surrogate: Extractor, *, faces: int,
                  start_adapter: RidgeAdapter | None = None) -> SurrogateMap:
    """:func:`photo_map`, else a map fitted on ``faces`` of the tool's synthetic faces embedded by F
    and the surrogate (``faces`` queries to F, once per F; cached)."""
    from fvr_audit.reconstructors.parametric.self_calibration import synthetic_adapter

    found = photo_map(extractor, surrogate, start_adapter)
    if found is not None:
        return found
    return SurrogateMap(synthetic_adapter(extractor, surrogate, faces=faces), "synthetic", faces)


@dataclass(frozen=True)
class GuideSettings:
    """How many of a target's antithetic directions come from the surrogate, and how they are mixed."""

    guided: int = 4
    mix: float = 0.7

    def validate(self, pairs: int) -> GuideSettings:
        if not 0 <= self.guided <= pairs:
            raise InputError(f"refine: guided {self.guided} must be between 0 and the {pairs} antithetic pairs")
        if not 0 < self.mix <= 1:
            raise InputError(f"refine: guide_mix {self.mix} must be in (0, 1]")
        return self


class SurrogateGuide:
    """Steers the search's directions with a surrogate's gradient (see the module docstring)."""

    def __init__(
        self,
        surrogate: Extractor,
        mapped_targets: np.ndarray,
        basis: EigenBasis,
        seeds: Sequence[int],
        settings: GuideSettings,
    ) -> None:
        import torch

        from fvr_audit.reconstructors.parametric.training import _IdentityLoss

        forward, why = white_box_forward(surrogate)
        if forward is None:
            raise InputError(f"refine: surrogate {surrogate.name}: {why}")
        self.surrogate, self.settings, self.basis = surrogate, settings, basis
        self.loss = _IdentityLoss(surrogate, forward, 0)
        norms = np.linalg.norm(mapped_targets, axis=1, keepdims=True)
        self.targets = torch.from_numpy((mapped_targets / np.maximum(norms, 1e-12)).astype(np.float32))
        self.mean = torch.from_numpy(np.array(basis.mean, np.float32))
        self.scaled = torch.from_numpy(np.asarray(basis.stddev[:, None] * basis.components, np.float32))
        self.rngs = [np.random.default_rng([int(x), _STREAM]) for x in seeds]

    def gradients(self, rows: np.ndarray, z: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        """[R, K]: d cos(S(face), mapped target) / d z for the faces of ``rows`` (whitened coefficients
        ``z`` [R, K], plus their fixed residuals), each under its own random view (mirror, shift)."""
        import torch

        size = self.basis.size
        views = [(r.random() < 0.5, r.random(2) - 0.5) for r in (self.rngs[i] for i in rows)]
        flip = torch.tensor([v[0] for v in views])
        shift = torch.from_numpy(np.stack([v[1] for v in views]).astype(np.float32))
        coefficients = torch.from_numpy(np.ascontiguousarray(z, np.float32)).requires_grad_(True)
        image = (self.mean + coefficients @ self.scaled).reshape(len(rows), size, size, 3)
        if residual is not None:
            image = image + torch.from_numpy(np.ascontiguousarray(residual[rows], np.float32))
        embedded = self.loss.embed(image.permute(0, 3, 1, 2), views=(flip, shift))
        (embedded * self.targets[torch.from_numpy(rows)]).sum().backward()
        return coefficients.grad.numpy().astype(np.float32)

    def steer(self, deltas: np.ndarray, gradients: np.ndarray, eps: np.ndarray, sigma_rms: np.ndarray) -> np.ndarray:
        """``deltas`` [R, B, K] (antithetic: the second half mirrors the first) with the first ``guided``
        pairs of each row replaced by its gradient (pure, then mixed), at the row's step ``eps``."""
        out = deltas.copy()
        half = deltas.shape[1] // 2
        mix = self.settings.mix

        def at_step(x: np.ndarray, step: float) -> np.ndarray:
            return x * (step / (np.sqrt(((x * sigma_rms) ** 2).sum()) + 1e-12))

        for i in range(len(out)):
            g = at_step(gradients[i], eps[i])
            for j in range(self.settings.guided):
                v = g if j == 0 else at_step(mix * g + np.sqrt(1 - mix**2) * deltas[i, j], eps[i])
                out[i, j], out[i, half + j] = v, -v
        return out
