"""The executor seam: serial, local processes and Ray give the same scan to the byte; a worker lost
midway is replaced; a killed scan resumes; remote failures are one line and exit code 3.

The scans are small (10 targets: two work units of 8 and 2) with tiny attack settings, on the
synthetic databases of test_scan. The Ray tests start a local runtime with 2 CPUs; they skip when
Ray is not installed (CI installs it with the ``test`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.cli.app import app
from fvr_audit.errors import ExitCode, RemoteError
from fvr_audit.execution import ExecutionSettings, ExecutorKind, WorkUnit, open_executor, parse_executor
from fvr_audit.extractors.registry import ExtractorSpec, get_extractor
from fvr_audit.reconstructors.registry import ReconstructorSpec

sys.path.insert(0, str(Path(__file__).parent))
from test_scan import write_two_engine_databases  # noqa: E402

runner = CliRunner()
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'fvr-audit[ray]')")

#: Tiny attacks: the point is the plumbing, not the faces.
TINY = {"eigenfaces": ["eigenfaces.iterations=2", "eigenfaces.batch=16"], "gradient": ["gradient.iterations=3"]}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return write_two_engine_databases(tmp_path_factory.mktemp("db"))


def scan(database: Path, out: Path, *extra: str, methods: str = "eigenfaces,gradient", sample: int = 10):
    tiny = [flag for method in methods.split(",") if method for value in TINY[method] for flag in ("--set", value)]
    result = runner.invoke(app, [
        "scan", str(database / "db.npz"), "-o", str(out), "--engine", "local:dlib-resnet128", "--methods", methods,
        "--sample", str(sample), "--n", "50,100", "--draws", "2", "--no-pdf", "--quiet", *tiny, *extra,
    ])
    return result


def pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def figures(out: Path) -> dict:
    """results.json without what may differ between runs (times, the creation date)."""
    results = json.loads((out / "results.json").read_text())
    methods = [{k: v for k, v in m.items() if k != "seconds"} for m in results["methods"]]
    return {"records": results["records"], "methods": methods, "targets": results["targets"],
            "verification": results["verification"], "verdict": results["verdict"], "extractor": results["extractor"]}


@pytest.fixture(scope="module")
def serial_scan(database, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "out"
    result = scan(database, out)
    assert result.exit_code == 0, result.output
    assert not (out / ".work").exists()  # finished: nothing left to resume
    return out


@pytest.mark.parametrize("executor", [
    pytest.param(["--executor", "processes", "--workers", "2"], id="processes"),
    pytest.param(["--executor", "ray", "--workers", "2"], id="ray", marks=needs_ray),
])
def test_every_executor_gives_the_serial_scan_to_the_byte(database, serial_scan, tmp_path, executor):
    out = tmp_path / "out"
    result = scan(database, out, *executor)
    assert result.exit_code == 0, result.output
    assert figures(out) == figures(serial_scan)
    images = pngs(out / "reconstructions")
    assert len(images) == 2 * 10 and images == pngs(serial_scan / "reconstructions")


def test_reconstruct_gives_the_scans_faces(database, serial_scan, tmp_path):
    # The scan's targets, by row, reconstructed by `fvr-audit reconstruct` from the same database:
    # same per-row seeds, same units (rows in the same order and chunk), so the same bytes.
    targets = [t["index"] for t in json.loads((serial_scan / "results.json").read_text())["targets"]]
    for method, flags in (("gradient", ["--iterations", "3"]), ("eigenfaces", ["--iterations", "2", "--batch", "16"])):
        folder = tmp_path / method
        result = runner.invoke(app, ["reconstruct", str(database / "db.npz"), "--method", method, *flags, "-o", str(folder),
                                     "-q", "--rows", ",".join(map(str, targets))])
        assert result.exit_code == 0, result.output
        scanned = pngs(serial_scan / "reconstructions" / method)
        made = {name: data for name, data in pngs(folder).items() if not name.startswith("checkpoints/")}
        assert len(made) == len(targets)
        for row in targets:
            assert made[f"{row:05d}.png"] == scanned[f"{row:06d}.png"], (method, row)


@pytest.mark.parametrize("executor", [
    pytest.param("processes", id="processes"),
    pytest.param("ray", id="ray", marks=needs_ray),
])
def test_a_worker_dying_midway_is_replaced_and_every_target_done_once(database, tmp_path, monkeypatch, executor):
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("FVR_AUDIT_TEST_CRASH_MARKER", str(marker))
    out = tmp_path / "out"
    result = scan(database, out, "--executor", executor, "--workers", "2", methods="gradient", sample=18)
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the second unit's worker did exit abruptly once
    results = json.loads((out / "results.json").read_text())
    rows = [t["index"] for t in results["targets"]]
    assert len(rows) == len(set(rows)) == 18
    assert sorted(pngs(out / "reconstructions" / "gradient")) == sorted(f"{row:06d}.png" for row in rows)
    gradient = next(m for m in results["methods"] if m["name"] == "gradient")
    # once per target: 3 steps + the final scoring, then (3 steps end far below 0.8) the second
    # start: 8 candidate faces + 3 steps + scoring
    assert gradient["queries_total"] == 18 * (4 + 8 + 4)


def test_a_killed_scan_resumes_without_redoing_finished_units(database, tmp_path, monkeypatch):
    from fvr_audit.audit.scan import ScanSettings, run_scan
    from fvr_audit.execution import serial

    settings = ScanSettings(sample=10, ns=(50,), ks=(1,), draws=1, methods=("gradient",), engines=("local:dlib-resnet128",),
                            method_settings={"gradient": {"iterations": 3}}, work_dir=tmp_path / ".work")
    calls = []
    real = serial.run_unit

    def dies_on_the_second_unit(unit, resolve, on_progress=None):
        calls.append(unit.rows)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the machine going down
        return real(unit, resolve, on_progress)

    monkeypatch.setattr(serial, "run_unit", dies_on_the_second_unit)
    dlib = get_extractor("dlib-resnet128")
    with pytest.raises(KeyboardInterrupt):
        run_scan(database / "db.npz", dlib, settings)
    first_unit = calls[0]
    assert len(list((tmp_path / ".work" / "gradient").glob("*.png"))) == len(first_unit) == 8

    calls.clear()
    monkeypatch.setattr(serial, "run_unit",
                        lambda unit, resolve, on_progress=None: calls.append(unit.rows) or real(unit, resolve, on_progress))
    resumed = run_scan(database / "db.npz", dlib, settings)
    assert calls == [tuple(t.index for t in resumed.results.targets[8:])]  # only the unit in progress
    fresh = run_scan(database / "db.npz", dlib, ScanSettings(**{**settings.__dict__, "work_dir": None}))
    assert np.array_equal(resumed.reconstructions["gradient"], fresh.reconstructions["gradient"])


def test_a_folder_holding_only_a_killed_scans_work_is_resumed_not_refused(database, tmp_path):
    out = tmp_path / "out"
    (out / ".work").mkdir(parents=True)
    result = scan(database, out, methods="", sample=5)
    assert result.exit_code == 0, result.output
    (out / "other").write_text("x")
    result = scan(database, out, methods="", sample=5)
    assert result.exit_code == 2 and "not empty" in result.stderr


@needs_ray
def test_a_wrong_ray_address_is_one_line_and_exit_3(database, tmp_path):
    out = tmp_path / "out"
    result = scan(database, out, "--executor", "ray://127.0.0.1:1")
    assert result.exit_code == ExitCode.SERVICE_FAILURE == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --executor ray://127.0.0.1:1: cannot reach the Ray cluster")
    assert not out.exists()  # nothing written, not even the folder


@needs_ray
def test_a_ray_worker_without_the_models_is_a_remote_error(tmp_path):
    # A cluster node where F's model file is not at the path the driver gave: the worker cannot make F.
    unit = WorkUnit(
        number=0, method=ReconstructorSpec.of("gradient", {"iterations": 2}),
        extractor=ExtractorSpec(str(tmp_path / "missing-on-this-node.onnx")), rows=(0,),
        vectors=np.ones((1, 128), np.float32) / np.sqrt(128), seeds=(0,), threads=1,
    )
    with open_executor(ExecutionSettings(ExecutorKind.RAY, workers=1)) as executor:
        with pytest.raises(RemoteError, match=r"^Ray worker .*missing-on-this-node\.onnx") as caught:
            list(executor.run([unit]))
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)


@needs_ray
def test_a_cluster_that_goes_away_midway_is_a_one_line_remote_error():
    import ray

    dlib = get_extractor("dlib-resnet128")
    units = [
        WorkUnit(number=i, method=ReconstructorSpec.of("gradient", {"iterations": 2}), extractor=dlib.origin,
                 rows=(i,), vectors=np.ones((1, 128), np.float32) / np.sqrt(128), seeds=(i,), threads=1)
        for i in range(3)
    ]
    with open_executor(ExecutionSettings(ExecutorKind.RAY, workers=1)) as executor:
        results = executor.run(units)
        next(results)  # one unit came back: the runtime works
        ray.shutdown()  # then the cluster is gone
        with pytest.raises(RemoteError) as caught:
            list(results)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)


def test_executor_flags_are_checked_before_any_work(database, tmp_path):
    for flags, message in (
        (["--executor", "mpi"], "error: --executor 'mpi': use one of serial, processes, ray, auto, or ray://HOST:PORT"),
        (["--executor", "processes", "--workers", "0"], "error: --workers 0: must be at least 1"),
        (["--executor", "ray://head"], "error: --executor ray://head: expected ray://HOST:PORT"),
    ):
        result = scan(database, tmp_path / "out", *flags)
        assert result.exit_code == 2 and result.stderr.strip().startswith(message), result.stderr
        assert not (tmp_path / "out").exists()


def test_units_carry_specs_that_rebuild_the_same_objects():
    dlib = get_extractor("dlib-resnet128")
    assert dlib.origin == ExtractorSpec("dlib-resnet128") and dlib.origin.build() is dlib
    assert parse_executor("auto", None).kind is ExecutorKind.AUTO
    import pickle

    unit = WorkUnit(0, ReconstructorSpec.of("eigenfaces", {"iterations": 2}), dlib.origin, (3,), np.zeros((1, 128), np.float32), (3,))
    assert len(pickle.dumps(unit)) < 4096  # specs and the vectors, nothing live
