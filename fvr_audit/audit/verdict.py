"""The executive verdict: one risk level, and the rule that set it, in plain words."""

from __future__ import annotations

from collections.abc import Sequence

from fvr_audit.audit.results import REFERENCE_METHODS, Record, RiskLevel, Verdict
from fvr_audit.errors import InputError

#: Engines named so are the deployed system F judging against the leaked database's own rows.
SYSTEM_PREFIX = "system:"
#: A 95% lower bound of this share of people re-identified at the gate makes the risk high.
HIGH_TPR = 0.10


def check_gate(gate_k: int, gate_n: int | None, ks: Sequence[int], ns: Sequence[int]) -> None:
    """The gate (K, N) must be one of the evaluated points, else nothing would be measured there.

    >>> check_gate(1, None, (1, 5), (50, 100)); check_gate(5, 100, (1, 5), (50, 100))
    >>> check_gate(1, 75, (1, 5), (50, 100))
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --gate-n 75: must be one of the evaluated N values [50, 100] (see --n)
    """
    if gate_k not in ks:
        raise InputError(f"--gate-k {gate_k}: must be one of the evaluated K values {list(ks)} (see --k)")
    if gate_n is not None and gate_n not in ns:
        raise InputError(f"--gate-n {gate_n}: must be one of the evaluated N values {list(ns)} (see --n)")


def gate_records(records: Sequence[Record], k: int, n: int, *, attacks_only: bool = True) -> list[Record]:
    """The records the gate judges: K = ``k`` and, per engine, N = ``n`` or that engine's largest N
    when its gallery holds fewer identities (N is capped by the gallery, so ``n`` itself was never
    measured there). The one place this rule lives: verdict, CI gate and summary table use it.

    >>> a = Record("naive", "local:x", 1, 300, 0.5, 0.5, 0.0, (0.4, 0.6), 0.003, 40, 5)
    >>> [r.n for r in gate_records([a], 1, 5000)], gate_records([a], 1, 100)
    ([300], [])
    """
    judged = judged_ns(records, n)
    return [
        r
        for r in records
        if (not attacks_only or r.method not in REFERENCE_METHODS) and r.k == k and r.n == judged[r.engine]
    ]


def strength(record: Record) -> tuple[float, float]:
    """How attacks are ranked, everywhere: the 95% lower bound of tpr first, then tpr itself."""
    return (record.tpr_ci[0], record.tpr)


def strongest_attacks(records: Sequence[Record], k: int, n: int, *, unfair: set[tuple[str, str]] = frozenset()) -> dict[str, Record]:
    """Engine -> its strongest attack at the gate (``gate_records``), leaving out (method, engine)
    pairs in ``unfair`` (an attack is never judged by an engine it used).

    >>> a = Record("naive", "local:x", 1, 1000, 0.5, 0.5, 0.0, (0.4, 0.6), 0.001, 100, 5)
    >>> b = Record("gradient", "local:x", 1, 1000, 0.6, 0.4, 0.0, (0.5, 0.7), 0.001, 100, 5)
    >>> strongest_attacks([a, b], 1, 1000)["local:x"].method
    'gradient'
    >>> strongest_attacks([a, b], 1, 1000, unfair={("gradient", "local:x")})["local:x"].method
    'naive'
    """
    best: dict[str, Record] = {}
    for r in gate_records(records, k, n):
        if (r.method, r.engine) not in unfair and (r.engine not in best or strength(r) > strength(best[r.engine])):
            best[r.engine] = r
    return best


def judged_ns(records: Sequence[Record], n: int) -> dict[str, int]:
    """Engine -> the N the gate judges it at: ``n``, or its largest N when its gallery is smaller.

    >>> a = Record("naive", "local:x", 1, 300, 0.5, 0.5, 0.0, (0.4, 0.6), 0.003, 40, 5)
    >>> judged_ns([a], 1000), judged_ns([a], 100)
    ({'local:x': 300}, {'local:x': 100})
    """
    largest_n: dict[str, int] = {}
    for r in records:
        largest_n[r.engine] = max(largest_n.get(r.engine, 0), r.n)
    return {engine: min(n, largest) for engine, largest in largest_n.items()}


def gate_failure(records: Sequence[Record], k: int, n: int, limit: float) -> str | None:
    """Why ``--fail-on-tpr limit`` fails, or None when it passes.

    It fails when an attack's tpr at the gate exceeds ``limit``, and also when no attack was
    measured at the gate: a gate that measured nothing cannot vouch for anything.

    >>> gate_failure([], 1, 100, 0.0)
    'no reconstruction attack was measured at K=1, N=100, so the gate cannot pass (see --methods)'
    """
    attacks = gate_records(records, k, n)
    if not attacks:
        return f"no reconstruction attack was measured at K={k}, N={n}, so the gate cannot pass (see --methods)"
    over = [r for r in attacks if r.tpr > limit]
    if not over:
        return None
    worst = max(over, key=lambda r: r.tpr)
    return f"{worst.method} under {worst.engine}: tpr {worst.tpr:.3f} at K={worst.k}, N={worst.n} exceeds {limit}"


def decide_verdict(records: Sequence[Record], k: int, n: int, *, high_tpr: float = HIGH_TPR) -> Verdict:
    """Risk level from the strongest attack at (K, N), judged on its tpr's 95% lower bound.

    ``n`` is the gate's N; an engine whose gallery holds fewer identities is judged at its own
    largest N (records with ``r.n == min(n, that engine's largest N)``).

    * high: some attack re-identifies at least ``high_tpr`` of the targets in the top-K among N
      (lower bound of the 95% interval), under some engine;
    * elevated: some attack does better than chance (lower bound above K/N), but not that much;
    * low: no attack beat chance. That is not proof of safety: the figures are a lower bound;
    * not-assessed: no attack ran.

    >>> r = Record("gradient", "local:faceres-1024", 1, 1000, 0.6, 0.4, 0.0, (0.5, 0.69), 0.001, 100, 5)
    >>> decide_verdict([r], 1, 1000).level.value
    'high'
    >>> weak = Record("naive", "local:faceres-1024", 1, 1000, 0.03, 0.97, 0.0, (0.01, 0.08), 0.001, 100, 5)
    >>> decide_verdict([weak], 1, 1000).level.value
    'elevated'
    >>> decide_verdict([], 1, 1000).level.value
    'not-assessed'
    """
    baseline = min(1.0, k / n) if n else 1.0
    attacks = gate_records(records, k, n)
    if not attacks:
        return Verdict(
            RiskLevel.NOT_ASSESSED,
            "No reconstruction attack ran, so nothing was measured; this is not evidence of safety.",
            None, None, k, n, None, None, baseline,
        )
    best = max(attacks, key=strength)
    n, baseline = best.n, best.baseline
    interval = f"(95% interval {best.tpr_ci[0]:.0%}-{best.tpr_ci[1]:.0%}; chance: {baseline:.2%})"
    if best.engine.startswith(SYSTEM_PREFIX):
        where = (
            f"your own system ({_engine_words(best.engine)}) ranks the {best.method} reconstruction as the person "
            f"whose template leaked, top-{k} among the database's {n} rows, for {best.tpr:.0%} of targets {interval}"
        )
    else:
        where = (
            f"{best.method} reconstructions put the true identity in {_engine_words(best.engine)}'s "
            f"top-{k} among {n} enrolled identities for {best.tpr:.0%} of targets {interval}"
        )
    if best.tpr_ci[0] >= high_tpr:
        level = RiskLevel.HIGH
        rule = (
            f"High, because {where}. The rule: high when any attack re-identifies at least "
            f"{high_tpr:.0%} of targets (95% lower bound) at top-{k} among {n}. "
            "These vectors allow people to be identified: treat them as biometric data."
        )
    elif best.tpr_ci[0] > baseline:
        level = RiskLevel.ELEVATED
        rule = (
            f"Elevated, because {where}: better than chance, below the {high_tpr:.0%} high-risk line. "
            "Stronger attacks exist, so the true risk may be higher."
        )
    else:
        level = RiskLevel.LOW
        rule = (
            f"Low, because no attack beat chance at top-{k} among {n} (best: {where}). "
            "This measures only the attacks that ran; it is not proof that the vectors are safe."
        )
    return Verdict(level, rule, best.method, best.engine, k, n, best.tpr, best.tpr_ci, baseline)


def _engine_words(engine: str) -> str:
    """A local engine by its model's name; a cloud engine by its full name (``aws:rekognition``).

    >>> _engine_words("local:faceres-1024"), _engine_words("aws:rekognition")
    ('faceres-1024', 'aws:rekognition')
    """
    kind, _, name = engine.partition(":")
    return name if kind == "local" else engine
