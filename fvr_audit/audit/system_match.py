"""What the leaked database alone allows: the deployed system F judging the reconstructions.

Needs nothing but the vectors and F: no labels, no photos. For each reconstruction x^ of row i,
F(x^) is compared with all N rows of the database as the deployed system holds them (row i
included: that is the attack). Two figures per attack, in the system's own terms:

* identification: the share of targets whose own row is F's top-1 (top-K) among the N rows;
  ties count against the attacker; chance is K/N;
* verification ("type-I" success attack rate): the share of reconstructions that F accepts as
  row i at the threshold for a false-match rate ``--fmr``, set on impostor pairs of the
  database's own rows (rows with different labels; without labels any two different rows,
  which may hold the same person twice: that raises the threshold, so the figure stays a
  lower bound).

Expressed as one more "engine", ``system:<F>``, whose gallery is the database's rows (each row
its own identity), so the records, the verification view, the verdict and the report treat it
like any F'. The database is read in blocks, so its size is bounded by the disk, not memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.audit.results import EngineSummary, QueryCurvePoint, Record, Verification
from fvr_audit.audit.verdict import SYSTEM_PREFIX
from fvr_audit.extractors.base import Extractor, l2_normalize
from fvr_audit.metrics.topk import (
    random_baseline,
    rows_scoring_at_least,
    share_in_random_subsets,
    success_attack_rate,
    threshold_at_fmr,
    wilson_interval,
)
from fvr_audit.vectors import VectorDatabase
from fvr_audit.vectors.checks import row_blocks
from fvr_audit.vectors.npyfile import take_rows

#: Rows per block when the database is compared with the reconstructions.
BLOCK_ROWS = 1 << 16
#: Scores this close to the leaked row's count as ties (float32 rounding differs between the two
#: products that compute them), and ties count against the attacker.
TIE_TOLERANCE = 1e-5
#: Impostor pairs sampled among the database's rows to set the FMR threshold.
IMPOSTOR_PAIRS = 1_000_000
#: Probe rows of those pairs (each compared with up to IMPOSTOR_PAIRS / probes other rows).
IMPOSTOR_PROBES = 1000


def system_engine_name(extractor: Extractor) -> str:
    """``system:<F>``: the deployed system, F with the leaked database as its gallery.

    >>> from fvr_audit.extractors.registry import get_extractor
    >>> system_engine_name(get_extractor("dlib-resnet128"))
    'system:dlib-resnet128'
    """
    return f"{SYSTEM_PREFIX}{extractor.name}"


def measure_against_database(
    db: VectorDatabase,
    extractor: Extractor,
    rows: np.ndarray,
    reconstructions: Mapping[str, np.ndarray],
    *,
    ks: tuple[int, ...],
    ns: tuple[int, ...],
    fmr: float,
    seed: int,
    progress: Callable[[str, int], Callable[[int], None]],
) -> tuple[list[Record], list[Verification], EngineSummary, dict[str, int]]:
    """Records (per method, K, and N: each N of ``ns`` below the database's size, as the expected
    share over random N-row subsets holding the leaked row, and N = all rows), verification at
    ``fmr``, the engine's summary, and the queries to F spent per method (one per target:
    embedding its reconstruction)."""
    engine = system_engine_name(extractor)
    rows = np.asarray(rows, dtype=np.int64)
    n = db.n
    targets = l2_normalize(take_rows(db.vectors, rows))
    impostors, impostor_rule = _impostor_scores(db, seed)
    threshold = threshold_at_fmr(impostors, fmr)
    records: list[Record] = []
    verification: list[Verification] = []
    queries: dict[str, int] = {}
    advance = progress(f"match against the database: {engine} ({n} rows)", len(reconstructions))
    for method, images in reconstructions.items():
        before = extractor.queries_used
        embedded = extractor.embed(crop_from_canonical(images, extractor.geometry))
        queries[method] = extractor.queries_used - before
        own = np.einsum("td,td->t", embedded, targets)
        rivals = _rows_above(db, embedded, own, rows)
        for size in sorted({m for m in ns if m < n} | {n}):
            for k in ks:
                if k > size:
                    continue
                share = share_in_random_subsets(rivals, n - 1, k, size)
                records.append(
                    Record(method, engine, k, size, share, 1.0 - share, 0.0,
                           wilson_interval(share * len(rows), len(rows)), random_baseline(k, size), len(rows), 1)
                )
        sar = success_attack_rate(own, threshold)
        verification.append(
            Verification(method, engine, fmr, threshold, sar, wilson_interval(sar * len(rows), len(rows)), int(impostors.size))
        )
        advance(1)
    summary = EngineSummary(
        name=engine,
        description=(
            f"the deployed system itself: {extractor.name} compares each reconstruction with every row of the leaked "
            "database (each row its own identity); the FMR threshold comes from " + impostor_rule
        ),
        dim=extractor.dim,
        geometry=extractor.geometry.describe(),
        sha256=extractor.info.sha256,
        gallery_source=f"the {n} rows of the database (each target's own row included: that is the attack)",
        gallery_identities=n,
        gallery_vectors=n,
        threshold=None,
        is_f=True,
        model=extractor.name,
    )
    return records, verification, summary, queries


def system_query_curve(
    db: VectorDatabase,
    extractor: Extractor,
    rows: np.ndarray,
    checkpoints: Mapping[str, Mapping[int, np.ndarray]],
    records: list[Record],
    spent: Mapping[str, int],
    *,
    gate_k: int,
    gate_n: int,
) -> tuple[list[QueryCurvePoint], dict[str, int]]:
    """The deployed system's re-identification against queries: for each attack's earlier faces,
    the share of targets whose own row F ranks top-``gate_k`` among ``gate_n`` rows (the expected
    share over random subsets, as in the table, so the last point is the table's figure).

    Needs no labels, so the usage line's plain vector file gets the curve too. Returns the points
    and the queries to F spent per attack (one per target and checkpoint: embedding its faces)."""
    engine = system_engine_name(extractor)
    rows = np.asarray(rows, dtype=np.int64)
    targets = l2_normalize(take_rows(db.vectors, rows))
    size = min(gate_n, db.n)
    points: list[QueryCurvePoint] = []
    used: dict[str, int] = {}
    for method, earlier in checkpoints.items():
        final = next((r for r in records if (r.method, r.engine, r.k, r.n) == (method, engine, gate_k, size)), None)
        if final is None:
            continue
        before = extractor.queries_used
        for queries, images in sorted(earlier.items()):
            embedded = extractor.embed(crop_from_canonical(images, extractor.geometry))
            own = np.einsum("td,td->t", embedded, targets)
            share = share_in_random_subsets(_rows_above(db, embedded, own, rows), db.n - 1, gate_k, size)
            points.append(QueryCurvePoint(method, engine, int(queries), gate_k, size, share,
                                          wilson_interval(share * len(rows), len(rows))))
        used[method] = extractor.queries_used - before
        points.append(QueryCurvePoint(method, engine, int(spent[method]), gate_k, size, final.tpr, final.tpr_ci, True))
    return points, used


def _rows_above(db: VectorDatabase, embedded: np.ndarray, own: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per target, the rows other than its own that score at least as high as its own row."""
    counts = np.zeros(len(rows), np.int64)
    for lo, stored in row_blocks(db.vectors, BLOCK_ROWS):  # a memory-mapped file is never resident whole
        hi = lo + len(stored)
        block = l2_normalize(np.asarray(stored, dtype=np.float32))
        scores = embedded @ block.T
        inside = (rows >= lo) & (rows < hi)
        scores[np.flatnonzero(inside), rows[inside] - lo] = -np.inf  # the own row is not its own rival
        counts += rows_scoring_at_least(own - TIE_TOLERANCE, scores)
    return counts


def _impostor_scores(db: VectorDatabase, seed: int) -> tuple[np.ndarray, str]:
    """Cosines of pairs of different rows (different labels when there are labels), and the rule in words."""
    rng = np.random.default_rng([seed, 0x51])
    probes = np.sort(rng.choice(db.n, size=min(IMPOSTOR_PROBES, db.n), replace=False))
    others = np.sort(rng.choice(db.n, size=min(max(1, IMPOSTOR_PAIRS // len(probes)), db.n), replace=False))
    # Scattered rows are read, not faulted in through the memory map (which would map gigabytes).
    a = l2_normalize(take_rows(db.vectors, probes))
    b = l2_normalize(take_rows(db.vectors, others))
    scores = a @ b.T
    valid = probes[:, None] != others[None, :]
    if db.has_labels:
        labels = np.asarray(db.labels).astype(str)
        valid &= labels[probes][:, None] != labels[others][None, :]
        rule = "pairs of rows with different labels"
    else:
        rule = (
            "pairs of different rows (no labels: a person enrolled twice makes a genuine pair count as an impostor, "
            "which raises the threshold, so the acceptance figure stays a lower bound)"
        )
    values = scores[valid]
    return values, f"{values.size} {rule}"
