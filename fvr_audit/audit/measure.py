"""Metric 1 per engine: re-identify every query set, then tpr/fpr/no-match over K and N.

An engine that scores every identity (:class:`ScoresEveryIdentity`, local models) answers with a
[T, G] score matrix, so N is swept over random gallery subsets and a verification view at
``--fmr`` is added. Any other engine (a cloud service) answers with its top-K identities above its
threshold, and Metric 1 is read at N = the enrolled gallery. The metric arithmetic itself is in
:mod:`fvr_audit.metrics.topk`; this module only feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fvr_audit.alignment.canonical import crop_from_canonical
from fvr_audit.audit.fairness import Judging, judging
from fvr_audit.audit.galleries import EngineGallery, original_crops, original_vectors
from fvr_audit.audit.results import (
    MethodSummary,
    QueryCurvePoint,
    Record,
    SameClassFalsePositives,
    Verification,
)
from fvr_audit.audit.settings import GallerySources, ScanSettings
from fvr_audit.engines.base import IdentityHits, ScoresEveryIdentity
from fvr_audit.metrics.topk import (
    TopKRates,
    same_class_false_positive_share,
    success_attack_rate,
    threshold_at_fmr,
    topk_outcomes,
    topk_rates_from_hits,
    topk_sweep,
    wilson_interval,
)

#: Gallery vectors used as impostor probes to set the verification threshold.
IMPOSTOR_PROBES = 2000
#: The reference rows: the target's own photo (the ceiling) and chance.
ORIGINAL, RANDOM = "original", "random"


@dataclass
class EngineMeasurement:
    records: list[Record] = field(default_factory=list)
    same_class: list[SameClassFalsePositives] = field(default_factory=list)
    verification: list[Verification] = field(default_factory=list)


def impostor_scores(engine: ScoresEveryIdentity, seed: int) -> np.ndarray:
    """Scores of gallery vectors against identities other than their own (a sample of probes)."""
    gallery = engine.gallery
    rng = np.random.default_rng([seed, 11])
    probes = rng.choice(len(gallery.vectors), size=min(IMPOSTOR_PROBES, len(gallery.vectors)), replace=False)
    matrix = engine.identity_scores_of_vectors(gallery.vectors[probes])
    own = np.searchsorted(engine.identities, np.asarray(gallery.labels)[probes].astype(str))
    matrix[np.arange(len(probes)), own] = np.nan
    return matrix[~np.isnan(matrix)]


def gallery_impostors(state: EngineGallery, seed: int) -> np.ndarray:
    """The enrolled engine's impostor scores, computed once per scan."""
    if state.impostors is None:
        state.impostors = impostor_scores(state.engine, seed)
    return state.impostors


def impostor_threshold(state: EngineGallery, fmr: float, seed: int) -> tuple[float, int]:
    """The engine's threshold at false-match rate ``fmr``, and the impostor pairs it was set on."""
    impostors = gallery_impostors(state, seed)
    return threshold_at_fmr(impostors, fmr), int(impostors.size)


def reidentify(
    state: EngineGallery,
    reconstructions: dict[str, np.ndarray],
    summaries: list[MethodSummary],
    db,
    rows: np.ndarray,
    sources: GallerySources,
    settings: ScanSettings,
    progress,
) -> dict[str, np.ndarray | list[IdentityHits]]:
    """The engine's answers for each query set: method -> [T, G] scores, or T top-K answers.

    An attack that used the engine's model is not queried (the fairness rule); the note is added."""
    engine = state.engine
    exhaustive = isinstance(engine, ScoresEveryIdentity)
    k = _largest_k(state, settings)
    advance = progress(f"re-identify: {engine.name}", len(reconstructions) + 2)
    answers: dict[str, np.ndarray | list[IdentityHits]] = {}
    for summary in summaries:
        if judging(summary.models_used, engine.info.model, engine_is_f=state.is_f) is Judging.USED:
            state.notes.append(
                f"{summary.name} used {engine.info.model}, so it is not evaluated by "
                f"{engine.name}: an attack may never use the engine that judges it"
            )
            continue
        crops = crop_from_canonical(reconstructions[summary.name], engine.info.geometry)
        answers[summary.name] = engine.identity_scores(crops) if exhaustive else engine.search(crops, k)
        advance(1)
    if exhaustive:
        original = original_vectors(state, db, rows, sources)
        if original is not None:
            answers[ORIGINAL] = engine.identity_scores_of_vectors(original)
    else:
        crops = original_crops(state, db, rows, sources)
        if crops is not None:
            answers[ORIGINAL] = engine.search(crops, k)
    if ORIGINAL not in answers:
        state.notes.append("no original photos or vectors: the 'original' row is missing")
    advance(1)
    rng = np.random.default_rng([settings.seed, 7])
    identities = engine.identities
    if exhaustive:
        answers[RANDOM] = rng.random((len(rows), len(identities)))
    else:  # chance: k identities drawn at random, as an engine that knew nothing would answer
        answers[RANDOM] = [
            IdentityHits(tuple(str(x) for x in rng.choice(identities, size=k, replace=False)), (0.0,) * k)
            for _ in range(len(rows))
        ]
    advance(1)
    return answers


def _largest_k(state: EngineGallery, settings: ScanSettings) -> int:
    cap = state.engine.info.max_k
    return max(settings.ks) if cap is None else min(max(settings.ks), cap)


def metric1(
    state: EngineGallery,
    answers: dict[str, np.ndarray | list[IdentityHits]],
    labels: np.ndarray,
    settings: ScanSettings,
    engine_index: int,
) -> EngineMeasurement:
    """Records, same-class false positives and (local engines) the verification view of one engine."""
    engine = state.engine
    out = EngineMeasurement()
    exhaustive = isinstance(engine, ScoresEveryIdentity)
    impostors = fmr_threshold = None
    if exhaustive:
        impostors = gallery_impostors(state, settings.seed)
        fmr_threshold = threshold_at_fmr(impostors, settings.fmr)
    else:
        cap = engine.info.max_k
        dropped = [k for k in settings.ks if cap is not None and k > cap]
        if dropped:
            state.notes.append(f"K = {', '.join(map(str, dropped))} not measured: {engine.name} returns at most {cap} matches")
        if len(settings.ns) > 1 or max(settings.ns) != len(engine.identities):
            state.notes.append(
                f"measured at N = {len(engine.identities)} (its enrolled identities) only: {engine.name} returns "
                "its top matches, not every identity's score, so N is not swept"
            )
    for method_index, (method, answer) in enumerate(answers.items()):
        if exhaustive:
            rates, top1, false_positive, true_scores = _exhaustive_rates(
                answer, labels, engine, settings, _subset_draws(settings, engine_index, method_index)
            )
        else:
            rates, top1, false_positive = _hits_rates(answer, labels, engine, settings)
        out.records.extend(
            Record(method, engine.name, r.k, r.n, r.tpr, r.fpr, r.no_match, r.tpr_ci, r.baseline, r.queries, r.seeds)
            for r in rates
        )
        out.same_class.append(
            SameClassFalsePositives(
                method, engine.name, settings.gate_k, len(engine.identities), int(false_positive.sum()),
                same_class_false_positive_share(top1, false_positive),
            )
        )
        if exhaustive and method != RANDOM:  # random scores are not cosines: a threshold on them means nothing
            sar = success_attack_rate(true_scores, fmr_threshold)
            out.verification.append(
                Verification(method, engine.name, settings.fmr, fmr_threshold, sar,
                             wilson_interval(sar * len(labels), len(labels)), int(impostors.size))
            )
    return out


def _subset_draws(settings: ScanSettings, engine_index: int, method_index: int) -> np.random.Generator:
    """The random N-subsets of one (engine, method): a fresh generator, so that the same draws can be
    made again for that method's earlier faces (its query curve) as for its table figures."""
    return np.random.default_rng([settings.seed, engine_index, method_index])


def query_curve(
    state: EngineGallery,
    answers: dict[str, np.ndarray | list[IdentityHits]],
    checkpoints: dict[str, dict[int, np.ndarray]],
    summaries: list[MethodSummary],
    labels: np.ndarray,
    settings: ScanSettings,
    engine_index: int,
    gate_n: int,
) -> list[QueryCurvePoint]:
    """tpr at the gate's K and N against queries per target, for each attack that kept earlier faces.

    Each checkpoint's faces are scored over the very N-subsets drawn for the attack's final faces
    (:func:`_subset_draws`), so the curve ends on the figure of the table. Only an engine that
    scores every identity draws it (a cloud engine would be paid again per checkpoint), and never
    for an attack the engine may not judge (not in ``answers``)."""
    engine = state.engine
    if not isinstance(engine, ScoresEveryIdentity):
        return []
    true_index = np.searchsorted(engine.identities, labels)
    spent = {summary.name: summary.queries_per_target_max for summary in summaries}
    order = list(answers)
    n = min(gate_n, len(engine.identities))
    out: list[QueryCurvePoint] = []
    for method, earlier in checkpoints.items():
        if method not in answers:
            continue
        points = [
            (queries, engine.identity_scores(crop_from_canonical(images, engine.info.geometry)), False)
            for queries, images in sorted(earlier.items())
        ]
        points.append((spent[method], answers[method], True))
        for queries, matrix, final in points:
            rates = topk_sweep(
                matrix, true_index, list(settings.ks), list(settings.ns), seeds=settings.draws,
                threshold=engine.info.threshold, rng=_subset_draws(settings, engine_index, order.index(method)),
            )
            gate = next((r for r in rates if r.k == settings.gate_k and r.n == n), None)
            if gate is not None:
                out.append(QueryCurvePoint(method, engine.name, int(queries), gate.k, gate.n, gate.tpr, gate.tpr_ci, final))
    return out


def _exhaustive_rates(matrix, labels, engine: ScoresEveryIdentity, settings: ScanSettings, rng):
    true_index = np.searchsorted(engine.identities, labels)
    rates: list[TopKRates] = topk_sweep(
        matrix, true_index, list(settings.ks), list(settings.ns),
        seeds=settings.draws, threshold=engine.info.threshold, rng=rng,
    )
    rows = np.arange(len(labels))
    true_scores = matrix[rows, true_index]
    others = matrix.copy()
    others[rows, true_index] = -np.inf
    _, false_positive, _ = topk_outcomes(true_scores, others, settings.gate_k, engine.info.threshold)
    return rates, others.argmax(axis=1), false_positive, true_scores


def _hits_rates(hits: list[IdentityHits], labels, engine, settings: ScanSettings):
    returned = [h.labels for h in hits]
    cap = engine.info.max_k
    ks = [k for k in settings.ks if cap is None or k <= cap]
    rates = topk_rates_from_hits(returned, labels, ks, len(engine.identities))
    gate = [tuple(r[: settings.gate_k]) for r in returned]
    false_positive = np.array([bool(r) and true not in r for r, true in zip(gate, labels)], bool)
    # The top-1 wrong identity of each false positive (the paper's Table II counts shared ones).
    top1 = np.array([r[0] if r else "" for r in returned])
    return rates, top1, false_positive
