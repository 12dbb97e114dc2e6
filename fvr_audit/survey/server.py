"""``survey serve``: the survey as a small local web server (standard library only).

Routes (``<token>`` is a participant's link code, ``<id>`` 16 hex digits; nothing else answers)::

    GET  /s/<token>/             consent page, the next unanswered question, or thanks
    POST /s/<token>/consent      form: nonce, consent=yes
    POST /s/<token>/answer       form: nonce, question, choice (0 = none of these, 1..K), confidence (1..5)
    GET  /s/<token>/img/<id>     an image of a question this participant has been shown

Refused: an unknown token (404), a form without the participant's nonce (403), a question that
is not the one being shown (400), a second answer to a question (409), a body over
:data:`MAX_BODY_BYTES` (413), and any other path (404): images are looked up by id in the
manifest, never by a path taken from the URL. Every response forbids caching, framing and
outside fetches. The log names no IP address and only the first characters of a token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from fvr_audit.survey import pages
from fvr_audit.survey.manifest import ID_PATTERN, IMAGES_DIR, Manifest, Question, load_manifest
from fvr_audit.survey.store import AlreadyAnswered, SurveyStore

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: A form holds a nonce, a question id and two small numbers: a few hundred bytes.
MAX_BODY_BYTES = 4096
#: Seconds a connection may stay silent (a slow client cannot hold a thread for ever).
SOCKET_TIMEOUT = 30

_TOKEN = r"[A-Za-z0-9_-]{16,64}"
_ROUTES = (
    ("GET", re.compile(rf"^/s/({_TOKEN})/?$"), "visit"),
    ("POST", re.compile(rf"^/s/({_TOKEN})/consent$"), "consent"),
    ("POST", re.compile(rf"^/s/({_TOKEN})/answer$"), "answer"),
    ("GET", re.compile(rf"^/s/({_TOKEN})/img/([0-9a-f]{{16}})$"), "image"),
)
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def question_order(manifest: Manifest, token: str) -> list[Question]:
    """The order this participant sees the questions in: shuffled per token, the same on every visit."""
    import numpy as np

    digest = hashlib.sha256(f"{manifest.seed}:{token}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return [manifest.questions[i] for i in rng.permutation(len(manifest.questions))]


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    location: str | None = None
    csp_nonce: str = ""


class SurveyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, log=None) -> None:
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.store = SurveyStore(self.folder)
        self.images_dir = (self.folder / IMAGES_DIR).resolve()
        self.log = log
        super().__init__((host, port), SurveyHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class SurveyHandler(BaseHTTPRequestHandler):
    server: SurveyServer
    server_version = "fvr-audit-survey"
    sys_version = ""
    timeout = SOCKET_TIMEOUT

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(self._message(HTTPStatus.METHOD_NOT_ALLOWED, "Not allowed", "This address takes no HEAD requests."))

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        for route_method, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match:
                if route_method != method:
                    continue
                self._send(getattr(self, f"_{name}")(*match.groups()))
                return
        if any(p.match(path) for _, p, _ in _ROUTES):
            self._send(self._message(HTTPStatus.METHOD_NOT_ALLOWED, "Not allowed", "This address does not take that request."))
            return
        self._send(self._message(HTTPStatus.NOT_FOUND, "Not found", "Open the survey link you were given."))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        nonce = response.csp_nonce
        sources = f"'nonce-{nonce}'" if nonce else "'none'"
        self.send_header(
            "Content-Security-Policy",
            f"default-src 'none'; img-src 'self'; style-src {sources}; script-src {sources}; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        )
        if response.location:
            self.send_header("Location", response.location)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        if self.server.log is None:
            return
        # No client address, and a token cut to its first 4 characters: the log is not a list of links.
        line = re.sub(rf"/s/({_TOKEN})", lambda m: f"/s/{m.group(1)[:4]}…", format % args)
        self.server.log(line)

    def _page(self, status: HTTPStatus, page: str, **context) -> Response:
        nonce = secrets.token_urlsafe(12)
        return Response(status, pages.render(page, csp_nonce=nonce, **context), csp_nonce=nonce)

    def _message(self, status: HTTPStatus, heading: str, message: str, link: str | None = None) -> Response:
        return self._page(status, "message", heading=heading, message=message, link=link)

    def _unknown_token(self) -> Response:
        return self._message(HTTPStatus.NOT_FOUND, "Link not recognised", "This survey link is not valid. Check that you copied all of it.")

    # ------------------------------------------------------------------ routes

    def _participant(self, token: str) -> dict | None:
        return self.server.store.participant(token)

    def _next_question(self, token: str) -> tuple[Question | None, int, int]:
        order = question_order(self.server.manifest, token)
        answered = self.server.store.answered(token)
        remaining = [q for q in order if q.id not in answered]
        return (remaining[0] if remaining else None), len(order) - len(remaining) + 1, len(order)

    def _visit(self, token: str) -> Response:
        participant = self._participant(token)
        if participant is None:
            return self._unknown_token()
        manifest = self.server.manifest
        if participant["consented"] is None:
            return self._page(
                HTTPStatus.OK, "consent", token=token, nonce=participant["nonce"],
                total=len(manifest.questions), k=manifest.k,
            )
        question, number, total = self._next_question(token)
        if question is None:
            return self._page(HTTPStatus.OK, "done", total=total)
        self.server.store.mark_shown(token, question.id)
        return self._page(
            HTTPStatus.OK, "question", token=token, nonce=participant["nonce"], question=question.id,
            probe=question.probe, candidates=[c.image for c in question.candidates], number=number, total=total,
        )

    def _read_form(self, token: str) -> tuple[dict | None, dict[str, str] | Response]:
        participant = self._participant(token)
        if participant is None:
            return None, self._unknown_token()
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return participant, self._message(HTTPStatus.LENGTH_REQUIRED, "Bad request", "The form came without a length.")
        if int(length) > MAX_BODY_BYTES:
            # Not read: the connection is closed instead of draining an oversized body.
            self.close_connection = True
            return participant, self._message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Too large", "The form is larger than any answer.")
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        body = self.rfile.read(int(length))
        if content_type != "application/x-www-form-urlencoded":
            return participant, self._message(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Bad request", "Send the answer with the survey's form.")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=8)
        except (UnicodeDecodeError, ValueError):
            return participant, self._message(HTTPStatus.BAD_REQUEST, "Bad request", "The form could not be read.")
        if any(len(values) != 1 for values in fields.values()):
            return participant, self._message(HTTPStatus.BAD_REQUEST, "Bad request", "Each field may be given once.")
        form = {name: values[0] for name, values in fields.items()}
        if not secrets.compare_digest(form.get("nonce", ""), participant["nonce"]):
            return participant, self._message(HTTPStatus.FORBIDDEN, "Not accepted", "This form does not belong to this survey link.")
        return participant, form

    def _consent(self, token: str) -> Response:
        participant, form = self._read_form(token)
        if isinstance(form, Response):
            return form
        if form.get("consent") != "yes":
            return self._message(HTTPStatus.BAD_REQUEST, "Consent needed", "Tick the box to take part.", link=f"/s/{token}/")
        self.server.store.consent(token)
        return Response(HTTPStatus.SEE_OTHER, location=f"/s/{token}/")

    def _answer(self, token: str) -> Response:
        participant, form = self._read_form(token)
        if isinstance(form, Response):
            return form
        back = f"/s/{token}/"
        if participant["consented"] is None:
            return self._message(HTTPStatus.FORBIDDEN, "Consent needed", "Agree to take part first.", link=back)
        question_id = form.get("question", "")
        question = self.server.manifest.question(question_id) if ID_PATTERN.match(question_id) else None
        if question is None:
            return self._message(HTTPStatus.BAD_REQUEST, "Not accepted", "That is not a question of this survey.", link=back)
        if question_id in self.server.store.answered(token):
            return self._message(HTTPStatus.CONFLICT, "Already answered", "This question was answered before; answers cannot be changed.", link=back)
        current, _, _ = self._next_question(token)
        if current is None or current.id != question_id or self.server.store.shown_at(token, question_id) is None:
            return self._message(HTTPStatus.BAD_REQUEST, "Not accepted", "That is not the question being shown to you.", link=back)
        choice, confidence = form.get("choice", ""), form.get("confidence", "")
        if not (choice.isdigit() and int(choice) <= question.k and confidence in {"1", "2", "3", "4", "5"}):
            return self._message(HTTPStatus.BAD_REQUEST, "Answer incomplete", "Pick a photo (or None of these) and your confidence.", link=back)
        try:
            self.server.store.record(token, question_id, int(choice), int(confidence))
        except AlreadyAnswered:
            return self._message(HTTPStatus.CONFLICT, "Already answered", "This question was answered before; answers cannot be changed.", link=back)
        return Response(HTTPStatus.SEE_OTHER, location=back)

    def _image(self, token: str, image_id: str) -> Response:
        participant = self._participant(token)
        if participant is None or participant["consented"] is None:
            return self._unknown_token() if participant is None else self._message(HTTPStatus.NOT_FOUND, "Not found", "No such image.")
        name = self.server.manifest.images.get(image_id)
        if name is None or not self._shown_image(token, image_id):
            return self._message(HTTPStatus.NOT_FOUND, "Not found", "No such image.")
        path = (self.server.images_dir / name)
        # The manifest was checked at load; this guards a folder changed since (a planted link).
        if path.is_symlink() or path.resolve().parent != self.server.images_dir or not path.is_file():
            return self._message(HTTPStatus.NOT_FOUND, "Not found", "No such image.")
        return Response(HTTPStatus.OK, path.read_bytes(), content_type=_CONTENT_TYPES[path.suffix])

    def _shown_image(self, token: str, image_id: str) -> bool:
        """Only images of questions this participant has been shown: none can be fetched ahead."""
        store = self.server.store
        return any(store.shown_at(token, q) is not None for q in self.server.manifest.questions_showing.get(image_id, ()))


def serve(folder: Path, host: str, port: int, *, on_ready=None, log=None) -> None:
    """Run until interrupted; ``on_ready(url)`` is called once the socket listens."""
    server = SurveyServer(folder, host, port, log=log or (lambda line: print(line, file=sys.stderr)))
    if on_ready:
        on_ready(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
