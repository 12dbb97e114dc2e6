"""Audit results: frozen dataclasses and their versioned JSON form (``results.json``).

Schema ``fvr-audit/results`` version 2 (documented in README.md, "results.json"; version 2 added
the ``system:<F>`` engine, the deployed system judging reconstructions against the database's
own rows, which needs no labels):

* ``records``: one per (method, engine, K, N): tpr, fpr, no_match (they add up to 1), the tpr's
  95% Wilson interval ``tpr_ci``, the random ``baseline`` K/N, reconstructions and seeds used.
  ``method`` is a reconstruction method, or the reference rows ``"original"`` (the target's own
  photo: the upper bound) and ``"random"`` (chance).
* ``same_class_false_positives``: paper Table II, per (method, engine) at the gate's K and N.
* ``verification``: success attack rate at the engine's false-match rate (default 1e-3).
* ``methods``, ``engines``, ``targets``, ``settings``, ``extractor``, ``database``, ``timings``,
  ``verdict``, and ``tool`` (name, version).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum

SCHEMA_NAME = "fvr-audit/results"
SCHEMA_VERSION = 2

#: Rows that are not attacks but make the attack figures interpretable.
REFERENCE_METHODS = ("original", "random")

LOWER_BOUND_NOTICE = (
    "These figures are a lower bound on the re-identification risk: they measure the attacks this "
    "audit ran, with its compute budget. Stronger reconstruction attacks exist and will keep improving."
)


class RiskLevel(str, Enum):
    HIGH = "high"
    ELEVATED = "elevated"
    LOW = "low"
    #: No reconstruction method ran: nothing was measured.
    NOT_ASSESSED = "not-assessed"


@dataclass(frozen=True)
class Record:
    """Metric 1 for one (method, engine, K, N)."""

    method: str
    engine: str
    k: int
    n: int
    tpr: float
    fpr: float
    no_match: float
    tpr_ci: tuple[float, float]
    baseline: float
    queries: int
    seeds: int


@dataclass(frozen=True)
class QueryCurvePoint:
    """Metric 1 at the gate's K and N for the faces a query-driven attack held after ``queries``
    queries per target (at most): how re-identification grows with what the attacker spends."""

    method: str
    engine: str
    queries: int
    k: int
    n: int
    tpr: float
    tpr_ci: tuple[float, float]
    #: The attack's answer (its final faces), not an earlier checkpoint.
    final: bool = False


@dataclass(frozen=True)
class SameClassFalsePositives:
    method: str
    engine: str
    k: int
    n: int
    false_positives: int
    share: float


@dataclass(frozen=True)
class Verification:
    """Share of reconstructions the engine accepts as their target at a fixed false-match rate."""

    method: str
    engine: str
    fmr: float
    threshold: float
    sar: float
    sar_ci: tuple[float, float]
    impostor_comparisons: int


@dataclass(frozen=True)
class MethodSummary:
    name: str
    access: str
    description: str
    reference: str
    models_used: tuple[str, ...]
    queries_per_target_mean: float
    queries_per_target_max: int
    queries_total: int
    seconds: float
    #: cosine(F(x^), v) as F sees its reconstruction: median, min, max.
    similarity_median: float | None
    similarity_min: float | None
    similarity_max: float | None
    settings: dict = field(default_factory=dict)
    #: Requests this attack sent to F when F is a service (HTTP), measuring included; 0 for local models.
    service_queries: int = 0


@dataclass(frozen=True)
class EngineSummary:
    name: str
    description: str
    dim: int
    geometry: str
    sha256: str | None
    #: Where the gallery came from, in words (shown in the report).
    gallery_source: str
    gallery_identities: int
    gallery_vectors: int
    threshold: float | None
    #: True when the engine is the extractor F itself (the paper's minimal baseline).
    is_f: bool
    #: The name of the engine's model (its extractor): what an attack's ``models_used`` names.
    model: str = ""
    #: Where the threshold came from (``--fmr`` on impostor pairs, a given value, the service default).
    threshold_source: str = ""
    #: What a score is, on the engine's own scale.
    score_scale: str = "cosine similarity"
    #: Whether the engine is a remote service (a cloud engine: photos leave the machine).
    remote: bool = False
    #: Largest K the engine returns (cloud services cap it); None: no cap.
    max_k: int | None = None
    #: Whether every identity's score was available (N swept) or only the top matches (N = gallery).
    scores_every_identity: bool = True


@dataclass(frozen=True)
class Target:
    index: int
    label: str
    path: str | None


@dataclass(frozen=True)
class Verdict:
    level: RiskLevel
    #: The rule that set the level, in plain words.
    rule: str
    method: str | None
    engine: str | None
    k: int
    n: int
    tpr: float | None
    tpr_ci: tuple[float, float] | None
    baseline: float


@dataclass(frozen=True)
class AuditResults:
    tool_version: str
    created: str
    database: dict
    extractor: dict
    settings: dict
    targets: tuple[Target, ...]
    methods: tuple[MethodSummary, ...]
    engines: tuple[EngineSummary, ...]
    records: tuple[Record, ...]
    same_class_false_positives: tuple[SameClassFalsePositives, ...]
    verification: tuple[Verification, ...]
    verdict: Verdict
    timings: dict
    notes: tuple[str, ...] = ()
    #: Re-identification against queries of the query-driven (black-box) attacks, per local engine.
    query_curve: tuple[QueryCurvePoint, ...] = ()

    def to_json_dict(self) -> dict:
        body = _plain(self)
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "fvr-audit", "version": body.pop("tool_version")},
            "lower_bound_notice": LOWER_BOUND_NOTICE,
            **body,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2, allow_nan=False) + "\n"

    def record(self, method: str, engine: str, k: int, n: int) -> Record | None:
        for record in self.records:
            if (record.method, record.engine, record.k, record.n) == (method, engine, k, n):
                return record
        return None


def _plain(value):
    """Dataclasses, enums and tuples -> JSON-ready dicts, strings and lists (floats rounded)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def results_from_json(body: dict, *, source: str = "results.json") -> AuditResults:
    """An :class:`AuditResults` back from its JSON form (to re-render a report from ``results.json``).

    >>> from fvr_audit.audit.results import results_from_json
    >>> import json
    >>> results_from_json({"schema": "other"})
    Traceback (most recent call last):
    ...
    fvr_audit.errors.InputError: results.json: not an fvr-audit results file (schema 'fvr-audit/results' expected)
    """
    from fvr_audit.errors import InputError

    if not isinstance(body, dict) or body.get("schema") != SCHEMA_NAME:
        raise InputError(f"{source}: not an fvr-audit results file (schema {SCHEMA_NAME!r} expected)")
    if body.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{source}: results schema version {body.get('schema_version')!r}; this version reads {SCHEMA_VERSION}")

    def make(cls, row: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        for name in ("tpr_ci", "sar_ci", "models_used"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    try:
        verdict = dict(body["verdict"])
        verdict["level"] = RiskLevel(verdict["level"])
        return AuditResults(
            tool_version=body["tool"]["version"],
            created=body["created"],
            database=body["database"],
            extractor=body["extractor"],
            settings=body["settings"],
            targets=tuple(make(Target, t) for t in body["targets"]),
            methods=tuple(make(MethodSummary, m) for m in body["methods"]),
            engines=tuple(make(EngineSummary, e) for e in body["engines"]),
            records=tuple(make(Record, r) for r in body["records"]),
            same_class_false_positives=tuple(make(SameClassFalsePositives, r) for r in body["same_class_false_positives"]),
            verification=tuple(make(Verification, v) for v in body["verification"]),
            verdict=make(Verdict, verdict),
            timings=body["timings"],
            notes=tuple(body.get("notes", ())),
            query_curve=tuple(make(QueryCurvePoint, p) for p in body.get("query_curve", ())),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{source}: malformed results ({type(error).__name__}: {error})") from None
