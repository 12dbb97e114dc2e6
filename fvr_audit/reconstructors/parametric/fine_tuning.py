"""Fine-tuning a shipped generator to the operator's own white-box F, on the leaked database itself.

A self-calibrated adapter (:mod:`.self_calibration`) lets the generators shipped for
dlib-resnet128 draw faces from F's vectors, but the faces are still faces *dlib-resnet128* reads
as the person: F and other recognizers read less of the identity in them. When F is white-box
(the operator's ONNX file, through the checked torch interpreter), the tool tunes the generator
to F within a bounded number of steps:

1. the adapter is baked in front of the generator as ONNX ops (x -> normalise((x - mx) W + my)),
   so one graph takes F's vectors;
2. that graph is run in torch (:mod:`fvr_audit.convert.onnx_to_torch`) with its weights trainable
   (not the batch-norm statistics, not the generators' fixed anti-checkerboard blur);
3. it is trained on rows of the leaked database, what an attacker holding it has, *never the
   rows of the targets being measured* (nor other rows of their identities), so the figures
   measure a generator that generalises to people it was not tuned on. The loss:
   ``1 - cosine(F(crop of R(v)), v)`` under a random shift, zoom and mirror (as in training),
   plus ``anchor_weight`` x the mean absolute change from the untuned generator's face (0..1
   pixels): the face stays the face the shipped generator drew, made readable to F too;
4. it is kept only when the median cosine(F(R(v)), v) on held-out rows (again no target's) went
   up; the notes say both figures, the steps and the seconds.

The tuned graph is written as an ordinary reconstructor file for F (its own ``manifest.json``)
in the user cache, keyed by F's sha256, the generator's, the adapter, the training rows and the
settings: a second scan of the same database reuses it at no cost.

Reference for the idea of inverting templates through a tuned face generator: GaFaR (Otroshi
Shahreza and Marcel, "Face reconstruction from facial templates by learning latent space of a
generator network", NeurIPS 2023).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fvr_audit.errors import FvrAuditError, InputError
from fvr_audit.extractors.base import Extractor

#: Bump when the recipe changes, so old cached generators are not reused.
RECIPE_VERSION = 1
#: Initializer names of fixed filters that must not be trained (FaceHead's blur).
FIXED_SUFFIXES = (".blur", ".fixed")
ADAPTED_INPUT = "adapted_vector"


@dataclass(frozen=True)
class FineTuneSettings:
    """How a generator is tuned to F (``scan --fine-tune-steps``; 0 turns it off)."""

    steps: int = 200
    batch: int = 16
    lr: float = 3e-4
    #: Weight of the mean absolute change from the untuned generator's face (0..1 pixels).
    anchor_weight: float = 1.0
    #: Random zoom (+- share) of F's crop in the identity loss, on top of the shift and mirror.
    jitter_zoom: float = 0.05
    #: Rows held out to decide whether the tuned generator is kept.
    holdout: int = 100
    #: Fewer training rows than this: no tuning (a note says so).
    min_rows: int = 64
    seed: int = 0

    def validate(self) -> FineTuneSettings:
        if self.steps < 0 or self.batch < 2 or self.lr <= 0 or self.anchor_weight < 0:
            raise InputError("fine-tuning: steps >= 0, batch >= 2, lr > 0 and anchor_weight >= 0 are needed")
        return self


@dataclass(frozen=True)
class FineTuned:
    """A generator tuned to F (or why it was not kept) and how it was obtained."""

    method: str
    #: Models folder holding the tuned generator (``--models`` style); None when not kept.
    folder: Path | None
    training_rows: int
    holdout_rows: int
    steps: int
    seconds: float
    cosine_before: float
    cosine_after: float
    cached: bool

    @property
    def kept(self) -> bool:
        return self.folder is not None

    def describe(self) -> str:
        how = "reused from the cache" if self.cached else "tuned now"
        verdict = "kept" if self.kept else "not kept (no gain), the adapter alone is used"
        return (
            f"{self.method} tuned to F ({how}): {self.steps} steps on {self.training_rows} rows of the leaked database "
            f"(no target's), {self.seconds:.0f} s; median cosine(F(face), row) on {self.holdout_rows} held-out rows "
            f"{self.cosine_before:.3f} -> {self.cosine_after:.3f}, {verdict}"
        )


def baked_generator(generator_file: Path, adapter) -> object:
    """The generator ONNX graph with ``adapter`` (a RidgeAdapter) in front: one graph from F's vectors.

    >>> from fvr_audit.model_store import models_dir
    >>> from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 16)); y = rng.normal(size=(60, 128))
    >>> a = RidgeAdapter.fit(x, y, np.arange(60), source="f", target="dlib-resnet128")
    >>> graph = baked_generator(models_dir() / "reconstructor-naive-dlib-resnet128.onnx", a).graph
    >>> [i.name for i in graph.input], graph.input[0].type.tensor_type.shape.dim[1].dim_value
    (['vector'], 16)
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(generator_file))
    graph = model.graph
    (old_input,) = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old_input.name:
                node.input[k] = ADAPTED_INPUT
    weights = {
        "adapter.source_mean": adapter.source_mean.astype(np.float32),
        "adapter.weights": adapter.weights.astype(np.float32),
        "adapter.target_mean": adapter.target_mean.astype(np.float32),
        "adapter.eps": np.array(1e-12, np.float32),
    }
    front = [
        helper.make_node("Sub", ["vector", "adapter.source_mean"], ["adapter.centred"], name="adapter_centre"),
        helper.make_node("MatMul", ["adapter.centred", "adapter.weights"], ["adapter.mapped"], name="adapter_map"),
        helper.make_node("Add", ["adapter.mapped", "adapter.target_mean"], ["adapter.shifted"], name="adapter_shift"),
        helper.make_node("ReduceL2", ["adapter.shifted"], ["adapter.norm"], axes=[1], keepdims=1, name="adapter_norm"),
        helper.make_node("Max", ["adapter.norm", "adapter.eps"], ["adapter.safe_norm"], name="adapter_clamp"),
        helper.make_node("Div", ["adapter.shifted", "adapter.safe_norm"],
                         ["adapter.unit" if adapter.typical_cosine > 0 else ADAPTED_INPUT], name="adapter_normalise"),
    ]
    if adapter.typical_cosine > 0:
        # RidgeAdapter.typical_cosine: v turned, in its plane with the mean u, to cosine c from u
        # (c u + sqrt(1 - c^2) (v - (v.u) u) / |v - (v.u) u|); fixed, never tuned
        direction = adapter.target_mean / np.linalg.norm(adapter.target_mean)
        c = float(adapter.typical_cosine)
        weights.update({
            "adapter.direction.fixed": direction.astype(np.float32)[:, None],
            "adapter.direction_row.fixed": direction.astype(np.float32)[None, :],
            "adapter.along_scale.fixed": (c * direction).astype(np.float32)[None, :],
            "adapter.side_scale.fixed": np.array(np.sqrt(1.0 - c * c), np.float32),
        })
        front += [
            helper.make_node("MatMul", ["adapter.unit", "adapter.direction.fixed"], ["adapter.along"], name="adapter_along"),
            helper.make_node("Mul", ["adapter.along", "adapter.direction_row.fixed"], ["adapter.on_mean"], name="adapter_on_mean"),
            helper.make_node("Sub", ["adapter.unit", "adapter.on_mean"], ["adapter.rest"], name="adapter_rest"),
            helper.make_node("ReduceL2", ["adapter.rest"], ["adapter.rest_norm"], axes=[1], keepdims=1, name="adapter_rest_norm"),
            helper.make_node("Max", ["adapter.rest_norm", "adapter.eps"], ["adapter.rest_safe"], name="adapter_rest_clamp"),
            helper.make_node("Div", ["adapter.rest", "adapter.rest_safe"], ["adapter.rest_unit"], name="adapter_rest_unit"),
            helper.make_node("Mul", ["adapter.rest_unit", "adapter.side_scale.fixed"], ["adapter.side"], name="adapter_side"),
            helper.make_node("Add", ["adapter.side", "adapter.along_scale.fixed"], [ADAPTED_INPUT], name="adapter_turn"),
        ]
    nodes = [*front, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in weights.items())
    graph.input.remove(old_input)
    graph.input.insert(0, helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["batch", int(adapter.weights.shape[0])]))
    onnx.checker.check_model(model)
    return model


def trainable_initializers(model) -> list[str]:
    """Float weights a fine-tuning may change: not batch-norm statistics, not inputs of shape or
    resize ops, not the fixed blur filters."""
    from onnx import TensorProto

    weight_inputs = {
        "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1), "Add": (0, 1), "Sub": (0, 1),
        "Mul": (0, 1), "BatchNormalization": (1, 2), "PRelu": (1,),
    }
    used_as_weight: set[str] = set()
    used_otherwise: set[str] = set()
    for node in model.graph.node:
        positions = weight_inputs.get(node.op_type, ())
        for k, name in enumerate(node.input):
            (used_as_weight if k in positions else used_otherwise).add(name)
    return [
        t.name
        for t in model.graph.initializer
        if t.data_type == TensorProto.FLOAT and len(t.dims) >= 1 and t.name in used_as_weight
        and t.name not in used_otherwise and not t.name.endswith(FIXED_SUFFIXES)
    ]


def cache_key(method: str, extractor: Extractor, generator_sha256: str, adapter, rows: np.ndarray,
              settings: FineTuneSettings) -> str:
    info = extractor.info
    digest = hashlib.sha256()
    digest.update(json.dumps([RECIPE_VERSION, method, info.sha256 or extractor.name, info.preprocessing.describe(),
                              info.geometry.describe(), generator_sha256, asdict(settings)]).encode())
    digest.update(adapter.to_bytes())
    digest.update(np.ascontiguousarray(rows, np.float32).tobytes())
    return digest.hexdigest()[:24]


def fine_tune(
    method: str,
    generator,
    adapter,
    extractor: Extractor,
    rows: np.ndarray,
    settings: FineTuneSettings = FineTuneSettings(),
    *,
    cache_root: Path | None = None,
    on_progress=None,
) -> FineTuned:
    """Tune ``generator`` (a ReconstructorFile of the adapter's target space) to white-box ``extractor``
    on the database ``rows`` [M, D] (L2-normalised, no target's); see the module docstring."""
    import torch

    from fvr_audit.extractors.base import white_box_forward
    from fvr_audit.reconstructors.parametric.self_calibration import cache_dir

    settings = settings.validate()
    forward, reason = white_box_forward(extractor)
    if forward is None:
        raise InputError(f"fine-tuning needs F's gradients: {reason}")
    rows = np.asarray(rows, np.float32)
    if len(rows) < settings.min_rows + 2:
        raise InputError(f"fine-tuning: {len(rows)} rows besides the targets' are too few (at least {settings.min_rows + 2})")
    key = cache_key(method, extractor, generator.entry.sha256, adapter, rows, settings)
    folder = (cache_root or cache_dir() / "generators") / key
    file = f"reconstructor-{method}-{_safe(extractor.name)}.onnx"
    saved = _cached_record(folder, file)
    if saved is not None:
        if on_progress:
            on_progress(settings.steps)
        return FineTuned(method, folder if saved["kept"] else None, saved["training_rows"], saved["holdout_rows"],
                         saved["steps"], saved["seconds"], saved["cosine_before"], saved["cosine_after"], True)

    start = time.perf_counter()
    order = np.random.default_rng([settings.seed, 0xF17E]).permutation(len(rows))
    held = min(settings.holdout, max(1, len(rows) // 5))
    holdout, train = rows[order[:held]], rows[order[held:]]
    model = baked_generator(generator.path, adapter)
    tuned, frozen = _modules(model)
    before = _median_cosine(frozen, holdout, extractor)

    from fvr_audit.reconstructors.parametric.training import _IdentityLoss

    torch.manual_seed(settings.seed)
    identity = _IdentityLoss(extractor, forward, settings.seed, zoom=settings.jitter_zoom)
    optimiser = torch.optim.Adam([p for p in tuned.parameters() if p.requires_grad], lr=settings.lr)
    rng = np.random.default_rng([settings.seed, 0xBA7C])
    for _ in range(settings.steps):
        v = torch.from_numpy(train[rng.choice(len(train), min(settings.batch, len(train)), replace=False)])
        faces = tuned(v)
        with torch.no_grad():
            untuned = frozen(v)
        loss = identity(faces, v) + settings.anchor_weight * (faces - untuned).abs().mean() / 255.0
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if on_progress:
            on_progress(1)
    after = _median_cosine(tuned, holdout, extractor)
    seconds = time.perf_counter() - start
    kept = after > before
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if kept:
        _write_tuned(model, tuned, folder, file, method, extractor, generator, adapter, len(train), settings, before, after, seconds)
    from fvr_audit.io.atomic import atomic_write_text

    atomic_write_text(folder / RECORD, json.dumps({
        "kept": kept, "training_rows": int(len(train)), "holdout_rows": int(held), "steps": settings.steps,
        "seconds": round(seconds, 1), "cosine_before": round(before, 4), "cosine_after": round(after, 4),
    }) + "\n", file_mode=0o600)
    return FineTuned(method, folder if kept else None, int(len(train)), int(held), settings.steps, seconds, before, after, False)


RECORD = "fine-tuning.json"


def _cached_record(folder: Path, file: str) -> dict | None:
    """The record of an earlier tuning in ``folder``, when it and (if kept) its verified generator are
    intact; None means tune again (a damaged or half-written cache entry costs a rebuild, nothing else)."""
    from fvr_audit.model_store import model_path

    try:
        saved = json.loads((folder / RECORD).read_text())
        if saved["kept"]:
            model_path(file, folder)  # listed in the folder's manifest, sha256 verified
        return saved
    except (OSError, ValueError, KeyError, TypeError, FvrAuditError):
        return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).removesuffix(".onnx")


def _modules(model):
    """(trainable torch module of ``model``, frozen copy)."""
    from fvr_audit.convert.onnx_to_torch import OnnxGraphModule

    tuned = OnnxGraphModule(model).eval()  # eval: batch-norm keeps the shipped statistics while training
    frozen = OnnxGraphModule(model).eval().requires_grad_(False)
    tuned.make_trainable(trainable_initializers(model))
    return tuned, frozen


def _median_cosine(module, vectors: np.ndarray, extractor: Extractor) -> float:
    """Median cosine(F(face), v), F run as at scan time (onnxruntime on its crop of the uint8 frame)."""
    import torch

    from fvr_audit.alignment.canonical import crop_from_canonical

    sims = []
    with torch.no_grad():
        for lo in range(0, len(vectors), 32):
            v = vectors[lo : lo + 32]
            frame = module(torch.from_numpy(v)).numpy()
            images = np.clip(np.rint(frame), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
            embedded = extractor.embed(crop_from_canonical(images, extractor.geometry))
            sims.append(np.einsum("nd,nd->n", embedded, v))
    return float(np.median(np.concatenate(sims)))


def _write_tuned(model, tuned, folder: Path, file: str, method: str, extractor: Extractor, generator, adapter,
                 training_rows: int, settings: FineTuneSettings, before: float, after: float, seconds: float) -> None:
    from onnx import numpy_helper

    from fvr_audit.io.atomic import atomic_write_bytes
    from fvr_audit.model_store import register_model

    values = {name: tuned.initializer(name).detach().numpy() for name in trainable_initializers(model)}
    for k, initializer in enumerate(model.graph.initializer):
        if initializer.name in values:
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(values[initializer.name].astype(np.float32), initializer.name))
    atomic_write_bytes(folder / file, model.SerializeToString(), file_mode=0o600)
    trained_with = list(generator.details.get("models_used_in_training", [generator.extractor]))
    register_model(
        file,
        kind="reconstructor",
        source=f"{generator.path.name} with the adapter {adapter.source}->{adapter.target} in front, tuned to {extractor.name}",
        license="derived from the shipped generator; tuned on the operator's own database",
        script="fvr_audit/reconstructors/parametric/fine_tuning.py",
        description=f"{method} generator for {extractor.name} vectors, tuned by fvr-audit scan",
        details={
            "method": method,
            "extractor": extractor.name,
            "extractor_sha256": extractor.info.sha256 or "",
            "dim": int(extractor.dim),
            "tuned_from": generator.path.name,
            "tuned_from_sha256": generator.entry.sha256,
            "adapter": adapter.describe(),
            "training_data": f"{training_rows} rows of the leaked database (no target's)",
            "fine_tuning": {**asdict(settings), "seconds": round(seconds, 1), "holdout_cosine_before": round(before, 4),
                            "holdout_cosine_after": round(after, 4)},
            "models_used_in_training": list(dict.fromkeys([*trained_with, extractor.name])),
        },
        directory=folder,
    )
