"""``fvr-audit extract``: folders of photos to a vector database, with every odd input counted."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fvr_audit.cli.app import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def noise_image(path, size=(96, 96), seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)


def make_tree(root, identities=2, per_identity=2):
    for i in range(identities):
        (root / f"person_{i}").mkdir(parents=True)
        for j in range(per_identity):
            noise_image(root / f"person_{i}" / f"{j}.png", seed=10 * i + j)


def test_no_usable_face_is_an_error_and_writes_nothing(tmp_path):
    make_tree(tmp_path / "faces")
    out = tmp_path / "db.npz"
    result = run("extract", tmp_path / "faces", "-o", out, "--workers", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'faces'}: no usable face in 4 images (no-face: 4); "
        "the inputs look pre-cropped: try --aligned; nothing was written"
    )
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["faces"]  # no temporary left behind


def test_aligned_crops_write_a_loadable_labelled_database(tmp_path):
    make_tree(tmp_path / "faces", identities=2, per_identity=3)
    (tmp_path / "faces" / "person_0" / "notes.txt").write_text("ignored")
    out = tmp_path / "db.npz"
    result = run("extract", tmp_path / "faces", "-o", out, "--aligned", "--quiet")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and "0 of 6 images had no usable face" in result.stderr
    db = np.load(out, allow_pickle=False)
    assert db["vectors"].shape == (6, 128) and db["vectors"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(db["vectors"], axis=1), 1.0, atol=1e-5)
    assert db["labels"].tolist() == ["person_0"] * 3 + ["person_1"] * 3
    assert db["paths"].tolist()[0] == "person_0/0.png"
    assert str(db["extractor"]) == "dlib-resnet128"
    assert oct(out.stat().st_mode & 0o777) == "0o600"


def test_flat_folder_has_paths_but_no_labels(tmp_path):
    (tmp_path / "flat").mkdir()
    for j in range(3):
        noise_image(tmp_path / "flat" / f"{j}.jpg", seed=j)
    out = tmp_path / "flat.npz"
    assert run("extract", tmp_path / "flat", "-o", out, "--aligned", "-q").exit_code == 0
    db = np.load(out, allow_pickle=False)
    assert "labels" not in db.files and db["paths"].tolist() == ["0.jpg", "1.jpg", "2.jpg"]


def test_odd_inputs_are_counted_not_fatal(tmp_path):
    root = tmp_path / "faces"
    (root / "a").mkdir(parents=True)
    noise_image(root / "a" / "grey.png", mode="L")
    noise_image(root / "a" / "odd.png", size=(37, 201))
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "db.npz"
    result = run("extract", root, "-o", out, "--aligned", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "1 of 3 images had no usable face (unreadable: 1)" in result.stderr
    assert np.load(out, allow_pickle=False)["vectors"].shape == (2, 128)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("none", ("missing", "-o", "db.npz"), "error: missing: no such folder"),
        ("empty", ("empty", "-o", "db.npz"), "error: empty: no image files found (looked for .jpg, .png, .pgm, ... in identity folders and at the top)"),
        ("tree", ("faces", "-o", "db.npy"), "error: db.npy: output must end in .npz (vectors, labels and paths are stored together)"),
        ("tree", ("faces", "-o", "db.npz", "-e", "nope"), "error: nope: unknown extractor; use one of dlib-resnet128, faceres-1024, mobileface-256, a path to an .onnx file, or an http(s):// URL"),
        ("tree", ("faces", "-o", "db.npz", "--mean", "1,2"), "error: --mean '1,2': expected one number or three comma-separated numbers, got 2"),
        ("tree", ("faces", "-o", "db.npz", "--std", "0"), "error: --std 0: a standard deviation of 0 would divide by zero"),
        ("tree", ("faces", "-o", "db.npz", "--crop", "arcface-5pt"), "error: dlib-resnet128: preprocessing overrides apply only to ONNX files and HTTP endpoints; built-in extractors use their exact preprocessing"),
    ],
)
def test_bad_arguments_get_one_line_errors(tmp_path, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    if setup == "empty":
        (tmp_path / "empty").mkdir()
    if setup == "tree":
        make_tree(tmp_path / "faces", 1, 1)
    result = run("extract", *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message


@pytest.mark.shared_data
def test_real_photos_same_person_closer_than_others(tmp_path, lfw_dir):
    root = tmp_path / "faces"
    for name in ("Aaron_Peirsol", "Abdullah_Gul", "Adrien_Brody"):
        shutil.copytree(lfw_dir / name, root / name, ignore=lambda d, files: files[4:])
    grey = np.asarray(Image.open(lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg").convert("L"))
    (root / "Abel_Pacheco").mkdir()
    Image.fromarray(grey).save(root / "Abel_Pacheco" / "grey.png")
    noise_image(root / "Abel_Pacheco" / "noise.png", size=(250, 250))
    out = tmp_path / "db.npz"
    result = run("extract", root, "-o", out)
    assert result.exit_code == 0, result.output
    assert "no-face: 1" in result.stderr  # the noise image
    db = np.load(out, allow_pickle=False)
    labels, vectors = db["labels"], db["vectors"]
    assert "Abel_Pacheco/grey.png" in db["paths"].tolist()
    # Each photo's nearest other photo is the same person (the grey one is alone: skip it).
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -1)
    nearest = labels[scores.argmax(axis=1)]
    rows = labels != "Abel_Pacheco"
    assert (nearest[rows] == labels[rows]).all()


def test_extractor_override_flags_reach_the_command_as_one_options_object():
    """Every command takes the ONNX/HTTP override flags through one decorator (cli/options.py)."""
    import typer

    from fvr_audit.cli import options as opt
    from fvr_audit.cli.common import handle_errors
    from fvr_audit.extractors.base import AlignmentTemplate, ChannelOrder

    probe = typer.Typer()
    seen = {}

    @probe.command()
    @handle_errors
    @opt.extractor_overrides
    def show(name: str = typer.Argument("x"), extractor_options=None) -> None:
        seen["options"], seen["name"] = extractor_options, name

    result = CliRunner().invoke(
        probe, ["y", "--input-size", "96", "--mean", "127.5", "--std", "1,2,3", "--channel-order", "BGR", "--crop", "none", "--padding", "0.3"]
    )
    assert result.exit_code == 0, result.output
    options = seen["options"]
    assert seen["name"] == "y" and options.input_size == 96 and options.mean == (127.5,) * 3 and options.std == (1.0, 2.0, 3.0)
    assert options.channel_order is ChannelOrder.BGR and options.crop is AlignmentTemplate.NONE and options.padding == 0.3
    CliRunner().invoke(probe, [])
    assert seen["options"].input_size is None and seen["options"].mean is None
    bad = CliRunner().invoke(probe, ["--std", "0"])
    assert bad.exit_code == 2 and "divide by zero" in bad.output
