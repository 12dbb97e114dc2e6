"""Reconstructors: eigenfaces (black-box), gradient (white-box), the resumable runner and the CLI.

Most tests use small stand-in extractors (cheap, deterministic) and the shipped eigenface basis;
the ``lfw_dir`` tests reconstruct a few real held-out LFW targets with dlib-resnet128.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import get_extractor
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    FaceGeometry,
    Layout,
    WhiteBox,
    Preprocessing,
)
from fvr_audit.reconstructors.base import AttackAccess
from fvr_audit.reconstructors.eigenbasis import DEFAULT_BASIS_FILE, load_basis, to_canonical_uint8
from fvr_audit.reconstructors.eigenfaces import create_eigenfaces
from fvr_audit.reconstructors.gradient import create_gradient
from fvr_audit.reconstructors.registry import available_reconstructors, get_reconstructor
from fvr_audit.reconstructors.runner import (
    MANIFEST,
    build_reconstructor,
    load_reconstructions,
    reconstruct_to_folder,
)

DLIB_CHIP = FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25)


class ProjectionExtractor(Extractor):
    """A black box: 10x10 grey thumbnail of the crop, minus its mean, through a fixed projection.

    Counts every image it embeds (``images_seen``), like a priced endpoint would.
    """

    def __init__(self, dim: int = 24, seed: int = 0) -> None:
        self._weights = np.random.default_rng(seed).normal(size=(100, dim)).astype(np.float32)
        self.images_seen = 0

    @property
    def info(self) -> ExtractorInfo:
        return ExtractorInfo(
            name="test-projection",
            dim=self._weights.shape[1],
            geometry=DLIB_CHIP,
            preprocessing=Preprocessing(),
            source="tests",
            license="none",
            differentiable=False,
        )

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        self.images_seen += len(crops)
        grey = crops.astype(np.float32).mean(axis=3)
        thumb = grey.reshape(len(crops), 10, 15, 10, 15).mean(axis=(2, 4)).reshape(len(crops), 100)
        return (thumb - thumb.mean(axis=1, keepdims=True)) @ self._weights


class TorchConvExtractor(Extractor, WhiteBox):
    """A tiny differentiable CNN (fixed random weights), white-box like the built-in torch F."""

    def __init__(self, geometry: FaceGeometry = DLIB_CHIP) -> None:
        import torch

        self._geometry = geometry
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(
            torch.nn.AvgPool2d(5),
            torch.nn.Conv2d(3, 16, 5, stride=2),
            torch.nn.Tanh(),
            torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(256, 32),
        ).eval()
        self.module.requires_grad_(False)

    @property
    def info(self) -> ExtractorInfo:
        return ExtractorInfo(
            name="test-torch-cnn",
            dim=32,
            geometry=self._geometry,
            preprocessing=Preprocessing(ChannelOrder.RGB, Layout.NCHW, (127.5,) * 3, (64.0,) * 3),
            source="tests",
            license="none",
            differentiable=True,
        )

    def torch_forward(self):
        return self.module

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(self.info.preprocessing.apply(crops))).numpy()


@pytest.fixture(scope="module")
def basis():
    return load_basis()


def face_targets(extractor: Extractor, basis, count: int, seed: int = 7) -> np.ndarray:
    """F-vectors of random faces drawn from the eigenface prior (stand-ins for real targets)."""
    z = np.random.default_rng(seed).standard_normal((count, 40)).astype(np.float32) * 1.2
    images = to_canonical_uint8(basis.render_small(z))
    return extractor.embed(crop_from_canonical(images, extractor.geometry))


def mean_face_similarity(extractor: Extractor, basis, targets: np.ndarray) -> np.ndarray:
    mean = crop_from_canonical(basis.mean_canonical()[None], extractor.geometry)
    return targets @ extractor.embed(mean)[0]


# ------------------------------------------------------------------------------------------------
# Basis and registry
# ------------------------------------------------------------------------------------------------


def test_basis_is_shipped_verified_and_orthonormal(basis):
    from fvr_audit.model_store import load_manifest

    entry = load_manifest()[DEFAULT_BASIS_FILE]
    assert entry.script == "scripts/build_eigenbasis.py" and "training identities" in entry.source
    assert entry.size <= 26_000_000
    assert basis.mean.shape == (basis.size * basis.size * 3,)
    gram = basis.components[:64] @ basis.components[:64].T
    assert np.abs(gram - np.eye(64)).max() < 0.02
    assert np.all(np.diff(basis.stddev) <= 1e-3)  # strongest first
    # A face projected onto the basis and rendered back stays close (it spans faces).
    z = np.random.default_rng(0).standard_normal((2, basis.k)).astype(np.float32)
    assert np.allclose(basis.project_small(basis.render_small(z)), z, atol=0.1)


def test_registry_lists_both_methods_with_their_access():
    assert {"eigenfaces", "gradient", "refine"} <= set(available_reconstructors())
    assert get_reconstructor("eigenfaces").info.access is AttackAccess.BLACK_BOX
    assert get_reconstructor("gradient").info.access is AttackAccess.WHITE_BOX
    assert get_reconstructor("eigenfaces", preset="paper").settings.effective_iterations() * 64 == 128_000
    with pytest.raises(InputError, match="unknown setting"):
        get_reconstructor("eigenfaces", colour="blue")
    with pytest.raises(InputError, match="does not take --batch"):
        build_reconstructor("gradient", batch=8)


# ------------------------------------------------------------------------------------------------
# eigenfaces (black-box)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "jitter", "final_scoring"), [("best", 0, 0), ("es", 0, 0), ("es", 4, 1)]
)
def test_eigenfaces_improves_on_the_mean_face_and_counts_queries_exactly(basis, update, jitter, final_scoring):
    f = ProjectionExtractor()
    targets = face_targets(f, basis, 3)
    attack = create_eigenfaces(
        iterations=12, batch=16, update=update, components=48, jitter_shift=jitter, jitter_flip=bool(jitter)
    )
    f.images_seen = 0
    result = attack.reconstruct(targets, f, seed=1)
    assert result.queries.tolist() == [12 * 16 + final_scoring] * 3
    assert f.images_seen == (12 * 16 + final_scoring) * 3  # every image embedded is one query, nothing else
    assert result.images.shape == (3, 200, 200, 3) and result.images.dtype == np.uint8
    start = mean_face_similarity(f, basis, targets)
    gain = result.similarity - start
    assert np.all(gain > 0.02) and gain.mean() > 0.05, (start, result.similarity)
    # The reported similarity is F's on the returned image, exactly.
    again = np.einsum("nd,nd->n", f.embed(crop_from_canonical(result.images, f.geometry)), targets)
    assert np.allclose(again, result.similarity, atol=1e-5)
    assert result.models_used == ("test-projection", DEFAULT_BASIS_FILE)


def test_eigenfaces_budget_and_early_stop(basis):
    f = ProjectionExtractor()
    targets = face_targets(f, basis, 2)
    result = create_eigenfaces(iterations=50, batch=8, query_budget=40, components=32, update="best").reconstruct(
        targets, f
    )
    assert result.queries.tolist() == [40, 40]  # 5 iterations of 8
    easy = create_eigenfaces(iterations=30, batch=8, target_similarity=-0.99, components=32, update="best")
    assert easy.reconstruct(targets, f).queries.tolist() == [8, 8]  # stopped after the first iteration
    jittered = create_eigenfaces(iterations=50, batch=8, query_budget=40, components=32, jitter_shift=2)
    assert jittered.reconstruct(targets, f).queries.tolist() == [33, 33]  # 4 x 8 + final scoring <= 40
    flat = create_eigenfaces(iterations=30, batch=8, plateau_iterations=3, plateau_tol=1.0, components=32)
    assert flat.reconstruct(targets, f).queries.tolist() == [4 * 8 + 1] * 2  # plateau: 4 iterations, + final


def test_the_search_starts_from_the_faces_it_is_given(basis):
    """``start_faces``: projection plus a kept residual reproduce each start face, so tiny steps
    leave it as it was (up to rounding); from the mean face the same search ends elsewhere."""
    f = ProjectionExtractor()
    targets = face_targets(f, basis, 2)
    rng = np.random.default_rng(3)
    start = np.clip(rng.normal(128, 40, (2, 200, 200, 3)), 0, 255).astype(np.uint8)  # far from any eigenface
    tiny = create_eigenfaces(iterations=2, batch=4, step=1e-4, step_final=1e-4, components=48)
    result = tiny.search(targets, f, start_faces=start, seed=1)
    from PIL import Image

    small = [np.asarray(Image.fromarray(face).resize((basis.size, basis.size), Image.BILINEAR)) for face in start]
    smooth = to_canonical_uint8(np.stack(small).astype(np.float32))
    assert np.abs(result.images.astype(int) - smooth.astype(int)).mean() < 1.0  # the start face, at the basis resolution
    cold = tiny.reconstruct(targets, f, seed=1)
    assert np.abs(cold.images.astype(int) - smooth.astype(int)).mean() > 10
    with pytest.raises(InputError, match="start faces"):
        tiny.search(targets, f, start_faces=start[:1], seed=1)


def test_refine_starts_from_the_naive_face_and_records_the_generator():
    """refine on dlib-resnet128: black-box queries counted as eigenfaces counts them, the generator and
    the basis in ``models_used``; an F without a generator of its own needs the adapter (says so)."""
    dlib = get_extractor("dlib-resnet128")
    refine = get_reconstructor("refine", preset="demo", iterations=2, step=1.0, step_final=0.5)
    assert refine.info.access is AttackAccess.BLACK_BOX
    v = face_targets(dlib, load_basis(), 2, seed=5)
    first = get_reconstructor("naive").reconstruct(v, dlib)
    result = refine.reconstruct(v, dlib, seed=2)
    assert result.queries.tolist() == [2 * 16 + 1] * 2
    assert "reconstructor-naive-dlib-resnet128.onnx" in result.models_used and DEFAULT_BASIS_FILE in result.models_used
    assert result.settings["start"] == "naive"
    # two small steps from the generator's face: it stays close to it, and F still reads it as well
    assert np.abs(result.images.astype(int) - first.images.astype(int)).mean() < 12
    assert result.similarity.min() > first.similarity.min() - 0.05
    reason = get_reconstructor("refine").supports(get_extractor("mobileface-256"))
    assert reason is not None and "mobileface-256" in reason


def test_refine_is_guided_by_a_surrogate_that_is_not_f_and_records_it():
    """refine's default surrogate guidance: mobileface-256 proposes directions for an attack on
    dlib-resnet128, so it is in ``models_used`` (it may not judge), with its map; the search moves
    differently from the unguided one, still black-box and with the same queries to F."""
    from fvr_audit.audit.fairness import Judging, judging

    dlib = get_extractor("dlib-resnet128")
    v = face_targets(dlib, load_basis(), 2, seed=5)
    common = {"preset": "demo", "iterations": 3, "step": 2.0, "step_final": 1.0, "surrogate_faces": 40}
    guided = get_reconstructor("refine", **common).reconstruct(v, dlib, seed=2)
    plain = get_reconstructor("refine", surrogate="none", **common).reconstruct(v, dlib, seed=2)
    assert guided.settings["guidance"]["surrogate"] == "mobileface-256"
    # F is the built-in dlib-resnet128: the shipped map (LFW training photos), no queries to F for it
    assert guided.settings["guidance"]["map_kind"] == "shipped"
    assert guided.settings["guidance"]["queries_per_database"] == 0
    assert "mobileface-256" in guided.models_used and any(u.startswith("adapter ridge dlib-resnet128->mobileface-256")
                                                         for u in guided.models_used)
    assert judging(guided.models_used, "mobileface-256", engine_is_f=False) is Judging.USED
    assert judging(guided.models_used, "faceres-1024", engine_is_f=False) is Judging.INDEPENDENT
    assert plain.settings["guidance"]["surrogate"] is None and "mobileface-256" not in plain.models_used
    assert guided.queries.tolist() == plain.queries.tolist() == [3 * 16 + 1] * 2
    assert np.abs(guided.images.astype(int) - plain.images.astype(int)).mean() > 0.1
    # a target's guided search depends on its seed, not on its neighbours in the call
    alone = get_reconstructor("refine", **common).reconstruct(v[1:], dlib, target_seeds=[3])
    assert np.abs(alone.images[0].astype(int) - guided.images[1].astype(int)).mean() < 1.0


def test_refine_surrogate_choice_never_uses_f_itself(tmp_path):
    import shutil

    from fvr_audit.model_store import models_dir
    from fvr_audit.reconstructors.guidance import choose_surrogate

    copy = tmp_path / "vendor.onnx"
    shutil.copy(models_dir() / "mobileface-256.onnx", copy)  # F is mobileface-256 under another name
    assert choose_surrogate("auto", get_extractor(str(copy)))[0] == "dlib-resnet128"
    with pytest.raises(InputError, match="F itself"):
        choose_surrogate("dlib-resnet128", get_extractor("dlib-resnet128"))
    reason = get_reconstructor("refine", surrogate="dlib-resnet128").supports(get_extractor("dlib-resnet128"))
    assert reason is not None and "F itself" in reason
    with pytest.raises(InputError, match="not a built-in recognizer"):
        choose_surrogate("arcface", get_extractor("dlib-resnet128"))
    reason = get_reconstructor("refine", surrogate="dlib-resnet128").supports(get_extractor("dlib-resnet128"))
    assert reason is not None and "F itself" in reason
    with pytest.raises(InputError, match="not a built-in recognizer"):
        get_reconstructor("refine", surrogate="arcface")  # refused when made, before a scan's other attacks run
    with pytest.raises(InputError, match="guided 9"):
        get_reconstructor("refine", preset="demo", guided=9)  # the demo's 16 candidates are 8 pairs


def test_refine_guidance_for_an_unseen_f_needs_a_photo_map(tmp_path, monkeypatch):
    """An F the tool has never seen: ``auto`` guides only through a map fitted on photos (the user's
    calibration adapter into dlib-resnet128's space); a named surrogate falls back to the synthetic
    map, whose faces are queries to F, counted once per database."""
    from fvr_audit.reconstructors.guidance import choose_surrogate, surrogate_map
    from fvr_audit.reconstructors.parametric.adapter import PenaltySelection, RidgeAdapter

    f = ProjectionExtractor()
    name, why = choose_surrogate("auto", f)
    assert name is None and "no map fitted on photos" in why and "--calibration" in why
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, f.dim)), rng.normal(size=(60, 128))
    photos = RidgeAdapter.fit(x, y, np.repeat(np.arange(30), 2), source=f.name, target="dlib-resnet128")
    assert photos.from_photos
    assert choose_surrogate("auto", f, photos)[0] == "dlib-resnet128"
    assert surrogate_map(f, get_extractor("dlib-resnet128"), faces=20, start_adapter=photos).kind == "calibration"
    synthetic = RidgeAdapter.fit(x, y, np.arange(60), source=f.name, target="dlib-resnet128",
                                 selection=PenaltySelection.IDENTIFICATION)
    assert choose_surrogate("auto", f, synthetic)[0] is None  # a self-calibrated start adapter is no photo map
    assert choose_surrogate("mobileface-256", f)[0] == "mobileface-256"
    monkeypatch.setenv("FVR_AUDIT_CACHE", str(tmp_path / "cache"))  # not a map cached by an earlier run
    seen = f.images_seen
    found = surrogate_map(f, get_extractor("mobileface-256"), faces=20)
    assert found.kind == "synthetic" and found.queries == 20 and f.images_seen - seen == 20


def test_eigenfaces_results_do_not_depend_on_batch_neighbours(basis):
    f = ProjectionExtractor()
    targets = face_targets(f, basis, 3)
    attack = create_eigenfaces(iterations=4, batch=8, components=32)
    together = attack.reconstruct(targets, f, target_seeds=[10, 11, 12])
    alone = attack.reconstruct(targets[1:2], f, target_seeds=[11])
    # Same random draws; only float rounding of batched matrix products may move a pixel by one.
    diff = np.abs(together.images[1].astype(int) - alone.images[0])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert abs(together.similarity[1] - alone.similarity[0]) < 1e-3
    other = attack.reconstruct(targets[1:2], f, target_seeds=[99])
    assert np.abs(other.images[0].astype(int) - alone.images[0]).max() > 10  # the seed matters


# ------------------------------------------------------------------------------------------------
# gradient (white-box)
# ------------------------------------------------------------------------------------------------


def test_gradient_refuses_a_black_box_extractor_with_a_reason():
    attack = create_gradient()
    reason = attack.supports(ProjectionExtractor())
    assert reason and "black box" in reason and "eigenfaces" in reason
    with pytest.raises(InputError, match="black box"):
        attack.reconstruct(np.ones((1, 24), np.float32), ProjectionExtractor())


@pytest.mark.parametrize(
    "geometry", [DLIB_CHIP, FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT)], ids=lambda g: g.template.value
)
def test_gradient_raises_similarity_on_a_torch_extractor(basis, geometry):
    f = TorchConvExtractor(geometry)
    assert create_gradient().supports(f) is None
    targets = face_targets(f, basis, 2, seed=3)
    result = create_gradient(iterations=40, plateau_steps=0, components=64, restarts=0).reconstruct(targets, f, seed=0)
    start = mean_face_similarity(f, basis, targets)
    assert np.all(result.similarity > start + 0.02), (start, result.similarity)
    assert result.queries.tolist() == [41, 41]  # 40 steps + the final scoring
    assert result.models_used == ("test-torch-cnn", DEFAULT_BASIS_FILE)


def test_gradient_gives_weak_targets_a_second_start(basis):
    f = TorchConvExtractor(DLIB_CHIP)
    targets = face_targets(f, basis, 2, seed=3)
    once = create_gradient(iterations=40, plateau_steps=0, components=64, restarts=0).reconstruct(targets, f, seed=0)
    # every target counts as weak: each is optimised again from its best of 8 random starts
    again = create_gradient(iterations=40, plateau_steps=0, components=64, restart_below=1.01).reconstruct(targets, f, seed=0)
    # 40 steps + scoring, then 8 candidate starts + 40 steps + scoring
    assert again.queries.tolist() == [41 + 8 + 40 + 1] * 2
    # the better of the two images is kept
    assert np.all(again.similarity >= once.similarity - 1e-6)


# ------------------------------------------------------------------------------------------------
# runner: folder output, resume, fairness record
# ------------------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


def test_runner_writes_pngs_and_json_and_resumes(tmp_path, basis):
    f = ProjectionExtractor()
    vectors = face_targets(f, basis, 5)
    labels = ["a", "b", "c", "d", "e"]
    attack = create_eigenfaces(iterations=3, batch=8, components=32, update="best")
    out = tmp_path / "rec"

    # A run killed during its second chunk keeps the first chunk.
    calls = {"n": 0}
    original = attack.reconstruct

    def dying(vectors, extractor, *, seed=0, on_progress=None, target_seeds=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt
        return original(vectors, extractor, seed=seed, on_progress=on_progress, target_seeds=target_seeds)

    attack.reconstruct = dying  # type: ignore[method-assign]
    with pytest.raises(Interrupt):
        reconstruct_to_folder(vectors, f, attack, out, labels=labels, seed=3, chunk_size=2)
    manifest = json.loads((out / MANIFEST).read_text())
    assert [r["index"] for r in manifest["targets"]] == [0, 1] and manifest["complete"] is False
    first_png = (out / "00000.png").read_bytes()

    attack.reconstruct = original  # type: ignore[method-assign]
    f.images_seen = 0
    run = reconstruct_to_folder(vectors, f, attack, out, labels=labels, seed=3, chunk_size=2)
    assert (run.done_now, run.skipped) == (3, 2)
    assert f.images_seen == 3 * 3 * 8  # only the three unfinished targets were queried
    assert (out / "00000.png").read_bytes() == first_png
    manifest, images = load_reconstructions(out)
    assert manifest["complete"] is True and images.shape == (5, 200, 200, 3)
    assert [r["label"] for r in manifest["targets"]] == labels
    assert all(r["queries"] == 24 and r["trace"] for r in manifest["targets"])
    # The fairness record: F and the basis, nothing else.
    assert manifest["models_used"] == ["test-projection", DEFAULT_BASIS_FILE]
    assert manifest["access"] == "black-box" and manifest["extractor"] == "test-projection"
    # Similarities recorded are F's on the PNGs written.
    sims = np.einsum("nd,nd->n", f.embed(crop_from_canonical(images, f.geometry)), vectors)
    assert np.allclose(sims, [r["similarity"] for r in manifest["targets"]], atol=1e-4)

    f.images_seen = 0
    again = reconstruct_to_folder(vectors, f, attack, out, labels=labels, seed=3, chunk_size=2)
    assert (again.done_now, again.skipped, f.images_seen) == (0, 5, 0)


@pytest.mark.parametrize("attack", ["eigenfaces", "gradient"])
def test_a_long_unit_reports_progress_while_it_runs_and_sums_to_its_targets(tmp_path, basis, attack):
    # Before, a unit of eigenfaces reported nothing until all its targets were done: "0/12, ETA
    # unknown" for minutes. Now each iteration reports its share; the unit's end reports the rest.
    if attack == "eigenfaces":
        f, reconstructor = ProjectionExtractor(), create_eigenfaces(iterations=4, batch=4, components=16, plateau_iterations=0)
    else:
        f, reconstructor = TorchConvExtractor(), create_gradient(iterations=5, plateau_steps=0, restarts=0)
    vectors = face_targets(f, basis, 3)
    steps: list[float] = []
    reconstruct_to_folder(vectors, f, reconstructor, tmp_path / "rec", chunk_size=2, on_progress=steps.append)
    assert sum(steps) == pytest.approx(3)
    first_unit = np.cumsum(steps) < 2 - 1e-9
    assert first_unit.sum() >= 3  # fractions before the first unit (2 targets) was done
    assert all(step > 0 for step in steps)


def test_runner_refuses_a_folder_made_with_other_settings(tmp_path, basis):
    f = ProjectionExtractor()
    vectors = face_targets(f, basis, 2)
    reconstruct_to_folder(vectors, f, create_eigenfaces(iterations=2, batch=4, components=16), tmp_path, limit=1)
    with pytest.raises(InputError, match="different settings"):
        reconstruct_to_folder(vectors, f, create_eigenfaces(iterations=3, batch=4, components=16), tmp_path)
    with pytest.raises(InputError, match="different vectors_sha256"):
        reconstruct_to_folder(vectors[::-1].copy(), f, create_eigenfaces(iterations=2, batch=4, components=16), tmp_path)


def test_cli_reconstruct_writes_a_folder_and_resumes(tmp_path):
    from fvr_audit.cli import reconstruct_cmd

    app = typer.Typer()
    reconstruct_cmd.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into one command
        pass

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=np.array(["x", "y"]), extractor=np.array("dlib-resnet128"))
    args = ["reconstruct", str(tmp_path / "db.npz"), "-o", str(tmp_path / "out"), "--method", "eigenfaces",
            "--iterations", "2", "--batch", "4", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] and [r["queries"] for r in manifest["targets"]] == [9, 9]  # 2 x 4 + final
    assert "dlib-resnet128" in manifest["models_used"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "0 reconstructed now, 2 already done" in again.output
    bad = CliRunner().invoke(app, args[:4] + ["--method", "gradient", "--batch", "4"])
    assert bad.exit_code == 2 and "does not take --batch" in bad.output


# ------------------------------------------------------------------------------------------------
# Real held-out LFW targets against dlib-resnet128
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_targets(lfw_dir):
    from fvr_audit.alignment import FaceAligner, load_image_rgb
    from fvr_audit.datasets.lfw import lfw_identities, lfw_split
    from fvr_audit.extractors.registry import get_extractor

    f = get_extractor("dlib-resnet128")
    identities = lfw_identities(lfw_dir)
    names = [n for n in lfw_split("eval") if len(identities.get(n, [])) >= 2][:2]
    aligner = FaceAligner([f.geometry])
    crops = [aligner.align(load_image_rgb(lfw_dir / identities[n][0])).crops[0] for n in names]
    return f, f.embed(np.stack(crops))


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_targets_reach_high_similarity_with_both_attacks(real_targets):
    f, targets = real_targets
    mean = mean_face_similarity(f, load_basis(), targets)  # about 0.85-0.9 for dlib
    white = create_gradient(iterations=25, plateau_steps=0).reconstruct(targets, f)
    print("mean face", mean, "gradient", white.similarity)
    assert np.all(white.similarity >= 0.95), white.similarity  # same-person photos: ~0.91-0.97
    black = create_eigenfaces(iterations=8, batch=32).reconstruct(targets, f)
    print("eigenfaces", black.similarity)
    assert np.all(black.similarity > mean + 0.05), (mean, black.similarity)
    assert black.queries.tolist() == [8 * 32 + 1] * 2


@pytest.mark.parametrize(
    "geometry",
    [
        FaceGeometry(150, AlignmentTemplate.DLIB_5PT, 0.25),
        FaceGeometry(224, AlignmentTemplate.DLIB_5PT, 0.5),
        FaceGeometry(112, AlignmentTemplate.ARCFACE_5PT),
        FaceGeometry(160, AlignmentTemplate.NONE),
    ],
    ids=lambda g: g.describe(),
)
def test_differentiable_crop_matches_crop_from_canonical(basis, geometry):
    """The white-box attack's grid_sample crop is the crop every recognizer gets from the frame."""
    import torch
    import torch.nn.functional as F

    from fvr_audit.reconstructors.views import normalised_theta

    z = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    frames = to_canonical_uint8(basis.render_small(z))
    expected = crop_from_canonical(frames, geometry).astype(np.float32)
    x = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)
    theta = torch.from_numpy(np.repeat(normalised_theta(geometry)[None], 2, axis=0).astype(np.float32))
    grid = F.affine_grid(theta, [2, 3, geometry.size, geometry.size], align_corners=False)
    got = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    got = got.permute(0, 2, 3, 1).numpy()
    # Bilinear vs the reference resampler (PIL box filter, bicubic, skimage warp): a few grey levels.
    assert np.abs(got - expected).mean() < 3.0
