"""A black-box face-embedding service reached over HTTP (``--extractor https://host/embed``).

Protocol, kept deliberately simple so a vendor API can be wrapped by a ten-line proxy:

* one ``POST`` per face crop; the body is the crop as an 8-bit RGB PNG, ``Content-Type: image/png``
  (a raw body rather than multipart: no field names to agree on, and every HTTP stack reads it);
* the answer is JSON ``{"embedding": [float, ...]}``, the same length for every crop;
* ``Authorization: Bearer <token>`` is sent when ``$FVR_AUDIT_HTTP_TOKEN`` is set. The token is
  never printed: not in errors, ``repr`` or :attr:`info`.

The server does its own preprocessing; the extractor only chooses how the crop is cut. By
default that is a 224x224 dlib chip with padding 0.5: a vendor service runs its own face
detector, which needs the whole face with margin around it.

Cost accounting: :attr:`HttpEndpointExtractor.queries_used` counts every request that reached
the server, retries included (a priced API bills them too); requests that never connected are
not counted. :attr:`HttpEndpointExtractor.images_embedded` counts crops that got an embedding.
Reading :attr:`~HttpEndpointExtractor.info` before any embedding sends one probe query (a grey
crop) to learn the dimension; it is counted in ``queries_used``, not in ``images_embedded``.

Failures: 429, 5xx, timeouts and connection errors are retried with exponential backoff and
full jitter, the rule every remote client shares (:mod:`fvr_audit.io.service`; ``Retry-After``
honoured, total waiting per crop capped); other 4xx answers and invalid
responses fail at once. Either way the error is a :class:`~fvr_audit.errors.ServiceError`
(exit code 3) on one line naming the URL, the problem and the attempts made.
"""

from __future__ import annotations

import io
import math
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import httpcore
import httpx
import numpy as np

from fvr_audit import __version__
from fvr_audit.errors import InputError, ServiceError
from fvr_audit.extractors.base import (
    MAX_INPUT_SIDE,
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    FaceGeometry,
    Layout,
    Preprocessing,
)
from fvr_audit.extractors.registry import ExtractorOptions
from fvr_audit.io.service import Attempts, GiveUp, RetryPolicy, attempts_text, parse_retry_after

__all__ = ["HttpEndpointExtractor", "encode_png", "parse_retry_after", "redact_url"]

#: Environment variable holding the bearer token for the endpoint.
TOKEN_ENV = "FVR_AUDIT_HTTP_TOKEN"

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 4
DEFAULT_CONCURRENCY = 4
#: A whole face with margin: vendor services detect and align the face themselves.
DEFAULT_GEOMETRY = FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5)

#: First backoff delay (seconds); doubles per retry up to ``backoff_cap``.
DEFAULT_BACKOFF_BASE_S = 0.5
DEFAULT_BACKOFF_CAP_S = 20.0
#: Most time spent waiting between retries of one crop (Retry-After included) before giving up.
DEFAULT_BACKOFF_BUDGET_S = 60.0

#: What the network is fed, for ``info`` only: the server does its own normalisation.
_SENT_AS = Preprocessing(ChannelOrder.RGB, Layout.NHWC, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

#: Hints appended to client errors that are not retried.
_CLIENT_ERROR_HINTS = {
    400: "the server rejected the request; it must accept a raw image/png body",
    404: "check the URL",
    405: "the endpoint does not accept POST",
    413: "the PNG is too large for the server; try a smaller --input-size",
    415: "the server rejected the request; it must accept a raw image/png body",
    422: "the server rejected the request; it must accept a raw image/png body",
}


class _Cancelled(Exception):
    """A request abandoned because another crop of the same batch already failed."""


class _Deadline(threading.local):
    """The monotonic time by which the current thread's request must be over (None: no request)."""

    at: float | None = None

    def bound(self, timeout: float | None) -> float | None:
        """``timeout`` cut to what is left of the deadline; a spent deadline times out at once."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request's total deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write waits at most until the request's deadline.

    httpx's timeouts are per socket operation: a server sending one byte every few seconds never
    trips them. Cutting each operation to the time left makes ``timeout`` a total per request.
    """

    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.bound(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.bound(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, self._deadline.bound(timeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, with each stream bounded by the calling thread's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend, deadline: _Deadline) -> None:
        self._backend = backend
        self._deadline = deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._backend.connect_tcp(host, port, self._deadline.bound(timeout), local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        stream = self._backend.connect_unix_socket(path, self._deadline.bound(timeout), socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_by_deadline(client: httpx.Client, deadline: _Deadline) -> None:
    """Open every socket of ``client`` through :class:`_DeadlineBackend`: its own transport and the
    proxy transports httpx mounted from the environment (so proxies keep working)."""
    transports = [client._transport, *(t for t in client._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            # httpx changed its internals: fail loudly rather than run without the total deadline.
            raise RuntimeError("httpx's transport has no replaceable network backend; pin httpx<0.30")
        pool._network_backend = _DeadlineBackend(backend, deadline)


def redact_url(url: str) -> str:
    """The URL as it may be printed: no user:password, query values masked.

    >>> redact_url("https://user:secret@api.example.com:8443/v1/embed?key=abc&model=x")
    'https://api.example.com:8443/v1/embed?key=***&model=***'
    >>> redact_url("http://127.0.0.1:8080/embed")
    'http://127.0.0.1:8080/embed'
    """
    parts = urlsplit(url)
    text = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    if parts.query:
        text += "?" + "&".join(f"{key}=***" for key, _ in parse_qsl(parts.query, keep_blank_values=True))
    return text


def encode_png(crop: np.ndarray) -> bytes:
    """A uint8 [H, W, 3] RGB crop as PNG bytes (lossless: the server sees exactly our pixels)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop, dtype=np.uint8)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class HttpEndpointExtractor(Extractor):
    """Embeds crops by POSTing each one as a PNG to ``url`` and reading ``{"embedding": [...]}``.

    ``options`` may set the crop (``input_size``, ``crop``, ``padding``) and the transport
    (``timeout``: total seconds per request, from connecting to the last byte; ``retries`` after
    the first attempt; ``concurrency`` requests in flight). ``backoff_base``/``backoff_cap``/``backoff_budget`` tune the waits
    between retries (seconds; tests make them tiny).
    """

    #: Crops handed to :meth:`embed_raw` at once; requests within a batch run concurrently.
    batch_size = 256

    def __init__(
        self,
        url: str,
        options: ExtractorOptions | None = None,
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE_S,
        backoff_cap: float = DEFAULT_BACKOFF_CAP_S,
        backoff_budget: float = DEFAULT_BACKOFF_BUDGET_S,
    ) -> None:
        self.options = options or ExtractorOptions()
        self.url = url
        self.display_url = redact_url(url)
        self._check_url_and_options()

        opts = self.options
        self.timeout = float(opts.timeout) if opts.timeout is not None else DEFAULT_TIMEOUT_S
        self.retries = int(opts.retries) if opts.retries is not None else DEFAULT_RETRIES
        self.concurrency = int(opts.concurrency) if opts.concurrency is not None else DEFAULT_CONCURRENCY
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.backoff_budget = backoff_budget
        self._geometry = FaceGeometry(
            opts.input_size if opts.input_size is not None else DEFAULT_GEOMETRY.size,
            opts.crop if opts.crop is not None else DEFAULT_GEOMETRY.template,
            float(opts.padding) if opts.padding is not None else DEFAULT_GEOMETRY.padding,
        )

        token = os.environ.get(TOKEN_ENV, "").strip()
        self._has_token = bool(token)
        has_userinfo = bool(urlsplit(url).username)
        if token and has_userinfo:
            # httpx would send the URL's user:password as Basic auth in place of the token, silently.
            raise InputError(
                f"{self.display_url}: the URL holds user:password and {TOKEN_ENV} is set; only one "
                "Authorization header can be sent: remove the credentials from the URL or unset the token"
            )
        #: Printed by the CLI when the extractor is created (credentials over plain http...).
        self.warnings: tuple[str, ...] = ()
        if (token or has_userinfo) and urlsplit(url).scheme == "http":
            what = "the bearer token" if token else "the URL's user:password"
            self.warnings = (f"{self.display_url}: {what} is sent over plain http; use https",)
        headers = {
            "Content-Type": "image/png",
            "Accept": "application/json",
            "User-Agent": f"fvr-audit/{__version__}",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # One client for all threads: httpx's connection pool is thread-safe, and sharing it
        # reuses connections instead of opening one per crop.
        # ``timeout`` is the total per request (connect to last byte), not httpx's per-read timeout.
        self._deadline = _Deadline()
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
            follow_redirects=False,
        )
        _bound_by_deadline(self._client, self._deadline)
        # Bounds requests in flight across all callers (embed batches and the info probe).
        self._in_flight = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._queries_used = 0
        self._images_embedded = 0
        self._dim: int | None = None
        self._random = random.Random()

    # -- configuration ---------------------------------------------------------------------------

    def _check_url_and_options(self) -> None:
        """One-line InputError for a URL or option that cannot work."""
        label = self.display_url
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{label}: not an http:// or https:// URL with a host")
        opts = self.options
        ignored = [
            flag
            for flag, value in (
                ("--mean", opts.mean),
                ("--std", opts.std),
                ("--channel-order", opts.channel_order),
                ("--layout", opts.layout),
            )
            if value is not None
        ]
        if ignored:
            raise InputError(
                f"{label}: {'/'.join(ignored)} do not apply to an HTTP endpoint; the server does its "
                "own preprocessing (use --input-size/--crop/--padding to choose the crop sent)"
            )
        if opts.input_size is not None and opts.input_size <= 0:
            raise InputError(
                f"{label}: --input-size must be a positive number of pixels, got {opts.input_size}"
            )
        if opts.input_size is not None and opts.input_size > MAX_INPUT_SIDE:
            raise InputError(f"{label}: --input-size {opts.input_size}: at most {MAX_INPUT_SIDE} px per side")
        if opts.padding is not None and not (math.isfinite(opts.padding) and opts.padding >= 0):
            raise InputError(f"{label}: --padding must be 0 or more, got {opts.padding:g}")
        if opts.timeout is not None and not (math.isfinite(opts.timeout) and opts.timeout > 0):
            raise InputError(f"{label}: --timeout must be a positive number of seconds, got {opts.timeout:g}")
        if opts.retries is not None and opts.retries < 0:
            raise InputError(f"{label}: --retries must be 0 or more, got {opts.retries}")
        if opts.concurrency is not None and opts.concurrency < 1:
            raise InputError(f"{label}: --concurrency must be 1 or more, got {opts.concurrency}")

    @property
    def max_attempts(self) -> int:
        """Requests tried per crop: the first one plus ``retries``."""
        return self.retries + 1

    def __repr__(self) -> str:
        return f"HttpEndpointExtractor({self.display_url!r})"

    # -- accounting ------------------------------------------------------------------------------

    @property
    def queries_used(self) -> int:
        """Requests that reached the server so far, retries and the info probe included."""
        with self._lock:
            return self._queries_used

    @property
    def images_embedded(self) -> int:
        """Crops that received an embedding (each needs at least one query)."""
        with self._lock:
            return self._images_embedded

    def _count_query(self) -> None:
        with self._lock:
            self._queries_used += 1

    # -- one crop ----------------------------------------------------------------------------------

    @property
    def retry_policy(self) -> RetryPolicy:
        """Waits between attempts: the shared backoff with full jitter (:mod:`fvr_audit.io.service`)."""
        return RetryPolicy(self.max_attempts, self.backoff_base, self.backoff_cap, self.backoff_budget)

    def _fail(self, problem: str, attempts: int, suffix: str = "") -> ServiceError:
        return ServiceError(f"{self.display_url}: {problem} ({attempts_text(attempts)}{suffix})")

    def _client_error(self, response: httpx.Response, attempts: int) -> ServiceError:
        """The error for an answer that retrying cannot fix (4xx other than 429, 3xx, 1xx)."""
        status = response.status_code
        problem = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status in (401, 403):
            hint = f"{TOKEN_ENV} is set" if self._has_token else f"{TOKEN_ENV} is not set"
            problem += f": check credentials, {hint}"
        elif 300 <= status < 400:
            location = response.headers.get("Location")
            where = f" to {redact_url(str(response.url.join(location)))}" if location else ""
            problem += f": redirected{where}; give the final URL"
        elif status in _CLIENT_ERROR_HINTS:
            problem += f": {_CLIENT_ERROR_HINTS[status]}"
        return self._fail(problem, attempts, ", not retried")

    def _server_problem(self, response: httpx.Response) -> str:
        """``HTTP 503 Service Unavailable: <start of the body>`` for a retryable answer."""
        problem = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        content_type = response.headers.get("Content-Type", "")
        # A JSON or text body usually says why ("model overloaded"); an HTML error page is noise.
        if response.content and "html" not in content_type.lower():
            body = _short(response.content.decode("utf-8", errors="replace"))
            if body:
                problem += f": {body}"
        return problem

    def _parse_embedding(self, response: httpx.Response, attempts: int) -> np.ndarray:
        """The validated float32 vector of a 2xx answer; fixes the dimension on first success."""
        try:
            payload = response.json()
        except ValueError:
            content_type = response.headers.get("Content-Type") or "none"
            raise self._fail(f"response is not JSON (Content-Type {content_type})", attempts) from None
        if not isinstance(payload, dict) or "embedding" not in payload:
            if isinstance(payload, dict):
                keys = ", ".join(sorted(map(str, payload))[:5]) or "none"
                got = f"keys: {_short(keys, 60)}"
            else:
                got = f"a JSON {type(payload).__name__}"
            raise self._fail(f"JSON response has no 'embedding' field ({got})", attempts)
        values = payload["embedding"]
        if not isinstance(values, list) or not values:
            raise self._fail("'embedding' is not a non-empty list of numbers", attempts)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise self._fail("'embedding' holds non-numeric values", attempts)
        try:
            with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected below
                vector = np.asarray(values, dtype=np.float64).astype(np.float32)
        except OverflowError:  # an integer too large even for float64
            vector = np.array([np.inf], np.float32)
        if not np.all(np.isfinite(vector)):
            raise self._fail(
                "'embedding' holds non-finite values (NaN, infinity or beyond float32)", attempts
            )
        with self._lock:
            if self._dim is None:
                self._dim = len(vector)
            elif len(vector) != self._dim:
                raise self._fail(
                    f"'embedding' has {len(vector)} values but earlier responses had {self._dim}", attempts
                )
        return vector

    def _embed_one(self, crop: np.ndarray, stop: threading.Event, *, is_probe: bool = False) -> np.ndarray:
        """POST one crop, retrying what may succeed later; a vector or a ServiceError."""
        body = encode_png(crop)
        retries = Attempts(self.retry_policy, self._random)
        attempt = 0
        while True:
            if stop.is_set():
                raise _Cancelled()
            attempt += 1
            retry_after: float | None = None
            try:
                with self._in_flight:
                    self._deadline.at = time.monotonic() + self.timeout
                    try:
                        response = self._client.post(self.url, content=body)
                    finally:
                        self._deadline.at = None
            except httpx.TimeoutException as exc:
                # A connect or pool timeout never reached the server; a read/write timeout did.
                if not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
                    self._count_query()
                problem = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                if not isinstance(exc, httpx.ConnectError):
                    self._count_query()
                detail = _short(str(exc), 80) or "no detail"
                problem = f"connection failed ({type(exc).__name__}: {detail})"
            else:
                self._count_query()
                status = response.status_code
                if 200 <= status < 300:
                    vector = self._parse_embedding(response, attempt)
                    if not is_probe:
                        with self._lock:
                            self._images_embedded += 1
                    return vector
                if status != 429 and status < 500:
                    raise self._client_error(response, attempt)
                problem = self._server_problem(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))

            try:
                delay = retries.wait_after_failure(retry_after)
            except GiveUp as give_up:
                raise self._fail(problem + give_up.detail, give_up.attempts) from None
            if stop.wait(delay):
                raise _Cancelled()

    # -- batches ---------------------------------------------------------------------------------

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        """Embed crops with up to ``concurrency`` requests in flight, in the order given.

        The first failure stops the batch: queued crops are dropped, crops waiting to retry
        give up, and that failure is raised.
        """
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, self._dim or 0), np.float32)
        stop = threading.Event()
        pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(crops)), thread_name_prefix="fvr-http"
        )
        futures: list[Future[np.ndarray]] = []
        try:
            futures = [pool.submit(self._embed_or_stop, crop, stop) for crop in crops]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # Reached on success, on a failed crop and on Ctrl-C alike: stop the others quickly.
            if not all(f.done() and not f.cancelled() and f.exception() is None for f in futures):
                stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None and not isinstance(error, _Cancelled):
                raise error
        return np.stack([future.result() for future in futures])

    def _embed_or_stop(self, crop: np.ndarray, stop: threading.Event) -> np.ndarray:
        """:meth:`_embed_one` for a batch worker: a failure stops the batch before it is reported.

        Setting ``stop`` here, not in the caller, means a worker never starts the next queued
        crop after a failure, so no query is spent on a batch that is already lost.
        """
        try:
            return self._embed_one(crop, stop)
        except BaseException:
            stop.set()
            raise

    def _ensure_dim(self) -> int:
        """The embedding size; learning it costs one probe query when nothing was embedded yet."""
        if self._dim is None:
            grey = np.full((self._geometry.size, self._geometry.size, 3), 128, np.uint8)
            self._embed_one(grey, threading.Event(), is_probe=True)
        return int(self._dim)  # type: ignore[arg-type]

    # -- description -----------------------------------------------------------------------------

    def _geometry_line(self) -> str:
        opts = self.options
        set_flags = [
            flag
            for flag, value in (
                ("--input-size", opts.input_size),
                ("--crop", opts.crop),
                ("--padding", opts.padding),
            )
            if value is not None
        ]
        if not set_flags:
            return (
                f"default: crop {self._geometry.describe()} (a vendor service runs its own face detector, "
                "so the whole face is sent with margin; override with --input-size/--crop/--padding)"
            )
        return f"set: crop {self._geometry.describe()} (set by {', '.join(set_flags)})"

    @property
    def info(self) -> ExtractorInfo:
        dim = self._ensure_dim()
        notes = [
            self._geometry_line(),
            'request: POST one PNG per crop (Content-Type: image/png), answer JSON {"embedding": [...]}',
            "preprocessing: done by the server; crops are sent as 8-bit RGB",
            f"auth: bearer token from {TOKEN_ENV}"
            if self._has_token
            else f"auth: none (set {TOKEN_ENV} to send a bearer token)",
            (
                f"transport: {self.timeout:g} s timeout, {self.retries} retries, {self.concurrency} in flight; "
                "every request sent counts as a query, retries and one dimension probe included"
            ),
        ]
        notes.extend(f"warning: {warning}" for warning in self.warnings)
        return ExtractorInfo(
            name=self.display_url,
            dim=dim,
            geometry=self._geometry,
            preprocessing=_SENT_AS,
            source=f"HTTP endpoint {self.display_url}",
            license="unknown (remote service; check its terms of use)",
            sha256=None,
            differentiable=False,
            notes="\n".join(notes),
            extra={
                "url": self.display_url,
                "timeout_s": self.timeout,
                "retries": self.retries,
                "concurrency": self.concurrency,
            },
        )

    # These come from the options, so they must not go through ``info`` (which may probe).
    @property
    def geometry(self) -> FaceGeometry:
        return self._geometry

    @property
    def name(self) -> str:
        return self.display_url

    @property
    def dim(self) -> int:
        return self._ensure_dim()

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
