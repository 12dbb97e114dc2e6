"""Large databases: checked and sampled in bounded memory, with progress; targets drawn as before."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fvr_audit.cli.app import app
from fvr_audit.vectors import database
from fvr_audit.vectors.checks import row_blocks
from fvr_audit.vectors.npyfile import take_rows
from fvr_audit.vectors.sampling import counts_in, one_row_per_identity, sample_rows

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_unit_vectors(path: Path, rows: int, dim: int, seed: int = 0, block: int = 16384) -> None:
    """A float32 .npy written block by block (the test process never holds it whole)."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, block):
            vectors = rng.standard_normal((min(block, rows - start), dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            handle.write(vectors.tobytes())


# --------------------------------------------------------------------------- target draws


def targets_drawn_one_identity_at_a_time(labels: np.ndarray, eligible: np.ndarray, sample: int, seed: int) -> list[int]:
    """The scan's draw as it was written before sampling.py (a pass over all labels per identity)."""
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(eligible)
    identities = np.unique(labels[candidates])
    chosen = rng.permutation(identities)[:sample]
    rows = [int(rng.choice(candidates[labels[candidates] == name])) for name in chosen]
    return sorted(rows)


@pytest.mark.parametrize("seed", range(30))
def test_one_row_per_identity_draws_what_the_scan_drew(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 400))
    labels = rng.integers(0, int(rng.integers(1, 60)), size=n).astype(str)
    eligible = rng.random(n) < rng.uniform(0.05, 1.0)
    sample = int(rng.integers(0, 80))
    expected = targets_drawn_one_identity_at_a_time(labels, eligible, sample, seed)
    drawn = one_row_per_identity(labels, eligible, sample, seed)
    assert drawn.tolist() == expected
    assert drawn.dtype == np.int64
    assert len(set(labels[drawn])) == len(drawn)  # one row per identity


@pytest.mark.parametrize(("n", "sample", "seed"), [(1, 1, 0), (100, 7, 3), (1000, 1000, 5), (50, 80, 9)])
def test_sample_rows_is_a_seeded_uniform_draw_in_row_order(n: int, sample: int, seed: int) -> None:
    rows = sample_rows(n, sample, seed)
    assert rows.tolist() == sorted(np.random.default_rng(seed).permutation(n)[:sample].tolist())
    assert len(set(rows.tolist())) == len(rows) == min(n, sample)
    assert np.array_equal(sample_rows(n, sample, seed), rows)


def test_counts_in_matches_a_dictionary_lookup() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 40, size=500).astype(str)
    gallery = rng.integers(10, 60, size=300).astype(str)
    names, counts = np.unique(gallery, return_counts=True)
    count_of = dict(zip(names.tolist(), counts.tolist()))
    assert counts_in(labels, gallery).tolist() == [count_of.get(label, 0) for label in labels]
    assert counts_in(labels, np.array([], str)).tolist() == [0] * 500


# --------------------------------------------------------------------------- bounded memory

#: Run in a fresh interpreter: the peak resident set (VmHWM) grown by one operation on the database.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from fvr_audit.vectors import load_vectors
    from fvr_audit.vectors.inspect import summarize
    from fvr_audit.vectors.npyfile import take_rows
    from fvr_audit.vectors.sampling import sample_rows

    def peak_kb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    path, mode = sys.argv[1], sys.argv[2]
    before = peak_kb()
    db = load_vectors(path)
    if mode == "inspect-and-sample":
        summary = summarize(db)
        targets = take_rows(db.vectors, sample_rows(db.n, 1000, seed=0))
        assert summary["count"] == db.n and targets.shape == (1000, db.dim)
    else:  # "full-copy": the control, what the checks must not do
        whole = np.array(db.vectors)
    print(json.dumps({"growth_bytes": (peak_kb() - before) * 1024, "storage": db.storage}))
    """
)


def peak_growth(path: Path, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures VmHWM in /proc (Linux)")
def test_large_database_is_checked_and_sampled_without_loading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "db.npy"
    write_unit_vectors(path, 300_000, 128)  # 154 MB
    size = path.stat().st_size
    bounded = peak_growth(path, "inspect-and-sample")
    copied = peak_growth(path, "full-copy")
    assert bounded["storage"] == "memory-mapped"
    # The control shows the measure sees a copy (and the mapped pages it faults in) ...
    assert copied["growth_bytes"] > 0.9 * size, copied
    # ... and the checks, summary and draw stay far below it: per-row norms and hashes, not rows.
    assert bounded["growth_bytes"] < size / 4, f"peak grew by {bounded['growth_bytes']} bytes for a {size}-byte file"


def test_row_blocks_releases_the_pages_it_has_passed(tmp_path: Path) -> None:
    path = tmp_path / "db.npy"
    write_unit_vectors(path, 32768, 256)  # 32 MB
    mapped = np.load(path, mmap_mode="r")
    seen, resident = [], []
    for start, block in row_blocks(mapped, 1000, on_rows=seen.append):
        assert np.array_equal(block, mapped[start : start + len(block)])
        resident.append(_resident_bytes(mapped))
    assert seen == [1000] * 32 + [768]
    if resident[0] is None:
        pytest.skip("no /proc/self/smaps: resident pages cannot be counted")
    # The kernel maps pages ahead of a read (up to 2 MB folios), but what stays resident is a few
    # blocks' worth, not the part of the file already passed.
    assert max(resident) < mapped.nbytes / 4, resident


@pytest.mark.parametrize("compressed", [False, True])
def test_take_rows_reads_scattered_rows_without_mapping_them(tmp_path: Path, compressed: bool) -> None:
    vectors = np.random.default_rng(0).standard_normal((20000, 64)).astype(np.float32)
    (np.savez_compressed if compressed else np.savez)(tmp_path / "db.npz", vectors=vectors)
    db = database.load_vectors(tmp_path / "db.npz", check=False)
    assert db.is_memory_mapped is not compressed  # in place in the zip, or in memory
    rows = np.random.default_rng(1).choice(20000, size=300, replace=False)
    before = _resident_bytes(db.vectors) if db.is_memory_mapped else None
    taken = take_rows(db.vectors, rows)
    assert taken.dtype == np.float32 and np.array_equal(taken, vectors[rows])
    assert np.array_equal(take_rows(db.vectors[100:], [0, 5]), vectors[[100, 105]])
    if before is not None:
        assert _resident_bytes(db.vectors) == before  # nothing was faulted in through the map
    with pytest.raises(IndexError, match="20000 is out of bounds"):
        take_rows(db.vectors, [3, 20000])


def _resident_bytes(mapped: np.memmap) -> int | None:
    """Bytes of ``mapped``'s file mapping resident in this process (from /proc/self/smaps), or None."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    target = str(Path(mapped.filename).resolve())
    lines = smaps.read_text().splitlines()
    total = None
    for index, line in enumerate(lines):
        if line.endswith(" " + target):
            for detail in lines[index + 1 : index + 30]:
                if detail.startswith("Rss:"):
                    total = (total or 0) + int(detail.split()[1]) * 1024
                    break
    return total


# --------------------------------------------------------------------------- progress


def test_inspect_shows_progress_on_stderr_for_a_large_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a folder with a long name" / "db.npy"
    path.parent.mkdir()
    write_unit_vectors(path, 3000, 64)
    monkeypatch.setattr(database, "PROGRESS_FROM_BYTES", 1)  # "large" for the test: any database
    result = CliRunner().invoke(app, ["vectors", "inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 3000  # stdout holds only the JSON
    lines = result.stderr.splitlines()
    assert lines[0] == f"check the rows of {path}: started, 3000 to do"
    assert lines[-1].startswith(f"check the rows of {path}: 3000/3000 done in ")

    quiet = CliRunner().invoke(app, ["vectors", "inspect", str(path), "--json", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_small_databases_show_no_progress(tmp_path: Path) -> None:
    path = tmp_path / "db.npy"
    write_unit_vectors(path, 100, 8)
    result = CliRunner().invoke(app, ["vectors", "inspect", str(path)])
    assert result.exit_code == 0 and result.stderr == ""


def test_conversion_is_a_phase_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db.npy"
    np.save(path, np.random.default_rng(0).standard_normal((500, 16)))  # float64: converted first
    monkeypatch.setattr(database, "PROGRESS_FROM_BYTES", 1)
    phases: dict[str, int] = {}

    def progress(description: str, total: int):
        phases[description] = 0

        def advance(count: int) -> None:
            phases[description] += count
            assert phases[description] <= total

        return advance

    database.load_vectors(path, progress=progress)
    assert phases == {f"convert {path} to float32": 500, f"check the rows of {path}": 500}


# --------------------------------------------------------------------------- the README's precision table


def test_readme_precision_table_is_what_wilson_interval_gives() -> None:
    from fvr_audit.metrics.topk import wilson_interval

    text = (REPO_ROOT / "README.md").read_text()
    table = text.split("<!-- precision-table:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    header, rows = table[0], table[2:]
    shares = [float(cell.split("=")[1]) for cell in header.strip("|").split("|")[1:]]
    assert shares == [0.1, 0.5, 0.9]
    assert [int(row.split("|")[1]) for row in rows] == [20, 50, 100, 200, 500, 1000, 2000]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        targets = int(cells[0])
        for share, cell in zip(shares, cells[1:], strict=True):
            low, high = wilson_interval(share * targets, targets)
            assert cell == f"{high - low:.3f} ({low:.3f}-{high:.3f})", (targets, share)
