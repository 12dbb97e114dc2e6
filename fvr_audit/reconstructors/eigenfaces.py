"""``eigenfaces``: black-box face recovery by random search in an eigenface space.

Razzhigaev et al., "Black-box face recovery from identity features" (ECCV Workshops 2020), and its
follow-up "Darker than black-box: face reconstruction from similarity queries" (2021). The attack
needs only F's outputs, so it runs against ONNX files and paid HTTP endpoints alike:

* start from the mean face of the eigenface basis (:mod:`fvr_audit.reconstructors.eigenbasis`);
* every iteration, propose ``batch`` candidates per target: the current face plus a random
  perturbation, either a Gaussian blob (random centre, size and colour; the 2020 method) or a
  random combination of eigenfaces drawn from the face prior (the 2021 follow-up);
* normalise every candidate with the eigenface basis (project onto it, clip each coefficient to
  ``clip`` standard deviations) so it stays face-like; this happens *before* the query, so
  the image F scored is exactly the image kept;
* query F once per candidate (``extractor.embed``: one query per candidate per target) and rank
  the candidates by similarity to the target minus a small face-prior penalty.
  ``update="best"`` keeps the best candidate (the paper's rule). The default ``update="es"``
  draws the perturbations in antithetic pairs and moves the face along their rank-weighted mean
  (an evolution-strategies step that uses every query of the iteration, not just the best one):
  on dlib-resnet128 it reaches in ~1,000 queries the similarity best-of-batch reaches in ~3,000;
* by default (``es`` only) each iteration shows F the candidates under one random view of the
  frame (a shift of up to ``jitter_shift`` pixels, a mirror image), so the face found is one F
  recognises under any small change of framing: it transfers better to other recognizers
  (on four held-out LFW targets, faceres-1024 cosine to the true photo 0.57 against 0.53
  without). The answer is then the final face, scored once more as it is (one extra query).

The step size shrinks geometrically over the iterations and adapts per target (larger after
progress, smaller after a failed iteration). All targets advance together: one batched call to F
per iteration holds every target's candidates. Queries are counted per target (exactly
iterations x batch, +1 for the final scoring when jittering); a target stops early at
``target_similarity``, when its similarity plateaus, or when ``query_budget`` is spent.

Settings (``create_eigenfaces(**settings)``; ``preset="paper"`` is the paper's 2,000 iterations
x batch 64 = 128,000 queries per target, ``preset="fast"`` a quick run, ``preset="demo"`` the demo's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor
from fvr_audit.reconstructors.base import (
    AttackAccess,
    Checkpoint,
    ProgressCallback,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
    WorkShare,
    seeds_for,
)
from fvr_audit.reconstructors.eigenbasis import DEFAULT_BASIS_FILE, EigenBasis, load_basis, to_canonical_uint8
from fvr_audit.reconstructors.views import view_box

if TYPE_CHECKING:
    from fvr_audit.reconstructors.guidance import SurrogateGuide

REFERENCE = (
    "A. Razzhigaev, K. Kireev, E. Kaziakhmedov, N. Tursynbek, A. Petiushko, 'Black-box face recovery from "
    "identity features', ECCV Workshops 2020; A. Razzhigaev, K. Kireev, I. Udovichenko, A. Petiushko, "
    "'Darker than black-box: face reconstruction from similarity queries', 2021"
)
UPDATES = ("best", "es")
CANONICAL_SHAPE = (CANONICAL_GEOMETRY.size, CANONICAL_GEOMETRY.size, 3)


@dataclass(frozen=True)
class EigenfacesSettings:
    """Settings of the black-box eigenfaces attack (all per target)."""

    #: Iterations; each spends ``batch`` queries per target. 50 x 64 = 3,200: F's similarity is
    #: flat after about 3,000 queries (README, 100 LFW targets: 0.980 at 2,048, 0.983 at 3,137), and
    #: more queries fit F ever closer without reading better to other recognizers.
    iterations: int = 50
    #: Candidates per iteration (the paper: 64).
    batch: int = 64
    #: Queries per target at most (None: iterations x batch). Caps the iterations.
    query_budget: int | None = None
    #: Stop a target once cosine(F(x), v) reaches this (None: spend the budget).
    target_similarity: float | None = None
    #: "best": keep the best candidate (the paper); "es": also step along the weighted perturbations.
    update: str = "es"
    #: Initial and final step: RMS change per pixel (0..255) of one perturbation.
    step: float = 10.0
    step_final: float = 1.5
    #: Share of candidates that are Gaussian blobs (the rest: random eigenface combinations).
    blob_share: float = 0.5
    #: Blob radius range (standard deviation, in canonical pixels).
    blob_sigma: tuple[float, float] = (4.0, 30.0)
    #: Eigenfaces used (None: all in the basis).
    components: int | None = None
    #: Coefficients are clipped to +-clip standard deviations of the training faces.
    clip: float = 3.0
    #: "es" update: step length as a multiple of the perturbation step.
    es_rate: float = 2.0
    #: Face prior: candidates are ranked by similarity - prior_weight * mean(z^2) (z: whitened coefficients).
    prior_weight: float = 0.01
    #: Plateau stop: a target stops when its (smoothed) best similarity gains less than
    #: ``plateau_tol`` over ``plateau_iterations`` iterations (0: never).
    plateau_iterations: int = 40
    plateau_tol: float = 0.001
    #: Per-iteration random view (shift by up to this many canonical pixels, mirror): "es" only; the
    #: answer is then the final face, scored once more unjittered (one extra query per target).
    jitter_shift: int = 4
    jitter_flip: bool = True
    #: Similarity trace points kept per target (for similarity-vs-queries curves).
    trace_points: int = 40
    #: Earlier faces kept for the re-identification-vs-queries curve: after 1/2, 1/4, ... of the
    #: iterations, this many (0: none). They cost no queries.
    checkpoints: int = 4
    basis: str = DEFAULT_BASIS_FILE

    def jittered(self) -> bool:
        return self.jitter_shift > 0 or self.jitter_flip

    def effective_iterations(self) -> int:
        """Iterations run at most: the budget also pays for the final scoring when jittering."""
        if self.query_budget is None:
            return self.iterations
        spendable = self.query_budget - (1 if self.jittered() else 0)
        return max(0, min(self.iterations, spendable // self.batch))

    def validate(self) -> EigenfacesSettings:
        if self.iterations < 1 or self.batch < 2:
            raise InputError(f"eigenfaces: iterations >= 1 and batch >= 2 needed (got {self.iterations}, {self.batch})")
        if self.query_budget is not None and self.query_budget < self.batch + (1 if self.jittered() else 0):
            raise InputError(
                f"eigenfaces: --query-budget {self.query_budget} is below one iteration ({self.batch} queries)"
            )
        if self.update not in UPDATES:
            raise InputError(f"eigenfaces: update {self.update!r}: use one of {', '.join(UPDATES)}")
        if self.update == "es" and self.batch % 2:
            raise InputError(f"eigenfaces: update 'es' uses antithetic pairs; batch {self.batch} must be even")
        if self.jittered() and self.update != "es":
            raise InputError("eigenfaces: jitter needs update 'es' (best-of-batch cannot compare moving views)")
        if self.checkpoints < 0:
            raise InputError(f"eigenfaces: checkpoints {self.checkpoints} must be >= 0")
        if not 0 <= self.blob_share <= 1:
            raise InputError(f"eigenfaces: blob_share {self.blob_share} must be between 0 and 1")
        if self.step <= 0 or self.step_final <= 0:
            raise InputError("eigenfaces: steps must be positive")
        if self.target_similarity is not None and not -1 < self.target_similarity <= 1:
            raise InputError(f"eigenfaces: target similarity {self.target_similarity} must be in (-1, 1]")
        return self


#: Named settings. "default": at most 3,200 queries per target (50 x 64; a target stops earlier on
#: a plateau); "paper": the paper's method and budget, 2,000 x 64 = 128,000 queries;
#: "fast": a quick run, at most 40 x 32 + 1 = 1,281 queries; "demo": ``fvr-audit demo``'s 129 queries.
PRESETS: dict[str, dict] = {
    "default": {},
    # The paper's setting, faithfully: best-of-batch, fixed views, no prior, all 2,000 iterations.
    "paper": {
        "iterations": 2000,
        "batch": 64,
        "update": "best",
        "prior_weight": 0.0,
        "step_final": 0.7,
        "plateau_iterations": 0,
    },
    "fast": {"iterations": 40, "batch": 32, "step": 12.0, "step_final": 3.0, "plateau_iterations": 15},
    # ``fvr-audit demo``: 8 x 16 + 1 = 129 queries per target, with large early steps since there
    # are few of them. It shows the attack at work, not its strength.
    "demo": {
        "iterations": 8,
        "batch": 16,
        "step": 14.0,
        "step_final": 4.0,
        "plateau_iterations": 0,
        "trace_points": 8,
    },
}


class EigenfacesReconstructor(Reconstructor):
    """Black-box eigenfaces attack (see the module docstring)."""

    def __init__(self, settings: EigenfacesSettings) -> None:
        self.settings = settings.validate()
        self._basis: EigenBasis | None = None

    @property
    def basis(self) -> EigenBasis:
        if self._basis is None:
            self._basis = load_basis(self.settings.basis, components=self.settings.components)
        return self._basis

    @property
    def info(self) -> ReconstructorInfo:
        return ReconstructorInfo(
            name="eigenfaces",
            access=AttackAccess.BLACK_BOX,
            description=(
                "black-box random search over an eigenface space: Gaussian blobs and eigenface combinations, "
                "best-of-batch selection with an evolution-strategies step; queries F only"
            ),
            reference=REFERENCE,
            models=(self.settings.basis,),
        )

    def supports(self, extractor: Extractor) -> str | None:
        try:
            view_box(extractor.geometry)
        except InputError as exc:
            return f"eigenfaces draws in the canonical frame and cannot cut {extractor.name}'s crop ({exc})"
        return None

    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds: Sequence[int] | None = None,
    ) -> ReconstructionResult:
        """Reconstruct ``vectors`` [N, D]. ``target_seeds``: one RNG seed per target (default seed + row),
        so a target's result does not depend on which others share its batch."""
        return self.search(vectors, extractor, seed=seed, on_progress=on_progress, target_seeds=target_seeds)

    def search(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        start_faces: np.ndarray | None = None,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds: Sequence[int] | None = None,
        guide: SurrogateGuide | None = None,
    ) -> ReconstructionResult:
        """The search from the mean face, or from ``start_faces`` (uint8 [N, 200, 200, 3] canonical
        frames, one per target): each is projected on the eigenfaces, and what the projection misses
        is kept as a fixed per-target residual, so the search starts from that very face and moves it
        along the eigenfaces (:mod:`fvr_audit.reconstructors.refine`). ``guide``: a surrogate that
        proposes some of each iteration's directions (:mod:`fvr_audit.reconstructors.guidance`)."""
        start = time.perf_counter()
        targets = self.checked_targets(vectors, extractor)
        s = self.settings
        basis = self.basis
        n, k = len(targets), basis.k
        seeds = seeds_for(len(targets), seed, target_seeds)
        rngs = [np.random.default_rng([int(x), 0xE16E]) for x in seeds]
        iterations = s.effective_iterations()
        blob_maker = _BlobMaker(basis, extractor, s.blob_sigma)

        z = np.zeros((n, k), np.float32)  # current face (whitened coefficients); 0 = mean face
        residual = None  # [n, size, size, 3]: what the eigenfaces miss of each start face
        best_img = np.repeat(basis.mean_canonical()[None], n, axis=0)
        if start_faces is not None:
            if start_faces.shape != (n, *CANONICAL_SHAPE):
                raise InputError(f"eigenfaces: {len(start_faces)} start faces of shape {start_faces.shape[1:]} for {n} targets")
            small = basis.from_canonical(start_faces)
            z = np.clip(basis.project_small(small), -s.clip, s.clip).astype(np.float32)
            residual = small - basis.render_small(z)
            best_img = np.asarray(start_faces, np.uint8).copy()
        current = np.full(n, -np.inf, np.float32)  # objective of the best candidate so far
        best_sim = np.full(n, -np.inf, np.float32)
        queries = np.zeros(n, np.int64)
        active = np.ones(n, bool)
        step_scale = np.ones(n, np.float32)
        trace: list[list[list[float]]] = [[] for _ in range(n)]
        trace_every = max(1, iterations // max(1, s.trace_points))
        sigma_rms = basis.stddev / math.sqrt(basis.dim)  # image RMS per unit whitened coefficient
        jitter = s.jittered()
        smooth = np.full(n, np.nan)
        history: list[list[float]] = [[] for _ in range(n)]
        snapshot_after = checkpoint_iterations(iterations, s.checkpoints)
        checkpoints: list[Checkpoint] = []
        work = WorkShare(on_progress, n)

        for it in range(iterations):
            rows = np.flatnonzero(active)
            if rows.size == 0:
                break
            frac = it / max(1, iterations - 1)
            eps = s.step * (s.step_final / s.step) ** frac
            deltas = np.stack(
                [self._perturbations(rngs[r], eps * step_scale[r], blob_maker, sigma_rms) for r in rows]
            )  # [R, B, K]
            if guide is not None:
                gradients = guide.gradients(rows, z[rows], residual)
                deltas = guide.steer(deltas, gradients, eps * step_scale[rows], sigma_rms)
            candidates = np.clip(z[rows, None, :] + deltas, -s.clip, s.clip)  # normalised before the query
            extra = None if residual is None else np.repeat(residual[rows], s.batch, axis=0)
            images = _render(basis, candidates.reshape(-1, k), extra).reshape(len(rows), s.batch, *CANONICAL_SHAPE)
            views = images
            if jitter:  # one random view per target and iteration, shared by its candidates
                views = np.stack([_jitter_view(images[i], rngs[r], s) for i, r in enumerate(rows)])
            crops = crop_from_canonical(views.reshape(-1, *views.shape[2:]), extractor.geometry)
            emb = extractor.embed(crops)
            sims = np.einsum("rbd,rd->rb", emb.reshape(len(rows), s.batch, -1), targets[rows])
            objective = sims - s.prior_weight * (candidates**2).mean(axis=2)
            queries[rows] += s.batch
            for i, r in enumerate(rows):
                j = int(np.argmax(objective[i]))
                improved = objective[i, j] > current[r]
                if improved:
                    current[r] = objective[i, j]
                    if not jitter:
                        best_sim[r], best_img[r] = sims[i, j], images[i, j]
                if s.update == "best":
                    if improved:
                        z[r] = candidates[i, j]
                else:
                    z[r] = self._es_step(z[r], deltas[i], objective[i], eps * step_scale[r], sigma_rms, s)
                step_scale[r] = min(step_scale[r] * 1.1, 3.0) if improved else max(step_scale[r] * 0.85, 0.25)
                shown = best_sim[r] if not jitter else float(sims[i].max())
                smooth[r] = shown if np.isnan(smooth[r]) else 0.8 * smooth[r] + 0.2 * shown
                history[r].append(float(smooth[r]))
                h, p = history[r], s.plateau_iterations
                if p and len(h) > p and h[-1] - h[-1 - p] < s.plateau_tol:
                    active[r] = False
                if s.target_similarity is not None and shown >= s.target_similarity:
                    active[r] = False
                if (it + 1) % trace_every == 0 or it == iterations - 1 or not active[r]:
                    trace[r].append([int(queries[r]), round(float(shown), 5)])
            if it + 1 in snapshot_after:  # the face each target holds now (jitter: its current z)
                held = _render(basis, np.clip(z, -s.clip, s.clip), residual) if jitter else best_img.copy()
                checkpoints.append(Checkpoint((it + 1) * s.batch, held))
            work.reached((it + 1) / iterations)
        if jitter or iterations == 0:
            # Jittered scores are of moving views: the answer is the final face, scored as it is.
            final = np.clip(z, -s.clip, s.clip)
            best_img = _render(basis, final, residual)
            best_sim = np.einsum(
                "nd,nd->n", extractor.embed(crop_from_canonical(best_img, extractor.geometry)), targets
            )
            queries += 1
            for r in range(n):
                trace[r].append([int(queries[r]), round(float(best_sim[r]), 5)])
        kept = {c.queries for c in checkpoints}  # every target stopped early: later checkpoints hold the answer
        checkpoints += [Checkpoint(it * s.batch, best_img) for it in sorted(snapshot_after) if it * s.batch not in kept]
        work.finish()
        settings = {"preset_resolved": asdict(s), "iterations_run": int(iterations), "trace": trace}
        return ReconstructionResult(
            images=best_img,
            similarity=best_sim.astype(np.float32),
            queries=queries,
            seconds=time.perf_counter() - start,
            models_used=(extractor.name, s.basis),
            settings=settings,
            checkpoints=tuple(checkpoints),
        )

    def _perturbations(
        self, rng: np.random.Generator, eps: float, blobs: _BlobMaker, sigma_rms: np.ndarray
    ) -> np.ndarray:
        """[B, K] whitened-coefficient perturbations, each with image RMS ``eps`` (antithetic for "es")."""
        s = self.settings
        k = self.basis.k
        count = s.batch // 2 if s.update == "es" else s.batch
        n_blob = int(round(count * s.blob_share))
        parts = []
        if count - n_blob:
            parts.append(rng.standard_normal((count - n_blob, k)).astype(np.float32))
        if n_blob:
            parts.append(blobs.sample(rng, n_blob))
        d = np.concatenate(parts)
        rms = np.sqrt(((d * sigma_rms) ** 2).sum(axis=1, keepdims=True)) + 1e-12
        d *= eps / rms
        if s.update == "es":
            d = np.concatenate([d, -d])
        return d

    @staticmethod
    def _es_step(z, deltas, sims, eps, sigma_rms, s: EigenfacesSettings) -> np.ndarray:
        """Move ``z`` along the similarity-ranked mean of antithetic perturbations (centred ranks)."""
        half = len(deltas) // 2
        ranks = np.empty(len(sims), np.float32)
        ranks[np.argsort(sims)] = np.arange(len(sims), dtype=np.float32)
        utility = ranks / (len(sims) - 1) - 0.5
        g = (utility[:half] - utility[half:]) @ deltas[:half]  # antithetic estimate
        rms = math.sqrt(float(((g * sigma_rms) ** 2).sum())) + 1e-12
        return np.clip(z + g * (s.es_rate * eps / rms), -s.clip, s.clip).astype(np.float32)


def checkpoint_iterations(iterations: int, count: int) -> set[int]:
    """The iterations after which earlier faces are kept: 1/2, 1/4, ... of ``iterations`` (distinct,
    at least one iteration, never the last one, whose face is the answer itself).

    >>> sorted(checkpoint_iterations(50, 4)), sorted(checkpoint_iterations(8, 4)), checkpoint_iterations(50, 0)
    ([3, 6, 12, 25], [1, 2, 4], set())
    """
    return {it for it in (iterations // 2**j for j in range(1, count + 1)) if 1 <= it < iterations}


def _render(basis: EigenBasis, z: np.ndarray, residual: np.ndarray | None = None, chunk: int = 256) -> np.ndarray:
    """uint8 [N, 200, 200, 3] canonical faces of whitened coefficients (plus a per-face residual at the
    basis resolution), in chunks (bounded memory)."""
    out = np.empty((len(z), *CANONICAL_SHAPE), np.uint8)
    for lo in range(0, len(z), chunk):
        small = basis.render_small(z[lo : lo + chunk])
        if residual is not None:
            small = small + residual[lo : lo + chunk]
        out[lo : lo + chunk] = to_canonical_uint8(small)
    return out


def _jitter_view(images: np.ndarray, rng: np.random.Generator, s: EigenfacesSettings) -> np.ndarray:
    """The same random shift (edge-padded) and mirror applied to a target's [B, 200, 200, 3] candidates."""
    out = images
    if s.jitter_flip and rng.random() < 0.5:
        out = out[:, :, ::-1]
    if s.jitter_shift:
        dy, dx = rng.integers(-s.jitter_shift, s.jitter_shift + 1, 2)
        pad = s.jitter_shift
        padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
        size = images.shape[1]
        out = padded[:, pad + dy : pad + dy + size, pad + dx : pad + dx + size]
    return np.ascontiguousarray(out)


class _BlobMaker:
    """Gaussian blobs in the basis frame, projected onto the eigenfaces (whitened coefficients)."""

    def __init__(
        self, basis: EigenBasis, extractor: Extractor, sigma_range: tuple[float, float], chroma: float = 0.25
    ) -> None:
        self.basis = basis
        self.chroma = chroma
        size = basis.size
        scale = size / CANONICAL_GEOMETRY.size
        low, high = view_box(extractor.geometry)
        # Blob centres fall in the part of the frame F sees (its crop), in basis pixels.
        self.low, self.high = low * scale, (high + 1) * scale
        self.sigma = (sigma_range[0] * scale, sigma_range[1] * scale)
        self.grid = np.arange(size, dtype=np.float32) + 0.5
        # components as [K, H, W, 3] scaled by 1/stddev: whitened projection of a separable blob.
        self.comp = (basis.components / basis.stddev[:, None]).reshape(basis.k, size, size, 3)

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        cy = rng.uniform(self.low, self.high, count).astype(np.float32)
        cx = rng.uniform(self.low, self.high, count).astype(np.float32)
        sigma = np.exp(rng.uniform(np.log(self.sigma[0]), np.log(self.sigma[1]), count)).astype(np.float32)
        # Mostly luminance (a lighter or darker patch), a little colour.
        colour = rng.standard_normal((count, 3)).astype(np.float32) * self.chroma + rng.standard_normal(
            (count, 1)
        ).astype(np.float32)
        gy = np.exp(-0.5 * ((self.grid[None, :] - cy[:, None]) / sigma[:, None]) ** 2)  # [B, H]
        gx = np.exp(-0.5 * ((self.grid[None, :] - cx[:, None]) / sigma[:, None]) ** 2)  # [B, W]
        # <blob_b, comp_k> = sum_c colour[b, c] * gy[b] . comp[k, :, :, c] . gx[b]
        t = np.einsum("bh,khwc->bkwc", gy, self.comp, optimize=True)
        return np.einsum("bkwc,bw,bc->bk", t, gx, colour, optimize=True).astype(np.float32)


def create_eigenfaces(preset: str = "default", **settings) -> EigenfacesReconstructor:
    """Registry factory. ``preset``: "default" (50 x 64 = 3,200 queries per target), "paper"
    (2,000 x 64 = 128,000, the paper's setting), "fast" (40 x 32) or "demo" (8 x 16); keyword settings of
    :class:`EigenfacesSettings` override the preset (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise InputError(f"eigenfaces: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    unknown = set(settings) - set(EigenfacesSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"eigenfaces: unknown setting(s) {', '.join(sorted(unknown))}")
    base = replace(EigenfacesSettings(), **PRESETS[preset])
    chosen = {key: value for key, value in settings.items() if value is not None}
    if chosen.get("update", base.update) == "best":
        # the paper's best-of-batch rule compares candidates with the kept face: fixed views only
        chosen.setdefault("jitter_shift", 0)
        chosen.setdefault("jitter_flip", False)
    if "blob_sigma" in chosen:
        chosen["blob_sigma"] = tuple(chosen["blob_sigma"])
    return EigenfacesReconstructor(replace(base, **chosen))
