"""Parametric reconstructors (issue #5): networks, training, export, store, adapter, CLI, scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.cli.app import app
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import get_extractor
from fvr_audit.model_store import load_manifest, models_dir
from fvr_audit.reconstructors.parametric import ParametricReconstructor
from fvr_audit.reconstructors.parametric.adapter import PenaltySelection, RidgeAdapter
from fvr_audit.reconstructors.parametric.store import (
    export_trained,
    find_reconstructor,
    list_reconstructor_files,
)
from fvr_audit.reconstructors.parametric.training import (
    TrainingData,
    default_settings,
    load_generator,
    train,
)

torch = pytest.importorskip("torch")
runner = CliRunner()
METHODS = ("nbnet", "vec2face", "naive")


@pytest.fixture(scope="module")
def dlib():
    return get_extractor("dlib-resnet128")


def synthetic_data(extractor, identities: int = 12, per_identity: int = 3, seed: int = 0) -> TrainingData:
    """Smooth random 'faces' whose colour depends on the identity, with unit vectors per identity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, extractor.dim))
    faces, vectors, labels = [], [], []
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    for i in range(identities):
        colour = rng.uniform(40, 215, size=3)
        for _ in range(per_identity):
            image = colour[None, None, :] * (0.7 + 0.3 * yy[..., None]) + 20 * xx[..., None]
            faces.append(np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8))
            v = centres[i] + 0.1 * rng.normal(size=extractor.dim)
            vectors.append(v / np.linalg.norm(v))
            labels.append(f"id{i:02d}")
    return TrainingData(
        np.stack(faces), np.asarray(vectors, np.float32), np.array(labels), "synthetic", extractor.name, extractor.info.sha256 or ""
    )


@pytest.mark.parametrize("method", METHODS)
def test_generators_draw_64px_frames_in_pixel_range(method):
    from fvr_audit.reconstructors.parametric.networks import build_generator

    g = build_generator(method, 128).eval()
    with torch.no_grad():
        out = g(torch.nn.functional.normalize(torch.randn(3, 128), dim=1))
    assert tuple(out.shape) == (3, 3, 64, 64)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0


def test_training_learns_checkpoints_resumes_and_exports(tmp_path, dlib):
    data = synthetic_data(dlib)
    settings = default_settings("naive", epochs=3, batch_size=8, identity_weight=0.0, validation_identities=2, lr=3e-3)
    work = tmp_path / "run"
    reports = []
    out = train(data, dlib, settings, work, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert reports[-1].losses["pixel"] < reports[0].losses["pixel"]  # it learns the training faces
    assert 0.0 < reports[-1].validation_cosine <= 1.0
    from fvr_audit.reconstructors.parametric.training import split_validation

    held_out = split_validation(data.labels, 2, settings.seed)
    assert sorted(out.validation_labels) == sorted(set(data.labels[held_out])) and len(out.validation_labels) == 2
    # a finished run is not silently overwritten
    with pytest.raises(InputError, match="already there"):
        train(data, dlib, settings, work)
    # resuming with other settings is refused; raising the epochs continues from epoch 3
    with pytest.raises(InputError, match="other settings"):
        train(data, dlib, default_settings("naive", epochs=3, batch_size=4, identity_weight=0.0), work, resume=True)
    more = []
    train(data, dlib, replace(settings, epochs=4), work, resume=True, on_epoch=more.append)
    assert [r.epoch for r in more] == [4]
    generator, history, fingerprint = load_generator(work, "naive", dlib.dim)
    assert len(history) == 4 and fingerprint["epochs"] == 4

    models = tmp_path / "models"
    entry = export_trained(work, dlib, "naive", directory=models, script="test")
    assert entry.details["method"] == "naive" and entry.details["extractor_sha256"] == dlib.info.sha256
    assert load_manifest(models)[entry.file].kind == "reconstructor"
    # issue 10, defect 14: the weights are fitted to the training faces; folder, file and manifest are private
    assert {oct(p.stat().st_mode & 0o777) for p in (models / entry.file, models / "manifest.json")} == {"0o600"}
    assert oct(models.stat().st_mode & 0o777) == "0o700" and oct(work.stat().st_mode & 0o777) == "0o700"
    found, reason = find_reconstructor("naive", dlib.name, dlib.info.sha256, (models,))
    assert reason is None and found.path == models / entry.file

    # the exported generator reproduces torch's output, and the runtime uses it
    v = data.vectors[:5]
    with torch.no_grad():
        expected = generator(torch.from_numpy(v)).numpy()
    attack = ParametricReconstructor("naive", models=(models,))
    images = attack.generate(v, dlib)
    from fvr_audit.reconstructors.parametric.training import render_canonical

    assert np.abs(images.astype(int) - render_canonical(expected).astype(int)).max() <= 2
    result = attack.reconstruct(v, dlib)
    assert result.images.shape == (5, 200, 200, 3) and (result.queries == 0).all()
    assert result.similarity.shape == (5,) and np.all(np.abs(result.similarity) <= 1.0001)
    assert dlib.name in result.models_used and entry.file in result.models_used


def test_identity_loss_through_f_is_used_when_f_is_differentiable(tmp_path, dlib):
    data = synthetic_data(dlib, identities=6, per_identity=2)
    steps = []
    settings = default_settings("vec2face", epochs=1, batch_size=4, identity_samples=2, validation_identities=1)
    train(data, dlib, settings, tmp_path / "w", on_step=lambda e, s, n, losses: steps.append(losses))
    assert steps and all({"identity", "pixel", "adv", "d"} <= set(losses) for losses in steps)


def test_nbnet_switches_its_perceptual_loss_on_for_the_last_quarter(tmp_path, dlib):
    data = synthetic_data(dlib, identities=10, per_identity=2)
    steps = []
    settings = default_settings("nbnet", epochs=4, batch_size=8, identity_samples=2, validation_identities=2)
    train(data, dlib, settings, tmp_path / "w", on_step=lambda e, s, n, losses: steps.append((e, "identity" in losses)))
    assert [flag for e, flag in steps if e < 3] == [False] * sum(1 for e, _ in steps if e < 3)
    assert all(flag for e, flag in steps if e == 3)


def test_missing_reconstructor_says_how_to_get_one(dlib, tmp_path):
    reason = ParametricReconstructor("nbnet", models=(tmp_path,)).supports(get_extractor("mobileface-256"))
    assert "no nbnet reconstructor trained for mobileface-256" in reason
    assert "fvr-audit train nbnet" in reason and "--calibration" in reason


def test_adapter_recovers_a_linear_map_and_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x @ rng.normal(size=(32, 16))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    labels = np.repeat(np.arange(100), 4)
    adapter = RidgeAdapter.fit(x, y, labels, source="user", target="dlib-resnet128")
    assert adapter.cv_cosine > 0.98 and adapter.fit_cosine >= adapter.cv_cosine - 0.01
    adapter.save(tmp_path / "a.npz")
    again = RidgeAdapter.load(tmp_path / "a.npz")
    np.testing.assert_allclose(again.transform(x[:3]), adapter.transform(x[:3]), rtol=1e-6)
    with pytest.raises(InputError, match="too few"):
        RidgeAdapter.fit(x[:10], y[:10], labels[:10], source="user", target="dlib-resnet128")
    with pytest.raises(InputError, match="expected"):
        adapter.transform(np.ones((2, 5)))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not an fvr-audit adapter"):
        RidgeAdapter.load(tmp_path / "bad.npz")


def test_adapter_penalty_rule_round_trips_and_older_files_read_as_the_cosine_rule(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.normal(size=(300, 24))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y @ rng.normal(size=(24, 48)) + 0.1 * rng.normal(size=(300, 48))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    by_cosine = RidgeAdapter.fit(x, y, np.arange(300), source="user", target="dlib-resnet128")
    by_identity = RidgeAdapter.fit(x, y, np.arange(300), source="user", target="dlib-resnet128",
                                   selection=PenaltySelection.IDENTIFICATION)
    assert by_identity.lam > by_cosine.lam
    by_identity.save(tmp_path / "a.npz")
    again = RidgeAdapter.load(tmp_path / "a.npz")
    assert again.selection is PenaltySelection.IDENTIFICATION and again.lam == by_identity.lam
    # a file written before the rule was recorded (meta of four strings) reads as the cosine rule
    arrays = dict(np.load(tmp_path / "a.npz", allow_pickle=False))
    arrays["meta"] = arrays["meta"][:4]
    np.savez(tmp_path / "old.npz", **arrays)
    assert RidgeAdapter.load(tmp_path / "old.npz").selection is PenaltySelection.COSINE


def test_adapter_typical_cosine_turns_outputs_round_trips_and_is_checked(tmp_path):
    from dataclasses import replace

    rng = np.random.default_rng(5)
    y = rng.normal(size=(300, 24)) + 3.0  # vectors around a common mean, as face vectors are
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y @ rng.normal(size=(24, 48)) + 0.1 * rng.normal(size=(300, 48))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    plain = RidgeAdapter.fit(x, y, np.arange(300), source="user", target="dlib-resnet128")
    turned = replace(plain, typical_cosine=0.8)
    mean = turned.target_mean / np.linalg.norm(turned.target_mean)
    np.testing.assert_allclose(turned.transform(x[:5]) @ mean, 0.8, atol=1e-6)
    assert not np.allclose(plain.transform(x[:5]) @ mean, 0.8, atol=1e-3)
    assert "turned to cosine 0.800" in turned.describe() and "turned" not in plain.describe()
    turned.save(tmp_path / "t.npz")
    np.testing.assert_allclose(RidgeAdapter.load(tmp_path / "t.npz").transform(x[:5]), turned.transform(x[:5]), atol=1e-6)
    assert RidgeAdapter.from_bytes(turned.to_bytes()).typical_cosine == 0.8
    # a file from before the turn (six numbers) reads without it; a cosine outside [0, 1) is refused
    arrays = dict(np.load(tmp_path / "t.npz", allow_pickle=False))
    np.savez(tmp_path / "old.npz", **{**arrays, "numbers": arrays["numbers"][:6]})
    assert RidgeAdapter.load(tmp_path / "old.npz").typical_cosine == 0.0
    np.savez(tmp_path / "bad.npz", **{**arrays, "numbers": np.concatenate([arrays["numbers"][:6], [1.5]])})
    with pytest.raises(InputError, match="typical cosine"):
        RidgeAdapter.load(tmp_path / "bad.npz")


def test_adapter_fitted_with_turn_keeps_the_targets_own_spread():
    """A ridge map shrinks towards the mean; ``turn=True`` puts its outputs back at the median
    cosine the target vectors themselves have from their mean."""
    rng = np.random.default_rng(6)
    y = rng.normal(size=(400, 24)) + 2.0
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    x = y @ rng.normal(size=(24, 48)) + 0.5 * rng.normal(size=(400, 48))  # a noisy source: strong shrinkage
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    plain = RidgeAdapter.fit(x, y, np.arange(400), source="user", target="dlib-resnet128")
    turned = RidgeAdapter.fit(x, y, np.arange(400), source="user", target="dlib-resnet128", turn=True)
    mean = plain.target_mean / np.linalg.norm(plain.target_mean)
    spread = float(np.median(y @ mean))
    assert plain.typical_cosine == 0.0 and turned.typical_cosine == pytest.approx(spread)
    assert np.median(plain.transform(x) @ mean) > spread + 0.01  # shrunk towards the mean
    np.testing.assert_allclose(turned.transform(x) @ mean, spread, atol=1e-5)
    np.testing.assert_array_equal(turned.weights, plain.weights)  # the same fit, only turned


def test_cli_train_export_and_models_listing(tmp_path, dlib):
    data = synthetic_data(dlib)
    data.save(tmp_path / "data.npz")
    work, models = tmp_path / "work", tmp_path / "models"
    args = ["train", "naive", "--data", str(tmp_path / "data.npz"), "--work", str(work), "--epochs", "1",
            "--batch-size", "8", "--identity-weight", "0", "--export", str(models)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "validation median cos" in result.output and (models / "reconstructor-naive-dlib-resnet128.onnx").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    listing = runner.invoke(app, ["models", "--json", "--models", str(models)])
    assert listing.exit_code == 0
    rows = json.loads(listing.output)["reconstructors"]
    assert any(r["file"].endswith("reconstructor-naive-dlib-resnet128.onnx") and r["extractor"] == "dlib-resnet128" for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "naive"], "exactly one of --faces DIR or --data FILE"),
        (["train", "naive", "--faces", "/nonexistent/faces"], "not a folder of face photos"),
        (["train", "naive", "--data", "/nonexistent/data.npz"], "/nonexistent/data.npz: no such file"),
        (["train", "naive", "--data", "x.npz", "--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_cli_train_bad_input(args, message, tmp_path):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


# ------------------------------------------------------------------------------------------------
# The shipped generators
# ------------------------------------------------------------------------------------------------

SHIPPED = {f.method: f for f in list_reconstructor_files() if f.extractor == "dlib-resnet128"}


def test_every_parametric_method_ships_a_generator_for_the_default_extractor():
    assert set(SHIPPED) == set(METHODS)
    for method, found in SHIPPED.items():
        assert found.path.parent == models_dir()
        assert found.details["training_identities"] > 1000, method
        assert "train split" in found.details["training_data"], method


def test_scan_with_the_shipped_generators_never_imports_torch(tmp_path):
    """A fresh install scans with nbnet, vec2face and naive on onnxruntime alone."""
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from fvr_audit.cli.app import app\n"
        "from fvr_audit.model_store import models_dir\n"
        "d = models_dir() / 'demo'\n"
        f"out = {str(tmp_path / 'scan')!r}\n"
        "args = ['scan', str(d / 'demo-targets.npz'), '--methods', 'nbnet,vec2face,naive', '--engine', 'local:dlib-resnet128',\n"
        "        '--gallery', 'local:dlib-resnet128=' + str(d / 'demo-gallery-dlib-resnet128.npz'), '--sample', '10', '--n', '50,100',\n"
        "        '--no-pdf', '--quiet', '-o', out]\n"
        "try:\n    app(args)\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert sys.modules.get('torch') is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env={**os.environ}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "scan" / "results.json").read_text())
    assert {m["name"] for m in results["methods"]} == set(METHODS)
    assert all(m["queries_total"] == 0 and m["access"] == "parametric" for m in results["methods"])


def test_shipped_generators_beat_four_times_chance_on_the_demo_identities(dlib):
    """tpr@25 under F' = dlib-resnet128 >= 4 x K/N on the 60 held-out demo identities (N = 600)."""
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.metrics.topk import topk_sweep

    demo = models_dir() / "demo"
    with np.load(demo / "demo-targets.npz", allow_pickle=False) as t, np.load(
        demo / "demo-gallery-dlib-resnet128.npz", allow_pickle=False
    ) as g:
        targets, target_labels = t["vectors"].astype(np.float32), t["labels"].astype(str)
        gallery, gallery_labels = g["vectors"].astype(np.float32), g["labels"].astype(str)
        if "paths" in t.files and "paths" in g.files:  # the target photo itself is not in the gallery
            keep = ~np.isin(g["paths"], t["paths"])
            gallery, gallery_labels = gallery[keep], gallery_labels[keep]
    names, owner = np.unique(gallery_labels, return_inverse=True)
    truth = np.searchsorted(names, target_labels)
    for method in METHODS:
        images = ParametricReconstructor(method).generate(targets, dlib)
        queries = dlib.embed(crop_from_canonical(images, dlib.geometry))
        sims = queries @ gallery.T
        scores = np.full((len(targets), len(names)), -np.inf, np.float32)
        np.maximum.at(scores.T, owner, sims.T)
        (rate,) = topk_sweep(scores, truth, [25], [len(names)])
        assert rate.tpr >= 4 * 25 / len(names), (method, rate.tpr)


def test_black_box_extractor_trains_with_a_surrogate_perceptual_loss_recorded_as_used(tmp_path, dlib):
    """A black box (an endpoint, or a graph the interpreter cannot run) has no gradients: the feature
    loss goes through dlib-resnet128 on the real photo instead, and the exported model records that
    it used dlib (so dlib may not judge it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: tests/ is not on sys.path
    from onnx_factories import build_embedding_model

    from fvr_audit.extractors.base import Extractor, white_box_forward

    model = get_extractor(str(build_embedding_model(tmp_path / "user.onnx", dim=16)))

    class BlackBox(Extractor):
        """The same model seen only through its outputs."""

        info = model.info

        def embed_raw(self, crops):
            return model.embed_raw(crops)

    user = BlackBox()
    assert white_box_forward(user)[0] is None
    base = synthetic_data(user, identities=6, per_identity=2)
    data = TrainingData(base.faces, base.vectors, base.labels, "synthetic", user.name, user.info.sha256 or "")
    steps = []
    settings = default_settings("naive", epochs=1, batch_size=4, identity_samples=2, validation_identities=1)
    outcome = train(data, user, settings, tmp_path / "w", on_step=lambda e, s, n, losses: steps.append(losses))
    assert outcome.feature_loss_model == "dlib-resnet128 (perceptual surrogate)"
    assert all("perceptual" in losses and "identity" not in losses for losses in steps)
    entry = export_trained(tmp_path / "w", user, "naive", directory=tmp_path / "models", script="test")
    assert entry.details["models_used_in_training"] == [user.name, "dlib-resnet128"]
    result = ParametricReconstructor("naive", models=(tmp_path / "models",)).reconstruct(data.vectors[:2], user)
    assert "dlib-resnet128" in result.models_used


def test_a_surrogate_in_training_pulls_towards_the_photo_and_is_recorded_as_used(tmp_path, dlib):
    """``surrogates``: a second recognizer's features of R(v) against its features of the real photo,
    on top of F's identity loss; the exported generator lists it as used (so it never judges it)."""
    data = synthetic_data(dlib, identities=6, per_identity=2)
    steps = []
    settings = default_settings(
        "naive", epochs=1, batch_size=4, identity_samples=2, validation_identities=1, surrogates="mobileface-256"
    )
    train(data, dlib, settings, tmp_path / "w", on_step=lambda e, s, n, losses: steps.append(losses))
    assert all({"identity", "surrogate:mobileface-256"} <= set(losses) for losses in steps)
    assert all(0.0 <= losses["surrogate:mobileface-256"] <= 2.0 for losses in steps)
    entry = export_trained(tmp_path / "w", dlib, "naive", directory=tmp_path / "models", script="test")
    assert entry.details["models_used_in_training"] == ["dlib-resnet128", "mobileface-256"]
    result = ParametricReconstructor("naive", models=(tmp_path / "models",)).reconstruct(data.vectors[:2], dlib)
    assert "mobileface-256" in result.models_used
    # a checkpoint made with a surrogate is another run than one without
    with pytest.raises(InputError, match="other settings"):
        train(data, dlib, default_settings("naive", epochs=1, batch_size=4, identity_samples=2,
                                           validation_identities=1), tmp_path / "w", resume=True)
    with pytest.raises(InputError, match="F itself"):
        train(data, dlib, replace(settings, surrogates="dlib-resnet128"), tmp_path / "w2")


def test_scan_of_an_extractor_without_generators_uses_the_calibration_adapter(lfw_dir, tmp_path):
    """F = mobileface-256 has no trained reconstructor: with self-calibration off and no --calibration
    the scan says how to get one; with it, naive runs through a ridge adapter into dlib space and dlib
    is not let judge it."""
    from fvr_audit.datasets.lfw import lfw_identities, lfw_split

    identities = lfw_identities(lfw_dir)
    rng = np.random.default_rng(11)
    eval_names = sorted(n for n in lfw_split("eval") if len(identities[n]) >= 2)
    targets = sorted(rng.choice(eval_names, size=12, replace=False).tolist())
    calibration_names = sorted(rng.choice(lfw_split("train"), size=60, replace=False).tolist())
    db_tree, calibration = tmp_path / "db", tmp_path / "calibration"
    for root, names, per in ((db_tree, targets, 3), (calibration, calibration_names, 2)):
        for name in names:
            (root / name).mkdir(parents=True)
            for relative in identities[name][:per]:
                os.symlink(lfw_dir / relative, root / relative)
    db = tmp_path / "db.npz"
    assert runner.invoke(app, ["extract", str(db_tree), "-e", "mobileface-256", "-o", str(db), "-q"]).exit_code == 0
    base = ["scan", str(db), "-e", "mobileface-256", "--engine", "local:mobileface-256,local:dlib-resnet128",
            "--gallery", str(db_tree), "--k", "1,5", "--n", "10", "--sample", "12", "--no-pdf", "-q", "--json"]
    without = runner.invoke(app, [*base, "--methods", "naive", "--calibration-faces", "0", "-o", str(tmp_path / "a")])
    assert without.exit_code == 2 and "no naive reconstructor trained for mobileface-256" in without.output
    assert "--calibration" in without.output
    with_adapter = runner.invoke(app, [*base, "--methods", "naive", "--calibration", str(calibration), "-o", str(tmp_path / "b")])
    assert with_adapter.exit_code == 0, with_adapter.output
    results = json.loads(with_adapter.stdout)
    (method,) = results["methods"]
    assert method["settings"]["adapter"].startswith("ridge mobileface-256->dlib-resnet128")
    assert "outputs turned to cosine" in method["settings"]["adapter"]  # the photos' own spread
    assert "dlib-resnet128" in method["models_used"]
    judged_by = {r["engine"] for r in results["records"] if r["method"] == "naive"}
    assert judged_by == {"local:mobileface-256", "system:mobileface-256"}
    assert any("adapter" in note for note in results["notes"])


def test_cli_trains_from_a_folder_of_photos_and_resumes(lfw_dir, tmp_path):
    """`fvr-audit train --faces DIR`: align + embed once (kept in the work folder), train, resume, export."""
    from fvr_audit.datasets.lfw import lfw_identities, lfw_split

    identities = lfw_identities(lfw_dir)
    names = sorted(n for n in lfw_split("train") if len(identities[n]) >= 2)[:10]
    tree = tmp_path / "faces"
    for name in names:
        (tree / name).mkdir(parents=True)
        for relative in identities[name][:2]:
            os.symlink(lfw_dir / relative, tree / relative)
    work = tmp_path / "work"
    common = ["train", "naive", "--work", str(work), "--batch-size", "4", "--identity-weight", "0"]
    first = runner.invoke(app, [*common, "--faces", str(tree), "--epochs", "1"])
    assert first.exit_code == 0, first.output
    data = TrainingData.load(work / "training-data.npz")
    assert data.faces.shape[1:] == (64, 64, 3) and len(set(data.labels.tolist())) == 10
    assert data.extractor == "dlib-resnet128" and len(data.faces) >= 18  # HOG may miss a face or two
    other = runner.invoke(app, [*common, "--resume", "--epochs", "2", "--seed", "1"])
    assert other.exit_code == 2 and "other settings" in other.output
    longer = runner.invoke(app, [*common, "--resume", "--epochs", "2", "--export", str(tmp_path / "models")])
    assert longer.exit_code == 0, longer.output  # the prepared data is reused; epoch 2 is trained, then exported
    assert "prepared earlier" in longer.output and longer.output.count("epoch 2:") == 1 and "epoch 1:" not in longer.output
    assert len(json.loads((work / "history.json").read_text())) == 2
    entry = load_manifest(tmp_path / "models")["reconstructor-naive-dlib-resnet128.onnx"]
    assert entry.details["epochs"] == 2 and entry.details["training_identities"] == 10
