"""Large databases: ``vectors inspect``, target sampling and gallery search by size; time and peak memory.

    python benchmarks/bench_scale.py                  # the README's "Large databases" figures (~15 min, 2 cores)
    python benchmarks/bench_scale.py --databases 10000x128,100000x128 --galleries 10000 --output /tmp/x.json

Databases (``--databases ROWSxDIM,...``; default 1e4, 1e5, 1e6 and 1e7 rows x 128, and 1e6 x 512):
each is written as a seeded float32 ``.npy`` of unit vectors, block by block, into a temporary
folder under ``--folder`` (default: the system's temp folder; the 1e7-row file is 5 GB, and the
free space is checked first), measured, and deleted before the next is written. Two cases, each in
a fresh process:

* ``inspect``: the real command, ``python -m fvr_audit vectors inspect FILE --json --quiet``
  (memory-map, every row check, the summary). Peak memory is the whole process's resident high-water
  mark (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a small launcher whose only child it is:
  interpreter, imports and data alike).
* ``sample``: what a scan does to draw its targets once the checks passed: open the file (headers
  only), draw ``--targets`` rows (``vectors.sampling.sample_rows``) and read them (``take_rows``).
  Peak memory is the process's ``VmHWM``.

The file was just written, so its pages are mostly in the page cache (a warm read); resident
figures count the file's pages a process has mapped, which the checks release as they go.

Galleries (``--galleries``; default 1e4, 1e5, 1e6 identities x 128): one synthetic vector per
identity (a random unit centre plus noise) and ``--queries`` queries, each another noisy copy of
a random identity's centre (cosine about 0.6 to its own gallery vector, as for two photos of one
person). For each index kind of ``engines.index.GalleryIndex`` (exact; IVF; HNSW up to
``--hnsw-up-to`` identities, its build being the slowest part): build and search time, recall@k
against exact search (on at most 3e8 / N of the queries: the exact reference is the slow part), and
the share of queries whose own identity ranks first. Each size runs in its own process.

Prints JSON and writes it to ``--output`` (default benchmarks/results_scale.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, emit, machine

MB = 1024 * 1024
#: Peak memory the 1e7-row database must stay under (issue 13's acceptance).
PEAK_LIMIT_MB = 2048
DEFAULT_DATABASES = "10000x128,100000x128,1000000x128,10000000x128,1000000x512"
DEFAULT_GALLERIES = "10000,100000,1000000"


# --------------------------------------------------------------------------- in the child processes


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_launch(command: list[str]) -> dict:
    """Run ``command``; its wall time and peak resident set (this launcher stays small: no numpy)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "stdout": done.stdout,
    }


def child_sample(path: Path, targets: int, seed: int) -> dict:
    import numpy as np

    from fvr_audit.engines.index import normalized
    from fvr_audit.vectors import load_vectors
    from fvr_audit.vectors.npyfile import take_rows
    from fvr_audit.vectors.sampling import sample_rows

    at_start = _peak_mb()
    start = time.perf_counter()
    db = load_vectors(path, check=False)
    drawn = time.perf_counter()
    rows = sample_rows(db.n, targets, seed)
    draw_s = time.perf_counter() - drawn
    vectors = normalized(take_rows(db.vectors, rows))
    seconds = time.perf_counter() - start
    assert vectors.shape == (min(targets, db.n), db.dim) and np.isfinite(vectors).all()
    return {
        "seconds": round(seconds, 3),
        "draw_seconds": round(draw_s, 3),
        "targets": len(rows),
        "peak_rss_mb": _peak_mb(),
        "peak_rss_growth_mb": round(_peak_mb() - at_start, 1),
        "rss_anon_mb": _status_mb("RssAnon"),
        "rss_file_mb": _status_mb("RssFile"),
    }


def child_gallery(size: int, dim: int, queries: int, k: int, hnsw_up_to: int, seed: int) -> dict:
    import faiss
    import numpy as np

    from fvr_audit.engines.index import GalleryIndex, IndexKind, IndexSettings, normalized

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    rng = np.random.default_rng(seed)
    noise = 0.07  # per dimension: |noise| ~ 0.8 at 128-d, so two copies of one centre have cosine ~0.6
    centres = normalized(rng.standard_normal((size, dim), dtype=np.float32))
    gallery = normalized(centres + noise * rng.standard_normal((size, dim), dtype=np.float32))
    owners = rng.integers(0, size, queries)
    query_vectors = normalized(centres[owners] + noise * rng.standard_normal((queries, dim), dtype=np.float32))
    del centres
    recall_queries = max(50, min(queries, 300_000_000 // size))
    kinds = [IndexKind.EXACT, IndexKind.IVF] + ([IndexKind.HNSW] if size <= hnsw_up_to else [])
    results = []
    for kind in kinds:
        settings = IndexSettings(
            approximate_above=size if kind is IndexKind.EXACT else 0,
            approximate=IndexKind.IVF if kind is IndexKind.EXACT else kind,
        )
        start = time.perf_counter()
        index = GalleryIndex.build(gallery, settings)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        _, rows = index.search(query_vectors, k)
        search_s = time.perf_counter() - start
        start = time.perf_counter()
        recall = index.measure_recall(query_vectors, k, max_queries=recall_queries, seed=seed)
        recall_s = time.perf_counter() - start
        results.append(
            {
                "kind": index.kind.value,
                "settings": _kind_settings(index.kind, settings, size),
                "build_s": round(build_s, 2),
                "search_s": round(search_s, 3),
                "search_s_per_1000_queries": round(search_s * 1000 / queries, 3),
                f"recall_at_{k}": round(recall.recall, 4),
                f"worst_query_recall_at_{k}": round(recall.worst, 4),
                "recall_queries": recall.queries,
                "recall_measure_s": round(recall_s, 2),
                "own_identity_first": round(float(np.mean(rows[:, 0] == owners)), 4),
            }
        )
        print(f"gallery {size}: {results[-1]}", file=sys.stderr, flush=True)
        del index
    skipped = None if size <= hnsw_up_to else f"hnsw not built above --hnsw-up-to {hnsw_up_to} (its build is the slow part)"
    return {"identities": size, "dim": dim, "queries": queries, "k": k, "kinds": results,
            "peak_rss_mb": _peak_mb(), **({"note": skipped} if skipped else {})}


def _kind_settings(kind, settings, size: int) -> dict:
    from fvr_audit.engines.index import IndexKind

    if kind is IndexKind.HNSW:
        return {"M": settings.hnsw_neighbours, "efConstruction": settings.hnsw_ef_construction,
                "efSearch": settings.hnsw_ef_search}
    if kind is IndexKind.IVF:
        lists = settings.lists_for(size)
        return {"lists": lists, "nprobe": min(settings.ivf_probe, lists)}
    return {}


# --------------------------------------------------------------------------- the parent


def write_database(path: Path, rows: int, dim: int, seed: int = 0, block: int = 16384) -> None:
    """A C-ordered float32 .npy of unit vectors, written block by block (no full-size array)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, block):
            vectors = rng.standard_normal((min(block, rows - start), dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            handle.write(vectors.tobytes())


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))  # this checkout's fvr_audit
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"error: child {' '.join(args)} failed with exit {done.returncode}")
    return json.loads(done.stdout)


def measure_database(folder: Path, rows: int, dim: int, targets: int, seed: int) -> dict:
    path = folder / f"vectors_{rows}x{dim}.npy"
    start = time.perf_counter()
    write_database(path, rows, dim, seed)
    write_s = time.perf_counter() - start
    size_mb = path.stat().st_size / MB
    print(f"wrote {path} ({size_mb:.0f} MB) in {write_s:.1f} s", file=sys.stderr, flush=True)
    try:
        launched = run_child("--child-launch", sys.executable, "-m", "fvr_audit", "vectors", "inspect", str(path), "--json", "--quiet")
        if "error" in launched:
            raise SystemExit(f"error: {path}: vectors inspect failed: {launched['error']}")
        summary = json.loads(launched.pop("stdout"))
        assert summary["count"] == rows and summary["storage"] == "memory-mapped", summary
        sample = run_child("--child-sample", str(path), "--targets", str(targets), "--seed", str(seed))
    finally:
        path.unlink()
    result = {
        "rows": rows,
        "dim": dim,
        "file_mb": round(size_mb, 1),
        "write_s": round(write_s, 1),
        "inspect": {**launched, "rows_per_s": round(rows / launched["seconds"])},
        "sample": sample,
    }
    print(f"database {rows}x{dim}: {result}", file=sys.stderr, flush=True)
    return result


def parse_databases(text: str) -> list[tuple[int, int]]:
    """``"1000x128,10x4"`` -> [(1000, 128), (10, 4)].

    >>> parse_databases("10000x128, 1000000x512")
    [(10000, 128), (1000000, 512)]
    """
    pairs = []
    for item in text.split(","):
        rows, _, dim = item.strip().partition("x")
        pairs.append((int(float(rows)), int(dim)))
    return pairs


def check_room(folder: Path, databases: list[tuple[int, int]]) -> None:
    """The largest database (one exists at a time) must fit, with 10% to spare."""
    largest = max(rows * dim * 4 for rows, dim in databases)
    free = shutil.disk_usage(folder).free
    if free < 1.1 * largest:
        raise SystemExit(
            f"error: {folder}: {free / MB:.0f} MB free, the largest database needs {largest / MB:.0f} MB; "
            "give --folder on a disk with room"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default=DEFAULT_DATABASES, help="ROWSxDIM,... (default: %(default)s)")
    parser.add_argument("--galleries", default=DEFAULT_GALLERIES, help="identities,... (128-d; default: %(default)s)")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()), help="where databases are written")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--hnsw-up-to", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results_scale.json")
    # child modes
    parser.add_argument("--child-launch", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--child-sample", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-gallery", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_launch:
        json.dump(child_launch(args.child_launch), sys.stdout)
        return
    if args.child_sample:
        json.dump(child_sample(args.child_sample, args.targets, args.seed), sys.stdout)
        return
    if args.child_gallery:
        json.dump(child_gallery(args.child_gallery, 128, args.queries, args.k, args.hnsw_up_to, args.seed), sys.stdout)
        return

    from fvr_audit.io.atomic import atomic_write_text

    databases = parse_databases(args.databases) if args.databases else []
    galleries = [int(float(s)) for s in args.galleries.split(",")] if args.galleries else []
    if databases:
        check_room(args.folder, databases)
    started = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    database_results = []
    with tempfile.TemporaryDirectory(prefix="fvr-bench-scale-", dir=args.folder) as folder:
        for rows, dim in databases:
            database_results.append(measure_database(Path(folder), rows, dim, args.targets, args.seed))
    gallery_results = [
        run_child("--child-gallery", str(size), "--queries", str(args.queries), "--k", str(args.k),
                  "--hnsw-up-to", str(args.hnsw_up_to), "--seed", str(args.seed))
        for size in galleries
    ]
    largest = max(database_results, key=lambda r: r["rows"] * r["dim"], default=None)
    acceptance = None
    if largest is not None:
        peak = max(largest["inspect"]["peak_rss_mb"], largest["sample"]["peak_rss_mb"])
        acceptance = {
            "database": f"{largest['rows']}x{largest['dim']}",
            "peak_rss_mb": peak,
            "limit_mb": PEAK_LIMIT_MB,
            "passed": peak < PEAK_LIMIT_MB,
        }
    result = {
        "benchmark": "scale",
        "command": " ".join(["python benchmarks/bench_scale.py", *sys.argv[1:]]),
        "load": "shared with other jobs",
        "load_average_1min": {"start": load_at_start, "end": round(os.getloadavg()[0], 2)},
        "page_cache": "warm: each database is measured right after it is written",
        "targets": args.targets,
        "databases": database_results,
        "galleries": gallery_results,
        "acceptance_peak_memory": acceptance,
        "total_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    emit(result)
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n", file_mode=0o644)


if __name__ == "__main__":
    main()
