"""Training the parametric reconstructors (``fvr-audit train``) and exporting them to ONNX.

Data: face photos aligned once into the canonical frame at the generators' 64 px
(:data:`~fvr_audit.reconstructors.parametric.networks.OUTPUT_SIZE`) and their vectors v = F(photo).
A seeded set of whole identities is held out for validation (never trained on); after every
epoch the median cosine(F(R(v)), v) on it is reported and kept in the checkpoint.

Losses, per method (weights in :class:`TrainSettings`):

* pixel: L1 between R(v) and the aligned photo, on 0..1 values (every method);
* identity: 1 - cosine(F(R(v)), v) through a differentiable F (the built-in torch extractors),
  with R(v) resized to the 200 px frame and cut to F's own crop exactly as at scan time, under a
  random shift and mirror so the networks learn faces F recognises rather than patterns of one
  crop. It is computed on ``identity_samples`` faces of each batch (F is the costly part on a
  CPU). NBNet's "perceptual loss" is this loss: the features of a face recognizer we have (F
  itself, here dlib-resnet128's descriptor layer), since VGG weights cannot be downloaded; it is
  switched on for the last quarter of training, as in Mai et al. Naive and Vec2Face use it from
  the start.
* perceptual (black-box F only: an ONNX file without a torch twin, an HTTP endpoint): F's vectors
  are computed once; F cannot be differentiated, so the feature loss compares R(v) with the real
  photo in the descriptor space of a surrogate recognizer, 1 - cosine(S(R(v)), S(photo)) with
  S = dlib-resnet128. The surrogate is then part of the attack: it is recorded with the model
  and the scan never lets it judge that reconstructor.
* adversarial (vec2face only): hinge loss of a projection discriminator D(x, v).

Checkpoints (``checkpoint.pt`` in the work folder, written atomically after every epoch) hold
tensors and plain values only and are read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY, crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import ChannelOrder, Extractor, Layout
from fvr_audit.io.atomic import atomic_write_bytes, atomic_write_text
from fvr_audit.io.outputs import private_mkdir
from fvr_audit.reconstructors.registry import PARAMETRIC_METHODS

METHODS = PARAMETRIC_METHODS
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"


@dataclass(frozen=True)
class TrainSettings:
    """How a reconstructor is trained. Defaults are the ones used for the shipped models."""

    method: str
    epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-3
    #: Weight of the L1 pixel loss (0..1 pixel values).
    pixel_weight: float = 1.0
    #: Weight of 1 - cosine(F(R(v)), v); 0 turns it off (it is off anyway for a black-box F).
    identity_weight: float = 0.5
    #: Faces of each batch that go through F for the identity loss.
    identity_samples: int = 8
    #: Share of training after which the identity loss starts (NBNet: the last quarter).
    identity_from: float = 0.0
    #: Random zoom (+- share) of F's crop in the identity loss, on top of the shift and mirror.
    identity_jitter_scale: float = 0.05
    #: Second recognizers (built-in names joined by "+") whose features of R(v) are pulled towards
    #: their features of the real photo: 1 - cosine(S(R(v)), S(photo)), on the identity faces of
    #: each batch. The photo is at hand when training, so no map between recognizers is needed; each
    #: surrogate is recorded as used and may then not judge the generator.
    surrogates: str = ""
    #: Weight of each surrogate's loss.
    surrogate_weight: float = 0.5
    #: vec2face: weight of the generator's adversarial loss.
    adversarial_weight: float = 0.0
    #: Identities held out for validation (seeded), and most validation faces scored per epoch.
    validation_identities: int = 100
    validation_faces: int = 200
    seed: int = 0

    def validate(self) -> TrainSettings:
        if self.method not in METHODS:
            raise InputError(f"{self.method}: unknown trainable method; known: {', '.join(METHODS)}")
        if self.epochs < 1 or self.batch_size < 2:
            raise InputError("train: --epochs must be >= 1 and --batch-size >= 2")
        if self.lr <= 0:
            raise InputError(f"train: --lr {self.lr}: must be positive")
        if not 0 <= self.identity_from <= 1:
            raise InputError(f"train: identity_from {self.identity_from}: must be in [0, 1]")
        if self.surrogate_weight < 0:
            raise InputError(f"train: surrogate_weight {self.surrogate_weight}: must be >= 0")
        return self

    def surrogate_names(self) -> tuple[str, ...]:
        """The surrogate recognizers, in order.

        >>> default_settings("naive", surrogates="mobileface-256").surrogate_names()
        ('mobileface-256',)
        """
        return tuple(n for n in self.surrogates.split("+") if n)


#: Surrogate recognizer of the perceptual loss when F is a black box.
SURROGATE = "dlib-resnet128"

#: Per-method defaults (the paper's loss design; see the module docstring).
METHOD_DEFAULTS: dict[str, dict] = {
    "nbnet": {"identity_from": 0.75},
    "naive": {},
    "vec2face": {"adversarial_weight": 0.05, "lr": 1e-3},
}


def default_settings(method: str, **overrides) -> TrainSettings:
    """The settings of ``method`` with ``overrides`` (``None`` values keep the default).

    >>> default_settings("nbnet").identity_from
    0.75
    >>> default_settings("naive", epochs=2).epochs
    2
    """
    if method not in METHODS:
        raise InputError(f"{method}: unknown trainable method; known: {', '.join(METHODS)}")
    values = {**METHOD_DEFAULTS[method], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainSettings(method=method, **values).validate()


@dataclass(frozen=True)
class TrainingData:
    """Aligned faces and their vectors, with labels (identities) for the validation split."""

    #: uint8 [M, 64, 64, 3] canonical-frame faces.
    faces: np.ndarray
    #: float32 [M, D] L2-normalised F(photo).
    vectors: np.ndarray
    labels: np.ndarray
    #: Where the faces came from (recorded with the model).
    source: str
    extractor: str
    extractor_sha256: str

    def __post_init__(self) -> None:
        if not (len(self.faces) == len(self.vectors) == len(self.labels)):
            raise InputError("training data: faces, vectors and labels differ in length")

    def save(self, path: Path) -> None:
        from fvr_audit.io.npz import save_npz

        save_npz(
            path,
            faces=self.faces,
            vectors=self.vectors,
            labels=np.asarray(self.labels).astype(str),
            source=np.array(self.source),
            extractor=np.array(self.extractor),
            extractor_sha256=np.array(self.extractor_sha256),
        )

    @classmethod
    def load(cls, path: Path) -> TrainingData:
        from fvr_audit.io.npz import load_npz

        keys = ("faces", "vectors", "labels", "source", "extractor", "extractor_sha256")
        data = load_npz(path, keys, what="a training-data file (training-data.npz of `fvr-audit train`)")
        return cls(
            faces=data["faces"],
            vectors=data["vectors"].astype(np.float32),
            labels=data["labels"],
            source=str(data["source"]),
            extractor=str(data["extractor"]),
            extractor_sha256=str(data["extractor_sha256"]),
        )


def prepare_training_data(
    faces_dir: Path,
    extractor: Extractor,
    *,
    identities: set[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TrainingData:
    """Align every photo under ``faces_dir`` (an identity tree) once: a 64 px canonical face for the
    generator and F's own crop for v. Photos without a detected face are skipped, not guessed."""
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.extraction import discover_images
    from fvr_audit.extraction.pipeline import align_paths
    from fvr_audit.extractors.base import AlignmentTemplate, FaceGeometry
    from fvr_audit.reconstructors.parametric.networks import OUTPUT_SIZE

    records, _ = discover_images(faces_dir)
    if identities is not None:
        records = [r for r in records if r.label in identities]
    if not records:
        raise InputError(f"{faces_dir}: no face photos found (for the chosen identities)")
    if any(not r.label for r in records):
        raise InputError(f"{faces_dir}: training needs an identity tree (one sub-folder per person)")
    geometry = FaceGeometry(OUTPUT_SIZE, AlignmentTemplate.DLIB_5PT, CANONICAL_GEOMETRY.padding)
    faces, crops, labels = [], [], []
    vectors = []
    for record, face in zip(records, align_paths([str(r.path) for r in records], [geometry, extractor.geometry], no_face=NoFacePolicy.SKIP), strict=True):
        if face.status.usable:
            faces.append(face.crops[0])
            crops.append(face.crops[1])
            labels.append(record.label)
            if len(crops) == 64:
                vectors.append(extractor.embed(np.stack(crops)))
                crops.clear()
        if on_progress:
            on_progress(1)
    if crops:
        vectors.append(extractor.embed(np.stack(crops)))
    if len(set(labels)) < 2:
        raise InputError(f"{faces_dir}: faces of at least 2 identities are needed (found {len(set(labels))})")
    return TrainingData(
        faces=np.stack(faces),
        vectors=np.concatenate(vectors).astype(np.float32),
        labels=np.array(labels),
        source=str(faces_dir),
        extractor=extractor.name,
        extractor_sha256=extractor.info.sha256 or "",
    )


def feature_loss_plan(extractor: Extractor, settings: TrainSettings) -> str:
    """One line saying which recognizer's features the loss will use, and why."""
    from fvr_audit.reconstructors.gradient import torch_forward

    if settings.identity_weight <= 0:
        return "feature loss off (--identity-weight 0): pixel losses only"
    forward, reason = torch_forward(extractor)
    if forward is not None:
        return f"feature loss through F = {extractor.name} itself (1 - cos(F(R(v)), v))"
    return (
        f"F is a black box ({reason.split(';')[0]}): its vectors were computed once; the feature loss uses the "
        f"surrogate {SURROGATE} on the real photo, which is recorded as used by this reconstructor"
    )


def split_validation(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Boolean mask of the faces of ``count`` identities drawn (seeded) for validation.

    At most a fifth of the identities is held out:

    >>> labels = np.repeat([f"id{i}" for i in range(20)], 2)
    >>> mask = split_validation(labels, 10, seed=0)
    >>> int(mask.sum()), len(set(labels[mask]))
    (8, 4)
    """
    names = np.unique(labels)
    count = min(count, max(1, len(names) // 5))
    chosen = np.random.default_rng([seed, 0x7A1]).choice(names, size=count, replace=False)
    return np.isin(labels, chosen)


@dataclass
class EpochReport:
    epoch: int
    losses: dict[str, float]
    validation_cosine: float
    seconds: float


@dataclass
class TrainOutcome:
    generator: object
    history: list[dict] = field(default_factory=list)
    #: The recognizer whose features the loss used (F itself, a surrogate, or None).
    feature_loss_model: str | None = None
    validation_labels: list[str] = field(default_factory=list)
    settings: TrainSettings | None = None


class _IdentityLoss:
    """1 - cosine(F(crop of R(v) in the 200 px frame), v), with a random shift and mirror."""

    def __init__(self, extractor: Extractor, forward, seed: int, zoom: float = 0.0) -> None:
        import torch

        from fvr_audit.reconstructors.views import normalised_theta

        self.forward = forward
        pre = extractor.info.preprocessing
        self.bgr = pre.channel_order is ChannelOrder.BGR
        self.nhwc = pre.layout is Layout.NHWC
        self.mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.theta = torch.from_numpy(normalised_theta(extractor.geometry).astype(np.float32))
        self.size = extractor.geometry.size
        self.generator = torch.Generator().manual_seed(seed)
        self.zoom = zoom

    def __call__(self, pixels, v):
        return 1.0 - (self.embed(pixels) * v).sum(1).mean()

    def embed(self, pixels, jitter: bool = True, views=None):
        """L2-normalised descriptors of [N, 3, 64, 64] canonical faces (0..255), differentiable.

        ``views``: the random view of each face given by the caller as (mirror: bool [N], shift:
        float [N, 2] in [-0.5, 0.5)) instead of drawn here, for callers whose draws are per target."""
        import torch
        import torch.nn.functional as F

        n = pixels.shape[0]
        full = CANONICAL_GEOMETRY.size
        frame = F.interpolate(pixels, size=(full, full), mode="bilinear", align_corners=False)
        theta = self.theta.expand(n, 2, 3).clone()
        if jitter:
            if views is None:
                views = (torch.rand(n, generator=self.generator) < 0.5,
                         torch.rand(n, 2, generator=self.generator) - 0.5)
            flip, shift = views
            theta[flip, 0, 0] *= -1
            theta[:, :, 2] += shift * (2 * 3.0 / full) * 2
            if self.zoom:
                scale = 1.0 + (torch.rand(n, generator=self.generator) * 2 - 1) * self.zoom
                theta[:, :, :2] *= scale.view(n, 1, 1)
        grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
        crop = F.grid_sample(frame, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.bgr:
            crop = crop.flip(1)
        x = (crop - self.mean) / self.std
        if self.nhwc:
            x = x.permute(0, 2, 3, 1)
        return F.normalize(self.forward(x), dim=1)


def render_canonical(pixels: np.ndarray) -> np.ndarray:
    """float [N, 3, 64, 64] generator output (0..255) -> uint8 [N, 200, 200, 3] canonical frame."""
    from fvr_audit.reconstructors.eigenbasis import to_canonical_uint8

    return to_canonical_uint8(np.asarray(pixels, np.float32).transpose(0, 2, 3, 1))


def validation_cosine(generator, data: TrainingData, mask: np.ndarray, extractor: Extractor, limit: int) -> float:
    """Median cosine(F(R(v)), v) over (at most ``limit``) validation faces, F run as at scan time."""
    import torch

    rows = np.flatnonzero(mask)[:limit]
    if rows.size == 0:
        return float("nan")
    generator.eval()
    sims = []
    with torch.no_grad():
        for lo in range(0, len(rows), 64):
            v = data.vectors[rows[lo : lo + 64]]
            images = render_canonical(generator(torch.from_numpy(v)).numpy())
            emb = extractor.embed(crop_from_canonical(images, extractor.geometry))
            sims.append(np.einsum("nd,nd->n", emb, v))
    generator.train()
    return float(np.median(np.concatenate(sims)))


def train(
    data: TrainingData,
    extractor: Extractor,
    settings: TrainSettings,
    work: Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, int, int, dict], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainOutcome:
    """Train ``settings.method`` for ``extractor`` on ``data``; checkpoint into ``work`` every epoch.

    ``resume``: continue from ``work/checkpoint.pt`` (its settings and data must match; ``epochs``
    may be raised to train longer).
    ``on_step(epoch, step, steps, losses)`` after every batch; ``on_epoch(report)`` after every epoch.
    """
    import torch
    import torch.nn.functional as F

    from fvr_audit.reconstructors.gradient import torch_forward
    from fvr_audit.reconstructors.parametric.networks import (
        VEC2FACE_NOISE,
        Vec2FaceDiscriminator,
        build_generator,
    )

    settings = settings.validate()
    if data.extractor != extractor.name:
        raise InputError(f"training data made by {data.extractor}, not {extractor.name}")
    work = Path(work)
    private_mkdir(work)  # 0700: checkpoints and prepared faces are biometric data
    torch.manual_seed(settings.seed)
    dim = data.vectors.shape[1]
    generator = build_generator(settings.method, dim)
    discriminator = Vec2FaceDiscriminator(dim) if settings.adversarial_weight > 0 else None
    betas = (0.5, 0.999) if discriminator is not None else (0.9, 0.999)
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=betas) if discriminator else None

    identity = perceptual = None
    feature_model = None
    if settings.identity_weight > 0:
        forward, _ = torch_forward(extractor)
        if forward is not None:
            identity = _IdentityLoss(extractor, forward, settings.seed, settings.identity_jitter_scale)
            feature_model = extractor.name
        else:
            from fvr_audit.extractors.registry import get_extractor

            surrogate = get_extractor(SURROGATE)
            perceptual = _IdentityLoss(surrogate, torch_forward(surrogate)[0], settings.seed, settings.identity_jitter_scale)
            feature_model = f"{surrogate.name} (perceptual surrogate)"
    second: list[tuple[str, _IdentityLoss]] = []
    if settings.surrogate_weight > 0:
        from fvr_audit.extractors.registry import get_extractor

        for name in settings.surrogate_names():
            if name == extractor.name:
                raise InputError(f"train: surrogate {name} is F itself")
            other = get_extractor(name)
            forward, reason = torch_forward(other)
            if forward is None:
                raise InputError(f"train: surrogate {name}: {reason}")
            second.append((other.name, _IdentityLoss(other, forward, settings.seed + 1, settings.identity_jitter_scale)))

    val_mask = split_validation(data.labels, settings.validation_identities, settings.seed)
    train_rows = np.flatnonzero(~val_mask)
    # Resuming may raise --epochs (train longer); any other change makes it another run.
    # (the surrogate fields only when used, so checkpoints made before they existed still resume)
    unused = {"epochs"} | ({"surrogates", "surrogate_weight"} if not second else set())
    fingerprint = {
        "settings": {k: v for k, v in asdict(settings).items() if k not in unused},
        "faces": int(len(data.faces)),
        "extractor_sha256": data.extractor_sha256,
        "validation": sorted(set(np.asarray(data.labels)[val_mask].tolist())),
        "feature_loss_model": feature_model,
    }
    if second:
        fingerprint["surrogates"] = [name for name, _ in second]
    history: list[dict] = []
    start_epoch = 0
    checkpoint_file = work / CHECKPOINT
    if resume and checkpoint_file.exists():
        state = torch.load(checkpoint_file, weights_only=True)
        saved = {k: v for k, v in json.loads(state["fingerprint"]).items() if k != "epochs"}
        if saved != json.loads(json.dumps(fingerprint)):
            raise InputError(f"{checkpoint_file}: made with other settings or data; use another --work folder")
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if discriminator is not None:
            discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        history = json.loads(state["history"])
        start_epoch = int(state["epoch"])
    elif checkpoint_file.exists():
        raise InputError(f"{checkpoint_file}: a training run is already there; use --resume or another --work folder")

    faces = torch.from_numpy(np.ascontiguousarray(data.faces.transpose(0, 3, 1, 2)))  # uint8 NCHW
    vectors = torch.from_numpy(data.vectors)
    if start_epoch == 0:  # every generator ends in a FaceHead: start from the ridge reconstruction
        rows = torch.from_numpy(train_rows)
        generator.head.init_linear(vectors[rows], faces[rows])
    steps = math.ceil(len(train_rows) / settings.batch_size)
    total_steps = steps * settings.epochs
    generator.train()
    for epoch in range(start_epoch, settings.epochs):
        began = time.perf_counter()
        order = np.random.default_rng([settings.seed, epoch]).permutation(train_rows)
        sums: dict[str, float] = {}
        for step in range(steps):
            rows = torch.from_numpy(order[step * settings.batch_size : (step + 1) * settings.batch_size])
            real = faces[rows].float()
            v = vectors[rows]
            noise = torch.randn(len(rows), VEC2FACE_NOISE) if settings.method == "vec2face" else None
            fake = generator(v, noise) if noise is not None else generator(v)
            losses: dict[str, torch.Tensor] = {}
            if discriminator is not None:
                d_loss = F.relu(1 - discriminator(real, v)).mean() + F.relu(1 + discriminator(fake.detach(), v)).mean()
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                losses["d"] = d_loss.detach()
                losses["adv"] = -discriminator(fake, v).mean()
            losses["pixel"] = (fake - real).abs().mean() / 255.0
            progress = (epoch * steps + step) / total_steps
            k = min(settings.identity_samples, len(rows))
            if identity is not None and progress >= settings.identity_from:
                losses["identity"] = identity(fake[:k], v[:k])
            if perceptual is not None and progress >= settings.identity_from:
                with torch.no_grad():
                    reference = perceptual.embed(real[:k], jitter=False)
                losses["perceptual"] = perceptual(fake[:k], reference)
            for name, loss in second:
                if progress >= settings.identity_from:
                    with torch.no_grad():
                        reference = loss.embed(real[:k], jitter=False)
                    losses[f"surrogate:{name}"] = loss(fake[:k], reference)
            total = settings.pixel_weight * losses["pixel"]
            for name in ("identity", "perceptual"):
                if name in losses:
                    total = total + settings.identity_weight * losses[name]
            for name, _ in second:
                if f"surrogate:{name}" in losses:
                    total = total + settings.surrogate_weight * losses[f"surrogate:{name}"]
            if "adv" in losses:
                total = total + settings.adversarial_weight * losses["adv"]
            opt_g.zero_grad(set_to_none=True)
            total.backward()
            opt_g.step()
            values = {k: float(t.detach()) for k, t in losses.items()}
            for k, value in values.items():
                sums[k] = sums.get(k, 0.0) + value
            if on_step:
                on_step(epoch, step + 1, steps, values)
        val = validation_cosine(generator, data, val_mask, extractor, settings.validation_faces)
        report = EpochReport(epoch + 1, {k: s / steps for k, s in sums.items()}, val, time.perf_counter() - began)
        history.append(asdict(report))
        planned = {**fingerprint, "epochs": settings.epochs}
        _save_checkpoint(checkpoint_file, generator, discriminator, opt_g, opt_d, epoch + 1, planned, history)
        atomic_write_text(work / HISTORY, json.dumps(history, indent=2) + "\n")
        if on_epoch:
            on_epoch(report)
    generator.eval()
    return TrainOutcome(generator, history, feature_model, fingerprint["validation"], settings)


def _save_checkpoint(path, generator, discriminator, opt_g, opt_d, epoch, fingerprint, history) -> None:
    import torch

    state = {
        "generator": generator.state_dict(),
        "opt_g": opt_g.state_dict(),
        "epoch": epoch,
        "fingerprint": json.dumps(fingerprint),
        "history": json.dumps(history),
    }
    if discriminator is not None:
        state["discriminator"] = discriminator.state_dict()
        state["opt_d"] = opt_d.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_generator(work: Path, method: str, dim: int):
    """The generator of the checkpoint in ``work`` (weights only; no pickled objects are loaded)."""
    import torch

    from fvr_audit.reconstructors.parametric.networks import build_generator

    path = Path(work) / CHECKPOINT
    if not path.exists():
        raise InputError(f"{path}: no checkpoint (train first)")
    state = torch.load(path, weights_only=True)
    generator = build_generator(method, dim)
    generator.load_state_dict(state["generator"])
    return generator.eval(), json.loads(state["history"]), json.loads(state["fingerprint"])


def _with_resize(generator):
    """The generator followed by the bilinear resize to the 200 px frame (inside the ONNX graph, so
    a scan needs nothing but onnxruntime and the resize runs on its threads)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v):
            full = CANONICAL_GEOMETRY.size
            return torch.nn.functional.interpolate(self.inner(v), size=(full, full), mode="bilinear", align_corners=False)

    return Exported(generator).eval()


def export_onnx(generator, dim: int, path: Path) -> None:
    """Write ``generator`` as ONNX: input ``vector`` float32 [N, dim] -> ``frame`` float32
    [N, 3, 200, 200], the canonical frame in 0..255 (the generator's 64 px face resized bilinearly,
    exactly as the feature loss saw it in training).

    The export is checked: onnxruntime must reproduce torch's output on random vectors.
    """
    import onnx
    import torch

    from fvr_audit.extractors.ort_session import cpu_session

    module = _with_resize(generator.eval())
    example = torch.nn.functional.normalize(torch.randn(4, dim, generator=torch.Generator().manual_seed(0)), dim=1)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs no onnxscript and gives a plain graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["vector"],
            output_names=["frame"],
            dynamic_axes={"vector": {0: "batch"}, "frame": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
        expected = module(example).numpy()
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    session = cpu_session(data, threads=2)
    got = session.run(None, {"vector": example.numpy()})[0]
    if not np.allclose(got, expected, atol=0.05):
        raise RuntimeError(f"ONNX export differs from torch (max abs {np.abs(got - expected).max():.3g})")
    atomic_write_bytes(path, data)  # 0600: the weights are fitted to the training faces


__all__ = [
    "METHODS",
    "TrainSettings",
    "TrainingData",
    "default_settings",
    "export_onnx",
    "load_generator",
    "prepare_training_data",
    "replace",
    "train",
]
