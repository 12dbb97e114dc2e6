"""Issue 12 experiments (eighth session): two attack variants run through ``bench_reconstruction.py``.

Not shipped attacks: each is registered for this process only, then the benchmark runs as usual
(same targets, galleries, seeds and JSON). The README's "Tried in the eighth session" tables come
from these commands:

    python scripts/embed_lfw.py                                               # once: LFW vector caches
    # white-box optimisation of the naive generator's input (``--set latent_whitebox.residual_lr=2.0``: plus a pixel residual)
    python benchmarks/experiments/attack_variants.py --methods latent_whitebox --targets 20 \\
        --engines dlib-resnet128,faceres-1024,mobileface-256 --tag a150 > latent_whitebox20.json
    # refine with surrogate-guided directions (mobileface-256 through a ridge map fitted on LFW training photos)
    python scripts/fit_lfw_adapter.py --source dlib-resnet128 --target mobileface-256 --photos 4000 --out a-dlib-mf-4000.npz
    FVR_SURROGATE_ADAPTER=a-dlib-mf-4000.npz python benchmarks/experiments/attack_variants.py --methods guided_refine \\
        --targets 20 --engines dlib-resnet128,faceres-1024,mobileface-256 --tag g4 > guided_refine20.json

``latent_whitebox``: Adam on the generator's 128-d input (start: the leaked vector), loss 1 - cos(F(crop
of R(w)), v) under random shift / zoom / mirror (the generators' training loss), optionally plus a
low-resolution pixel residual (cf. GaFaR, Otroshi Shahreza and Marcel, NeurIPS 2023).

``guided_refine``: ``refine`` whose every iteration replaces ``guided`` of its antithetic directions
by the gradient, in the eigenface coefficients, of a local surrogate's cosine to F's vector mapped
into the surrogate's space (once pure, then mixed with the random directions at weight ``mix``);
F is only queried, and F's answers pick the step (cf. prior-guided random gradient-free search,
Cheng et al., NeurIPS 2019). The surrogate and its map are recorded in ``models_used``, so the
surrogate never judges the attack.
"""

from __future__ import annotations

import collections
import os
import runpy
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import Extractor, white_box_forward
from fvr_audit.reconstructors.base import (
    AttackAccess,
    ReconstructionResult,
    Reconstructor,
    ReconstructorInfo,
    WorkShare,
)
from fvr_audit.reconstructors.eigenfaces import EigenfacesReconstructor

SURROGATE = "mobileface-256"
ADAPTER_ENV = "FVR_SURROGATE_ADAPTER"


@dataclass(frozen=True)
class LatentWhiteboxSettings:
    steps: int = 150
    lr: float = 0.02
    zoom: float = 0.1
    views: int = 2
    #: pixel residual (50 px, upsampled to the frame): learning rate in pixels (0: none) and L2 weight
    residual_lr: float = 0.0
    residual_weight: float = 1.0


class LatentWhitebox(Reconstructor):
    """White-box optimisation in the naive generator's input space (see the module docstring)."""

    def __init__(self, settings: LatentWhiteboxSettings) -> None:
        self.settings = settings

    @property
    def info(self) -> ReconstructorInfo:
        return ReconstructorInfo("latent_whitebox", AttackAccess.WHITE_BOX,
                                 "white-box optimisation of the naive generator's input", "cf. GaFaR (NeurIPS 2023)")

    def supports(self, extractor: Extractor) -> str | None:
        return white_box_forward(extractor)[1]

    def reconstruct(self, vectors, extractor, *, seed=0, on_progress=None, target_seeds=None) -> ReconstructionResult:
        import onnx
        import torch
        import torch.nn.functional as fn

        from fvr_audit.convert.onnx_to_torch import OnnxGraphModule
        from fvr_audit.reconstructors.parametric.store import find_reconstructor
        from fvr_audit.reconstructors.parametric.training import _IdentityLoss

        start = time.perf_counter()
        s = self.settings
        targets = self.checked_targets(vectors, extractor)
        found, why = find_reconstructor("naive", extractor.name, extractor.info.sha256)
        if found is None:
            raise InputError(why)
        generator = OnnxGraphModule(onnx.load(str(found.path))).eval().requires_grad_(False)
        forward, _ = white_box_forward(extractor)
        torch.manual_seed(seed)
        identity = _IdentityLoss(extractor, forward, seed, zoom=s.zoom)
        v = torch.from_numpy(targets)
        w = torch.nn.Parameter(v.clone())
        groups = [{"params": [w], "lr": s.lr}]
        residual = None
        if s.residual_lr > 0:
            residual = torch.nn.Parameter(torch.zeros(len(v), 3, 50, 50))
            groups.append({"params": [residual], "lr": s.residual_lr})
        optimiser = torch.optim.Adam(groups)
        work = WorkShare(on_progress, len(v))

        def face():
            x = generator(fn.normalize(w, dim=1))
            if residual is not None:
                x = x + fn.interpolate(residual, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return x.clamp(0, 255)

        for step in range(s.steps):
            x = face()
            loss = sum(identity(x, v) for _ in range(s.views)) / s.views
            if residual is not None:
                loss = loss + s.residual_weight * (residual / 255.0).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            work.reached((step + 1) / s.steps)
        with torch.no_grad():
            images = np.clip(np.rint(face().numpy()), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        similarity = np.einsum("nd,nd->n", extractor.embed(crop_from_canonical(images, extractor.geometry)), targets)
        work.finish()
        return ReconstructionResult(images=images, similarity=similarity.astype(np.float32),
                                    queries=np.full(len(v), s.steps * s.views + 1), seconds=time.perf_counter() - start,
                                    models_used=(extractor.name, found.path.name), settings={"preset_resolved": asdict(s)})


def create_latent_whitebox(preset: str = "default", **settings) -> LatentWhitebox:
    known = LatentWhiteboxSettings.__dataclass_fields__
    return LatentWhitebox(replace(LatentWhiteboxSettings(), **{k: v for k, v in settings.items() if k in known and v is not None}))


class GuidedSearch(EigenfacesReconstructor):
    """The eigenface search with some directions from a surrogate's gradient (see the module docstring).

    The base search keeps each target's coefficients to itself; this subclass follows them through
    the two hooks it overrides: ``_perturbations`` is called once per active target (in row order,
    the first iteration holding every target) and ``_es_step`` then once per target in the same order.
    """

    def __init__(self, settings, surrogate: Extractor, adapter, guided: int = 4, mix: float = 0.7) -> None:
        import torch

        from fvr_audit.reconstructors.parametric.training import _IdentityLoss

        super().__init__(settings)
        forward, why = white_box_forward(surrogate)
        if forward is None:
            raise InputError(why)
        self.adapter, self.guided, self.mix = adapter, guided, mix
        self.loss = _IdentityLoss(surrogate, forward, 0)
        b = self.basis
        self.t_mean = torch.from_numpy(np.asarray(b.mean, np.float32))
        self.t_comp = torch.from_numpy(np.asarray(b.components, np.float32))
        self.t_std = torch.from_numpy(np.asarray(b.stddev, np.float32))

    def search(self, vectors, extractor, *, start_faces=None, seed=0, on_progress=None, target_seeds=None):
        b, s = self.basis, self.settings
        mapped = self.adapter.transform(np.asarray(vectors, np.float32))
        self._u = (mapped / np.linalg.norm(mapped, axis=1, keepdims=True)).astype(np.float32)
        small = b.from_canonical(start_faces)
        self._z = np.clip(b.project_small(small), -s.clip, s.clip).astype(np.float32)
        self._residual = (small - b.render_small(self._z)).astype(np.float32)
        self._rows, self._queue = {}, collections.deque()
        return super().search(vectors, extractor, start_faces=start_faces, seed=seed, on_progress=on_progress,
                              target_seeds=target_seeds)

    def _gradient(self, r: int) -> np.ndarray:
        import torch

        size = self.basis.size
        z = torch.from_numpy(self._z[r : r + 1].copy()).requires_grad_(True)
        image = (self.t_mean + (z * self.t_std) @ self.t_comp).reshape(1, size, size, 3)
        image = image + torch.from_numpy(self._residual[r : r + 1])
        embedded = self.loss.embed(image.permute(0, 3, 1, 2), jitter=True)
        (embedded * torch.from_numpy(self._u[r : r + 1])).sum().backward()
        return z.grad[0].numpy().astype(np.float32)

    def _perturbations(self, rng, eps, blobs, sigma_rms):
        d = super()._perturbations(rng, eps, blobs, sigma_rms)
        r = self._rows.setdefault(id(rng), len(self._rows))
        self._queue.append(r)
        half = len(d) // 2

        def at_step(x):
            return x * (eps / (np.sqrt(((x * sigma_rms) ** 2).sum()) + 1e-12))

        g = at_step(self._gradient(r))
        for j in range(min(self.guided, half)):
            v = g if j == 0 else at_step(self.mix * g + np.sqrt(1 - self.mix**2) * d[j])
            d[j], d[half + j] = v, -v
        return d

    def _es_step(self, z, deltas, sims, eps, sigma_rms, s):
        new = EigenfacesReconstructor._es_step(z, deltas, sims, eps, sigma_rms, s)
        self._z[self._queue.popleft()] = new
        return new


def create_guided_refine(preset: str = "default", models: tuple = (), adapter=None, guided: int = 4, mix: float = 0.7,
                         **settings):
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter
    from fvr_audit.reconstructors.refine import create_refine

    path = os.environ.get(ADAPTER_ENV)
    if not path:
        raise InputError(f"guided_refine: set {ADAPTER_ENV} to a dlib-resnet128 -> {SURROGATE} adapter (.npz)")
    surrogate_map = RidgeAdapter.load(Path(path))
    refine = create_refine(preset=preset, models=models, adapter=adapter, **settings)
    refine.search = GuidedSearch(refine.settings, get_extractor(SURROGATE), surrogate_map, guided, mix)
    plain = refine.reconstruct

    def reconstruct(vectors, extractor, **kwargs):
        result = plain(vectors, extractor, **kwargs)
        used = (SURROGATE, f"adapter dlib-resnet128->{SURROGATE} ({Path(path).name})")
        return replace(result, models_used=tuple(dict.fromkeys((*result.models_used, *used))))

    refine.reconstruct = reconstruct
    return refine


def main() -> None:
    from fvr_audit.reconstructors import registry

    here = Path(__file__).stem
    sys.modules.setdefault(here, sys.modules[__name__])
    registry.RECONSTRUCTORS["latent_whitebox"] = f"{here}:create_latent_whitebox"
    registry.SETTINGS["latent_whitebox"] = f"{here}:LatentWhiteboxSettings"
    registry.RECONSTRUCTORS["guided_refine"] = f"{here}:create_guided_refine"
    registry.SETTINGS["guided_refine"] = registry.SETTINGS["refine"]
    # guided_refine is refine's search from naive's face: the same roles in the benchmark
    registry.SEARCH_METHODS = (*registry.SEARCH_METHODS, "guided_refine")
    registry.GENERATOR_METHODS = (*registry.GENERATOR_METHODS, "guided_refine")
    registry.ADAPTED_METHODS = (*registry.ADAPTED_METHODS, "guided_refine")
    sys.argv = ["bench_reconstruction.py", *sys.argv[1:]]
    runpy.run_path(str(REPO_ROOT / "benchmarks" / "bench_reconstruction.py"), run_name="__main__")


if __name__ == "__main__":
    main()
