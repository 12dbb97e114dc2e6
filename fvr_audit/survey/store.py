"""Participants and answers in SQLite (``survey.sqlite`` in the survey folder, mode 0600).

One row per participant token; one row per (token, question) shown, with the server's time it was
first shown; one row per (token, question) answered, the primary key refusing a second answer.
Times are the server's clock: a participant's browser cannot make an answer look slower or faster.
The database is opened per call (the server is threaded; sqlite3 connections are not shared).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fvr_audit.errors import InputError
from fvr_audit.survey.manifest import DATABASE_NAME

SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    token TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    created REAL NOT NULL,
    consented REAL
);
CREATE TABLE IF NOT EXISTS shown (
    token TEXT NOT NULL REFERENCES participants(token),
    question TEXT NOT NULL,
    shown_at REAL NOT NULL,
    PRIMARY KEY (token, question)
);
CREATE TABLE IF NOT EXISTS answers (
    token TEXT NOT NULL REFERENCES participants(token),
    question TEXT NOT NULL,
    -- candidate position 1..K as shown, or 0 for "none of these"
    choice INTEGER NOT NULL,
    -- Likert 1 (not confident at all) .. 5 (very confident)
    confidence INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 5),
    answered_at REAL NOT NULL,
    -- answered_at minus the first time the server showed the question (NULL: imported without it)
    seconds REAL,
    -- "web" (this server) or "import" (a CSV from another survey platform)
    source TEXT NOT NULL DEFAULT 'web',
    PRIMARY KEY (token, question)
);
"""

#: Tokens are 128 random bits, URL-safe: guessing one is out of reach.
TOKEN_BYTES = 16


def new_token() -> str:
    """A random link code that starts with a letter or digit (a leading '-' or '=' reads as a
    formula in a spreadsheet opening the exported CSV)."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if token[0].isalnum():
            return token


class AlreadyAnswered(Exception):
    """A second answer for the same (token, question)."""


@dataclass(frozen=True)
class Answer:
    token: str
    question: str
    choice: int
    confidence: int
    answered_at: float
    seconds: float | None
    source: str = "web"


class SurveyStore:
    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / DATABASE_NAME

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            # Created 0600 before sqlite opens it: answers are research data about people.
            try:
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
            except FileExistsError:
                pass  # made meanwhile by another request's thread
            except OSError as error:
                raise InputError(f"{self.path}: cannot create the answers database ({error.strerror or error})") from None
        try:
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as error:
            raise InputError(f"{self.path}: cannot open the answers database ({error})") from None
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            connection.executescript(SCHEMA)
            yield connection
        except sqlite3.DatabaseError as error:
            raise InputError(f"{self.path}: answers database error ({error})") from None
        finally:
            connection.close()

    # ---------------------------------------------------------------------------- participants

    def add_participants(self, count: int) -> list[str]:
        tokens = [new_token() for _ in range(count)]
        now = time.time()
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO participants (token, nonce, created) VALUES (?, ?, ?)",
                [(t, secrets.token_urlsafe(TOKEN_BYTES), now) for t in tokens],
            )
            db.execute("COMMIT")
        return tokens

    def ensure_participants(self, tokens: Sequence[str]) -> None:
        """Register tokens from an import (kept as they are; they get a nonce of their own)."""
        now = time.time()
        with self.connect() as db:
            db.executemany(
                "INSERT OR IGNORE INTO participants (token, nonce, created) VALUES (?, ?, ?)",
                [(t, secrets.token_urlsafe(TOKEN_BYTES), now) for t in tokens],
            )

    def participant(self, token: str) -> dict | None:
        with self.connect() as db:
            row = db.execute("SELECT token, nonce, consented FROM participants WHERE token = ?", (token,)).fetchone()
        return None if row is None else {"token": row[0], "nonce": row[1], "consented": row[2]}

    def tokens(self) -> list[str]:
        with self.connect() as db:
            return [r[0] for r in db.execute("SELECT token FROM participants ORDER BY created, token")]

    def consent(self, token: str) -> None:
        with self.connect() as db:
            db.execute("UPDATE participants SET consented = ? WHERE token = ? AND consented IS NULL", (time.time(), token))

    # ---------------------------------------------------------------------------- answers

    def mark_shown(self, token: str, question: str) -> None:
        """The first time the question is shown to this participant (a reload keeps that time)."""
        with self.connect() as db:
            db.execute("INSERT OR IGNORE INTO shown (token, question, shown_at) VALUES (?, ?, ?)", (token, question, time.time()))

    def shown_at(self, token: str, question: str) -> float | None:
        with self.connect() as db:
            row = db.execute("SELECT shown_at FROM shown WHERE token = ? AND question = ?", (token, question)).fetchone()
        return None if row is None else float(row[0])

    def answered(self, token: str) -> set[str]:
        with self.connect() as db:
            return {r[0] for r in db.execute("SELECT question FROM answers WHERE token = ?", (token,))}

    def record(self, token: str, question: str, choice: int, confidence: int) -> Answer:
        """Store a web answer; :class:`AlreadyAnswered` when this token answered the question before."""
        now = time.time()
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT shown_at FROM shown WHERE token = ? AND question = ?", (token, question)).fetchone()
            seconds = None if row is None else round(now - float(row[0]), 3)
            try:
                db.execute(
                    "INSERT INTO answers (token, question, choice, confidence, answered_at, seconds, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'web')",
                    (token, question, choice, confidence, now, seconds),
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                raise AlreadyAnswered(f"{token}/{question}") from None
            db.execute("COMMIT")
        return Answer(token, question, choice, confidence, now, seconds)

    def import_answers(self, answers: Sequence[Answer]) -> int:
        """Insert imported answers in one transaction; a (token, question) already present fails all."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO answers (token, question, choice, confidence, answered_at, seconds, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(a.token, a.question, a.choice, a.confidence, a.answered_at, a.seconds, a.source) for a in answers],
                )
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                raise AlreadyAnswered("import") from None
            db.execute("COMMIT")
        return len(answers)

    def answers(self) -> list[Answer]:
        if not self.path.exists():
            return []
        with self.connect() as db:
            rows = db.execute(
                "SELECT token, question, choice, confidence, answered_at, seconds, source FROM answers "
                "ORDER BY token, answered_at, question"
            ).fetchall()
        return [Answer(*row) for row in rows]
