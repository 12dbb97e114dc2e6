"""Issue 12 experiment (eighth session): an attack variant run through ``bench_reconstruction.py``.

Not a shipped attack: it is registered for this process only, then the benchmark runs as usual
(same targets, galleries, seeds and JSON). The README's "Tried in the eighth session" table comes
from these commands:

    python scripts/embed_lfw.py                                               # once: LFW vector caches
    # white-box optimisation of the naive generator's input (``--set latent_whitebox.residual_lr=2.0``: plus a pixel residual)
    python benchmarks/experiments/attack_variants.py --methods latent_whitebox --targets 20 \\
        --engines dlib-resnet128,faceres-1024,mobileface-256 --tag a150 > latent_whitebox20.json

``latent_whitebox``: Adam on the generator's 128-d input (start: the leaked vector), loss 1 - cos(F(crop
of R(w)), v) under random shift / zoom / mirror (the generators' training loss), optionally plus a
low-resolution pixel residual (cf. GaFaR, Otroshi Shahreza and Marcel, NeurIPS 2023).

The session's other variant, surrogate-guided search, is now ``refine``'s default
(:mod:`fvr_audit.reconstructors.guidance`).
"""

from __future__ import annotations

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


def create_gradient_refine(preset: str = "default", **settings):
    """``refine``'s surrogate-guided search started from the white-box ``gradient`` face instead of the
    naive generator's (any access: F's gradients, then queries)."""
    from fvr_audit.reconstructors.gradient import create_gradient
    from fvr_audit.reconstructors.refine import RefineReconstructor, create_refine

    class GradientRefine(RefineReconstructor):
        @property
        def adapter(self):
            return None

        @property
        def info(self) -> ReconstructorInfo:
            return ReconstructorInfo("gradient_refine", AttackAccess.WHITE_BOX,
                                     "refine's guided search from the gradient attack's face", "experiment")

        def supports(self, extractor):
            return self.start.supports(extractor) or self.search.supports(extractor)

    attack = create_refine(preset=preset, **settings)
    attack.__class__ = GradientRefine  # the same search and guidance; only the start face differs
    attack.start = create_gradient()
    return attack


def main() -> None:
    from fvr_audit.reconstructors import registry

    here = Path(__file__).stem
    sys.modules.setdefault(here, sys.modules[__name__])
    registry.RECONSTRUCTORS["latent_whitebox"] = f"{here}:create_latent_whitebox"
    registry.SETTINGS["latent_whitebox"] = f"{here}:LatentWhiteboxSettings"
    registry.RECONSTRUCTORS["gradient_refine"] = f"{here}:create_gradient_refine"
    registry.SETTINGS["gradient_refine"] = registry.SETTINGS["refine"]
    registry.SEARCH_METHODS = (*registry.SEARCH_METHODS, "gradient_refine")
    sys.argv = ["bench_reconstruction.py", *sys.argv[1:]]
    runpy.run_path(str(REPO_ROOT / "benchmarks" / "bench_reconstruction.py"), run_name="__main__")


if __name__ == "__main__":
    main()
