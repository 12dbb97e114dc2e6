"""Trained reconstructor files: finding the one made for an extractor, exporting new ones.

A reconstructor file is an ONNX generator in a models folder, listed in that folder's
``manifest.json`` with ``kind: "reconstructor"`` and ``details`` saying which method it is, which
extractor F it inverts (name and sha256 of F's model file: a reconstructor trained for another
build of F must not be used silently), the vector dimension, what it was trained on and its
validation score. The shipped folder is ``models/``; ``fvr-audit train --export DIR`` writes the
same layout anywhere, and ``--models DIR`` (scan, reconstruct) adds such folders to the search.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fvr_audit.errors import InputError
from fvr_audit.model_store import ModelEntry, load_manifest, model_path, models_dir

KIND = "reconstructor"
#: Extra model folders searched after the shipped one (``os.pathsep``-separated).
EXTRA_MODELS_ENV = "FVR_AUDIT_EXTRA_MODELS"


@dataclass(frozen=True)
class ReconstructorFile:
    """A trained generator and what it is for."""

    path: Path
    entry: ModelEntry

    @property
    def details(self) -> dict:
        return self.entry.details or {}

    @property
    def method(self) -> str:
        return str(self.details.get("method", ""))

    @property
    def extractor(self) -> str:
        return str(self.details.get("extractor", ""))

    @property
    def extractor_sha256(self) -> str:
        return str(self.details.get("extractor_sha256", ""))

    @property
    def dim(self) -> int:
        return int(self.details.get("dim", 0))


def search_dirs(extra: tuple[Path, ...] = ()) -> list[Path]:
    """``extra`` (``--models``), then folders named in ``FVR_AUDIT_EXTRA_MODELS``, then the shipped
    folder: a generator the user trained and named wins over a shipped one for the same F."""
    env = [Path(p) for p in os.environ.get(EXTRA_MODELS_ENV, "").split(os.pathsep) if p]
    return list(dict.fromkeys([*extra, *env, models_dir()]))


def list_reconstructor_files(extra: tuple[Path, ...] = ()) -> list[ReconstructorFile]:
    """Every reconstructor listed in the searched manifests (files are verified when used)."""
    found = []
    for directory in search_dirs(extra):
        for name, entry in load_manifest(directory).items():
            if entry.kind == KIND:
                found.append(ReconstructorFile(directory / name, entry))
    return found


def find_reconstructor(method: str, extractor_name: str, extractor_sha256: str | None, extra: tuple[Path, ...] = ()):
    """(file, None) for the reconstructor of ``method`` trained for this exact F, else (None, reason)."""
    candidates = [f for f in list_reconstructor_files(extra) if f.method == method]
    for candidate in candidates:
        if candidate.extractor == extractor_name and (
            not extractor_sha256 or not candidate.extractor_sha256 or candidate.extractor_sha256 == extractor_sha256
        ):
            model_path(candidate.path.name, candidate.path.parent)  # sha256 check against its manifest
            return candidate, None
    same_name = [f for f in candidates if f.extractor == extractor_name]
    if same_name:
        return None, (
            f"the {method} reconstructor for {extractor_name} was trained on another build of it "
            f"(sha256 {same_name[0].extractor_sha256[:12]}, this one {str(extractor_sha256)[:12]})"
        )
    trained_for = sorted({f.extractor for f in candidates}) or ["none"]
    return None, (
        f"no {method} reconstructor trained for {extractor_name} (trained for: {', '.join(trained_for)}); "
        f"train one (fvr-audit train {method} --extractor {extractor_name} --faces DIR --export DIR, then --models DIR) "
        f"or map the vectors to dlib-resnet128: scan does it by itself on its own synthetic faces unless "
        f"--calibration-faces 0, or with --calibration DIR (a folder of face photos)"
    )


def export_trained(
    work: Path,
    extractor,
    method: str,
    *,
    data_file: Path | None = None,
    directory: Path | None = None,
    file_name: str | None = None,
    script: str = "scripts/train_shipped_reconstructors.py",
    allow_partial: bool = False,
) -> ModelEntry:
    """Export the checkpoint in ``work`` to ONNX in ``directory`` (default: the shipped models folder)
    and list it in that folder's manifest with its provenance.

    ``allow_partial``: export a run stopped before its last epoch (for measuring intermediate
    checkpoints; the entry records the epochs actually trained)."""
    from fvr_audit.model_store import register_model
    from fvr_audit.reconstructors.parametric.networks import OUTPUT_SIZE
    from fvr_audit.reconstructors.parametric.training import TrainingData, export_onnx, load_generator

    from fvr_audit.io.outputs import private_mkdir

    directory = Path(directory) if directory else models_dir()
    private_mkdir(directory)
    dim = extractor.dim
    generator, history, fingerprint = load_generator(work, method, dim)
    settings = fingerprint["settings"]
    planned = int(fingerprint["epochs"])
    if len(history) < planned and not allow_partial:
        raise InputError(f"{work}: training stopped after {len(history)} of {planned} epochs; resume it first")
    name = file_name or f"reconstructor-{method}-{extractor.name}.onnx"
    export_onnx(generator, dim, directory / name)
    source = ""
    identities = images = None
    if data_file is not None and Path(data_file).exists():
        data = TrainingData.load(Path(data_file))
        source, identities, images = data.source, int(len(set(data.labels.tolist()))), int(len(data.labels))
    last = history[-1]
    feature_model = fingerprint["feature_loss_model"]
    used = [extractor.name]
    if feature_model and not feature_model.startswith(extractor.name):
        used.append(feature_model.split(" ")[0])
    used.extend(name for name in fingerprint.get("surrogates", []) if name not in used)
    details = {
        "method": method,
        "extractor": extractor.name,
        "extractor_sha256": extractor.info.sha256 or "",
        "dim": dim,
        "output": f"frame: float 0..255 NCHW [N, 3, 200, 200], the canonical frame (dlib chip, padding 0.5) resized from the generator's {OUTPUT_SIZE} px",
        "training_data": source,
        "training_identities": identities,
        "training_images": images,
        "validation_identities": len(fingerprint["validation"]),
        "validation_median_cosine": round(float(last["validation_cosine"]), 4),
        "epochs": len(history),
        "settings": settings,
        "feature_loss_model": feature_model,
        "models_used_in_training": used,
        "train_seconds": round(sum(float(h["seconds"]) for h in history), 1),
    }
    return register_model(
        name,
        kind=KIND,
        source=f"trained by fvr-audit on {source or 'user photos'}",
        license="Apache-2.0 (weights trained by this project); training photos: LFW research use"
        if "LFW" in source
        else "weights trained by the user",
        script=script,
        description=f"{method} generator R(v) for {extractor.name} vectors ({dim}-d) -> 64 px canonical face",
        details=details,
        directory=directory,
    )
