"""Re-identification against queries: the black-box attack keeps earlier faces, the scan scores them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fvr_audit.audit.results import results_from_json
from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan
from fvr_audit.extractors.registry import get_extractor
from fvr_audit.reconstructors.eigenfaces import checkpoint_iterations, create_eigenfaces
from fvr_audit.reconstructors.runner import load_checkpoints, load_reconstructions, reconstruct_to_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers next to this file (importlib mode)
from synthetic_databases import write_two_engine_databases

SMALL = {"iterations": 8, "batch": 16, "plateau_iterations": 0}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return write_two_engine_databases(tmp_path_factory.mktemp("db"))


def test_checkpoints_are_the_faces_held_after_fewer_queries():
    dlib = get_extractor("dlib-resnet128")
    rng = np.random.default_rng(3)
    targets = rng.normal(size=(2, 128)).astype(np.float32)
    attack = create_eigenfaces(**SMALL)
    result = attack.reconstruct(targets, dlib, target_seeds=[11, 12])
    assert [c.queries for c in result.checkpoints] == [16, 32, 64]
    assert all(c.images.shape == result.images.shape and c.images.dtype == np.uint8 for c in result.checkpoints)
    # the earliest face differs from the answer (the search moved), and the run with fewer
    # iterations ends on the same face as the checkpoint it corresponds to (same draws)
    assert not np.array_equal(result.checkpoints[0].images, result.images)
    shorter = create_eigenfaces(**{**SMALL, "iterations": 4, "step_final": attack.settings.step_final}).reconstruct(
        targets, dlib, target_seeds=[11, 12]
    )
    assert shorter.queries.tolist() == [65, 65]
    assert create_eigenfaces(**SMALL, checkpoints=0).reconstruct(targets, dlib, target_seeds=[11, 12]).checkpoints == ()


def test_checkpoint_iterations_skip_the_answer_and_duplicates():
    assert sorted(checkpoint_iterations(3, 4)) == [1]
    assert checkpoint_iterations(1, 4) == set()


def test_the_folder_keeps_checkpoints_and_resumes_with_them(tmp_path):
    dlib = get_extractor("dlib-resnet128")
    targets = np.random.default_rng(4).normal(size=(3, 128)).astype(np.float32)
    folder = tmp_path / "eig"
    reconstruct_to_folder(targets, dlib, create_eigenfaces(**SMALL), folder, chunk_size=2, limit=2)
    reconstruct_to_folder(targets, dlib, create_eigenfaces(**SMALL), folder, chunk_size=2)
    manifest, images = load_reconstructions(folder)
    earlier = load_checkpoints(folder, manifest)
    assert sorted(earlier) == [16, 32, 64] and all(v.shape == images.shape for v in earlier.values())
    assert sorted(p.name for p in (folder / "checkpoints").iterdir())[:3] == [
        "00000-q000016.png", "00000-q000032.png", "00000-q000064.png"
    ]
    # a manifest pointing a checkpoint outside its folder is refused
    manifest["targets"][0]["checkpoints"][0][1] = "../../etc/passwd"
    with pytest.raises(Exception, match="outside checkpoints"):
        load_checkpoints(folder, manifest)


def test_scan_reports_reidentification_against_queries(database):
    outcome = run_scan(
        database / "db.npz",
        get_extractor("dlib-resnet128"),
        ScanSettings(sample=12, ns=(50, 300), methods=("eigenfaces",), method_settings={"eigenfaces": SMALL},
                     engines=("local:dlib-resnet128", "local:faceres-1024"), draws=3),
        GallerySources(files={"local:faceres-1024": database / "faceres.npz"},
                       originals={"local:faceres-1024": database / "faceres.npz"}),
    )
    results = outcome.results
    for engine in ("local:dlib-resnet128", "local:faceres-1024"):
        points = [p for p in results.query_curve if p.engine == engine]
        assert [p.queries for p in points] == [16, 32, 64, 129]
        assert [p.final for p in points] == [False, False, False, True]
        assert {(p.method, p.k, p.n) for p in points} == {("eigenfaces", 1, 300)}
        record = results.record("eigenfaces", engine, 1, 300)
        assert points[-1].tpr == record.tpr  # the curve ends on the table's figure (same N-subsets)
    again = results_from_json(json.loads(results.to_json()))
    assert again.to_json_dict()["query_curve"] == results.to_json_dict()["query_curve"]
    assert len(again.query_curve) == 12  # two engines and the deployed system


def test_a_plain_vector_file_gets_the_systems_curve(tmp_path):
    # no labels, no engines: the deployed system (F against every row) is the only judge, and it
    # draws the curve too, ending on its table figure
    from synthetic_databases import clustered

    vectors, _, _ = clustered(60, 1, 128, noise=0.1)
    np.save(tmp_path / "plain.npy", vectors)
    dlib = get_extractor("dlib-resnet128")
    results = run_scan(tmp_path / "plain.npy", dlib,
                       ScanSettings(sample=6, ns=(50,), methods=("eigenfaces",), method_settings={"eigenfaces": SMALL},
                                    engines=()),).results
    points = results.query_curve
    assert [p.queries for p in points] == [16, 32, 64, 129] and {p.engine for p in points} == {"system:dlib-resnet128"}
    record = results.record("eigenfaces", "system:dlib-resnet128", 1, 50)
    assert points[-1].final and points[-1].tpr == record.tpr
