"""Draw an audit's targets from a database of any size: seeded, reproducible, in bounded memory.

Both draws are the ones the scan has always made (the same seed gives the same rows), computed
without a pass per chosen identity:

* :func:`sample_rows`, for a database without labels: ``sample`` rows uniformly at random.
  Memory: one permutation of the row indices, 8 bytes per row (80 MB for 10 million rows).
* :func:`one_row_per_identity`, for a labelled one: ``sample`` identities uniformly at random,
  then one row of each. The identities are grouped once (a sort of the labels), so the cost is
  O(N log N) whatever ``sample`` is; comparing every label with each chosen identity in turn reads
  all N labels once per target (measured on 2 shared cores, 1e6 rows of 200,000 identities, 100
  targets: 12.6 s that way, 3.8 s grouped; 1,000 targets among 1e7 rows would take some 20 minutes).
* :func:`counts_in`, the vectors each row's identity has in a gallery (which rows can be targets),
  vectorised rather than a Python loop over N labels.

Read the drawn rows with :func:`fvr_audit.vectors.npyfile.take_rows`: indexing a memory map with
scattered rows maps far more of the file than the rows themselves.
"""

from __future__ import annotations

import numpy as np


def sample_rows(n_rows: int, sample: int, seed: int) -> np.ndarray:
    """``sample`` distinct rows of ``n_rows`` (all of them when ``sample >= n_rows``), in row order.

    >>> sample_rows(10, 3, seed=0).tolist()
    [2, 4, 6]
    >>> sample_rows(3, 5, seed=0).tolist()
    [0, 1, 2]
    """
    if n_rows < 0 or sample < 0:
        raise ValueError(f"n_rows and sample must not be negative, got {n_rows} and {sample}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_rows)[:sample]).astype(np.int64)


def one_row_per_identity(labels: np.ndarray, eligible: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """Up to ``sample`` rows, each of a different identity, among the ``eligible`` rows; in row order.

    The identities are drawn uniformly (a seeded permutation of the sorted distinct labels), then
    one eligible row of each, uniformly. The same seed gives the same rows as drawing with
    ``rng.permutation(identities)`` and ``rng.choice(rows of that identity)`` one identity at a time.

    >>> labels = np.array(["b", "a", "b", "c", "a", "c"])
    >>> one_row_per_identity(labels, np.ones(6, bool), 2, seed=1).tolist()
    [0, 1]
    >>> one_row_per_identity(labels, labels != "a", 5, seed=1).tolist()  # only b and c are eligible
    [2, 5]
    """
    labels = np.asarray(labels)
    eligible = np.asarray(eligible, dtype=bool)
    if labels.shape != eligible.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and eligible {eligible.shape} must be 1-D of one length")
    if sample < 0:
        raise ValueError(f"sample must not be negative, got {sample}")
    candidates = np.flatnonzero(eligible)
    identities, owner = np.unique(labels[candidates], return_inverse=True)
    rng = np.random.default_rng(seed)
    # Permuting indices draws exactly what permuting the labels themselves draws (one shuffle of n).
    chosen = rng.permutation(identities.size)[:sample]
    # Candidates grouped by identity, ascending rows within each: the array the one-at-a-time draw saw.
    grouped = candidates[np.argsort(owner, kind="stable")]
    starts = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=identities.size))))
    rows = [int(rng.choice(grouped[starts[g] : starts[g + 1]])) for g in chosen]
    return np.array(sorted(rows), dtype=np.int64)


def counts_in(labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """For each of ``labels``, how many entries of ``gallery_labels`` hold it (0 if none).

    >>> counts_in(np.array(["a", "b", "z"]), np.array(["b", "a", "b"])).tolist()
    [1, 2, 0]
    """
    labels = np.asarray(labels)
    names, counts = np.unique(np.asarray(gallery_labels), return_counts=True)
    if names.size == 0:
        return np.zeros(labels.shape, np.int64)
    position = np.minimum(np.searchsorted(names, labels), names.size - 1)
    return np.where(names[position] == labels, counts[position], 0).astype(np.int64)
