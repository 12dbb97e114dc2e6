"""The parametric reconstructors (NBNet, Vec2Face, Naive) at scan time: trained ONNX generators.

A parametric attack is a network R trained beforehand for one extractor F; at scan time only R
runs (onnxruntime, no torch), so it costs no queries to F and handles thousands of vectors per
second. The generator draws a 64 px canonical frame that is resized to the 200 px frame (the
same bilinear resize as in training), from which each recognizer takes its crop.

When no generator was trained for the scan's F, two ways remain (the scan says so):
``fvr-audit train`` one, or pass an :class:`~fvr_audit.reconstructors.parametric.adapter.RidgeAdapter`
that maps F's vectors into the space of an F that has one (dlib-resnet128), fitted on a folder of
calibration photos.

>>> r = create_nbnet()
>>> r.info.access.value, r.info.name
('parametric', 'nbnet')
"""

from __future__ import annotations

import time
from pathlib import Path

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

REFERENCES = {
    "nbnet": "G. Mai, K. Cao, P. C. Yuen, A. K. Jain, 'On the reconstruction of face images from deep face templates', TPAMI 2018",
    "vec2face": "C. N. Duong, T.-D. Truong, K. Luu, K. G. Quach, H. Bui, K. Roy, 'Vec2Face: unveil human faces from their blackbox features in face recognition', CVPR 2020",
    "naive": "Inverted-ResNet CNN baseline (Mai et al. 2018, section 5), as evaluated in the FVR de-anonymisation paper",
}
DESCRIPTIONS = {
    "nbnet": "NBNet-B: de-convolution blocks + neighbourly dense blocks, pixel then perceptual (F) loss",
    "vec2face": "Vec2Face: conditional GAN generator, pixel + adversarial + F feature loss",
    "naive": "Naive: stacked inverted ResNet blocks, pixel + F feature loss",
}
#: Vectors per onnxruntime call (a 200 px frame is 480 kB of float32).
BATCH = 64


class ParametricReconstructor(Reconstructor):
    """A trained generator R(v) for one extractor, run with onnxruntime."""

    def __init__(self, method: str, *, models: tuple[Path, ...] = (), adapter=None) -> None:
        if method not in REFERENCES:
            raise InputError(f"{method}: not a parametric method ({', '.join(REFERENCES)})")
        self.method = method
        self.models = tuple(Path(p) for p in models)
        self.adapter = adapter
        from fvr_audit.reconstructors.parametric.store import list_reconstructor_files

        self.settings = {
            "models": [str(p) for p in self.models],
            "adapter": adapter.describe() if adapter else None,
            # The candidate files' hashes: a resumed `reconstruct` folder made with another
            # generator (retrained, re-exported) is refused rather than mixed.
            "generators": sorted(
                f"{f.path.name}:{f.entry.sha256[:16]}" for f in list_reconstructor_files(self.models) if f.method == method
            ),
        }
        self._sessions: dict[str, object] = {}

    @property
    def info(self) -> ReconstructorInfo:
        return ReconstructorInfo(
            name=self.method,
            access=AttackAccess.PARAMETRIC,
            description=DESCRIPTIONS[self.method],
            reference=REFERENCES[self.method],
        )

    def _lookup(self, extractor: Extractor):
        from fvr_audit.reconstructors.parametric.store import find_reconstructor

        if self.adapter is not None:
            if self.adapter.source != extractor.name:
                return None, f"the adapter maps {self.adapter.source} vectors, not {extractor.name}"
            return find_reconstructor(self.method, self.adapter.target, self.adapter.target_sha256, self.models)
        return find_reconstructor(self.method, extractor.name, extractor.info.sha256, self.models)

    def supports(self, extractor: Extractor) -> str | None:
        _, reason = self._lookup(extractor)
        return reason

    def generator_file(self, extractor: Extractor):
        """The :class:`~fvr_audit.reconstructors.parametric.store.ReconstructorFile` used for ``extractor``."""
        found, reason = self._lookup(extractor)
        if found is None:
            raise InputError(f"{self.method}: {reason}")
        return found

    def generate(self, vectors: np.ndarray, extractor: Extractor) -> np.ndarray:
        """uint8 [N, 200, 200, 3] canonical faces of ``vectors`` (made by ``extractor``); F is not queried."""
        return self._generate(self.generator_file(extractor), vectors)

    def render(self, found, vectors: np.ndarray) -> np.ndarray:
        """uint8 [N, 200, 200, 3] canonical faces by the generator ``found`` (a ReconstructorFile)."""
        return self._generate(found, vectors)

    def _generate(self, found, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.adapter is not None:
            vectors = self.adapter.transform(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != found.dim:
            raise InputError(f"{self.method}: {found.path.name} takes {found.dim}-d vectors, got shape {vectors.shape}")
        session = self._session(found.path)
        out = np.empty((len(vectors), 200, 200, 3), np.uint8)
        for lo in range(0, len(vectors), BATCH):
            frame = session.run(None, {"vector": vectors[lo : lo + BATCH]})[0]
            if frame.shape[1:] != (3, 200, 200):
                raise InputError(f"{found.path}: output of shape {frame.shape} is not a [N, 3, 200, 200] canonical frame")
            out[lo : lo + BATCH] = np.clip(np.rint(frame), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        return out

    def _session(self, path: Path):
        key = str(path)
        if key not in self._sessions:
            from fvr_audit.extractors.dlib_resnet import backend_threads
            from fvr_audit.extractors.ort_session import cpu_session

            self._sessions[key] = cpu_session(path, backend_threads())
        return self._sessions[key]

    def reconstruct(
        self,
        vectors: np.ndarray,
        extractor: Extractor,
        *,
        seed: int = 0,
        on_progress: ProgressCallback | None = None,
        target_seeds=None,
    ) -> ReconstructionResult:
        # A trained generator draws nothing at random: seeds change nothing.
        start = time.perf_counter()
        found = self.generator_file(extractor)
        images = self._generate(found, vectors)
        generated = time.perf_counter() - start
        # The similarity is a measurement for the report, not part of the attack (no queries).
        embedded = extractor.embed(crop_from_canonical(images, extractor.geometry))
        similarity = np.einsum("nd,nd->n", embedded, np.asarray(vectors, np.float32)).astype(np.float32)
        if on_progress:
            on_progress(len(vectors))
        models = [found.path.name]
        if self.adapter is not None:
            models.append(f"adapter {self.adapter.source}->{self.adapter.target} ({self.adapter.describe()})")
        return ReconstructionResult(
            images=images,
            similarity=similarity,
            queries=np.zeros(len(vectors), np.int64),
            seconds=time.perf_counter() - start,
            models_used=(*found.details.get("models_used_in_training", [found.extractor]), *models),
            settings={
                "model_file": found.path.name,
                "model_sha256": found.entry.sha256,
                "trained_for": found.extractor,
                "training": {k: found.details.get(k) for k in ("training_data", "training_identities", "training_images", "epochs", "validation_median_cosine")},
                "generation_seconds": round(generated, 3),
                "vectors_per_second": round(len(vectors) / generated, 1) if generated > 0 else None,
                "adapter": self.adapter.describe() if self.adapter else None,
                # a generator tuned to F by the scan: from which shipped one, through which adapter, how
                **({"tuned": {k: found.details.get(k) for k in ("tuned_from", "adapter", "training_data", "fine_tuning")}}
                   if found.details.get("tuned_from") else {}),
            },
        )


def create_nbnet(**settings) -> ParametricReconstructor:
    """Registry factory for ``nbnet`` (settings: ``models``, ``adapter``)."""
    return ParametricReconstructor("nbnet", **settings)


def create_vec2face(**settings) -> ParametricReconstructor:
    """Registry factory for ``vec2face``."""
    return ParametricReconstructor("vec2face", **settings)


def create_naive(**settings) -> ParametricReconstructor:
    """Registry factory for ``naive``."""
    return ParametricReconstructor("naive", **settings)
