"""Generators tuned to the operator's white-box F on the leaked database (issue #9: parametric
attacks for any extractor), and the interpreter ops the shipped generators need."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from fvr_audit.convert.onnx_to_torch import onnx_to_torch
from fvr_audit.extractors.registry import get_extractor
from fvr_audit.model_store import models_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: tests/ is not on sys.path
from test_operator_extractor import conv_model, plain_database, served  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FVR_AUDIT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _slice_model(starts, ends, axes, steps) -> onnx.ModelProto:
    inits = [helper.make_tensor(n, TensorProto.INT64, [len(v)], v) for n, v in zip("seat", [starts, ends, axes, steps])]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([-1], [-(2**62)], [1], [-1]),       # a full reversal (what torch.flip exports)
    ([5], [1], [2], [-2]),
    ([3, 0], [0, 4], [1, 2], [-1, 1]),
    ([100], [-100], [0], [-3]),          # out-of-range ends are clamped
])
def test_interpreter_slices_with_negative_steps_like_onnxruntime(starts, ends, axes, steps):
    model = _slice_model(starts, ends, axes, steps)
    x = np.random.default_rng(0).random((4, 6, 7), dtype=np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(onnx_to_torch(model)(torch.from_numpy(x)).numpy(), expected)


@pytest.mark.parametrize("method", ["naive", "nbnet", "vec2face"])
def test_interpreter_runs_the_shipped_generators_like_onnxruntime(method):
    # linear half-pixel Resize (the 64 -> 200 px frame) and the nearest upsampling of the blocks
    path = models_dir() / f"reconstructor-{method}-dlib-resnet128.onnx"
    v = np.random.default_rng(1).normal(size=(3, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    expected = ort.InferenceSession(str(path)).run(None, {"vector": v})[0]
    got = onnx_to_torch(path)(torch.from_numpy(v)).detach().numpy()
    assert np.abs(got - expected).max() < 0.01  # pixel values 0..255


def test_baked_generator_equals_the_adapter_then_the_generator(tmp_path):
    from fvr_audit.reconstructors.parametric.fine_tuning import baked_generator, trainable_initializers
    from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    adapter = self_calibrate(user, faces=40).adapter
    path = models_dir() / "reconstructor-naive-dlib-resnet128.onnx"
    baked = baked_generator(path, adapter)
    v = np.load(plain_database(tmp_path / "v.npy", user, rows=5))
    direct = ort.InferenceSession(str(path)).run(None, {"vector": adapter.transform(v)})[0]
    through = ort.InferenceSession(baked.SerializeToString()).run(None, {"vector": v})[0]
    assert np.abs(through - direct).max() < 0.05
    names = trainable_initializers(baked)
    assert "adapter.weights" in names and "inner.head.conv.weight" in names
    assert not any(n.endswith(("running_mean", "running_var", ".blur", ".fixed")) for n in names)
    assert adapter.typical_cosine > 0  # the self-calibrated map's turn is baked in too (compared above)


def test_fine_tuning_keeps_a_generator_only_when_it_gains_and_caches_it(tmp_path):
    from fvr_audit.model_store import load_manifest
    from fvr_audit.reconstructors.parametric import ParametricReconstructor
    from fvr_audit.reconstructors.parametric.fine_tuning import FineTuneSettings, fine_tune
    from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate
    from fvr_audit.reconstructors.parametric.store import find_reconstructor

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    adapter = self_calibrate(user, faces=40).adapter
    rows = np.load(plain_database(tmp_path / "v.npy", user, rows=60, seed=4))
    generator, _ = find_reconstructor("naive", "dlib-resnet128", None)
    settings = FineTuneSettings(steps=24, batch=8, lr=3e-3, holdout=12, min_rows=20)
    first = fine_tune("naive", generator, adapter, user, rows, settings)
    assert not first.cached and first.training_rows == 48 and first.holdout_rows == 12
    assert first.kept and first.cosine_after > first.cosine_before + 0.03  # a toy F is quick to learn (from 0.91)
    assert f"{first.cosine_before:.3f} -> {first.cosine_after:.3f}" in first.describe()
    again = fine_tune("naive", generator, adapter, user, rows, settings)
    assert again.cached and (again.cosine_before, again.cosine_after) == (
        round(first.cosine_before, 4), round(first.cosine_after, 4))
    # an ordinary reconstructor file for F: the scan then runs it with no adapter
    entry = load_manifest(first.folder)["reconstructor-naive-user.onnx"]
    assert entry.details["extractor_sha256"] == user.info.sha256
    assert entry.details["models_used_in_training"] == ["dlib-resnet128", "user.onnx"]
    tuned = ParametricReconstructor("naive", models=(first.folder,))
    assert tuned.supports(user) is None
    faces = tuned.generate(rows[:2], user)
    assert faces.shape == (2, 200, 200, 3) and faces.dtype == np.uint8
    # a damaged cache entry is tuned again, not used and not an error
    with open(first.folder / "reconstructor-naive-user.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 16)
    assert not fine_tune("naive", generator, adapter, user, rows, settings).cached


def test_fine_tuning_needs_enough_rows_besides_the_targets(tmp_path):
    from fvr_audit.errors import InputError
    from fvr_audit.reconstructors.parametric.fine_tuning import FineTuneSettings, fine_tune
    from fvr_audit.reconstructors.parametric.self_calibration import self_calibrate
    from fvr_audit.reconstructors.parametric.store import find_reconstructor

    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    adapter = self_calibrate(user, faces=40).adapter
    generator, _ = find_reconstructor("naive", "dlib-resnet128", None)
    with pytest.raises(InputError, match="too few"):
        fine_tune("naive", generator, adapter, user, np.zeros((10, user.dim), np.float32), FineTuneSettings())


def test_scan_tunes_adapted_generators_on_rows_other_than_the_targets(tmp_path, monkeypatch):
    from fvr_audit.audit import attacks
    from fvr_audit.audit.scan import ScanSettings, run_scan
    from fvr_audit.reconstructors.parametric import fine_tuning

    seen = {}
    real = fine_tuning.fine_tune

    def spy(method, generator, adapter, extractor, rows, settings, **kwargs):
        seen[method] = rows.copy()
        return real(method, generator, adapter, extractor, rows,
                    fine_tuning.FineTuneSettings(steps=24, batch=4, lr=3e-3, holdout=10, min_rows=20), **kwargs)

    monkeypatch.setattr(fine_tuning, "fine_tune", spy)
    user = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    db_file = plain_database(tmp_path / "v.npy", user, rows=90)
    outcome = run_scan(db_file, user, ScanSettings(sample=3, calibration_faces=40, fine_tune_steps=2,
                                                   methods=("naive", "refine"),
                                                   method_settings={"refine": {"preset": "demo", "iterations": 1}}))
    results = outcome.results
    assert set(seen) == {"naive"}
    db = np.load(db_file)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    targets = [t.index for t in results.targets]
    assert len(seen["naive"]) == 87  # every row but the 3 targets'
    for row in targets:  # no target's vector was tuned on
        assert np.abs(seen["naive"] - db[row]).max(axis=1).min() > 1e-6
    assert any("naive tuned to F" in note for note in results.notes)
    naive = next(m for m in results.methods if m.name == "naive")
    assert naive.settings["tuned"]["tuned_from"] == "reconstructor-naive-dlib-resnet128.onnx"
    assert "user.onnx" in naive.models_used and "dlib-resnet128" in naive.models_used
    assert "fine_tune_naive_seconds" in results.timings
    # refine starts from the tuned generator (found for F itself: no adapter any more)
    refine = next(m for m in results.methods if m.name == "refine")
    assert refine.settings["start_settings"]["adapter"] is None
    assert Path(refine.settings["start_settings"]["models"][0]).parent.name == "generators"  # the tuned file's folder
    assert "reconstructor-naive-dlib-resnet128.onnx" not in refine.models_used
    assert results.settings["fine_tune_steps"] == 2
    assert attacks.MAX_TUNING_ROWS >= 87


def test_scan_of_a_black_box_says_the_generators_were_not_tuned(tmp_path, monkeypatch):
    from fvr_audit.audit.scan import ScanSettings, run_scan

    monkeypatch.delenv("FVR_AUDIT_HTTP_TOKEN", raising=False)
    local = get_extractor(str(conv_model(tmp_path / "user.onnx")))
    db = plain_database(tmp_path / "v.npy", local, rows=90)
    with served(local) as (_, remote):
        outcome = run_scan(db, remote, ScanSettings(sample=2, calibration_faces=40, methods=("naive",)))
    notes = " ".join(outcome.results.notes)
    assert "not tuned" in notes and "gradients" in notes
