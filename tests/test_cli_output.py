"""Output that reads in a CI log: tables never wrap or cut a name, progress prints plain timed lines,
scan writes a Markdown summary and JUnit XML, and ``python -m fvr_audit.cli.app`` works.

Commands run with stdout and stderr redirected to files (subprocess) or captured (CliRunner): that
is how a CI job sees them, and where rich used to fold tables at 80 columns.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from fvr_audit.cli import progress as progress_module
from fvr_audit.cli.app import app
from fvr_audit.cli.ci_summary import GateOutcome, gate_checks, junit_xml, summary_markdown, summary_table
from fvr_audit.cli.console import Align, Column, TextTable, print_table
from fvr_audit.cli.progress import LineReporter, progress_reporter

# Helpers that live next to this file; pytest's importlib mode does not put tests/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_results import sample_results  # noqa: E402
from test_scan import clustered, write_two_engine_databases  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run_redirected(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run ``python -m fvr_audit ARGS`` with stdout and stderr going to files, as in a CI job."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("COLUMNS", None)
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.run(
            [sys.executable, "-m", "fvr_audit", *args], stdout=stdout, stderr=stderr, cwd=tmp_path, env=env, timeout=600
        ).returncode
    return code, out.read_text(), err.read_text()


def line_with(text: str, pattern: str) -> str:
    """The one line matching ``pattern`` (a regex over a whole row); fails when it is not there."""
    found = [line for line in text.splitlines() if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r} in:\n{text}"
    return found[0]


# ---- tables ---------------------------------------------------------------------------------


def test_extractors_table_keeps_every_name_on_one_line_when_redirected(tmp_path):
    from fvr_audit.extractors.registry import list_builtin_extractors

    code, stdout, _ = run_redirected(tmp_path, "extractors")
    assert code == 0
    assert "…" not in stdout and "┃" not in stdout  # plain text, nothing cut
    for info in list_builtin_extractors():
        line = line_with(stdout, rf"^{re.escape(info.name)}\s+{info.dim}\s")
        assert info.source in line and info.license in line


def test_models_tables_keep_every_file_name_on_one_line_when_redirected(tmp_path):
    from fvr_audit.model_store import load_manifest, models_dir

    code, stdout, _ = run_redirected(tmp_path, "models")
    assert code == 0
    assert "…" not in stdout
    for entry in load_manifest(models_dir()).values():
        if entry.kind == "reconstructor":
            line = line_with(stdout, rf"\s{re.escape(Path(entry.file).name)}\s")
            assert entry.sha256[:16] in line and line.endswith(" ok")
        else:
            line_with(stdout, rf"^{re.escape(entry.file)}\s+{re.escape(entry.kind)}\s.*{entry.sha256[:16]}\s+ok$")


def test_vectors_inspect_keeps_a_long_path_and_values_on_one_line(tmp_path):
    folder = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 2)
    folder.mkdir()
    vectors, labels, paths = clustered(5, 2, 128, 0.5)
    np.savez(folder / "db.npz", vectors=vectors, labels=labels, paths=paths)
    code, stdout, _ = run_redirected(tmp_path, "vectors", "inspect", str(folder / "db.npz"))
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == str(folder / "db.npz")
    line_with(stdout, r"^vectors\s+10 x 128 float32 \(npz\)$")
    line_with(stdout, r"^L2 norms\s+min .*, median .*, max .*; normalised: yes$")


def test_extract_outcome_table_is_plain_in_a_log(tmp_path):
    from test_extract import make_tree

    make_tree(tmp_path / "faces", identities=2, per_identity=2)
    result = runner.invoke(app, ["extract", str(tmp_path / "faces"), "-o", str(tmp_path / "db.npz"), "--aligned"])
    assert result.exit_code == 0, result.output
    line_with(result.stderr, rf"^{re.escape(str(tmp_path / 'faces'))}: 4 images in [\d.]+ s$")
    line_with(result.stderr, r"^pre-aligned\s+4$")
    assert "│" not in result.stderr


def test_demo_summary_table_keeps_method_and_engine_names_whole_in_a_log():
    # What the demo (and scan) print after the run: rich used to print `eigenf…`, `local…`, `no-ma…`.
    results = _gated(sample_results(12))
    buffer = io.StringIO()
    print_table(summary_table(results), Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "…" not in text
    header = line_with(text, r"^method\s+engine\s+N\s+tpr\s+95% CI\s+fpr\s+no-match\s+chance\s+SAR@FMR0.001$")
    assert header
    for method in ("eigenfaces", "gradient", "original", "random"):
        for engine in ("local:dlib-resnet128", "local:faceres-1024"):
            line_with(text, rf"^{method}\s+{re.escape(engine)}\s+1000\s+\d\.\d{{3}}\s")


def test_a_terminal_gets_a_rich_table_when_it_fits_and_field_lines_when_it_does_not():
    table = TextTable.build(
        "Built-in", ("name", Column("dim", Align.RIGHT), "source"),
        [("dlib-resnet128", "128", "a [bold]source[/bold] with brackets"), ("x", "1024", "s")],
    )
    wide = io.StringIO()
    print_table(table, Console(file=wide, force_terminal=True, width=120, color_system=None))
    assert "┃ name" in wide.getvalue()
    line_with(wide.getvalue(), r"│ dlib-resnet128 │  128 │ a \[bold\]source\[/bold\] with brackets │")
    narrow = io.StringIO()
    print_table(table, Console(file=narrow, force_terminal=True, width=30, color_system=None))
    assert narrow.getvalue().splitlines()[:5] == [
        "Built-in", "name: dlib-resnet128", "dim: 128", "source: a [bold]source[/bold] with brackets", ""
    ]
    assert "…" not in narrow.getvalue()


def test_plain_table_aligns_columns_and_markdown_escapes_pipes():
    table = TextTable.build("T", ("name", Column("n", Align.RIGHT)), [("a|b", "5"), ("long-name", "1000")])
    assert table.plain_lines() == ["T", "name          n", "a|b           5", "long-name  1000"]
    assert table.markdown().splitlines() == ["| name | n |", "| --- | ---: |", "| a\\|b | 5 |", "| long-name | 1000 |"]
    with pytest.raises(ValueError):
        TextTable.build("T", ("a", "b"), [("only one",)])


# ---- progress -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_start_every_interval_and_done():
    lines: list[str] = []
    clock = FakeClock()
    reporter = LineReporter(lines.append, interval_s=30, clock=clock)
    advance = reporter.phase("reconstruct: eigenfaces", 10)
    assert lines == ["reconstruct: eigenfaces: started, 10 to do"]
    clock.now += 10
    advance()
    advance(2)
    assert len(lines) == 1  # not yet 30 s since the last line
    clock.now += 20
    advance()
    assert lines[-1] == "reconstruct: eigenfaces: 4/10 (40%), elapsed 0:00:30, ETA 0:00:45"
    clock.now += 29
    advance()
    assert len(lines) == 2
    clock.now += 1
    advance.update(completed=6, note="loss 0.5")
    assert lines[-1] == "reconstruct: eigenfaces: 6/10 (60%), elapsed 0:01:00, ETA 0:00:40; loss 0.5"
    clock.now += 5
    advance(4)
    assert lines[-1] == "reconstruct: eigenfaces: 10/10 done in 0:01:05; loss 0.5"
    advance()  # a stray step after the end prints nothing
    assert len(lines) == 4
    reporter.log("epoch 1: loss 0.4")
    assert lines[-1] == "epoch 1: loss 0.4"


def test_a_phase_without_steps_still_prints_every_interval():
    # a phase may report no step for minutes (a slow first unit): the heartbeat keeps the log alive.
    lines: list[str] = []
    clock = FakeClock()
    reporter = LineReporter(lines.append, interval_s=30, clock=clock)
    reporter.phase("reconstruct: eigenfaces", 60)
    clock.now += 29
    reporter.tick()
    assert len(lines) == 1
    clock.now += 1
    reporter.tick()
    reporter.tick()
    assert lines[1:] == ["reconstruct: eigenfaces: 0/60 (0%), elapsed 0:00:30, ETA unknown"]


def test_fractional_steps_give_a_share_and_an_eta_before_the_first_target_is_done():
    # query-driven attacks report fractions of their targets per iteration (WorkShare)
    lines: list[str] = []
    clock = FakeClock()
    reporter = LineReporter(lines.append, interval_s=30, clock=clock)
    advance = reporter.phase("reconstruct: eigenfaces", 12)
    for _ in range(3):
        advance(12 / 50)
    clock.now += 30
    reporter.tick()
    assert lines[-1] == "reconstruct: eigenfaces: 0/12 (6%), elapsed 0:00:30, ETA 0:07:50"
    for _ in range(47):
        advance(12 / 50)
    assert lines[-1].startswith("reconstruct: eigenfaces: 12/12 done in")


def test_progress_reporter_picks_lines_outside_a_terminal_bars_inside_and_nothing_when_quiet():
    log = io.StringIO()
    with progress_reporter(console=Console(file=log), interval_s=0.05) as reporter:
        advance = reporter.phase("embed gallery", 3)
        time.sleep(0.5)  # no step: the heartbeat thread prints the periodic line
        advance(3)
    lines = log.getvalue().splitlines()
    assert lines[0] == "embed gallery: started, 3 to do"
    assert re.fullmatch(r"embed gallery: 0/3 \(0%\), elapsed 0:00:0\d, ETA unknown", lines[1])
    assert re.fullmatch(r"embed gallery: 3/3 done in 0:00:0\d", lines[-1])
    time.sleep(0.2)
    assert log.getvalue().splitlines() == lines  # the heartbeat stopped with the block
    terminal = io.StringIO()
    with progress_reporter(console=Console(file=terminal, force_terminal=True, width=100)) as reporter:
        reporter.phase("embed gallery", 3)(3)
    assert "━" in terminal.getvalue() and "started" not in terminal.getvalue()
    quiet = io.StringIO()
    with progress_reporter(quiet=True, console=Console(file=quiet)) as reporter:
        reporter.phase("embed gallery", 3)(3)
        reporter.log("hidden")
    assert quiet.getvalue() == ""


def test_reconstruct_prints_timed_progress_lines_in_a_log(tmp_path, monkeypatch):
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.0)
    vectors, _, _ = clustered(3, 1, 128, 0.1)
    np.save(tmp_path / "v.npy", vectors)
    result = runner.invoke(
        app, ["reconstruct", str(tmp_path / "v.npy"), "-m", "naive", "-o", str(tmp_path / "out"), "--chunk", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "reconstruct: started, 3 to do" in result.stderr.splitlines()
    line_with(result.stderr, r"^reconstruct: [12]/3 \(\d+%\), elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$")
    line_with(result.stderr, r"^reconstruct: 3/3 done in \d:\d\d:\d\d$")


# ---- scan --summary-md / --junit ------------------------------------------------------------


@pytest.fixture(scope="module")
def gated_scan(tmp_path_factory):
    """One real scan (the shipped naive generator, two engines) gated at 0: the gate fails."""
    folder = write_two_engine_databases(tmp_path_factory.mktemp("gated"))
    code, stdout, stderr = run_redirected(
        folder, "scan", "db.npz", "--methods", "naive", "--sample", "20", "--n", "50,100,300", "--no-pdf",
        "--gallery", "local:faceres-1024=faceres.npz", "-o", "out", "--fail-on-tpr", "0",
        "--summary-md", "ci/summary.md", "--junit", "ci/junit.xml",
    )
    return folder, code, stdout, stderr


def test_scan_log_has_progress_lines_and_a_whole_summary_table(gated_scan):
    folder, code, stdout, stderr = gated_scan
    assert code == 1, stderr  # naive beats a gate of 0
    assert stdout == ""
    for phase, total in (("reconstruct: naive", 20), ("re-identify: local:dlib-resnet128", 3), ("re-identify: local:faceres-1024", 3)):
        assert f"{phase}: started, {total} to do" in stderr.splitlines()
        line_with(stderr, rf"^{re.escape(phase)}: {total}/{total} done in \d:\d\d:\d\d$")
    results = json.loads((folder / "out" / "results.json").read_text())
    for record in results["records"]:
        if record["k"] == 1 and record["n"] == 300:
            line_with(stderr, rf"^{record['method']}\s+{re.escape(record['engine'])}\s+300\s+{record['tpr']:.3f}\s")
    assert "…" not in stderr and "│" not in stderr
    line_with(stderr, r"^fail-on-tpr: naive under (local|system):")


def test_scan_junit_has_one_testcase_per_attack_and_engine(gated_scan):
    folder, _, _, _ = gated_scan
    path = folder / "ci" / "junit.xml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert sorted(case.get("name") for case in cases) == [
        "naive under local:dlib-resnet128 at K=1, N=300",
        "naive under local:faceres-1024 at K=1, N=300",
        "naive under system:dlib-resnet128 at K=1, N=300",
    ]
    results = json.loads((folder / "out" / "results.json").read_text())
    for case in cases:
        engine = case.get("classname").removeprefix("fvr-audit.")
        record = next(
            r for r in results["records"] if (r["method"], r["engine"], r["k"], r["n"]) == ("naive", engine, 1, 300)
        )
        failure = case.find("failure")
        if record["tpr"] > 0:
            assert failure is not None and failure.get("type") == "RiskAboveThreshold"
            assert failure.get("message") == (
                f"tpr {record['tpr']:.3f} (95% CI {record['tpr_ci'][0]:.3f}-{record['tpr_ci'][1]:.3f}) "
                "at K=1, N=300 exceeds 0"
            )
        else:
            assert failure is None
    assert int(suite.get("failures")) == sum(case.find("failure") is not None for case in cases) >= 1
    assert int(suite.get("tests")) == 3
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["verdict"] == results["verdict"]["level"] and properties["fail_on_tpr"] == "0"


def test_scan_summary_markdown_has_the_verdict_gate_and_table(gated_scan):
    folder, _, _, _ = gated_scan
    path = folder / "ci" / "summary.md"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    results = json.loads((folder / "out" / "results.json").read_text())
    level = results["verdict"]["level"].upper()
    assert text.startswith(f"## fvr-audit: re-identification risk {level}\n")
    assert f"**Verdict: {level}.** {results['verdict']['rule']}" in text
    assert "**CI gate (`--fail-on-tpr 0`): FAILED**" in text
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == ["method", "engine", "N", "tpr", "95% CI", "fpr", "no-match", "chance", "SAR@FMR0.001"]
    table = {(row[0], row[1]): row for row in rows[2:]}
    expected = {
        (r["method"], r["engine"]): f"{r['tpr']:.3f}" for r in results["records"] if r["k"] == 1 and r["n"] == 300
    }
    assert {key: row[3] for key, row in table.items()} == expected


def test_junit_marks_gates_that_measured_nothing_or_are_excluded():
    results = _gated(sample_results(12))
    # gradient used faceres-1024's model (so that engine may not judge it); eigenfaces under faceres lost its figures.
    methods = tuple(
        dataclasses.replace(m, models_used=("faceres-1024",)) if m.name == "gradient" else m for m in results.methods
    )
    records = tuple(r for r in results.records if not (r.method == "gradient" and r.engine == "local:faceres-1024"))
    records = tuple(r for r in records if not (r.method == "eigenfaces" and r.engine == "local:faceres-1024"))
    results = dataclasses.replace(results, methods=methods, records=records)
    outcomes = {(c.method, c.engine): c.outcome for c in gate_checks(results, 0.99)}
    assert outcomes == {
        ("eigenfaces", "local:dlib-resnet128"): GateOutcome.PASSED,
        ("eigenfaces", "local:faceres-1024"): GateOutcome.NOT_MEASURED,
        ("gradient", "local:dlib-resnet128"): GateOutcome.PASSED,
        ("gradient", "local:faceres-1024"): GateOutcome.EXCLUDED,
    }
    suite = ET.fromstring(junit_xml(results, 0.99)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    missing = cases["eigenfaces under local:faceres-1024 at K=1, N=1000"].find("failure")
    assert missing.get("type") == "NothingMeasured"
    assert cases["gradient under local:faceres-1024 at K=1, N=1000"].find("skipped") is not None
    assert "FAILED**: 1 of 3 gates failed" in summary_markdown(results, limit=0.99)


def test_no_attack_is_one_failing_gate(database_no_attack):
    path, result = database_no_attack
    assert result.exit_code in (0, 1), result.output  # the exit code is the gate's (issue 10, defect 1)
    suite = ET.parse(path).getroot().find("testsuite")
    (case,) = suite.findall("testcase")
    assert case.find("failure").get("type") == "NothingMeasured"
    assert case.find("failure").get("message") == "no reconstruction attack ran, so the gate measured nothing"


@pytest.fixture
def database_no_attack(tmp_path):
    vectors, labels, paths = clustered(60, 3, 128, noise=0.6)
    np.savez(tmp_path / "db.npz", vectors=vectors, labels=labels, paths=paths)
    path = tmp_path / "junit.xml"
    result = runner.invoke(
        app,
        [
            "scan", str(tmp_path / "db.npz"), "--engine", "local:dlib-resnet128", "--methods", "", "--sample", "20",
            "--n", "50", "--no-pdf", "-q", "-o", str(tmp_path / "out"), "--fail-on-tpr", "0.5", "--junit", str(path),
        ],
    )
    return path, result


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--junit", "{tmp}/j.xml"], "error: --junit {tmp}/j.xml: needs --fail-on-tpr, the tpr each gate is tested against"),
        (["--summary-md", "{tmp}"], "error: {tmp}: is a folder; give a file name"),
        (["--fail-on-tpr", "0.5", "--junit", "{tmp}/plain.txt/j.xml"], "error: {tmp}/plain.txt/j.xml: {tmp}/plain.txt is not a folder"),
        (["--summary-md", "/proc/fvr-audit-summary.md"], "error: /proc/fvr-audit-summary.md: cannot write there"),
    ],
)
def test_unwritable_ci_outputs_fail_before_the_scan(tmp_path, extra, message):
    (tmp_path / "plain.txt").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = runner.invoke(app, ["scan", str(tmp_path / "missing.npz"), "-q", "-o", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    # the CI outputs are checked before the database is even read (missing.npz is never reached)
    assert result.stderr.strip().startswith(message.replace("{tmp}", str(tmp_path))), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_demo_checks_its_summary_file_before_the_run(tmp_path):
    result = runner.invoke(app, ["demo", "-o", str(tmp_path / "demo"), "--summary-md", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path}: is a folder; give a file name"
    assert not (tmp_path / "demo").exists()


# ---- python -m fvr_audit.cli.app ------------------------------------------------------------


def test_python_m_cli_app_runs_the_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for module in ("fvr_audit.cli.app", "fvr_audit"):
        version = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=env)
        assert version.returncode == 0 and version.stdout.startswith("fvr-audit "), (module, version)
    bad = subprocess.run([sys.executable, "-m", "fvr_audit.cli.app", "no-such-command"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2


def _gated(results):
    """sample_results with the settings scan records (fmr, gate N)."""
    return dataclasses.replace(results, settings={**results.settings, "fmr": 1e-3, "gate_n": 1000})


def test_messages_are_not_wrapped_in_a_log():
    from fvr_audit.cli.console import LogSafeConsole

    message = "note: " + " ".join(f"/a/long/path/segment-{i}" for i in range(12))
    log = io.StringIO()
    LogSafeConsole(file=log, width=80).print(f"[bold]{message}[/]")
    assert log.getvalue() == message + "\n"
    terminal = io.StringIO()
    LogSafeConsole(file=terminal, width=80, force_terminal=True, color_system=None).print(message)
    assert len(terminal.getvalue().splitlines()) > 1  # a terminal still wraps for reading
