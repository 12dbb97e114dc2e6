"""A reference server for the HTTP extractor protocol, serving any local extractor.

The protocol (see :mod:`fvr_audit.extractors.http_endpoint`): ``POST`` an RGB PNG crop, get
``{"embedding": [...]}``. This server answers it with a local model, counts every request it
receives, and binds to 127.0.0.1 by default. It serves the tests and benchmarks that audit an
endpoint end to end (the scan's query count must equal the server's), and shows a vendor what
a wrapper around their own API has to do.

>>> from fvr_audit.extractors.registry import get_extractor
>>> server = serve_extractor(get_extractor("dlib-resnet128"))
>>> server.url.startswith("http://127.0.0.1:"), server.requests
(True, 0)
>>> server.close()
"""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from fvr_audit.extractors.base import Extractor

#: Largest request body accepted (a 224 px PNG is far smaller).
MAX_BODY = 4 << 20


class ExtractorServer:
    """A running server; :attr:`requests` counts the POSTs it received."""

    def __init__(self, extractor: Extractor, host: str = "127.0.0.1", port: int = 0) -> None:
        self.extractor = extractor
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                with owner._lock:
                    owner.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self._reply(413 if length > MAX_BODY else 400, {"error": "expected a PNG body"})
                    return
                body = self.rfile.read(length)
                try:
                    crop = _decode_png(body, owner.extractor.geometry.size)
                except ValueError as exc:
                    self._reply(400, {"error": str(exc)})
                    return
                with owner._model_lock:  # one inference at a time: the model is the bottleneck anyway
                    vector = owner.extractor.embed(crop[None], normalize=False)[0]
                self._reply(200, {"embedding": [float(v) for v in vector]})

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # silence per-request logs
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/embed"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _decode_png(body: bytes, size: int) -> np.ndarray:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except Exception as exc:
        raise ValueError("not a readable image") from exc
    crop = np.asarray(image.convert("RGB"), np.uint8)
    if crop.shape != (size, size, 3):
        raise ValueError(f"expected a {size}x{size} crop, got {crop.shape[1]}x{crop.shape[0]}")
    return crop


def serve_extractor(extractor: Extractor, host: str = "127.0.0.1", port: int = 0) -> ExtractorServer:
    """Serve ``extractor`` over the HTTP extractor protocol (port 0: any free port)."""
    return ExtractorServer(extractor, host, port)
