"""A whole scan against the cloud engines, offline: the real Rekognition and Azure Face engines on
simulated services (a local stand-in recognizer answers each request, on the service's scale), and
the CLI's cost plan, cost cap and credential check, none of which sends a request."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_cloud_engines import PEOPLE, gallery, offline_credentials, recognizer  # noqa: E402,F401,F811

from fvr_audit.audit import galleries  # noqa: E402
from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan  # noqa: E402
from fvr_audit.cli.app import app  # noqa: E402
from fvr_audit.extractors.registry import get_extractor  # noqa: E402

runner = CliRunner()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def database_for(gallery, folder: Path) -> Path:
    """F = dlib-resnet128 vectors (stand-ins) for the gallery's photos, labelled by folder, with their paths."""
    keep = np.asarray(gallery.labels) != "Nobody"
    paths = np.asarray(gallery.paths)[keep]
    labels = np.array([p.split("/")[0] for p in paths])  # a folder gallery's identity is its folder
    vectors = np.random.default_rng(0).normal(size=(len(labels), 128)).astype(np.float32)
    path = folder / "db.npz"
    np.savez(path, vectors=vectors, labels=labels, paths=paths)
    return path


def test_scan_against_both_simulated_services(gallery, tmp_path, monkeypatch, no_network):
    from fvr_audit.engines.simulated import simulated_aws_engine, simulated_azure_engine
    from fvr_audit.report import render_html

    shared = recognizer()
    made = {}

    def create(spec, *, threshold=None, threshold_source="", run_id=None, **kwargs):
        factory = {"aws:rekognition": simulated_aws_engine, "azure:face": simulated_azure_engine}[spec]
        options = {} if threshold is None else {"threshold": threshold, "threshold_source": threshold_source}
        made[spec] = factory(recognizer=shared, run_id=run_id, **options)
        return made[spec]

    monkeypatch.setattr(galleries, "create_engine", create)
    settings = ScanSettings(sample=6, ks=(1, 2), ns=(6,), methods=("naive",), engines=("aws:rekognition", "azure:face"),
                            engine_thresholds={"aws:rekognition": 60.0}, run_id="scan-test", calibration_faces=0)
    outcome = run_scan(database_for(gallery, tmp_path), get_extractor("dlib-resnet128"), settings,
                       GallerySources(folder=gallery.photos_root))
    results = outcome.results
    assert len(results.targets) == len(PEOPLE)
    engines = {e.name: e for e in results.engines}
    for name in ("aws:rekognition", "azure:face"):
        engine = engines[name]
        assert engine.remote and not engine.scores_every_identity
        # each target's own photo is held out: 6 people x 2 photos + 1 flat image, minus 6
        assert engine.gallery_vectors == 13 - 6
        records = [r for r in results.records if r.engine == name]
        assert {r.method for r in records} == {"naive", "random"}
        assert {(r.k, r.n) for r in records} <= {(1, n) for n in (6, 7)} | {(2, n) for n in (6, 7)}
        for record in records:
            assert record.tpr + record.fpr + record.no_match == pytest.approx(1.0)
        # the collection / person group is gone, whatever the scan did
        simulation = made[name].simulation
        assert not getattr(simulation, "collections", getattr(simulation, "groups", {"x": 1}))
    assert engines["aws:rekognition"].threshold == 60.0 and "--engine-threshold" in engines["aws:rekognition"].threshold_source
    assert engines["azure:face"].threshold == 0.5
    assert any("run id scan-test" in note for note in results.notes)
    html = render_html(results)
    assert 'id="metric-1-top-matches"' in html and "Limited Access" in html


def write_gallery_db(gallery, tmp_path) -> Path:
    return database_for(gallery, tmp_path)


def test_dry_run_prints_the_plan_and_sends_nothing(gallery, tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # a dry run needs no credentials
    monkeypatch.delenv("AZURE_FACE_KEY")
    db = write_gallery_db(gallery, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["scan", str(db), "-e", "dlib-resnet128", "--gallery", str(gallery.photos_root),
                                 "--engine", "aws:rekognition,azure:face", "--methods", "naive,gradient",
                                 "--dry-run", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # 6 targets x 2 methods = 12 searches; 13 photos of 7 identities enrolled
    assert any(line.split()[:3] == ["aws:rekognition", "SearchFacesByImage", "12"] for line in lines)
    assert any(line.split()[:3] == ["aws:rekognition", "IndexFaces", "13"] for line in lines)
    assert any(line.split()[:3] == ["azure:face", "CreatePerson", "7"] for line in lines)
    assert not out.exists()


def test_max_cost_and_missing_credentials_stop_before_any_work(gallery, tmp_path, no_network, monkeypatch):
    db = write_gallery_db(gallery, tmp_path)
    out = tmp_path / "out"
    base = ["scan", str(db), "-e", "dlib-resnet128", "--gallery", str(gallery.photos_root), "-o", str(out)]
    result = runner.invoke(app, [*base, "--engine", "aws:rekognition", "--max-cost", "0.001"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "--max-cost" in errors[0]
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    result = runner.invoke(app, [*base, "--engine", "aws:rekognition"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "no AWS credentials" in errors[0]
    assert not out.exists()
