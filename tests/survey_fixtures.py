"""A real, tiny scan and a survey built from it, for the survey tests (about 20 s, no face data).

The scan: 12 synthetic identities x 3 vectors in dlib-resnet128's space, 8 targets, the shipped
``naive`` reconstructor. The gallery: two photos per identity (flat colour plus noise, so the
candidate engine faceres-1024 ranks them by colour). The survey: K = 5, 5 naive questions, 2
attention checks.
"""

from __future__ import annotations

import http.client
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from fvr_audit.cli.app import app

IDENTITIES = 12
PER_METHOD = 5
ATTENTION = 2
K = 5

runner = CliRunner()

sys.path.insert(0, str(Path(__file__).parent))
from test_scan import clustered  # noqa: E402


def make_scan(root: Path) -> tuple[Path, Path]:
    """(scan folder, gallery folder) under ``root``."""
    vectors, labels, paths = clustered(IDENTITIES, 3, 128, noise=0.6)
    np.savez(root / "db.npz", vectors=vectors, labels=labels, paths=paths)
    rng = np.random.default_rng(0)
    for i in range(IDENTITIES):
        folder = root / "gallery" / f"id{i:04d}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 255, 3)
        for j in range(2):
            photo = np.clip(colour + rng.normal(0, 40, (120, 120, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(photo).save(folder / f"{j}.jpg")
    result = runner.invoke(app, [
        "scan", str(root / "db.npz"), "-o", str(root / "scan"), "--engine", "local:dlib-resnet128",
        "--methods", "naive", "--sample", "8", "--n", "12", "--k", "1,5", "--draws", "1",
        "--no-pdf", "--quiet", "--calibration-faces", "0",
    ])
    assert result.exit_code == 0, result.output
    return root / "scan", root / "gallery"


def build_args(scan: Path, gallery: Path, output: Path, *extra: str) -> list[str]:
    return [
        "survey", "build", str(scan), "--gallery", str(gallery), "-o", str(output), "--no-face", "center",
        "--per-method", str(PER_METHOD), "--attention", str(ATTENTION), "--k", str(K), *extra,
    ]


def make_survey(scan: Path, gallery: Path, output: Path) -> Path:
    result = runner.invoke(app, build_args(scan, gallery, output))
    assert result.exit_code == 0, result.output
    return output


def add_tokens(folder: Path, count: int, base_url: str = "http://127.0.0.1:8765") -> list[str]:
    result = runner.invoke(app, ["survey", "tokens", "add", str(count), str(folder), "--base-url", base_url])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@contextmanager
def running_server(folder: Path):
    """The survey server on a free port, in a thread; yields it."""
    from fvr_audit.survey.server import SurveyServer

    server = SurveyServer(folder, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """A raw request (the path is sent exactly as given); returns (status, headers, body)."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None and "Content-Length" not in (headers or {}):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
