"""Load + validate time and memory of a large ``.npy`` feature-vector database.

    python benchmarks/bench_vectors_load.py                       # 1M x 512 float32 (2 GB)
    python benchmarks/bench_vectors_load.py --rows 200000 --dim 128

Writes a seeded database of L2-normalised random vectors into a temporary folder (chunk by
chunk, so writing it costs no 2 GB array either), then measures, each in a fresh Python process
so memory figures start from a clean slate:

* ``load_vectors(path)`` (memory-map + every row check) with a cold page cache (the file's
  pages evicted with ``posix_fadvise(DONTNEED)``, which touches nothing else) and with a warm one;
* ``load_vectors(path, check=False)`` (headers only);
* for comparison, ``np.load(path)`` reading the whole array into memory.

Memory: ``peak_rss_increase_mb`` is the growth of the process's peak resident set during the
load (``VmHWM`` from /proc/self/status; ``getrusage``'s ``ru_maxrss`` is not used because a child
inherits its parent's peak across fork+exec, and the parent just wrote the file),
``tracemalloc_peak_mb`` the peak of numpy/Python allocations, ``rss_anon_mb`` / ``rss_file_mb``
the resident anonymous / file-backed memory right after loading. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine

MB = 1024 * 1024


def write_database(path: Path, rows: int, dim: int, seed: int = 0, block: int = 8192) -> None:
    """A C-ordered float32 .npy of unit vectors, written block by block."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)}
        )
        for start in range(0, rows, block):
            vectors = rng.standard_normal((min(block, rows - start), dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            handle.write(vectors.tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def evict_from_page_cache(path: Path) -> None:
    """Drop this file's clean pages from the page cache (nothing else is touched)."""
    with open(path, "rb") as handle:
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process's peak resident set; getrusage only where /proc is missing (it then includes the parent's)."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: Path, mode: str) -> dict:
    """Runs inside the child process: one load, its time and memory."""
    import tracemalloc

    from fvr_audit.vectors import load_vectors

    if mode == "numpy-full-load":

        def load():
            return np.load(path, allow_pickle=False)
    else:

        def load():
            return load_vectors(path, check=mode != "headers-only")

    rss_before = _peak_rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    result = load()
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _peak_rss_mb()
    figures = {
        "seconds": round(seconds, 3),
        "peak_rss_increase_mb": round(rss_after - rss_before, 1),
        "tracemalloc_peak_mb": round(traced_peak / MB, 1),
        "rss_anon_mb": _proc_status_mb("RssAnon"),
        "rss_file_mb": _proc_status_mb("RssFile"),
    }
    if mode != "numpy-full-load":
        figures["storage"] = result.storage
        if result.scan is not None:
            figures["duplicates"] = result.scan.duplicates.count
            figures["l2_normalised"] = result.scan.norms.l2_normalised
    return figures


def run_child(path: Path, mode: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", str(path), "--mode", mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--no-numpy-baseline", action="store_true", help="Skip the full np.load comparison.")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--mode", default="checked", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        json.dump(measure(args.measure, args.mode), sys.stdout)
        return

    with tempfile.TemporaryDirectory(prefix="fvr-bench-") as folder:
        path = Path(folder) / "vectors.npy"
        start = time.perf_counter()
        write_database(path, args.rows, args.dim)
        print(
            f"wrote {path.stat().st_size / MB:.0f} MB in {time.perf_counter() - start:.1f} s", file=sys.stderr
        )

        runs = {}
        evict_from_page_cache(path)
        runs["load_and_check_cold_cache"] = run_child(path, "checked")
        runs["load_and_check_warm_cache"] = run_child(path, "checked")
        runs["headers_only_check_false"] = run_child(path, "headers-only")
        if not args.no_numpy_baseline:
            runs["numpy_full_load_for_comparison"] = run_child(path, "numpy-full-load")
        emit(
            {
                "benchmark": "vectors_load",
                "rows": args.rows,
                "dim": args.dim,
                "file_mb": round(path.stat().st_size / MB, 1),
                "runs": runs,
                "machine": machine(),
                # Other processes compete for the CPUs: a load above cpus_usable inflates the times.
                "load_average_1min": round(os.getloadavg()[0], 2),
            }
        )


if __name__ == "__main__":
    main()
