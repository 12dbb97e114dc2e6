"""Issue 10, "Reliability": each defect found by the adversarial run, replayed with the input that
showed it. Every bad input must end in one ``error: ...`` line and the README's exit code, with
nothing half written. (The HTTP ones live in test_http_endpoint.py, beside its test servers.)
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.audit.results import Record
from fvr_audit.audit.verdict import decide_verdict, gate_failure, gate_records
from fvr_audit.cli.app import app

sys.path.insert(0, str(Path(__file__).parent))
from onnx_factories import build_embedding_model  # noqa: E402
from test_scan import clustered  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, code: int) -> str:
    """The result failed with ``code`` and exactly one ``error:`` line on stderr; that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reliability")
    vectors, labels, paths = clustered(60, 3, 128, noise=0.6)
    np.savez(folder / "db.npz", vectors=vectors, labels=labels, paths=paths)
    return folder / "db.npz"


def scan(db: Path, out: Path, *extra: object):
    return run("scan", db, "-o", out, "--engine", "local:dlib-resnet128", "--methods", "", "--sample", "10",
               "--n", "10,20", "--no-pdf", "--quiet", *extra)


# -- 1. the CI gate ------------------------------------------------------------------------------


@pytest.mark.parametrize("gate_n", ["75", "-1"])
def test_gate_n_that_is_not_evaluated_is_a_usage_error_before_any_work(db, tmp_path, gate_n):
    result = scan(db, tmp_path / "out", "--gate-n", gate_n, "--fail-on-tpr", "0.0")
    line = one_error_line(result, 2)
    assert line == f"error: --gate-n {gate_n}: must be one of the evaluated N values [10, 20] (see --n)"
    assert not (tmp_path / "out").exists()


def test_a_gate_that_measured_nothing_fails(db, tmp_path):
    # --methods "" ran no attack; --fail-on-tpr 0.0 exited 0 on a "not-assessed" verdict.
    result = scan(db, tmp_path / "out", "--fail-on-tpr", "0.0")
    assert result.exit_code == 1, result.output
    assert "fail-on-tpr: no reconstruction attack was measured at K=1, N=20" in result.stderr


def test_verdict_gate_and_summary_judge_the_same_records():
    records = [
        Record("naive", "local:a", 1, 300, 0.5, 0.5, 0.0, (0.4, 0.6), 1 / 300, 40, 5),  # gallery caps N at 300
        Record("naive", "local:b", 1, 1000, 0.02, 0.98, 0.0, (0.0, 0.05), 0.001, 40, 5),
        Record("naive", "local:b", 1, 5000, 0.01, 0.99, 0.0, (0.0, 0.03), 0.0002, 40, 5),
        Record("original", "local:b", 1, 5000, 1.0, 0.0, 0.0, (0.9, 1.0), 0.0002, 40, 5),
    ]
    judged = gate_records(records, 1, 5000)
    assert [(r.engine, r.n) for r in judged] == [("local:a", 300), ("local:b", 5000)]
    assert decide_verdict(records, 1, 5000).engine == "local:a"
    assert gate_failure(records, 1, 5000, 0.4).startswith("naive under local:a: tpr 0.500 at K=1, N=300")
    assert gate_failure(records, 1, 5000, 0.6) is None
    assert len(gate_records(records, 1, 5000, attacks_only=False)) == 3  # the summary table also shows 'original'


# -- 2. a target's own photo in --gallery DIR, database without paths ----------------------------


def _fake_gallery_folder(monkeypatch, folder: Path, labels, vectors_by_extractor) -> None:
    """Stand in for face detection: the folder's photos 'embed' to given vectors per extractor."""
    import fvr_audit.extraction as extraction
    from fvr_audit.alignment.aligner import FaceStatus
    from fvr_audit.extraction import EmbeddingRun, ImageRecord

    records = []
    for index, label in enumerate(labels):
        (folder / label).mkdir(parents=True, exist_ok=True)
        records.append(ImageRecord(folder / label / f"{index}.png", f"{label}/{index}.png", str(label)))

    def embed_records(given, extractors, **_):
        assert [r.relative for r in given] == [r.relative for r in records]
        usable = next(s for s in FaceStatus if s.usable)
        return EmbeddingRun(
            {e.name: vectors_by_extractor[e.name] for e in extractors}, np.arange(len(given)),
            (usable,) * len(given), ("",) * len(given), 0.0,
        )

    monkeypatch.setattr(extraction, "discover_images", lambda root: (records, True))
    monkeypatch.setattr(extraction, "embed_records", embed_records)


@pytest.mark.parametrize("engine", ["local:dlib-resnet128", "local:faceres-1024"], ids=["F", "other"])
def test_targets_own_photos_are_held_out_of_a_gallery_folder_by_content(monkeypatch, tmp_path, engine):
    # The database has no 'paths'; the gallery folder holds the very photos its vectors came from.
    from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan
    from fvr_audit.extractors.registry import get_extractor

    vectors, labels, _ = clustered(30, 3, 128, noise=0.6)
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=labels)
    other, _, _ = clustered(30, 3, 1024, noise=0.9, seed=1)
    _fake_gallery_folder(monkeypatch, tmp_path / "photos", labels, {"dlib-resnet128": vectors, "faceres-1024": other})

    outcome = run_scan(
        tmp_path / "db.npz", get_extractor("dlib-resnet128"),
        ScanSettings(sample=12, ns=(10, 30), ks=(1,), methods=(), engines=(engine,), draws=2),
        GallerySources(folder=tmp_path / "photos"),
    )
    results = outcome.results
    summary = next(e for e in results.engines if not e.name.startswith("system:"))
    assert summary.gallery_vectors == 90 - 12  # was 90: every target's own photo stayed enrolled
    assert any("12 gallery photos held out as targets' own photos, found by content" in n for n in results.notes)


# -- 3. --images-root escapes ------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["../outside/{i}.png", "/etc/{i}.png", "link/{i}.png"])
def test_paths_leading_outside_images_root_are_refused(tmp_path, escape):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a link inside the root that leads out of it
    vectors, labels, _ = clustered(30, 3, 128, noise=0.6)
    paths = np.array([escape.format(i=i) for i in range(len(labels))])
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=labels, paths=paths)
    result = scan(tmp_path / "db.npz", tmp_path / "out", "--images-root", root)
    line = one_error_line(result, 2)
    assert f"leads outside --images-root {root}; paths must be relative to that folder" in line
    assert not (tmp_path / "out").exists()


def test_images_root_is_checked_before_any_attack_runs(tmp_path, monkeypatch):
    from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan
    from fvr_audit.errors import InputError
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.reconstructors.parametric import ParametricReconstructor

    def attack(*args, **kwargs):
        raise AssertionError("an attack ran before the paths were checked")

    monkeypatch.setattr(ParametricReconstructor, "reconstruct", attack)
    vectors, labels, _ = clustered(30, 3, 128, noise=0.6)
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=labels, paths=np.array(["../x.png"] * len(labels)))
    (tmp_path / "root").mkdir()
    with pytest.raises(InputError, match="leads outside --images-root"):
        run_scan(tmp_path / "db.npz", get_extractor("dlib-resnet128"),
                 ScanSettings(sample=5, ns=(10,), ks=(1,), methods=("naive",), engines=("local:dlib-resnet128",)),
                 GallerySources(images_root=tmp_path / "root"))


# -- 4 and 6. outputs checked before the work; no mixing of runs ---------------------------------


def test_unwritable_output_is_refused_before_the_work(db, tmp_path):
    started = time.monotonic()
    result = scan(db, "/proc/fvr-audit-test/out")
    line = one_error_line(result, 2)
    assert line.startswith("error: /proc/fvr-audit-test/out: cannot write there")
    assert time.monotonic() - started < 5  # before embedding anything

    (tmp_path / "file").write_text("x")
    line = one_error_line(scan(db, tmp_path / "file"), 2)
    assert line == f"error: {tmp_path / 'file'}: exists and is not a folder; give a folder for the outputs"


def test_file_outputs_that_are_folders_are_refused(tmp_path):
    (tmp_path / "out.npz").mkdir()
    (tmp_path / "photos").mkdir()
    line = one_error_line(run("adapter", "-e", "faceres-1024", "--calibration", tmp_path / "photos", "-o", tmp_path / "out.npz"), 2)
    assert line == f"error: {tmp_path / 'out.npz'}: is a folder; give a file name"
    line = one_error_line(run("extract", tmp_path / "photos", "-o", "/proc/fvr-audit-test/db.npz"), 2)
    assert line.startswith("error: /proc/fvr-audit-test/db.npz: cannot write there")


def test_a_non_empty_output_folder_needs_overwrite_which_replaces_only_what_the_tool_owns(db, tmp_path):
    out = tmp_path / "out"
    stale = out / "reconstructions" / "eigenfaces" / "000999.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (out / "report.pdf").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")

    line = one_error_line(scan(db, out), 2)
    assert line.startswith(f"error: {out}: not empty (holds notes.txt, reconstructions, report.pdf); writing into it would mix two runs")
    assert stale.exists()

    result = scan(db, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "report.html", "results.json"]
    assert (out / "notes.txt").read_text() == "mine"


# -- 14. private folders, planted links -----------------------------------------------------------


def test_output_folders_are_private_even_under_umask_000(db, tmp_path):
    previous = os.umask(0)
    try:
        result = run("scan", db, "-o", tmp_path / "a" / "out", "--engine", "local:dlib-resnet128", "--methods", "naive",
                     "--sample", "4", "--n", "10", "--k", "1", "--no-pdf", "--quiet")
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for folder in (tmp_path / "a", tmp_path / "a" / "out", tmp_path / "a" / "out" / "reconstructions" / "naive"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_symbolic_links_in_the_output_are_never_followed(db, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    line = one_error_line(scan(db, tmp_path / "link"), 2)
    assert line == f"error: {tmp_path / 'link'}: is a symbolic link; give a real folder for the outputs"

    out = tmp_path / "out"
    out.mkdir()
    (out / "reconstructions").symlink_to(elsewhere)  # planted: PNGs would land in 'elsewhere'
    result = run("scan", db, "-o", out, "--engine", "local:dlib-resnet128", "--methods", "naive", "--sample", "4",
                 "--n", "10", "--k", "1", "--no-pdf", "--quiet", "--overwrite")
    assert result.exit_code == 0, result.output
    assert not (out / "reconstructions").is_symlink() and (out / "reconstructions" / "naive").is_dir()
    assert list(elsewhere.iterdir()) == []


def test_manifests_written_by_fvr_audit_are_private(tmp_path):
    from fvr_audit.model_store import register_model

    (tmp_path / "model.onnx").write_bytes(b"weights")
    register_model("model.onnx", kind="reconstructor", source="test", license="test", script="test", directory=tmp_path)
    assert stat.S_IMODE((tmp_path / "manifest.json").stat().st_mode) == 0o600


# -- 7. declared sizes of .npz members ------------------------------------------------------------


def _npz_with_member(path: Path, header_shape: tuple[int, ...], payload_chunks) -> None:
    """A compressed .npz whose 'vectors' member has the given .npy header and payload."""
    header = {"descr": "<f4", "fortran_order": False, "shape": header_shape}
    text = repr(header).encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    npy_header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("vectors.npy", "w", force_zip64=True) as member:
            member.write(npy_header)
            for chunk in payload_chunks:
                member.write(chunk)


def test_a_small_npz_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    _npz_with_member(path, (10**11, 128), [])
    assert path.stat().st_size < 1024
    line = one_error_line(run("vectors", "inspect", path), 2)
    assert "the header declares shape (100000000000, 128) float32 (51200000000000 bytes)" in line


def test_a_deflate_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    rows = (96 << 20) // 512  # 96 MiB of zeros declared and present
    _npz_with_member(path, (rows, 128), (bytes(8 << 20) for _ in range(12)))
    assert path.stat().st_size < 400_000
    line = one_error_line(run("vectors", "inspect", path), 2)
    assert "refusing to decompress" in line and "decompression bomb" in line


def test_compressed_databases_of_ordinary_size_still_load(tmp_path):
    vectors, labels, _ = clustered(50, 4, 128, noise=0.5)
    np.savez_compressed(tmp_path / "db.npz", vectors=vectors, labels=labels)
    result = run("vectors", "inspect", tmp_path / "db.npz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 200


# -- 8. NaN vectors from a model -----------------------------------------------------------------


def test_extract_refuses_to_write_nan_vectors(tmp_path):
    from PIL import Image

    model = build_embedding_model(tmp_path / "nan.onnx", prologue=[("Mul", float("nan"))])
    (tmp_path / "faces" / "p").mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (112, 112), (index * 40, 90, 30)).save(tmp_path / "faces" / "p" / f"{index}.png")
    result = run("extract", tmp_path / "faces", "-o", tmp_path / "db.npz", "-e", model, "--aligned", "--quiet")
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert lines == [
        f"error: {model.name}: output NaN or Inf for 3 of 3 photos (first: p/0.png); the model is broken or its "
        f"preprocessing wrong; nothing was written to {tmp_path / 'db.npz'}"
    ]
    assert not (tmp_path / "db.npz").exists()


# -- 9. malformed but parseable JSON ------------------------------------------------------------


def test_a_shipped_manifest_that_is_not_an_object_is_exit_4(tmp_path, monkeypatch):
    (tmp_path / "manifest.json").write_text("[]")
    monkeypatch.setenv("FVR_AUDIT_MODELS", str(tmp_path))
    line = one_error_line(run("models"), 4)
    assert line == f'error: {tmp_path / "manifest.json"}: not an fvr-audit manifest (expected {{"version": 1, "files": [...]}})'


def test_a_models_folder_entry_missing_fields_is_exit_2(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "manifest.json").write_text(json.dumps({"version": 1, "files": [{"file": "r.onnx"}]}))
    line = one_error_line(run("models", "--models", tmp_path / "mine"), 2)
    assert line == f"error: {tmp_path / 'mine' / 'manifest.json'}: files[0] (r.onnx) lacks 'sha256' (a str); rebuild the manifest"


def test_a_reconstructions_json_that_is_a_list_is_exit_2(db, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reconstructions.json").write_text("[]")
    line = one_error_line(run("reconstruct", db, "--method", "naive", "-o", tmp_path / "out", "--quiet"), 2)
    assert line.startswith(f"error: {tmp_path / 'out' / 'reconstructions.json'}: not an fvr-audit reconstructions file")


# -- 10. --set ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("naive.foo=1", "--set naive.foo: naive has no settings to set (a trained model; see --models)"),
        ("eigenfaces.iterations=abc", "--set eigenfaces.iterations='abc': expected int"),
        ("bogus.x=1", "--set bogus.x: bogus is not a reconstruction method; known: eigenfaces, gradient, naive, nbnet, refine, transfer, vec2face"),
        ("eigenfaces.nonsense=1", "--set eigenfaces.nonsense: unknown setting; eigenfaces takes:"),
        ("gradient.lr=0.1", "--set gradient.lr: gradient is not among --methods eigenfaces,naive"),
    ],
)
def test_set_values_are_validated_before_any_work(db, tmp_path, setting, message):
    result = scan(db, tmp_path / "out", "--methods", "eigenfaces,naive", "--set", setting)
    assert one_error_line(result, 2).startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()


# -- 11. reconstruct --adapter x.npy ---------------------------------------------------------------


def test_an_npy_given_as_adapter_is_a_one_line_error(db, tmp_path):
    np.save(tmp_path / "x.npy", np.eye(3, dtype=np.float32))
    line = one_error_line(run("reconstruct", db, "--method", "naive", "--adapter", tmp_path / "x.npy", "-o", tmp_path / "out"), 2)
    assert line == (
        f"error: {tmp_path / 'x.npy'}: a .npy array, not an .npz archive; give an fvr-audit adapter file "
        "(from `fvr-audit adapter`) (.npz)"
    )


# -- 12. an ONNX model declaring a huge input -------------------------------------------------------


def test_an_onnx_model_with_a_huge_input_is_a_one_line_error(tmp_path):
    from PIL import Image

    model = build_embedding_model(tmp_path / "huge.onnx", input_shape=["N", 3, 100000, 100000])
    (tmp_path / "faces").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "faces" / "a.png")
    line = one_error_line(run("extract", tmp_path / "faces", "-o", tmp_path / "db.npz", "-e", model), 2)
    assert line == (
        f"error: {model}: input 100000x100000 is larger than any face recognizer's (at most 4096 px per side); "
        "check that this is a face recognizer"
    )


# -- 13. the extractor recorded in the database -----------------------------------------------------


def test_scan_refuses_vectors_made_by_another_extractor(tmp_path):
    vectors, labels, _ = clustered(20, 3, 128, noise=0.6)
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=labels, extractor=np.array("mobileface-128"))
    line = one_error_line(scan(tmp_path / "db.npz", tmp_path / "out"), 2)
    assert line == f"error: {tmp_path / 'db.npz'}: made by mobileface-128, not dlib-resnet128; run with --extractor mobileface-128"


# -- 16. a named pipe ----------------------------------------------------------------------------


def test_vectors_inspect_on_a_named_pipe_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.npy")
    completed = subprocess.run(
        [sys.executable, "-m", "fvr_audit", "vectors", "inspect", str(tmp_path / "pipe.npy")],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"error: {tmp_path / 'pipe.npy'}: not a regular file (a pipe, socket or device); give a .npy or .npz file"
    )


# -- 17. train --resume, --epochs help --------------------------------------------------------------


def test_train_resume_without_a_checkpoint_is_an_error(tmp_path):
    (tmp_path / "faces").mkdir()
    line = one_error_line(run("train", "naive", "--faces", tmp_path / "faces", "--work", tmp_path / "work", "--resume"), 2)
    assert line.startswith(f"error: {tmp_path / 'work'}: --resume, but there is no checkpoint.pt to resume from")


def test_train_help_states_the_epochs_a_run_uses():
    from fvr_audit.reconstructors.parametric.training import default_settings

    result = runner.invoke(app, ["train", "--help"])
    epochs = default_settings("naive").epochs
    assert f"Training epochs (default {epochs})." in " ".join(result.output.replace("│", " ").split())


# -- 18. usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["scan"], "error: fvr-audit scan: Missing argument 'vectors'. (see fvr-audit scan --help)"),
        (["scan", "x.npz", "--sample", "abc"], "error: fvr-audit scan: Invalid value for '--sample':"),
        (["scan", "x.npz", "--bogus"], "error: fvr-audit scan: No such option: --bogus"),
        (["train", "wrong"], "error: fvr-audit train: Invalid value for 'method':"),
        (["frobnicate"], "error: fvr-audit: No such command 'frobnicate'."),
    ],
)
def test_usage_errors_are_one_line(args, message):
    result = runner.invoke(app, args, prog_name="fvr-audit")
    line = one_error_line(result, 2)
    assert line.startswith(message)
    assert "╭" not in result.output


# -- 19. fvr-audit models on a tampered file ----------------------------------------------------------


def test_models_reports_an_altered_file_and_exits_4(tmp_path, monkeypatch):
    from fvr_audit.model_store import register_model

    (tmp_path / "basis.npz").write_bytes(b"original")
    register_model("basis.npz", kind="basis", source="test", license="test", script="test", directory=tmp_path)
    monkeypatch.setenv("FVR_AUDIT_MODELS", str(tmp_path))
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["other_files"][0]["status"] == "ok"

    (tmp_path / "basis.npz").write_bytes(b"tampered")
    result = run("models", "--json")
    assert json.loads(result.stdout)["other_files"][0]["status"] == "altered"
    line = one_error_line(result, 4)
    assert line == f"error: {tmp_path / 'basis.npz'}: sha256 differs from its manifest; reinstall or rebuild it"
