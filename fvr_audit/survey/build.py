"""``survey build``: questions from a finished scan, its reconstructions, and photos of the gallery.

A scan's results record no top-K photos (engines compare vectors), so the candidates are found
here: an engine F' embeds the gallery photos and each reconstruction, and its top-K identities
become the candidates, one photo each (that identity's photo closest to the reconstruction, as a
face search shows its best hit). The target's true identity may or may not be among them; when
it is not, the right answer is "none of these". The target's own photo (the one its leaked vector
was made from) is held out of the gallery, as in Metric 1.

Fairness (:mod:`fvr_audit.audit.fairness`): an engine whose model an attack used may not pick
that attack's candidates; the build refuses rather than flag.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fvr_audit.audit.fairness import Judging, engine_model, judging
from fvr_audit.errors import InputError
from fvr_audit.survey.manifest import (
    IMAGES_DIR,
    MANIFEST_NAME,
    NONE_OF_THESE,
    Candidate,
    Manifest,
    Question,
    QuestionKind,
)

DEFAULT_K = 5
DEFAULT_PER_METHOD = 5
DEFAULT_ATTENTION = 2
DEFAULT_ENGINE = "local:faceres-1024"
#: Gallery photos are shown at most this many pixels on their longer side (and re-encoded, so
#: no EXIF block, GPS position included, reaches a participant).
PHOTO_MAX_SIDE = 320
#: Reconstructions are drawn in the 200 x 200 canonical frame.
RECONSTRUCTION_SIDE = 200


@dataclass(frozen=True)
class BuildSettings:
    k: int = DEFAULT_K
    per_method: int = DEFAULT_PER_METHOD
    attention_checks: int = DEFAULT_ATTENTION
    seed: int = 0
    engine: str = DEFAULT_ENGINE
    #: Methods to ask about (None: every method the scan reconstructed with).
    methods: tuple[str, ...] | None = None
    #: Photos without a detectable face: "skip" them, or "center" (take a centred box).
    no_face: str = "skip"


@dataclass(frozen=True)
class ScanFolder:
    """What a build reads from a scan's output folder."""

    folder: Path
    results: dict
    results_sha256: str

    @classmethod
    def read(cls, folder: Path) -> ScanFolder:
        path = Path(folder) / "results.json"
        if not Path(folder).is_dir():
            raise InputError(f"{folder}: no such scan folder (the -o folder of `fvr-audit scan`)")
        try:
            data = path.read_bytes()
            results = json.loads(data)
        except FileNotFoundError:
            raise InputError(f"{path}: missing; give the output folder of a finished `fvr-audit scan`") from None
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: unreadable ({error})") from None
        if not isinstance(results, dict) or results.get("schema") != "fvr-audit/results":
            raise InputError(f"{path}: not an fvr-audit results file")
        return cls(Path(folder), results, hashlib.sha256(data).hexdigest())

    def reconstruction(self, method: str, index: int) -> Path:
        return self.folder / "reconstructions" / method / f"{index:06d}.png"

    def method_models(self) -> dict[str, tuple[str, ...]]:
        return {m["name"]: tuple(m.get("models_used") or ()) for m in self.results.get("methods", [])}

    def targets(self) -> list[dict]:
        return list(self.results.get("targets", []))


def build_survey(
    scan_dir: Path,
    gallery_dir: Path,
    output: Path,
    settings: BuildSettings,
    *,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Manifest:
    """Write a survey folder (manifest, images) at ``output``; return its manifest."""
    from fvr_audit.engines.registry import create_engine
    from fvr_audit.io.outputs import check_output_folder

    if settings.k < 2:
        raise InputError(f"--k {settings.k}: a matching question needs at least 2 candidates")
    if settings.per_method < 1:
        raise InputError(f"--per-method {settings.per_method}: ask at least one question per method")
    if settings.attention_checks < 0:
        raise InputError(f"--attention {settings.attention_checks}: cannot be negative")
    check_output_folder(output)  # before any embedding: an unusable -o fails in a second
    scan = ScanFolder.read(scan_dir)
    methods = _methods(scan, settings)
    engine = create_engine(settings.engine)
    _check_fairness(scan, methods, settings.engine, engine.extractor.name)
    _check_gallery_names(scan, gallery_dir)
    gallery = _embed_gallery(gallery_dir, engine, settings, scan, progress)
    if len(gallery.identities) < settings.k:
        raise InputError(
            f"{gallery_dir}: {len(gallery.identities)} identities with a usable photo; --k {settings.k} needs at least {settings.k}"
        )
    rng = np.random.default_rng(settings.seed)
    images = _ImageSink()
    questions: list[Question] = []
    for method in methods:
        targets = _targets_with_images(scan, method)
        if len(targets) < settings.per_method:
            raise InputError(
                f"{scan.folder / 'reconstructions' / method}: {len(targets)} reconstructions; --per-method "
                f"{settings.per_method} needs that many"
            )
        picked = [targets[i] for i in sorted(rng.choice(len(targets), settings.per_method, replace=False))]
        for target in picked:
            questions.append(_reconstruction_question(scan, method, target, gallery, engine, settings.k, rng, images))
    for _ in range(settings.attention_checks):
        questions.append(_attention_question(questions[int(rng.integers(len(questions)))], gallery, rng, images))
    # Stored shuffled: the position in the manifest says nothing about a question's kind.
    questions = [questions[i] for i in rng.permutation(len(questions))]
    manifest = Manifest(
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        scan={
            "folder": str(Path(scan_dir).resolve()),
            "results_sha256": scan.results_sha256,
            "extractor": (scan.results.get("extractor") or {}).get("name"),
            "gallery": str(Path(gallery_dir).resolve()),
        },
        engine=engine.name,
        k=settings.k,
        seed=settings.seed,
        methods=tuple(methods),
        questions=tuple(questions),
        images=images.names,
    )
    _write(output, manifest, images)
    return manifest


# --------------------------------------------------------------------------------------------


def _methods(scan: ScanFolder, settings: BuildSettings) -> list[str]:
    available = [m for m in scan.method_models() if (scan.folder / "reconstructions" / m).is_dir()]
    if settings.methods is None:
        if not available:
            raise InputError(f"{scan.folder}: the scan holds no reconstructions (it ran no attack); nothing to ask about")
        return available
    unknown = [m for m in settings.methods if m not in available]
    if unknown:
        raise InputError(
            f"--methods {unknown[0]}: the scan in {scan.folder} has no reconstructions by it "
            f"(it has: {', '.join(available) or 'none'})"
        )
    return list(dict.fromkeys(settings.methods))


def _check_fairness(scan: ScanFolder, methods: Sequence[str], engine_spec: str, model_name: str) -> None:
    models = scan.method_models()
    # The model's own name and the one the spec gives (a file path, say): either recorded means "used".
    names = {model_name, engine_model(engine_spec)}
    used_by = [m for m in methods if any(judging(models[m], name, engine_is_f=False) is Judging.USED for name in names)]
    if used_by:
        raise InputError(
            f"--engine {engine_spec}: the attack {used_by[0]} used this model (it is F, or the attack was built "
            "with it), so it may not pick that attack's candidates (fairness rule); choose an independent engine"
        )


def _check_gallery_names(scan: ScanFolder, gallery_dir: Path) -> None:
    """The answer key needs each target's identity, and the gallery must name people as the scan does."""
    if not (scan.results.get("database") or {}).get("labelled", True):
        raise InputError(
            f"{scan.folder / 'results.json'}: the scan's database has no labels, so no question could say who the "
            "target is; a survey needs a labelled database (vectors with labels)"
        )
    if not Path(gallery_dir).is_dir():
        raise InputError(f"{gallery_dir}: no such folder (--gallery takes DIR/<identity>/<photo>)")
    folders = {p.name for p in Path(gallery_dir).iterdir() if p.is_dir()}
    labels = {str(t.get("label")) for t in scan.targets()}
    if not folders & labels:
        raise InputError(
            f"{gallery_dir}: none of its identity folders is named as one of the scan's targets "
            f"(e.g. {sorted(labels)[0] if labels else '?'}); the gallery must hold photos of the same people, named by label"
        )


@dataclass(frozen=True)
class _Gallery:
    paths: tuple[Path, ...]
    labels: np.ndarray
    vectors: np.ndarray  # L2-normalised, in the engine's space
    identities: np.ndarray


def _embed_gallery(gallery_dir: Path, engine, settings: BuildSettings, scan: ScanFolder, progress) -> _Gallery:
    from fvr_audit.alignment.aligner import NoFacePolicy
    from fvr_audit.engines.base import Gallery
    from fvr_audit.extraction import discover_images, embed_records
    from fvr_audit.extractors.base import l2_normalize

    records, labelled = discover_images(gallery_dir)
    if not labelled:
        raise InputError(f"{gallery_dir}: a gallery needs identity folders (DIR/<identity>/<image>), not a flat folder")
    # The targets' own photos are held out: a candidate must not be the very photo the leaked vector came from.
    own = {str(t.get("path")) for t in scan.targets() if t.get("path")}
    records = [r for r in records if r.relative not in own]
    identities = len({r.label for r in records})
    if identities < settings.k:  # before the embedding: no minutes spent on a gallery that cannot work
        raise InputError(f"{gallery_dir}: {identities} identities; --k {settings.k} needs at least {settings.k}")
    try:
        policy = NoFacePolicy(settings.no_face)
    except ValueError:
        raise InputError(f"--no-face {settings.no_face}: choose skip or center") from None
    run = embed_records(
        records, [engine.extractor], no_face=policy,
        on_progress=progress(f"embed gallery {gallery_dir}", len(records)) if progress else None,
    )
    kept = [records[i] for i in run.kept]
    if not kept:
        raise InputError(f"{gallery_dir}: no photo with a usable face (try --no-face center for photos framed on one face)")
    labels = np.array([r.label for r in kept])
    vectors = l2_normalize(run.vectors[engine.extractor.name].astype(np.float32))
    engine.enroll(Gallery(vectors, labels, f"photos in {gallery_dir}"))
    return _Gallery(tuple(r.path for r in kept), labels, vectors, np.unique(labels))


def _targets_with_images(scan: ScanFolder, method: str) -> list[dict]:
    return [t for t in scan.targets() if scan.reconstruction(method, int(t["index"])).is_file()]


class _ImageSink:
    """Images to copy into the survey, each under a fresh random id (one id per distinct source)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.data: dict[str, bytes] = {}
        self._by_source: dict[str, str] = {}

    def id_of(self, source: str) -> str | None:
        return self._by_source.get(source)

    def add(self, source: str, encode: Callable[[], tuple[bytes, str]]) -> str:
        if source in self._by_source:
            return self._by_source[source]
        image_id = secrets.token_hex(8)
        data, suffix = encode()
        self.names[image_id] = f"{image_id}.{suffix}"
        self.data[image_id] = data
        self._by_source[source] = image_id
        return image_id


def _encode(image: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    picture = Image.fromarray(image)
    if max(picture.size) > PHOTO_MAX_SIDE:
        picture.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.LANCZOS)
    buffer = io.BytesIO()
    if fmt == "jpg":
        picture.save(buffer, format="JPEG", quality=90)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(path: Path) -> Callable[[], tuple[bytes, str]]:
    from fvr_audit.alignment.images import load_image_rgb

    return lambda: (_encode(load_image_rgb(path), "jpg"), "jpg")


def _reconstruction_question(scan, method, target, gallery: _Gallery, engine, k, rng, images: _ImageSink) -> Question:
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.alignment.images import load_image_rgb

    index, label = int(target["index"]), str(target["label"])
    path = scan.reconstruction(method, index)
    face = load_image_rgb(path)
    if face.shape[:2] != (RECONSTRUCTION_SIDE, RECONSTRUCTION_SIDE):
        raise InputError(f"{path}: {face.shape[1]}x{face.shape[0]} pixels; a scan's reconstructions are 200x200")
    query = engine.embed(crop_from_canonical(face[None], engine.info.geometry))[0]
    hits = engine.search_vectors(query[None], k)[0]
    scores = gallery.vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
    candidates = []
    for identity in hits.labels:
        rows = np.flatnonzero(gallery.labels == identity)
        best = int(rows[np.argmax(scores[rows])])  # the photo that made this identity a hit
        candidates.append(Candidate(images.add(str(gallery.paths[best]), _photo(gallery.paths[best])), identity))
    candidates = [candidates[i] for i in rng.permutation(len(candidates))]
    probe = images.add(f"reconstruction:{path}", lambda: (_encode(face, "png"), "png"))
    answer = next((i + 1 for i, c in enumerate(candidates) if c.identity == label), NONE_OF_THESE)
    return Question(secrets.token_hex(8), QuestionKind.RECONSTRUCTION, method, index, label, probe, tuple(candidates), answer)


def _attention_question(model: Question, gallery: _Gallery, rng, images: _ImageSink) -> Question:
    """A real photo of one of ``model``'s candidates, beside the same candidates reshuffled."""
    candidates = [model.candidates[i] for i in rng.permutation(model.k)]
    # Prefer someone with a second photo: the check then asks for a match, not for the same picture.
    shown = {c.image for c in candidates}
    choices = []
    for position, candidate in enumerate(candidates):
        photos = [p for p in np.flatnonzero(gallery.labels == candidate.identity)
                  if images.id_of(str(gallery.paths[p])) not in shown]
        choices.append((position, photos))
    with_second = [c for c in choices if c[1]]
    position, photos = with_second[int(rng.integers(len(with_second)))] if with_second else choices[int(rng.integers(len(choices)))]
    candidate = candidates[position]
    if photos:
        path = gallery.paths[int(photos[int(rng.integers(len(photos)))])]
        probe = images.add(str(path), _photo(path))
    else:
        probe = candidate.image
    return Question(
        secrets.token_hex(8), QuestionKind.ATTENTION, None, model.target_index, candidate.identity, probe,
        tuple(candidates), position + 1,
    )


def _write(output: Path, manifest: Manifest, images: _ImageSink) -> None:
    from fvr_audit.io.atomic import atomic_write_bytes, atomic_write_text
    from fvr_audit.io.outputs import private_mkdir, writing

    with writing(output):
        private_mkdir(output)
        private_mkdir(output / IMAGES_DIR)
        for image_id, name in images.names.items():
            atomic_write_bytes(output / IMAGES_DIR / name, images.data[image_id])
        # Last: a folder with a manifest is a complete survey.
        atomic_write_text(output / MANIFEST_NAME, manifest.to_json())
