"""HttpEndpointExtractor against real HTTP servers on 127.0.0.1, started and stopped by each test.

The servers answer from a ``respond(index, png, headers)`` function, so each test states its
server's behaviour in a few lines: good, flaky, failing, garbage, unauthorised or slow.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from fvr_audit.errors import ExitCode, InputError, ServiceError
from fvr_audit.extractors.base import AlignmentTemplate, ChannelOrder, FaceGeometry
from fvr_audit.extractors.http_endpoint import TOKEN_ENV, HttpEndpointExtractor
from fvr_audit.extractors.registry import ExtractorOptions, get_extractor

#: Crop size used by most tests: small PNGs keep the suite fast.
SIZE = 32
#: Backoff for tests: real waits would make the suite slow without testing anything more.
FAST = {"backoff_base": 0.001, "backoff_cap": 0.01}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Respond = Callable[[int, bytes, dict[str, str]], Reply]


def json_reply(payload: object, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def fingerprint(pixels: np.ndarray) -> list[float]:
    """The test servers' "embedding": deterministic, and different for every test crop."""
    pixels = pixels.astype(np.float64) / 255
    return [*pixels.mean(axis=(0, 1)), *pixels[0, 0], float(pixels.std()), 1.0]


def png_fingerprint(png: bytes) -> list[float]:
    return fingerprint(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))


def good(index: int, png: bytes, headers: dict[str, str]) -> Reply:
    return json_reply({"embedding": png_fingerprint(png)})


@dataclass
class ServerState:
    """What a test server saw: requests, their headers, and the most handled at once."""

    respond: Respond
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    #: Set at teardown so handlers that wait (the slow server) return at once.
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with state.lock:
            index = len(state.requests)
            state.requests.append(dict(self.headers))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            reply = state.respond(index, body, dict(self.headers))
        finally:
            with state.lock:
                state.in_flight -= 1
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState

    def handle_error(self, request, client_address) -> None:
        # A client that timed out leaves the slow handler writing to a closed socket: expected.
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], ServerState]]:
    """Start servers on 127.0.0.1 (port 0); all are shut down when the test ends."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start(respond: Respond) -> ServerState:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = ServerState(respond, url=f"http://127.0.0.1:{server.server_address[1]}/embed")
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return server.state

    yield start
    for server, thread in running:
        server.state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured on the machine must not intercept requests to the local test servers.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def crops(count: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def make(url: str, **options: object) -> HttpEndpointExtractor:
    options.setdefault("input_size", SIZE)
    return HttpEndpointExtractor(url, ExtractorOptions(**options), **FAST)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Success paths
# --------------------------------------------------------------------------------------------


def test_embeddings_come_back_in_order_with_one_query_each(serve) -> None:
    def shuffled(index: int, png: bytes, headers: dict[str, str]) -> Reply:
        # Uneven delays make responses finish out of order; the result must not be.
        time.sleep((png[-20] % 4) * 0.01)
        return good(index, png, headers)

    server = serve(shuffled)
    batch = crops(12)
    with make(server.url, concurrency=3) as extractor:
        vectors = extractor.embed(batch, normalize=False)

        np.testing.assert_allclose(vectors, [fingerprint(crop) for crop in batch], rtol=1e-6)
        assert vectors.dtype == np.float32
        assert extractor.queries_used == 12
        assert extractor.images_embedded == 12
        assert extractor.info.dim == 8  # known from the answers: no probe query
        assert extractor.queries_used == 12
    assert all(request["Content-Type"] == "image/png" for request in server.requests)
    assert all("Authorization" not in request for request in server.requests)


def test_concurrency_is_bounded(serve) -> None:
    def slow_good(index: int, png: bytes, headers: dict[str, str]) -> Reply:
        time.sleep(0.15)
        return good(index, png, headers)

    server = serve(slow_good)
    with make(server.url, concurrency=3) as extractor:
        extractor.embed(crops(9))
    assert server.max_in_flight == 3


def test_bearer_token_is_sent_and_never_shown(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "s3cret-t0ken"
    monkeypatch.setenv(TOKEN_ENV, token)
    server = serve(good)
    with make(server.url) as extractor:
        extractor.embed(crops(2))
        shown = [repr(extractor), extractor.name, *map(str, vars(extractor.info).values())]
    assert {request["Authorization"] for request in server.requests} == {f"Bearer {token}"}
    assert not any(token in text for text in shown)
    assert "auth: bearer token from FVR_AUDIT_HTTP_TOKEN" in extractor.info.notes.splitlines()


def test_info_probes_once_when_the_dimension_is_unknown(serve) -> None:
    server = serve(good)
    with HttpEndpointExtractor(server.url, ExtractorOptions(), **FAST) as extractor:
        info = extractor.info
        again = extractor.info

        assert info.dim == again.dim == 8
        assert extractor.queries_used == 1
        assert extractor.images_embedded == 0
    assert info.geometry == FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5)
    assert info.preprocessing.describe() == "RGB NHWC (x-0)/1"
    assert info.name == server.url
    assert info.source == f"HTTP endpoint {server.url}"
    assert info.license == "unknown (remote service; check its terms of use)"
    assert info.sha256 is None and info.differentiable is False
    assert info.notes.splitlines()[0] == (
        "default: crop 224x224 dlib-5pt padding 0.5 (a vendor service runs its own face detector, so the "
        "whole face is sent with margin; override with --input-size/--crop/--padding)"
    )


def test_crop_options_set_the_geometry(serve) -> None:
    options = ExtractorOptions(input_size=48, crop=AlignmentTemplate.ARCFACE_5PT, padding=0.1)
    with HttpEndpointExtractor("http://127.0.0.1:9/embed", options) as extractor:
        assert extractor.geometry == FaceGeometry(48, AlignmentTemplate.ARCFACE_5PT, 0.1)
        assert (
            extractor._geometry_line()
            == "set: crop 48x48 arcface-5pt (set by --input-size, --crop, --padding)"
        )


def test_registry_routes_urls_here() -> None:
    extractor = get_extractor("http://127.0.0.1:9/embed", ExtractorOptions(retries=0))
    assert isinstance(extractor, HttpEndpointExtractor)
    assert extractor.max_attempts == 1
    extractor.close()


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------


def test_503_is_retried_and_every_attempt_is_counted(serve) -> None:
    def flaky(index: int, png: bytes, headers: dict[str, str]) -> Reply:
        return json_reply({"error": "warming up"}, 503) if index < 2 else good(index, png, headers)

    server = serve(flaky)
    batch = crops(1)
    with make(server.url) as extractor:
        vectors = extractor.embed(batch, normalize=False)
        assert extractor.queries_used == 3
        assert extractor.images_embedded == 1
    np.testing.assert_allclose(vectors[0], fingerprint(batch[0]), rtol=1e-6)


def test_429_with_retry_after_zero_retries_at_once(serve) -> None:
    def limited(index: int, png: bytes, headers: dict[str, str]) -> Reply:
        return Reply(429, b"slow down", {"Retry-After": "0"}) if index < 2 else good(index, png, headers)

    server = serve(limited)
    # A long backoff that Retry-After must override: the test would take 15 s otherwise.
    extractor = HttpEndpointExtractor(server.url, ExtractorOptions(input_size=SIZE), backoff_base=5.0)
    started = time.monotonic()
    with extractor:
        extractor.embed(crops(1))
        assert extractor.queries_used == 3
    assert time.monotonic() - started < 2.0


def test_retry_after_beyond_the_budget_gives_up_at_once(serve) -> None:
    server = serve(lambda index, png, headers: Reply(429, b"", {"Retry-After": "3600"}))
    with make(server.url) as extractor, pytest.raises(ServiceError) as excinfo:
        extractor.embed(crops(1))
    assert str(excinfo.value) == (
        f"{server.url}: HTTP 429 Too Many Requests; gave up, waiting 3600 s more would pass the 60 s "
        "backoff budget (1 attempt)"
    )
    assert len(server.requests) == 1


def test_persistent_500_fails_after_all_attempts(serve) -> None:
    server = serve(lambda index, png, headers: json_reply({"error": "boom"}, 500))
    with make(server.url, retries=2) as extractor:
        with pytest.raises(ServiceError) as excinfo:
            extractor.embed(crops(1))
        assert extractor.queries_used == 3
        assert extractor.images_embedded == 0
    assert (
        str(excinfo.value)
        == f'{server.url}: HTTP 500 Internal Server Error: {{"error": "boom"}} (3 attempts)'
    )
    assert excinfo.value.exit_code is ExitCode.SERVICE_FAILURE
    assert len(server.requests) == 3


def test_a_failure_stops_the_rest_of_the_batch(serve) -> None:
    server = serve(lambda index, png, headers: Reply(502, b"bad gateway"))
    with make(server.url, retries=3, concurrency=2) as extractor:
        with pytest.raises(ServiceError, match=r"HTTP 502 Bad Gateway: bad gateway \(4 attempts\)$"):
            extractor.embed(crops(10))
        # Without the stop, 10 crops x 4 attempts = 40 requests.
        assert extractor.queries_used <= 2 * extractor.max_attempts


def test_timeouts_are_retried_then_reported(serve) -> None:
    def slow(index: int, png: bytes, headers: dict[str, str]) -> Reply:
        serve_state.release.wait(3.0)
        return good(index, png, headers)

    serve_state = serve(slow)
    started = time.monotonic()
    with make(serve_state.url, timeout=0.3, retries=1) as extractor:
        with pytest.raises(ServiceError) as excinfo:
            extractor.embed(crops(1))
        assert extractor.queries_used == 2  # both requests reached the server
    assert str(excinfo.value) == f"{serve_state.url}: timed out after 0.3 s (ReadTimeout) (2 attempts)"
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_retried_and_not_counted_as_a_query() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/embed"
    with make(url, retries=2) as extractor:
        with pytest.raises(ServiceError) as excinfo:
            extractor.embed(crops(1))
        assert extractor.queries_used == 0
    message = str(excinfo.value)
    assert message.startswith(f"{url}: connection failed (ConnectError: ")
    assert message.endswith("(3 attempts)")


# --------------------------------------------------------------------------------------------
# Answers that retrying cannot fix: one attempt, then ServiceError
# --------------------------------------------------------------------------------------------


def test_401_fails_fast_with_a_credentials_hint(serve) -> None:
    server = serve(lambda index, png, headers: json_reply({"error": "bad token"}, 401))
    # One request at a time: the first failure must keep the other crops from being sent.
    with make(server.url, concurrency=1) as extractor:
        with pytest.raises(ServiceError) as excinfo:
            extractor.embed(crops(3))
        assert extractor.queries_used == 1
    assert str(excinfo.value) == (
        f"{server.url}: HTTP 401 Unauthorized: check credentials, FVR_AUDIT_HTTP_TOKEN is not set "
        "(1 attempt, not retried)"
    )
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (
            Reply(200, b"<html>hello</html>", {"Content-Type": "text/html"}),
            "response is not JSON (Content-Type text/html)",
        ),
        (
            json_reply({"error": "no face", "vector": [1]}),
            "JSON response has no 'embedding' field (keys: error, vector)",
        ),
        (json_reply([0.1, 0.2]), "JSON response has no 'embedding' field (a JSON list)"),
        (json_reply({"embedding": []}), "'embedding' is not a non-empty list of numbers"),
        (json_reply({"embedding": [0.1, "0.2"]}), "'embedding' holds non-numeric values"),
        (json_reply({"embedding": [0.1, True]}), "'embedding' holds non-numeric values"),
        (
            Reply(200, b'{"embedding": [0.1, NaN]}', {"Content-Type": "application/json"}),
            "'embedding' holds non-finite values (NaN, infinity or beyond float32)",
        ),
        (
            json_reply({"embedding": [1e300]}),
            "'embedding' holds non-finite values (NaN, infinity or beyond float32)",
        ),
    ],
    ids=["html", "no-embedding", "json-list", "empty", "string", "bool", "nan", "overflow"],
)
def test_garbage_answers_fail_fast(serve, reply: Reply, problem: str) -> None:
    server = serve(lambda index, png, headers: reply)
    with make(server.url) as extractor:
        with pytest.raises(ServiceError) as excinfo:
            extractor.embed(crops(1))
        assert extractor.queries_used == 1
    assert str(excinfo.value) == f"{server.url}: {problem} (1 attempt)"


def test_a_changing_dimension_is_an_error(serve) -> None:
    server = serve(lambda index, png, headers: json_reply({"embedding": [0.5] * (4 + index)}))
    with make(server.url, concurrency=1) as extractor, pytest.raises(ServiceError) as excinfo:
        extractor.embed(crops(2))
    assert (
        str(excinfo.value)
        == f"{server.url}: 'embedding' has 5 values but earlier responses had 4 (1 attempt)"
    )


# --------------------------------------------------------------------------------------------
# Options and URLs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ExtractorOptions(mean=(0.0, 0.0, 0.0), channel_order=ChannelOrder.BGR),
            (
                "--mean/--channel-order do not apply to an HTTP endpoint; the server does its own preprocessing "
                "(use --input-size/--crop/--padding to choose the crop sent)"
            ),
        ),
        (ExtractorOptions(retries=-1), "--retries must be 0 or more, got -1"),
        (ExtractorOptions(concurrency=0), "--concurrency must be 1 or more, got 0"),
        (ExtractorOptions(timeout=0.0), "--timeout must be a positive number of seconds, got 0"),
        (ExtractorOptions(input_size=0), "--input-size must be a positive number of pixels, got 0"),
    ],
    ids=["preprocessing", "retries", "concurrency", "timeout", "size"],
)
def test_bad_options_are_input_errors(options: ExtractorOptions, message: str) -> None:
    url = "https://api.example.com/embed"
    with pytest.raises(InputError) as excinfo:
        HttpEndpointExtractor(url, options)
    assert str(excinfo.value) == f"{url}: {message}"
    assert excinfo.value.exit_code is ExitCode.BAD_INPUT


def test_urls_in_messages_hide_credentials(serve) -> None:
    server = serve(lambda index, png, headers: json_reply({"error": "nope"}, 404))
    port = server.url.split(":")[2].split("/")[0]
    secret_url = f"http://user:pw123@127.0.0.1:{port}/embed?api_key=k3y"
    with make(secret_url) as extractor, pytest.raises(ServiceError) as excinfo:
        extractor.embed(crops(1))
    assert str(excinfo.value) == (
        f"http://127.0.0.1:{port}/embed?api_key=***: HTTP 404 Not Found: check the URL (1 attempt, not retried)"
    )
    with pytest.raises(InputError, match=r"^ftp://host/embed: not an http:// or https:// URL with a host$"):
        HttpEndpointExtractor("ftp://host/embed")


# --------------------------------------------------------------------------------------------
# Issue 10 (reliability): a total deadline per request, the transport flags, credentials
# --------------------------------------------------------------------------------------------


@dataclass
class TrickleServer:
    """A raw TCP server on 127.0.0.1 that answers one byte at a time, ``gap`` seconds apart, for at
    most ``lasts`` seconds per connection (bounded: it stops by itself), then closes."""

    in_headers: bool
    gap: float = 0.2
    lasts: float = 8.0
    url: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> TrickleServer:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/embed"
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        body = json.dumps({"embedding": [0.5] * 8}).encode()
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        start = 0 if self.in_headers else answer.index(b"\r\n\r\n") + 4
        deadline = time.monotonic() + self.lasts
        with connection:
            try:
                connection.settimeout(1.0)
                connection.recv(1 << 16)  # the request (small PNG)
                connection.sendall(answer[:start])
                for position in range(start, len(answer)):
                    if self.stop.is_set() or time.monotonic() > deadline:
                        return
                    connection.sendall(answer[position : position + 1])
                    time.sleep(self.gap)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self._socket.close()


@pytest.mark.parametrize("in_headers", [True, False], ids=["headers", "body"])
def test_a_server_sending_one_byte_at_a_time_hits_the_total_deadline(in_headers: bool) -> None:
    # Defect 5: each read got a byte within httpx's per-read timeout, so extract waited forever.
    server = TrickleServer(in_headers=in_headers).start()
    try:
        started = time.monotonic()
        with make(server.url, timeout=1.0, retries=0) as extractor, pytest.raises(ServiceError) as caught:
            extractor.embed(crops(1))
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert elapsed < 4.0  # 1 s deadline, not the server's 8 s of trickling
    assert "timed out after 1 s" in str(caught.value)


def _aligned_tree(root, count: int = 2) -> None:
    (root / "person").mkdir(parents=True)
    for index in range(count):
        Image.fromarray(crops(1, 40, seed=index)[0]).save(root / "person" / f"{index}.png")


def test_transport_flags_reach_the_extractor_from_the_cli(tmp_path) -> None:
    from typer.testing import CliRunner

    from fvr_audit.cli.app import app

    _aligned_tree(tmp_path / "faces")
    server = TrickleServer(in_headers=False).start()
    try:
        started = time.monotonic()
        result = CliRunner().invoke(app, [
            "extract", str(tmp_path / "faces"), "-o", str(tmp_path / "db.npz"), "-e", server.url,
            "--aligned", "--quiet", "--timeout", "1", "--retries", "0", "--concurrency", "1",
        ])
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result.exit_code == int(ExitCode.SERVICE_FAILURE), result.output
    assert elapsed < 6.0
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {server.url}: timed out after 1 s")
    assert not (tmp_path / "db.npz").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--timeout", "0"], "--timeout 0: must be a positive number of seconds"),
        (["--retries", "-1"], "--retries -1: must be 0 or more"),
        (["--concurrency", "0"], "--concurrency 0: must be 1 or more"),
    ],
)
def test_bad_transport_flags_are_one_line_errors(tmp_path, flags, message) -> None:
    from typer.testing import CliRunner

    from fvr_audit.cli.app import app

    result = CliRunner().invoke(app, ["extract", str(tmp_path), "-o", str(tmp_path / "db.npz"), "-e", "http://127.0.0.1:9/x", *flags])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {message}"


def test_transport_flags_are_refused_for_a_local_extractor(tmp_path) -> None:
    with pytest.raises(InputError, match="dlib-resnet128: --timeout apply to http"):
        get_extractor("dlib-resnet128", ExtractorOptions(timeout=5.0))


def test_token_over_plain_http_is_warned_on_stderr(serve, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Defect 15: the warning was built into info.notes but never printed.
    from typer.testing import CliRunner

    from fvr_audit.cli.app import app

    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    server = serve(good)
    _aligned_tree(tmp_path / "faces")
    result = CliRunner().invoke(app, [
        "extract", str(tmp_path / "faces"), "-o", str(tmp_path / "db.npz"), "-e", server.url,
        "--aligned", "--quiet", "--input-size", "32",
    ])
    assert result.exit_code == 0, result.output
    assert f"warning: {server.url}: the bearer token is sent over plain http; use https" in result.stderr.splitlines()
    assert "s3cret" not in result.output


def test_url_credentials_and_a_token_together_are_refused(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # Defect 15: with user:pass@ in the URL httpx sent Basic auth, silently dropping the token.
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    server = serve(good)
    url = server.url.replace("http://", "http://user:pw@")
    with pytest.raises(InputError) as caught:
        make(url)
    assert "holds user:password and FVR_AUDIT_HTTP_TOKEN is set" in str(caught.value)
    assert "pw" not in str(caught.value) and "s3cret" not in str(caught.value)
    monkeypatch.delenv(TOKEN_ENV)
    with make(url) as extractor:  # credentials alone: sent as Basic auth, with a warning
        extractor.embed(crops(1))
        assert extractor.warnings == (f"{server.url}: the URL's user:password is sent over plain http; use https",)
    assert server.requests[0]["Authorization"].startswith("Basic ")


def test_proxies_from_the_environment_are_kept_and_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deadline must not cost proxy support: httpx drops environment proxies when handed a
    # transport, so the deadline is put into the transports httpx built itself.
    from fvr_audit.extractors.http_endpoint import _DeadlineBackend

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with make("https://example.invalid/embed") as extractor:
        client = extractor._client
        proxies = [t for t in client._mounts.values() if t is not None]
        assert proxies, "the environment's proxy was dropped"
        for transport in [client._transport, *proxies]:
            assert isinstance(transport._pool._network_backend, _DeadlineBackend)
