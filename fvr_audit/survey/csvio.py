"""Answers as CSV, both ways, so a survey run on a hosted form platform can be analysed too.

``survey export --questions``: one row per question (id, probe image file, candidate image files
in the order to show them), to rebuild the survey on another platform; never the answer key.
``survey export``: one row per stored answer, with the columns below (``correct`` and ``kind``
come from the answer key: the export is for the researcher, keep it private).
``survey import``: rows with at least token, question, choice, confidence (``seconds`` and
``answered_at`` optional). ``choice`` is the candidate position 1..K as shown, or ``none``/0.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from fvr_audit.errors import InputError
from fvr_audit.survey.manifest import IMAGES_DIR, NONE_OF_THESE, Manifest
from fvr_audit.survey.store import AlreadyAnswered, Answer, SurveyStore

ANSWER_COLUMNS = ("token", "question", "kind", "method", "choice", "correct", "confidence", "seconds", "answered_at", "source")
REQUIRED_IMPORT_COLUMNS = ("token", "question", "choice", "confidence")
#: Participant codes from another platform (e.g. a panel's participant id): no spaces, no commas.
IMPORT_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def questions_csv(manifest: Manifest) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["question", "probe", *(f"candidate_{i}" for i in range(1, manifest.k + 1))])
    for q in manifest.questions:
        files = [f"{IMAGES_DIR}/{manifest.images[i]}" for i in (q.probe, *(c.image for c in q.candidates))]
        writer.writerow([q.id, *files])
    return buffer.getvalue()


def answers_csv(manifest: Manifest, answers: list[Answer]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ANSWER_COLUMNS)
    for a in answers:
        q = manifest.question(a.question)
        writer.writerow([
            a.token, a.question, q.kind.value if q else "", (q.method or "") if q else "",
            "none" if a.choice == NONE_OF_THESE else a.choice,
            "" if q is None else int(a.choice == q.answer),
            a.confidence, "" if a.seconds is None else f"{a.seconds:.3f}",
            datetime.fromtimestamp(a.answered_at, timezone.utc).isoformat(timespec="seconds"), a.source,
        ])
    return buffer.getvalue()


def read_answers_csv(path: Path, manifest: Manifest) -> list[Answer]:
    """Parse and check every row first: a bad row fails the whole import, naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: unreadable ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_IMPORT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; needs {', '.join(REQUIRED_IMPORT_COLUMNS)}")
    answers: list[Answer] = []
    seen: dict[tuple[str, str], int] = {}
    now = time.time()
    for row in reader:
        line = reader.line_num

        def bad(problem: str) -> InputError:
            return InputError(f"{path}: line {line}: {problem}")

        token, question_id = (row.get("token") or "").strip(), (row.get("question") or "").strip()
        if not IMPORT_TOKEN.match(token):
            raise bad(f"token {token!r}: expected a participant code (letters, digits, _ . @ -; no spaces)")
        question = manifest.question(question_id)
        if question is None:
            raise bad(f"question {question_id!r} is not in this survey's manifest")
        choice_text = (row.get("choice") or "").strip().lower()
        if choice_text in ("none", str(NONE_OF_THESE)):
            choice = NONE_OF_THESE
        elif choice_text.isdigit() and 1 <= int(choice_text) <= question.k:
            choice = int(choice_text)
        else:
            raise bad(f"choice {choice_text!r}: expected a candidate position 1 to {question.k}, or none")
        confidence_text = (row.get("confidence") or "").strip()
        if confidence_text not in {"1", "2", "3", "4", "5"}:
            raise bad(f"confidence {confidence_text!r}: expected 1 to 5")
        seconds = _optional_float(row.get("seconds"), bad)
        answered_at = _optional_time(row.get("answered_at"), bad) or now
        if (token, question_id) in seen:
            raise bad(f"a second answer of {token} to question {question_id} (first on line {seen[(token, question_id)]})")
        seen[(token, question_id)] = line
        answers.append(Answer(token, question_id, choice, int(confidence_text), answered_at, seconds, "import"))
    if not answers:
        raise InputError(f"{path}: no answers in it")
    return answers


def import_answers(folder: Path, path: Path, manifest: Manifest) -> int:
    answers = read_answers_csv(path, manifest)
    store = SurveyStore(folder)
    store.ensure_participants(sorted({a.token for a in answers}))
    try:
        return store.import_answers(answers)
    except AlreadyAnswered:
        raise InputError(
            f"{path}: some (token, question) pairs already have an answer in {store.path}; nothing was imported"
        ) from None


def _optional_float(text, bad) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad(f"seconds {text!r}: expected a number") from None
    if not 0 <= value < 1e7:
        raise bad(f"seconds {text!r}: expected a duration in seconds")
    return value


def _optional_time(text, bad) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad(f"answered_at {text!r}: expected an ISO 8601 time, e.g. 2026-01-31T14:05:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
