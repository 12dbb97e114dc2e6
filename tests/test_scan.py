"""``fvr-audit scan`` on synthetic vector databases (no face data needed) and on LFW when present."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan
from fvr_audit.cli.app import app
from fvr_audit.extractors.registry import get_extractor

# Helpers that live next to this file; pytest's importlib mode does not put tests/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_databases import clustered, write_two_engine_databases  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return write_two_engine_databases(tmp_path_factory.mktemp("db"))


def scan_args(database, tmp_path, *extra):
    return [
        "scan", str(database / "db.npz"), "-o", str(tmp_path / "out"), "--engine", "local:dlib-resnet128",
        "--methods", "", "--sample", "40", "--n", "50,100,300", "--no-pdf", "--quiet", *extra,
    ]


def test_reference_rows_bracket_the_figures(database):
    outcome = run_scan(
        database / "db.npz",
        get_extractor("dlib-resnet128"),
        ScanSettings(sample=60, ns=(50, 300), methods=(), engines=("local:dlib-resnet128", "local:faceres-1024"), draws=3),
        GallerySources(files={"local:faceres-1024": database / "faceres.npz"}, originals={"local:faceres-1024": database / "faceres.npz"}),
    )
    results = outcome.results
    assert len(results.targets) == 60 and len({t.label for t in results.targets}) == 60
    for engine in ("local:dlib-resnet128", "local:faceres-1024"):
        original = results.record("original", engine, 1, 300)
        random = results.record("random", engine, 25, 300)
        assert original.tpr > 0.9
        assert random.tpr_ci[0] <= random.baseline <= random.tpr_ci[1]
        for record in results.records:
            assert record.tpr + record.fpr + record.no_match == pytest.approx(1.0)
    engines = {e.name: e for e in results.engines}
    assert engines["local:dlib-resnet128"].is_f and "held out" in engines["local:dlib-resnet128"].gallery_source
    # the target's own vector was held out: 300 identities x 3 minus the 60 targets
    assert engines["local:dlib-resnet128"].gallery_vectors == 900 - 60
    assert engines["local:faceres-1024"].gallery_vectors == 900 - 60  # matched by path
    assert results.verdict.level.value == "not-assessed"
    json.loads(results.to_json())


def test_cli_writes_private_results_and_json(database, tmp_path):
    result = runner.invoke(app, scan_args(database, tmp_path, "--json"))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["schema"] == "fvr-audit/results" and printed["schema_version"] == 2
    written = tmp_path / "out" / "results.json"
    assert json.loads(written.read_text()) == printed
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    methods = {r["method"] for r in printed["records"]}
    assert methods == {"original", "random"}
    assert {"method", "engine", "k", "n", "tpr", "fpr", "no_match", "tpr_ci", "baseline"} <= set(printed["records"][0])


@pytest.mark.parametrize("limit", [0.999, 0.5])
def test_fail_on_tpr_ignores_reference_rows(database, tmp_path, limit):
    # original (tpr ~1) and random rows never trip the gate: only attacks do (naive barely beats chance here).
    result = runner.invoke(app, scan_args(database, tmp_path, "--methods", "naive", "--fail-on-tpr", str(limit)))
    assert result.exit_code == 0, result.output


def test_fail_on_tpr_fails_when_no_attack_was_measured(database, tmp_path):
    # Issue 10, defect 1: an empty --methods measured nothing; a gate that measured nothing must fail.
    result = runner.invoke(app, scan_args(database, tmp_path, "--fail-on-tpr", "0.999"))
    assert result.exit_code == 1, result.output
    assert "fail-on-tpr: no reconstruction attack was measured at K=1, N=300" in result.stderr


def test_fail_on_tpr_rejects_a_non_rate(database, tmp_path):
    result = runner.invoke(app, scan_args(database, tmp_path, "--fail-on-tpr", "2"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --fail-on-tpr 2.0: must be a rate between 0 and 1"


def test_bad_inputs_get_clear_errors(database, tmp_path):
    vectors, labels, _ = clustered(20, 2, 128, 0.5)
    np.save(tmp_path / "nolabels.npy", vectors)
    gallery = f"local:dlib-resnet128={database / 'db.npz'}"
    result = runner.invoke(app, ["scan", str(tmp_path / "nolabels.npy"), "--gallery", gallery, "--methods", "", "-q", "--no-pdf", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'nolabels.npy'}: no 'labels' array, but --gallery was given: independent engines judge "
        "re-identification against each target's true identity, so the database needs labels (fvr-audit extract "
        "writes them); without --gallery the scan measures what the vectors alone allow"
    )

    np.savez(tmp_path / "wrongdim.npz", vectors=clustered(20, 2, 64, 0.5)[0], labels=labels)
    result = runner.invoke(app, ["scan", str(tmp_path / "wrongdim.npz"), "--methods", "", "-q", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "have dimension 64 but" in result.stderr and "128" in result.stderr

    one, one_labels, _ = clustered(1, 5, 128, 0.5)
    np.savez(tmp_path / "one.npz", vectors=one, labels=one_labels)
    result = runner.invoke(app, ["scan", str(tmp_path / "one.npz"), "--engine", "local:dlib-resnet128", "--methods", "", "-q", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "the gallery holds 1 identity; re-identification needs at least 2 enrolled identities"
    )

    small, small_labels, _ = clustered(10, 2, 128, 0.5)
    np.savez(tmp_path / "small.npz", vectors=small, labels=small_labels)
    result = runner.invoke(app, ["scan", str(tmp_path / "small.npz"), "--engine", "local:dlib-resnet128", "--methods", "", "-q", "-o", str(tmp_path / "o"), "--k", "1,25"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --k 25: exceeds the 10 identities enrolled in local:dlib-resnet128's gallery (the database's "
        "other vectors of each identity (each target's own vector held out)); lower --k or enlarge the gallery"
    )

    result = runner.invoke(app, scan_args(database, tmp_path, "--engine", "local:faceres-1024"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: local:faceres-1024: no gallery to enroll; give --gallery DIR (identity folders of photos) "
        "or --gallery local:faceres-1024=vectors.npz"
    )

    result = runner.invoke(app, scan_args(database, tmp_path, "--gallery", f"local:faceres-1024={database / 'db.npz'}", "--engine", "local:dlib-resnet128,local:faceres-1024"))
    assert result.exit_code == 2
    assert "have dimension 128" in result.stderr or "dimension" in result.stderr

    singletons, single_labels, _ = clustered(30, 1, 128, 0.5)
    np.savez(tmp_path / "single.npz", vectors=singletons, labels=single_labels)
    result = runner.invoke(app, ["scan", str(tmp_path / "single.npz"), "--engine", "local:dlib-resnet128", "--methods", "", "-q", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no target can be evaluated" in result.stderr
    assert not (tmp_path / "o").exists()  # nothing written on failure


def test_unknown_method_and_engine(database, tmp_path):
    result = runner.invoke(app, scan_args(database, tmp_path, "--methods", "magic"))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: magic: unknown reconstruction method; known: eigenfaces")
    result = runner.invoke(app, scan_args(database, tmp_path, "--engine", "gcp:vision"))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: gcp:vision: unknown engine; use local:<extractor")


@pytest.mark.shared_data
@pytest.mark.slow
def test_original_row_reaches_dlibs_ceiling_on_lfw(lfw_dir, tmp_path):
    """Issue acceptance: 'original' tpr@1 >= 0.85 and tpr@5 >= 0.93 under F' = dlib at N = 1000,
    and 'random' matches K/N within its interval. 100 held-out identities (all their photos) plus
    900 distractor identities (one photo each), embedded end to end with `fvr-audit extract`."""
    from fvr_audit.datasets.lfw import lfw_identities, lfw_split

    identities = lfw_identities(lfw_dir)
    rng = np.random.default_rng(5)
    held_out = sorted(rng.choice(lfw_split("eval"), size=100, replace=False).tolist())
    others = sorted(set(identities) - set(held_out))
    distractors = sorted(rng.choice(others, size=900, replace=False).tolist())
    tree = tmp_path / "faces"
    for name in held_out + distractors:
        (tree / name).mkdir(parents=True)
        for relative in identities[name] if name in held_out else identities[name][:1]:
            os.symlink(lfw_dir / relative, tree / relative)
    db = tmp_path / "db.npz"
    result = runner.invoke(app, ["extract", str(tree), "-o", str(db), "--no-face", "center", "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [
        "scan", str(db), "--engine", "local:dlib-resnet128", "--methods", "", "--k", "1,5,25",
        "--n", "1000", "--sample", "100", "--no-pdf", "-q", "--json", "-o", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    records = {(r["method"], r["k"]): r for r in json.loads(result.stdout)["records"] if r["n"] == 1000}
    print({key: round(r["tpr"], 3) for key, r in records.items()})
    assert records[("original", 1)]["tpr"] >= 0.85
    assert records[("original", 5)]["tpr"] >= 0.93
    for k in (1, 5, 25):
        random = records[("random", k)]
        assert random["tpr_ci"][0] <= k / 1000 <= random["tpr_ci"][1]
