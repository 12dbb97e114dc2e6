"""Where exact top-K search stops being fast enough: exact (faiss IndexFlatIP) vs HNSW, by gallery size.

    python benchmarks/bench_engine_search.py                       # 10k, 100k, 500k x 128-d
    python benchmarks/bench_engine_search.py --sizes 10000,1000000 --dim 512

A scan sends at most a few thousand queries (targets x methods), so the figure that matters is
seconds per 1,000 queries. HNSW recall@10 against exact search is reported beside its speed. The
full identity-score matrix used by the N-sweep is always exact (blocked matrix products).
Prints JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,500000")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        gallery = rng.normal(size=(size, args.dim)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(gallery)
        start = time.perf_counter()
        _, truth = exact.search(queries, args.k)
        exact_s = time.perf_counter() - start
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(gallery)
        build_s = time.perf_counter() - start
        hnsw.hnsw.efSearch = 256
        start = time.perf_counter()
        _, found = hnsw.search(queries, args.k)
        hnsw_s = time.perf_counter() - start
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(truth, found)])
        rows.append(
            {
                "gallery": size,
                "exact_s_per_1000_queries": round(exact_s * 1000 / args.queries, 3),
                "hnsw_build_s": round(build_s, 2),
                "hnsw_s_per_1000_queries": round(hnsw_s * 1000 / args.queries, 3),
                "hnsw_recall_at_k": round(float(recall), 4),
            }
        )
        print(rows[-1], file=sys.stderr)
    emit({"benchmark": "engine_search", "dim": args.dim, "k": args.k, "threads": 2, "results": rows, "machine": machine()})


if __name__ == "__main__":
    main()
