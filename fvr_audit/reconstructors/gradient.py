"""``gradient``: white-box face reconstruction by gradient ascent on cosine(F(x), v).

Used when F is differentiable (the built-in torch extractors): it sets the bar that black-box
attacks are measured against. The face is parameterised as

    x = upsample(mean + (z * stddev) @ eigenfaces + residual)        (canonical 200 x 200 frame)

with ``z`` the whitened eigenface coefficients and ``residual`` a low-resolution pixel residual
(at the basis resolution, so upsampling acts as a low-pass filter) kept small by a penalty. Each
step draws, per target, a random jitter of the frame (shift, scale, horizontal flip, brightness
and contrast), cuts F's crop from the jittered frame with one differentiable ``grid_sample``,
and takes an Adam step on ``-cosine + priors``. The jitter makes the optimum a face that F sees
under any small change of framing, which is what other recognizers see too, rather than an
adversarial pattern of F alone. The scale jitter leans towards zooming out
(``jitter_zoom_out``), so F also sees, now and then, the hair and face outline beyond its own
crop that wider-framed recognizers look at: on four held-out LFW targets this raised
faceres-1024's cosine between the reconstruction and *another* photo of the person from 0.56 to
0.58 (the real photo: 0.63), while other changes (a full-resolution residual, no residual,
stronger shifts, two views per step, a stronger prior) moved it by less than 0.01. All targets of a call are optimised together in one batch; a
target stops when its similarity plateaus (or reaches ``target_similarity``).

The result is scored by the caller's extractor on the final uint8 image (without jitter), so
the reported similarity is the one an auditor would measure. ``queries`` counts F's forward
passes per target (steps x samples + the final scoring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import ChannelOrder, Extractor, Layout, white_box_forward
from fvr_audit.reconstructors.base import (
    AttackAccess,
    ProgressCallback,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
    WorkShare,
    seeds_for,
)
from fvr_audit.reconstructors.eigenbasis import DEFAULT_BASIS_FILE, EigenBasis, load_basis
from fvr_audit.reconstructors.views import crop_affine, normalised_theta

REFERENCE = (
    "Gradient inversion of face embeddings with an eigenface prior and transformation robustness "
    "(cf. A. Mahendran, A. Vedaldi, 'Understanding deep image representations by inverting them', CVPR 2015; "
    "A. Athalye et al., 'Synthesizing robust adversarial examples' (EOT), ICML 2018)"
)


@dataclass(frozen=True)
class GradientSettings:
    """Settings of the white-box gradient attack."""

    #: Adam steps at most.
    iterations: int = 300
    #: Forward passes of F per target at most (None: iterations x samples); caps the steps.
    query_budget: int | None = None
    #: Learning rates: eigen-coefficients (in standard deviations) and residual (pixels 0..255).
    lr: float = 0.08
    residual_lr: float = 3.0
    #: Final learning rate as a share of the initial one (cosine decay).
    lr_final_share: float = 0.05
    #: Penalties: mean squared whitened coefficient (face prior) and residual (per 255-pixel, squared).
    prior_weight: float = 0.002
    residual_weight: float = 1.0
    #: Total-variation penalty of the residual (smoothness).
    tv_weight: float = 0.5
    #: Residual resolution (None: the basis resolution; 0: no residual).
    residual_size: int | None = None
    #: Jitter: shift (share of the frame), scale (+-share), flip, brightness/contrast (+-share).
    jitter_shift: float = 0.03
    jitter_scale: float = 0.05
    jitter_flip: bool = True
    jitter_color: float = 0.06
    #: Extra zoom-out range: the scale is drawn from [1 - jitter_scale, 1 + jitter_scale + this], so F
    #: sometimes sees more of the frame (hair, ears) than its own crop.
    jitter_zoom_out: float = 0.25
    #: Jittered copies of each target per step.
    samples: int = 1
    #: Plateau stop: a target stops when its (smoothed) similarity gains less than ``plateau_tol``
    #: over ``plateau_steps`` steps (0: never).
    plateau_steps: int = 60
    plateau_tol: float = 0.002
    #: Stop a target once its (smoothed) similarity reaches this.
    target_similarity: float | None = None
    #: Second chances: a target whose final similarity to F is below ``restart_below`` (a start that
    #: led nowhere: outcomes are bimodal, most targets end near 0.97) is optimised again from the
    #: best of ``restart_candidates`` random faces of the eigen prior, and the better result kept.
    restarts: int = 1
    restart_below: float = 0.8
    restart_candidates: int = 8
    #: Eigenfaces used (None: all).
    components: int | None = None
    #: Targets optimised in one batch (the runner's chunks are split into these).
    batch_targets: int = 32
    basis: str = DEFAULT_BASIS_FILE
    #: Surrogate recognizers (built-in names) whose cosine to the target, mapped into their space by a
    #: ridge adapter fitted on the tool's own faces, is maximised too: a face that several models read
    #: as the person, not F alone. Each is recorded as used (it may then not judge the attack). Names
    #: joined by "+", e.g. ``--set gradient.surrogates=mobileface-256``.
    surrogates: str = ""
    #: Weight of each surrogate's cosine in the loss (F's has weight 1).
    surrogate_weight: float = 0.5
    #: Synthetic faces the surrogates' adapters are fitted on (embedded by F and by each surrogate).
    surrogate_faces: int = 2000

    def effective_iterations(self) -> int:
        if self.query_budget is None:
            return self.iterations
        return max(1, min(self.iterations, (self.query_budget - 1) // self.samples))

    def validate(self) -> GradientSettings:
        if self.query_budget is not None and self.query_budget < self.samples + 1:
            raise InputError(f"gradient: --query-budget {self.query_budget} is below one step ({self.samples + 1} queries)")
        if self.iterations < 1:
            raise InputError(f"gradient: iterations must be >= 1 (got {self.iterations})")
        if self.samples < 1 or self.batch_targets < 1:
            raise InputError("gradient: samples and batch_targets must be >= 1")
        if self.lr <= 0 or self.residual_lr < 0:
            raise InputError("gradient: learning rates must be positive")
        return self


PRESETS: dict[str, dict] = {
    "default": {},
    "fast": {"iterations": 60, "plateau_steps": 20, "lr": 0.12, "residual_lr": 4.0},
    # ``fvr-audit demo``: at most 24 Adam steps with larger rates, stopping a target on an 8-step plateau.
    # the demo keeps to its time budget: no second starts
    "demo": {"iterations": 24, "plateau_steps": 8, "lr": 0.15, "residual_lr": 5.0, "restarts": 0},
}


def torch_forward(extractor: Extractor) -> tuple[Any, str | None]:
    """(callable preprocessed-tensor -> raw vectors, None), or (None, reason) when F has no gradients."""
    return white_box_forward(extractor)


class GradientReconstructor(Reconstructor):
    """White-box gradient attack (see the module docstring)."""

    def __init__(self, settings: GradientSettings) -> None:
        self.settings = settings.validate()
        self._basis: EigenBasis | None = None
        self._forward_cache: dict[int, Any] = {}

    @property
    def basis(self) -> EigenBasis:
        if self._basis is None:
            self._basis = load_basis(self.settings.basis, components=self.settings.components)
        return self._basis

    @property
    def info(self) -> ReconstructorInfo:
        return ReconstructorInfo(
            name="gradient",
            access=AttackAccess.WHITE_BOX,
            description=(
                "white-box Adam on eigenface coefficients plus a low-resolution residual, maximising "
                "cosine(F(x), v) under random shift/scale/flip/colour jitter"
            ),
            reference=REFERENCE,
            models=(self.settings.basis,),
        )

    def supports(self, extractor: Extractor) -> str | None:
        reason = torch_forward(extractor)[1]
        if reason:
            return reason
        try:
            crop_affine(extractor.geometry)
        except InputError as exc:
            return f"gradient draws in the canonical frame and cannot cut {extractor.name}'s crop ({exc})"
        return None

    def _forward(self, extractor: Extractor):
        key = id(extractor)
        if key not in self._forward_cache:
            forward, reason = torch_forward(extractor)
            if forward is None:
                raise InputError(reason or f"{extractor.name}: not differentiable")
            self._forward_cache = {key: forward}
        return self._forward_cache[key]

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
        seeds = seeds_for(len(targets), seed, target_seeds)
        forward = self._forward(extractor)
        surrogates = self._surrogates(extractor, targets)
        images, steps, traces = [], [], []
        bt = self.settings.batch_targets
        n = len(targets)
        work = WorkShare(on_progress, n)
        # the second starts of weak targets come after the batches: the batches' share stops short
        first_pass = 0.95 if self.settings.restarts else 1.0
        for lo in range(0, n, bt):
            chunk = [(ext, fwd, mapped[lo : lo + bt]) for ext, fwd, mapped, _ in surrogates]
            size = len(targets[lo : lo + bt])
            imgs, used, trace = self._optimise(
                targets[lo : lo + bt], seeds[lo : lo + bt], extractor, forward, chunk,
                on_share=lambda share, lo=lo, size=size: work.reached(first_pass * (lo + share * size) / n),
            )
            images.append(imgs)
            steps.append(used)
            traces += trace
        images_all = np.concatenate(images) if images else np.zeros((0, 200, 200, 3), np.uint8)
        similarity = np.einsum(
            "nd,nd->n", extractor.embed(crop_from_canonical(images_all, extractor.geometry)), targets
        ).astype(np.float32)
        queries = np.concatenate(steps).astype(np.int64) * self.settings.samples + 1 if steps else np.zeros(0, np.int64)
        self._restart_weak(targets, seeds, extractor, forward, surrogates, images_all, similarity, queries)
        work.finish()
        return ReconstructionResult(
            images=images_all,
            similarity=similarity,
            queries=queries,
            seconds=time.perf_counter() - start,
            models_used=(extractor.name, self.settings.basis, *(e.name for e, _, _, _ in surrogates),
                         *(note for _, _, _, note in surrogates)),
            settings={"preset_resolved": asdict(self.settings), "trace": traces},
        )

    def _restart_weak(self, targets, seeds, extractor, forward, surrogates, images, similarity, queries) -> int:
        """Optimise the targets that ended below ``restart_below`` again from another start; keep the
        better image. ``images``, ``similarity`` and ``queries`` are updated in place; returns how
        many targets were restarted."""
        s = self.settings
        restarted = 0
        for attempt in range(s.restarts):
            weak = np.flatnonzero(similarity < s.restart_below)
            if weak.size == 0:
                break
            restarted += int(weak.size)
            weak_seeds = [int(seeds[i]) * 1_000_003 + 7919 * (attempt + 1) for i in weak]
            start = self._best_random_start(targets[weak], weak_seeds, extractor, forward)
            chunk = [(ext, fwd, mapped[weak]) for ext, fwd, mapped, _ in surrogates]
            again, used, _ = self._optimise(targets[weak], weak_seeds, extractor, forward, chunk, init_z=start)
            found = np.einsum(
                "nd,nd->n", extractor.embed(crop_from_canonical(again, extractor.geometry)), targets[weak]
            ).astype(np.float32)
            queries[weak] += used.astype(np.int64) * s.samples + s.restart_candidates + 1
            better = found > similarity[weak]
            images[weak[better]] = again[better]
            similarity[weak[better]] = found[better]
        return restarted

    def _best_random_start(self, targets: np.ndarray, seeds: list[int], extractor: Extractor, forward) -> np.ndarray:
        """Per target, the best of ``restart_candidates`` random eigen-coefficient vectors (one query each)."""
        basis = self.basis
        count = self.settings.restart_candidates
        starts = np.stack([
            np.random.default_rng([seed, 0x5EED]).normal(0.0, 0.7, size=(count, basis.k)) for seed in seeds
        ]).astype(np.float32)
        faces = basis.mean[None] + (starts.reshape(-1, basis.k) * basis.stddev) @ basis.components
        faces = np.clip(faces, 0, 255).reshape(-1, basis.size, basis.size, 3).astype(np.uint8)
        canonical = np.stack([
            np.asarray(Image.fromarray(face).resize((CANONICAL_GEOMETRY.size,) * 2, Image.BILINEAR)) for face in faces
        ])
        vectors = extractor.embed(crop_from_canonical(canonical, extractor.geometry)).reshape(len(seeds), count, -1)
        best = np.einsum("tcd,td->tc", vectors, targets).argmax(axis=1)
        return starts[np.arange(len(seeds)), best]

    def _surrogates(self, extractor: Extractor, targets: np.ndarray) -> list:
        """(surrogate, its torch forward, the targets mapped into its space, a provenance line) each."""
        from fvr_audit.extractors.registry import get_extractor
        from fvr_audit.reconstructors.parametric.self_calibration import synthetic_adapter

        out = []
        for name in [n for n in self.settings.surrogates.split("+") if n]:
            if name == extractor.name:
                continue
            surrogate = get_extractor(name)
            forward, reason = torch_forward(surrogate)
            if forward is None:
                raise InputError(f"gradient: surrogate {name}: {reason}")
            adapter = synthetic_adapter(extractor, surrogate, faces=self.settings.surrogate_faces)
            out.append((surrogate, forward, adapter.transform(targets), f"adapter {adapter.describe()}"))
        return out

    # ------------------------------------------------------------------------------------------

    def _optimise(self, targets: np.ndarray, seeds: list[int], extractor: Extractor, forward, surrogates=(),
                  init_z: np.ndarray | None = None, on_share=None):
        """(images, steps used, traces) of one batch; ``on_share(share)``: share of the steps done."""
        import torch
        import torch.nn.functional as F

        s = self.settings
        basis = self.basis
        n, k, size = len(targets), basis.k, basis.size
        rsize = size if s.residual_size is None else s.residual_size
        comps = torch.from_numpy(np.array(basis.components, dtype=np.float32))
        mean = torch.from_numpy(np.array(basis.mean, dtype=np.float32))
        std = torch.from_numpy(np.array(basis.stddev, dtype=np.float32))
        target = torch.from_numpy(targets)
        pre = extractor.info.preprocessing
        pre_mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
        pre_std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
        base_theta = normalised_theta(extractor.geometry)
        full = CANONICAL_GEOMETRY.size
        out = extractor.geometry.size
        rngs = [np.random.default_rng([int(x), 0x6AD]) for x in seeds]

        z = (torch.zeros(n, k) if init_z is None else torch.from_numpy(np.asarray(init_z, np.float32))).requires_grad_(True)
        r = torch.zeros(n, 3, rsize, rsize, requires_grad=True) if rsize else None
        params = [(z, s.lr)] + ([(r, s.residual_lr)] if r is not None else [])
        moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in params]
        beta1, beta2 = 0.9, 0.999

        def render(zz, rr):
            small = (mean + (zz * std) @ comps).view(-1, size, size, 3).permute(0, 3, 1, 2)
            if rr is not None:
                if rsize != size:
                    rr = F.interpolate(rr, size=(size, size), mode="bilinear", align_corners=False)
                small = small + rr
            return F.interpolate(small, size=(full, full), mode="bilinear", align_corners=False)

        active = np.ones(n, bool)
        used = np.zeros(n, np.int64)
        smooth = np.full(n, np.nan)
        history: list[list[float]] = [[] for _ in range(n)]
        trace: list[list[list[float]]] = [[] for _ in range(n)]
        trace_every = max(1, s.effective_iterations() // 40)
        iterations = s.effective_iterations()
        for step in range(iterations):
            rows = np.flatnonzero(active)
            if rows.size == 0:
                break
            frac = step / max(1, iterations - 1)
            lr_factor = s.lr_final_share + (1 - s.lr_final_share) * 0.5 * (1 + math.cos(math.pi * frac))
            idx = torch.from_numpy(rows)
            zz = z[idx]
            rr = r[idx] if r is not None else None
            canvas = render(zz, rr).clamp(0, 255)
            m = len(rows) * s.samples
            theta, gain, bias = self._jitter([rngs[i] for i in rows], s.samples, base_theta)
            canvas = canvas.repeat_interleave(s.samples, dim=0) if s.samples > 1 else canvas
            grid = F.affine_grid(torch.from_numpy(theta), [m, 3, out, out], align_corners=False)
            # zeros outside the frame, as crop_from_canonical's warp does (arcface crops reach past it)
            crop = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            crop = (crop - 127.5) * torch.from_numpy(gain).view(m, 1, 1, 1) + 127.5 + torch.from_numpy(bias).view(
                m, 1, 1, 1
            )
            crop = crop.clamp(0, 255)
            if pre.channel_order is ChannelOrder.BGR:
                crop = crop.flip(1)
            x = (crop - pre_mean) / pre_std
            if pre.layout is Layout.NHWC:
                x = x.permute(0, 2, 3, 1)
            emb = F.normalize(forward(x), dim=1)
            cos = (emb * target[idx].repeat_interleave(s.samples, dim=0)).sum(1).view(len(rows), s.samples).mean(1)
            loss = -cos.sum() + s.prior_weight * (zz**2).mean(1).sum() * 1.0
            for other, other_forward, mapped in surrogates:
                loss = loss - s.surrogate_weight * self._surrogate_cosine(canvas, other, other_forward, mapped[rows]).sum()
            if rr is not None:
                loss = loss + s.residual_weight * ((rr / 255.0) ** 2).mean((1, 2, 3)).sum() * 100.0
                if s.tv_weight:
                    tv = (rr[:, :, 1:] - rr[:, :, :-1]).abs().mean((1, 2, 3)) + (rr[:, :, :, 1:] - rr[:, :, :, :-1]).abs().mean(
                        (1, 2, 3)
                    )
                    loss = loss + s.tv_weight * (tv / 255.0).sum()
            for p, _ in params:
                p.grad = None
            loss.backward()
            t = step + 1
            with torch.no_grad():
                for (p, lr), (m1, m2) in zip(params, moments, strict=True):
                    g = p.grad[idx]
                    m1[idx] = beta1 * m1[idx] + (1 - beta1) * g
                    m2[idx] = beta2 * m2[idx] + (1 - beta2) * g * g
                    # per-target step counts differ only by stopping; bias correction by the global step
                    upd = (m1[idx] / (1 - beta1**t)) / ((m2[idx] / (1 - beta2**t)).sqrt() + 1e-8)
                    p[idx] = p[idx] - lr * lr_factor * upd
                z.clamp_(-4.0, 4.0)
            used[rows] += 1
            values = cos.detach().numpy()
            for j, i in enumerate(rows):
                smooth[i] = values[j] if np.isnan(smooth[i]) else 0.9 * smooth[i] + 0.1 * values[j]
                history[i].append(smooth[i])
                if (step + 1) % trace_every == 0:
                    trace[i].append([int(used[i] * s.samples), round(float(smooth[i]), 5)])
                h = history[i]
                if s.plateau_steps and len(h) > s.plateau_steps and h[-1] - h[-1 - s.plateau_steps] < s.plateau_tol:
                    active[i] = False
                if s.target_similarity is not None and smooth[i] >= s.target_similarity:
                    active[i] = False
            if on_share is not None:
                on_share((step + 1) / iterations)
        with torch.no_grad():
            final = render(z, r).clamp(0, 255)
        images = final.round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        return images, used, trace

    @staticmethod
    def _surrogate_cosine(canvas, other: Extractor, other_forward, mapped: np.ndarray):
        """cos(S(x), A(v)) of each canvas (the first of its samples), through S's own crop and preprocessing."""
        import torch
        import torch.nn.functional as F

        n = len(mapped)
        frames = canvas.view(n, -1, *canvas.shape[1:])[:, 0] if canvas.shape[0] != n else canvas
        size = other.geometry.size
        theta = torch.from_numpy(np.repeat(normalised_theta(other.geometry)[None], n, 0).astype(np.float32))
        grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
        crop = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 255)
        pre = other.info.preprocessing
        if pre.channel_order is ChannelOrder.BGR:
            crop = crop.flip(1)
        x = (crop - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
        if pre.layout is Layout.NHWC:
            x = x.permute(0, 2, 3, 1)
        emb = F.normalize(other_forward(x.float()), dim=1)
        return (emb * torch.from_numpy(mapped)).sum(1)

    def _jitter(self, rngs, samples: int, base_theta: np.ndarray):
        """Affine thetas [M, 2, 3] taking F's crop, jittered, from the canonical frame; colour gains, biases.

        The jitter acts on the canonical frame about its centre (the face's axis of symmetry):
        ``u -> J u + t`` with ``J = diag(+-scale, scale)``. Drawn per sample from each target's own
        RNG, so a target's result does not depend on the other targets of its batch.
        """
        s = self.settings
        thetas, gains, biases = [], [], []
        for rng in rngs:
            for _ in range(samples):
                shift = rng.uniform(-s.jitter_shift, s.jitter_shift, 2) * 2
                scale = 1 + rng.uniform(-s.jitter_scale, s.jitter_scale + s.jitter_zoom_out)
                sign = -1.0 if (s.jitter_flip and rng.random() < 0.5) else 1.0
                jitter = np.array([[sign * scale, 0.0], [0.0, scale]])
                theta = jitter @ base_theta
                theta[:, 2] += shift
                thetas.append(theta)
                gains.append(1 + rng.uniform(-s.jitter_color, s.jitter_color))
                biases.append(rng.uniform(-s.jitter_color, s.jitter_color) * 127.5)
        return np.asarray(thetas, np.float32), np.asarray(gains, np.float32), np.asarray(biases, np.float32)


def create_gradient(preset: str = "default", **settings) -> GradientReconstructor:
    """Registry factory. ``preset``: "default", "fast" (60 steps) or "demo" (24); keyword settings of
    :class:`GradientSettings` override it (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise InputError(f"gradient: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    unknown = set(settings) - set(GradientSettings.__dataclass_fields__)
    if unknown:
        raise InputError(f"gradient: unknown setting(s) {', '.join(sorted(unknown))}")
    chosen = {key: value for key, value in settings.items() if value is not None}
    result = GradientReconstructor(replace(replace(GradientSettings(), **PRESETS[preset]), **chosen))
    return result
