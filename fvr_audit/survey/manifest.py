"""The survey folder's manifest: questions, images and the answer key (``manifest.json``).

The manifest never leaves the server: pages carry question ids, image ids and candidate
positions only. Image and question ids are random, so neither reveals which image is a
reconstruction, which is an attention check, or who anybody is.

Layout of a survey folder (0700; every file 0600)::

    manifest.json      this file's schema, ``fvr-audit/survey`` version 1
    images/<id>.png    every image a participant can be shown, copied here at build time
    survey.sqlite      participants (tokens) and their answers, made by ``survey tokens add``
    analysis.json      ``survey analyze``'s figures
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from fvr_audit.errors import InputError

SCHEMA_NAME = "fvr-audit/survey"
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
IMAGES_DIR = "images"
DATABASE_NAME = "survey.sqlite"
ANALYSIS_NAME = "analysis.json"

#: Ids of questions and images: 16 lowercase hex digits (random, so they say nothing).
ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
#: The answer "none of these candidates is the person" (candidate positions are 1..K).
NONE_OF_THESE = 0


class QuestionKind(str, Enum):
    #: A reconstruction beside its top-K: what Metric 2 measures.
    RECONSTRUCTION = "reconstruction"
    #: A real photo of one of the candidates: anyone paying attention gets it right.
    ATTENTION = "attention"


@dataclass(frozen=True)
class Candidate:
    image: str
    identity: str


@dataclass(frozen=True)
class Question:
    id: str
    kind: QuestionKind
    #: The reconstruction method (None for attention checks).
    method: str | None
    #: The scan target the probe was made from (database row and label).
    target_index: int
    target_label: str
    probe: str
    candidates: tuple[Candidate, ...]
    #: The right answer: a candidate position 1..K, or NONE_OF_THESE.
    answer: int

    @property
    def k(self) -> int:
        return len(self.candidates)


@dataclass(frozen=True)
class Manifest:
    created: str
    scan: dict
    engine: str
    k: int
    seed: int
    methods: tuple[str, ...]
    questions: tuple[Question, ...]
    #: image id -> file name under images/
    images: dict[str, str] = field(default_factory=dict)

    def question(self, question_id: str) -> Question | None:
        return self._by_id.get(question_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, Question]:
        return {q.id: q for q in self.questions}

    @functools.cached_property
    def questions_showing(self) -> dict[str, tuple[str, ...]]:
        """image id -> the ids of the questions that show it."""
        showing: dict[str, list[str]] = {}
        for q in self.questions:
            for image in dict.fromkeys((q.probe, *(c.image for c in q.candidates))):
                showing.setdefault(image, []).append(q.id)
        return {image: tuple(ids) for image, ids in showing.items()}

    def to_json(self) -> str:
        body = {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "scan": self.scan,
            "engine": self.engine,
            "k": self.k,
            "seed": self.seed,
            "methods": list(self.methods),
            "questions": [
                {
                    "id": q.id,
                    "kind": q.kind.value,
                    "method": q.method,
                    "target": {"index": q.target_index, "label": q.target_label},
                    "probe": q.probe,
                    "candidates": [{"image": c.image, "identity": c.identity} for c in q.candidates],
                    "answer": q.answer,
                }
                for q in self.questions
            ],
            "images": self.images,
        }
        return json.dumps(body, indent=2) + "\n"


def load_manifest(folder: Path) -> Manifest:
    """Read and check ``folder/manifest.json`` (one-line InputError for anything unusable)."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: no such survey folder (make one with `fvr-audit survey build`)")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; {folder} is not a survey folder (make one with `fvr-audit survey build`)") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable ({error})") from None
    if not isinstance(body, dict) or body.get("schema") != SCHEMA_NAME:
        raise InputError(f"{path}: not an fvr-audit survey manifest (schema {SCHEMA_NAME!r} expected)")
    if body.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: survey schema version {body.get('schema_version')!r}; this version reads {SCHEMA_VERSION}")
    try:
        questions = tuple(
            Question(
                id=q["id"],
                kind=QuestionKind(q["kind"]),
                method=q["method"],
                target_index=int(q["target"]["index"]),
                target_label=str(q["target"]["label"]),
                probe=q["probe"],
                candidates=tuple(Candidate(c["image"], str(c["identity"])) for c in q["candidates"]),
                answer=int(q["answer"]),
            )
            for q in body["questions"]
        )
        manifest = Manifest(
            created=body["created"],
            scan=dict(body["scan"]),
            engine=body["engine"],
            k=int(body["k"]),
            seed=int(body["seed"]),
            methods=tuple(body["methods"]),
            questions=questions,
            images={str(k): str(v) for k, v in body["images"].items()},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: malformed survey manifest ({type(error).__name__}: {error})") from None
    _check(manifest, path)
    return manifest


def _check(manifest: Manifest, path: Path) -> None:
    ids = [q.id for q in manifest.questions]
    if len(set(ids)) != len(ids) or not all(ID_PATTERN.match(i) for i in ids):
        raise InputError(f"{path}: question ids must be unique 16-hex-digit ids")
    for image_id, name in manifest.images.items():
        # The manifest names files under images/ only; a '/' or '..' would reach elsewhere.
        if not ID_PATTERN.match(image_id) or not re.fullmatch(r"[0-9a-f]{16}\.(png|jpg)", name):
            raise InputError(f"{path}: image {image_id!r} -> {name!r} is not an image id and file name")
    for q in manifest.questions:
        shown = [q.probe, *(c.image for c in q.candidates)]
        missing = [i for i in shown if i not in manifest.images]
        if missing:
            raise InputError(f"{path}: question {q.id} shows image {missing[0]} that the manifest does not list")
        if not 0 <= q.answer <= q.k:
            raise InputError(f"{path}: question {q.id} has answer {q.answer}, outside 0..{q.k}")
