"""The operator's own case (issue #9): a plain vector file, a user's ONNX model, a black-box endpoint.

Everything here runs on the shipped models and small synthetic data: no face data set needed.
"""

from __future__ import annotations

import contextlib

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from fvr_audit.audit.scan import ScanSettings, run_scan
from fvr_audit.cli.app import app
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import get_extractor
from fvr_audit.model_store import models_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: tests/ is not on sys.path
from onnx_factories import IR_VERSION, OPSET  # noqa: E402

runner = CliRunner()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # self-calibrated adapters are cached per extractor; keep the user's cache out of the tests
    monkeypatch.setenv("FVR_AUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def conv_model(path: Path, *, size: int = 64, dim: int = 24, tail: str | None = None, scale: float = 1.0) -> Path:
    """A small conv net (fixed random weights) on NCHW [N, 3, size, size] (x-127.5)/127.5 input:
    position-sensitive, so faces, mirrors and wrong preprocessing give different vectors.

    ``tail``: an extra op on the output ("Round": onnxruntime runs it, the torch interpreter does
    not cover it; "NaN": multiplies by NaN; "Zero": multiplies by 0 and adds a constant)."""
    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.2, (8, 3, 5, 5)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32)
    fc = rng.normal(0, 0.1, (16 * 4 * 4, dim)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(fc, "fc"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
             numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], strides=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Tanh", ["c1"], ["t1"]),
        helper.make_node("Conv", ["t1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c2"], ["t2"]),
        helper.make_node("AveragePool", ["t2"], ["p"], kernel_shape=[size // 16] * 2, strides=[size // 16] * 2),
        helper.make_node("Reshape", ["p", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["m"]),
        helper.make_node("Mul", ["m", "scale"], ["embedding" if tail is None else "pre"]),
    ]
    if tail == "Round":
        nodes.append(helper.make_node("Round", ["pre"], ["embedding"]))
    elif tail == "NaN":
        inits.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
        nodes.append(helper.make_node("Mul", ["pre", "nan"], ["embedding"]))
    elif tail == "Zero":
        inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
        inits.append(numpy_helper.from_array(np.ones((dim,), np.float32), "one"))
        nodes.append(helper.make_node("Mul", ["pre", "zero"], ["z"]))
        nodes.append(helper.make_node("Add", ["z", "one"], ["embedding"]))
    graph = helper.make_graph(
        nodes, "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def plain_database(path: Path, extractor, rows: int = 30, seed: int = 0) -> Path:
    """A plain [N, D] .npy of F's vectors of the tool's own faces (no labels, no paths)."""
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.probes import probe_faces

    vectors = extractor.embed(crop_from_canonical(probe_faces(rows, seed=seed + 7), extractor.geometry))
    np.save(path, vectors.astype(np.float32))
    return path


# ------------------------------------------------------------------------------------------------
# plain vector files: no labels, no photos
# ------------------------------------------------------------------------------------------------


def test_plain_npy_gets_the_system_figures_and_a_verdict(tmp_path):
    dlib = get_extractor("dlib-resnet128")
    db = plain_database(tmp_path / "vectors.npy", dlib, rows=40)
    result = runner.invoke(app, ["scan", str(db), "-e", "dlib-resnet128", "--methods", "naive,nbnet", "--sample", "12",
                                 "--no-pdf", "--quiet", "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert results["schema_version"] == 2 and results["database"]["labelled"] is False
    engines = {e["name"]: e for e in results["engines"]}
    assert list(engines) == ["system:dlib-resnet128"] and engines["system:dlib-resnet128"]["gallery_identities"] == 40
    top1 = {r["method"]: r for r in results["records"] if r["k"] == 1 and r["n"] == 40}
    assert set(top1) == {"naive", "nbnet"} and all(r["baseline"] == 1 / 40 for r in top1.values())
    assert {r["n"] for r in results["records"]} == {40}  # the default N (50 and up) exceed the 40 rows
    # the shipped generators invert dlib well: F ranks the leaked row first for most targets
    assert top1["naive"]["tpr"] >= 0.7
    sar = {v["method"]: v for v in results["verification"]}
    assert sar["naive"]["engine"] == "system:dlib-resnet128" and sar["naive"]["impostor_comparisons"] == 40 * 39
    assert results["verdict"]["engine"] == "system:dlib-resnet128" and results["verdict"]["level"] == "high"
    assert "your own system" in results["verdict"]["rule"]
    assert any("no labels" in note and "--gallery" in note for note in results["notes"])
    assert [t["label"] for t in results["targets"]] == [f"row {t['index']}" for t in results["targets"]]


def test_plain_npy_with_a_gallery_is_refused_on_one_line(tmp_path):
    db = plain_database(tmp_path / "vectors.npy", get_extractor("dlib-resnet128"), rows=10)
    result = runner.invoke(app, ["scan", str(db), "-e", "dlib-resnet128", "--gallery", str(tmp_path), "--no-pdf",
                                 "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and "no 'labels'" in line and "--gallery" in line


def test_system_rank_counts_ties_against_the_attacker(tmp_path):
    """Two identical rows: the leaked row can at best tie with its twin, which counts as rank 2."""
    dlib = get_extractor("dlib-resnet128")
    plain_database(tmp_path / "v.npy", dlib, rows=10)
    vectors = np.load(tmp_path / "v.npy")
    twin = np.concatenate([vectors, vectors[:1]])
    np.save(tmp_path / "twin.npy", twin)
    from fvr_audit.audit.system_match import measure_against_database
    from fvr_audit.vectors import load_vectors

    db = load_vectors(tmp_path / "twin.npy", allow_duplicates=True)
    images = {"copy": np.zeros((2, 200, 200, 3), np.uint8)}
    records, _, _, _ = measure_against_database(
        db, _Replay(dlib, vectors[[0, 1]]), np.array([0, 1]), images, ks=(1, 2), ns=(), fmr=0.01, seed=0,
        progress=lambda d, t: (lambda n=1: None),
    )
    shares = {r.k: r.tpr for r in records}
    assert shares == {1: 0.5, 2: 1.0}  # row 0 ties with its twin (rank 2), row 1 is first


class _Replay:
    """An extractor stand-in that 'sees' given vectors, whatever the images."""

    def __init__(self, real, vectors):
        self._real, self._vectors = real, vectors
        self.name, self.dim, self.geometry, self.info, self.queries_used = real.name, real.dim, real.geometry, real.info, 0

    def embed(self, crops):
        return self._vectors[: len(crops)]


# ------------------------------------------------------------------------------------------------
# a user's ONNX file is white-box
# ------------------------------------------------------------------------------------------------


def test_user_onnx_is_white_box_after_the_runtime_check(tmp_path):
    from fvr_audit.extractors.base import white_box_forward

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    forward, reason = white_box_forward(user)
    assert reason is None and forward is not None
    assert "matches onnxruntime" in user.white_box_check and "max abs difference" in user.white_box_check
    import torch

    x = torch.zeros(2, 3, 64, 64, requires_grad=True)
    forward(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_unsupported_op_names_it_and_the_scan_falls_back(tmp_path):
    model = conv_model(tmp_path / "rounded.onnx", tail="Round", scale=100.0)
    user = get_extractor(str(model))
    db = plain_database(tmp_path / "v.npy", user, rows=12)
    result = runner.invoke(app, ["scan", str(db), "-e", str(model), "--methods", "gradient", "--sample", "2",
                                 "--no-pdf", "-o", str(tmp_path / "o1"), "--quiet"])
    assert result.exit_code == 2 and "Round" in result.output and "error:" in result.output
    outcome = run_scan(db, user, ScanSettings(sample=2, methods=None, method_settings={
        "eigenfaces": {"iterations": 2, "batch": 8}, "transfer": {"iterations": 2},
        "refine": {"iterations": 2, "batch": 8}}, calibration_faces=40))
    notes = " ".join(outcome.results.notes)
    assert "gradient skipped" in notes and "Round" in notes
    # without F's gradients, transfer runs the gradient attack on the surrogate instead
    assert {m.name for m in outcome.results.methods} == {"eigenfaces", "nbnet", "vec2face", "naive", "transfer", "refine"}
    # an unseen F, self-calibrated: no photo-fitted map for refine's surrogate guidance, and the report says so
    assert "refine: surrogate guidance off: no map fitted on photos" in notes


def test_a_copy_of_a_builtin_is_recognised_as_that_builtin(tmp_path):
    copy = tmp_path / "arcface.onnx"
    shutil.copy(models_dir() / "dlib-resnet128.onnx", copy)
    extractor = get_extractor(str(copy))
    assert extractor.name == "dlib-resnet128"
    from fvr_audit.reconstructors.registry import get_reconstructor

    assert get_reconstructor("naive").supports(extractor) is None  # its shipped generator applies


@pytest.mark.parametrize("tail, problem", [("NaN", "NaN"), ("Zero", "nearly the same vector")])
def test_broken_model_outputs_are_refused_on_one_line(tmp_path, tail, problem):
    model = conv_model(tmp_path / f"{tail}.onnx", tail=tail)
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(10, 24)).astype(np.float32))
    result = runner.invoke(app, ["scan", str(tmp_path / "v.npy"), "-e", str(model), "--methods", "naive",
                                 "--no-pdf", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {model.name}") and problem in line
    assert not (tmp_path / "out" / "results.json").exists()


def test_database_dimension_must_match_the_model(tmp_path):
    model = conv_model(tmp_path / "m.onnx", dim=24)
    np.save(tmp_path / "v.npy", np.ones((5, 32), np.float32) / np.sqrt(32))
    result = runner.invoke(app, ["scan", str(tmp_path / "v.npy"), "-e", str(model), "--no-pdf", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "dimension" in result.output.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------
# parametric attacks for any extractor, with no photos
# ------------------------------------------------------------------------------------------------


def test_self_calibration_adapts_the_shipped_generators_and_is_cached(tmp_path):
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.probes import probe_faces
    from fvr_audit.reconstructors.parametric.adapter import PenaltySelection
    from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    first = self_calibrate(user, faces=60)
    assert not first.cached and first.adapter.source == "user.onnx" and first.adapter.target == "dlib-resnet128"
    assert first.cache_file.is_file() and "synthetic faces" in first.describe()
    again = self_calibrate(user, faces=60)
    assert again.cached and again.queries == 0
    np.testing.assert_array_equal(again.adapter.weights, first.adapter.weights)
    # the map's penalty keeps the held-out faces identifiable (not the best-cosine one), and says so
    assert again.adapter.selection is PenaltySelection.IDENTIFICATION
    assert "held-out faces identifiable" in again.adapter.describe()
    # outputs turned to a typical person's distance from the mean face (kept through the cache file)
    assert 0.85 < again.adapter.typical_cosine == first.adapter.typical_cosine < 0.97
    mapped = again.adapter.transform(user.embed(crop_from_canonical(probe_faces(5, seed=9), user.geometry)))
    mean = again.adapter.target_mean / np.linalg.norm(again.adapter.target_mean)
    np.testing.assert_allclose(mapped @ mean, again.adapter.typical_cosine, atol=1e-5)
    assert f"outputs turned to cosine {again.adapter.typical_cosine:.3f}" in again.describe()  # the scan's note says so


def test_calibration_faces_vary_around_the_generators_faces():
    from fvr_audit.reconstructors.parametric.self_calibration import _embedded_synthetic_faces

    dlib = get_extractor("dlib-resnet128")
    (plain,) = _embedded_synthetic_faces([dlib], 6, seed=4, spread=0.0)
    (varied,) = _embedded_synthetic_faces([dlib], 6, seed=4)
    (again,) = _embedded_synthetic_faces([dlib], 6, seed=4)
    np.testing.assert_array_equal(varied, again)  # seeded: the cached map is the one a rebuild gives
    cosines = np.sum(plain * varied, axis=1) / np.linalg.norm(plain, axis=1) / np.linalg.norm(varied, axis=1)
    # the offset moves each face's vector (new variation for the map to learn from) but keeps a face
    assert np.all(cosines < 0.995) and np.all(cosines > 0.5), cosines


def test_scan_of_a_user_onnx_runs_every_attack_and_says_how_generators_were_obtained(tmp_path):
    model = conv_model(tmp_path / "user.onnx")
    user = get_extractor(str(model))
    db = plain_database(tmp_path / "v.npy", user, rows=20)
    outcome = run_scan(db, user, ScanSettings(sample=3, calibration_faces=60, method_settings={
        "eigenfaces": {"iterations": 2, "batch": 8}, "gradient": {"iterations": 3}, "transfer": {"iterations": 3},
        "refine": {"iterations": 2, "batch": 8}}))
    results = outcome.results
    assert {m.name for m in results.methods} == {"gradient", "eigenfaces", "nbnet", "vec2face", "naive", "refine"}
    assert any(n.startswith("transfer skipped: gradient attacks user.onnx with its own gradients") for n in results.notes)
    naive = next(m for m in results.methods if m.name == "naive")
    assert "dlib-resnet128" in naive.models_used and "synthetic faces" in naive.settings["adapter"]
    notes = " ".join(results.notes)
    assert "self-calibrated without photos" in notes and "matches onnxruntime" in notes
    assert "calibration_seconds" in results.timings


# ------------------------------------------------------------------------------------------------
# preprocessing that is checked, not only guessed
# ------------------------------------------------------------------------------------------------


def test_a_wrong_preprocessing_is_warned_with_the_flags_to_try():
    from fvr_audit.extractors.registry import ExtractorOptions
    from fvr_audit.extractors.sanity import check_extractor

    path = models_dir() / "mobileface-256.onnx"  # not recognised as the built-in: overrides given
    good = get_extractor(str(path), ExtractorOptions(mean=(0.0,) * 3, std=(1.0,) * 3))
    check, warnings = check_extractor(good)
    assert check.margin > 0.05 and warnings == []
    bad = get_extractor(str(path), ExtractorOptions(mean=(0.0,) * 3, std=(10.0,) * 3))  # a tenth of the contrast
    check, warnings = check_extractor(bad)
    assert check.margin < 0.05 and len(warnings) == 1 and "degenerate" in warnings[0]
    assert "try --crop arcface-5pt --mean 0,0,0 --std 1,1,1 --channel-order RGB" in warnings[0]
    flat = get_extractor(str(path), ExtractorOptions(mean=(0.0,) * 3, std=(255.0,) * 3))  # 0..1 into a 0..255 model
    with pytest.raises(InputError, match="nearly the same vector.*with --crop arcface-5pt --mean 0,0,0 --std 1,1,1"):
        check_extractor(flat)


# ------------------------------------------------------------------------------------------------
# black-box HTTP endpoints
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def served(local):
    """``local`` served on 127.0.0.1 (no token): (the server, the extractor that reaches it as a black box)."""
    from fvr_audit.extractors.http_server import serve_extractor
    from fvr_audit.extractors.registry import ExtractorOptions

    server = serve_extractor(local)
    try:
        geometry = local.geometry
        yield server, get_extractor(server.url, ExtractorOptions(input_size=geometry.size, crop=geometry.template,
                                                                 padding=geometry.padding))
    finally:
        server.close()


def test_endpoint_scan_counts_every_query_like_the_server(tmp_path, monkeypatch):
    monkeypatch.delenv("FVR_AUDIT_HTTP_TOKEN", raising=False)
    local = get_extractor(str(conv_model(tmp_path / "served.onnx")))
    db = plain_database(tmp_path / "v.npy", local, rows=15)
    with served(local) as (server, remote):
        outcome = run_scan(db, remote, ScanSettings(sample=3, calibration_faces=40, query_budget=1000,
                                                    methods=("eigenfaces", "refine", "naive", "nbnet", "vec2face")))
    results = outcome.results
    phases = results.extractor["queries_by_phase"]
    assert results.extractor["queries_used"] == server.requests == remote.queries_used
    assert phases["total"] == server.requests
    assert phases["calibration"] == 40 and phases["check"] == 16 + 1  # the faces and mirrors, and the dimension probe
    # the two searches share what the fixed costs leave, equally
    shared = {name: results.settings["method_settings"][name]["query_budget"] for name in ("eigenfaces", "refine")}
    assert shared["eigenfaces"] == shared["refine"] >= 17
    for name in shared:
        method = next(m for m in results.methods if m.name == name)
        assert method.queries_per_target_max <= shared[name]
    refine = next(m for m in results.methods if m.name == "refine")
    assert any(used.startswith("adapter ") for used in refine.models_used)  # its generator reached F through the map
    assert server.requests <= 1000


def test_query_budget_too_small_is_refused_before_any_attack(tmp_path):
    dlib = get_extractor("dlib-resnet128")
    db = plain_database(tmp_path / "v.npy", dlib, rows=10)
    with pytest.raises(InputError, match="--query-budget 50: too small"):
        run_scan(db, dlib, ScanSettings(sample=5, query_budget=50, methods=("eigenfaces",)))


def test_reconstruct_self_calibrates_a_parametric_method_for_a_user_onnx(tmp_path):
    model = conv_model(tmp_path / "user.onnx")
    db = plain_database(tmp_path / "v.npy", get_extractor(str(model)), rows=4)
    result = runner.invoke(app, ["reconstruct", str(db), "--method", "naive", "-e", str(model), "-o", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "r" / "reconstructions.json").read_text())
    assert len(list((tmp_path / "r").glob("*.png"))) == 4
    assert "dlib-resnet128" in manifest["models_used"]


def test_gradient_with_a_surrogate_records_it_and_its_adapter(tmp_path):
    from fvr_audit.reconstructors.gradient import create_gradient

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    targets = np.load(plain_database(tmp_path / "v.npy", user, rows=2))
    attack = create_gradient(iterations=3, surrogates="mobileface-256", surrogate_faces=40)
    result = attack.reconstruct(targets, user)
    assert result.images.shape == (2, 200, 200, 3)
    assert "mobileface-256" in result.models_used  # so mobileface-256 may not judge it
    assert any(str(u).startswith("adapter ridge user.onnx->mobileface-256") for u in result.models_used)
    with pytest.raises(InputError, match="unknown extractor"):
        create_gradient(iterations=1, surrogates="nope").reconstruct(targets, user)


def test_transfer_reaches_a_black_box_f_for_one_query_per_target(tmp_path, monkeypatch):
    # F behind HTTP: no gradients. transfer maps each vector into dlib-resnet128's space through the
    # shared self-calibration and runs the gradient attack there; F is asked once per target
    monkeypatch.delenv("FVR_AUDIT_HTTP_TOKEN", raising=False)
    local = get_extractor(str(conv_model(tmp_path / "served.onnx")))
    db = plain_database(tmp_path / "v.npy", local, rows=12)
    with served(local) as (server, remote):
        results = run_scan(db, remote, ScanSettings(sample=3, calibration_faces=40, methods=("transfer",),
                                                    method_settings={"transfer": {"iterations": 3}})).results
    transfer = results.methods[0]
    assert (transfer.name, transfer.access) == ("transfer", "black-box")
    assert transfer.queries_per_target_max == 1 and transfer.service_queries == 3
    assert "dlib-resnet128" in transfer.models_used and transfer.settings["surrogate"] == "dlib-resnet128"
    phases = results.extractor["queries_by_phase"]
    assert phases["calibration"] == 40 and phases["total"] == server.requests


def test_transfer_is_refused_for_its_own_surrogate_and_named_in_reconstruct(tmp_path):
    dlib = get_extractor("dlib-resnet128")
    db = plain_database(tmp_path / "d.npy", dlib, rows=2)
    refused = runner.invoke(app, ["reconstruct", str(db), "--method", "transfer", "-e", "dlib-resnet128", "-o",
                                  str(tmp_path / "no"), "-q"])
    assert refused.exit_code == 2 and "attacked by gradient directly" in refused.output
    model = conv_model(tmp_path / "user.onnx")
    db = plain_database(tmp_path / "v.npy", get_extractor(str(model)), rows=2)
    made = runner.invoke(app, ["reconstruct", str(db), "--method", "transfer", "--iterations", "2", "-e", str(model),
                               "-o", str(tmp_path / "r"), "-q"])
    assert made.exit_code == 0, made.output
    manifest = json.loads((tmp_path / "r" / "reconstructions.json").read_text())
    assert manifest["method"] == "transfer" and "dlib-resnet128" in manifest["models_used"]
    assert [t["queries"] for t in manifest["targets"]] == [1, 1]
