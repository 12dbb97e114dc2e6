"""What a scan's cloud calls will cost, before any call: ``--dry-run`` and ``--max-cost``.

:func:`plan_calls` counts the requests each engine makes for a gallery and a number of searches
(the engines' own call pattern: see :mod:`fvr_audit.engines.aws` and :mod:`fvr_audit.engines.azure`)
and prices them from :data:`PRICES`, a small table kept in the repository with its date and
sources. Prices are list prices of the first pricing tiers that a scan's volume reaches in a
month that started at zero usage; free tiers, committed-use discounts and taxes are not counted.
Retries of throttled requests are not counted either (AWS does not bill them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fvr_audit.cli.console import Align, Column, TextTable, print_table
from fvr_audit.errors import InputError


@dataclass(frozen=True)
class Tier:
    #: Calls per month up to which this price applies (None: no upper bound).
    up_to: int | None
    usd_per_1000: float


@dataclass(frozen=True)
class PriceTable:
    engine: str
    #: When the prices were read, and where.
    date: str
    sources: tuple[str, ...]
    #: Call kind -> tiered price per 1,000 calls (kinds absent from this map are free).
    billed: dict[str, tuple[Tier, ...]]
    #: USD per 1,000 stored faces per month (billed pro rata; a scan keeps them a few hours).
    storage_usd_per_1000_faces_month: float
    note: str = ""
    #: What of the table was checked against a published source, and what was not (said in --dry-run's README).
    checked: str = ""


_REKOGNITION_GROUP_1 = (
    Tier(1_000_000, 1.00),
    Tier(5_000_000, 0.80),
    Tier(35_000_000, 0.60),
    Tier(None, 0.40),
)
_AZURE_FACE_S0 = (
    Tier(1_000_000, 1.00),
    Tier(5_000_000, 0.80),
    Tier(100_000_000, 0.60),
    Tier(None, 0.40),
)

#: The price table. Rekognition: IndexFaces and SearchFacesByImage are "Group 1" image APIs
#: (confirmed on the vendor's pricing page); CreateCollection, ListFaces, DeleteCollection and the
#: other collection-management calls are not billed. Azure Face S0: every call is a transaction.
PRICES: dict[str, PriceTable] = {
    "aws:rekognition": PriceTable(
        engine="aws:rekognition",
        date="2026-12-03",
        sources=("https://aws.amazon.com/rekognition/pricing/",),
        billed={"IndexFaces": _REKOGNITION_GROUP_1, "SearchFacesByImage": _REKOGNITION_GROUP_1},
        storage_usd_per_1000_faces_month=0.01,
        note="us-east-1 list prices, Group 1 image APIs; face metadata storage $0.00001 per face-month",
        checked=(
            "2026-12-03: the API grouping (IndexFaces, SearchFacesByImage in Group 1) read on the AWS pricing "
            "page; the first-tier $0.0010 per image and the $0.0008 / $0.0006 levels on a 2026-10-07 "
            "transcription of that page; the tier boundaries past the first million and the storage rate "
            "are the long-standing published values, not re-read"
        ),
    ),
    "azure:face": PriceTable(
        engine="azure:face",
        date="2026-12-03",
        sources=("https://azure.microsoft.com/pricing/details/cognitive-services/face-api/",),
        billed={
            kind: _AZURE_FACE_S0
            for kind in ("CreateGroup", "CreatePerson", "AddFace", "Train", "TrainingStatus", "Detect", "Identify",
                         "DeleteGroup")
        },
        storage_usd_per_1000_faces_month=0.01,
        note="Standard (S0) list prices, all Face operations as transactions; face storage $0.01 per 1,000 faces-month",
        checked=(
            "2026-12-03: not re-read (the stored copies of the Azure pricing page held no figures); the "
            "S0 transaction tiers ($1.00 / $0.80 / $0.60 / $0.40 per 1,000) are the long-standing "
            "published values; check the source before relying on the estimate"
        ),
    ),
}


def tiered_usd(calls: int, tiers: tuple[Tier, ...]) -> float:
    """Price of ``calls`` calls in one month that started at zero usage.

    >>> round(tiered_usd(2_000_000, _REKOGNITION_GROUP_1), 2)
    1800.0
    >>> tiered_usd(0, _REKOGNITION_GROUP_1)
    0.0
    """
    usd, below = 0.0, 0
    for tier in tiers:
        top = calls if tier.up_to is None else min(calls, tier.up_to)
        if top > below:
            usd += (top - below) * tier.usd_per_1000 / 1000.0
            below = top
    return usd


@dataclass(frozen=True)
class PlannedCalls:
    kind: str
    count: int
    usd: float


@dataclass(frozen=True)
class CallPlan:
    """The requests one engine would make in a scan, and their estimated price."""

    engine: str
    calls: tuple[PlannedCalls, ...]
    #: Stored faces for at most a day (the scan deletes them), pro rata of the monthly price.
    storage_usd: float
    usd: float
    prices: PriceTable

    def count(self, kind: str) -> int:
        return sum(c.count for c in self.calls if c.kind == kind)

    @property
    def requests(self) -> int:
        return sum(c.count for c in self.calls)


#: Training status polls planned for Azure (training of a 5,000-person group takes a few minutes).
AZURE_TRAINING_POLLS = 60
STORAGE_DAYS = 1.0


def plan_calls(engine_spec: str, enrolled_photos: int, identities: int, searches: int) -> CallPlan:
    """The calls ``engine_spec`` makes to enroll ``enrolled_photos`` photos of ``identities``
    identities and answer ``searches`` queries, with their estimated price.

    >>> plan = plan_calls("aws:rekognition", 5000, 5000, 500)
    >>> plan.count("IndexFaces"), plan.count("SearchFacesByImage"), round(plan.usd, 2)
    (5000, 500, 5.5)
    >>> azure = plan_calls("azure:face", 5000, 5000, 500)
    >>> azure.count("Detect"), azure.count("Identify"), azure.count("CreatePerson")
    (500, 50, 5000)
    """
    if min(enrolled_photos, identities, searches) < 0:
        raise ValueError("counts must be 0 or more")
    if engine_spec == "aws:rekognition":
        kinds = [
            ("CreateCollection", 1),
            ("IndexFaces", enrolled_photos),
            ("SearchFacesByImage", searches),
            ("DeleteCollection", 1),
        ]
    elif engine_spec == "azure:face":
        from fvr_audit.engines.azure import IDENTIFY_BATCH

        kinds = [
            ("CreateGroup", 1),
            ("CreatePerson", identities),
            ("AddFace", enrolled_photos),
            ("Train", 1),
            ("TrainingStatus", AZURE_TRAINING_POLLS),
            ("Detect", searches),
            ("Identify", math.ceil(searches / IDENTIFY_BATCH)),
            ("DeleteGroup", 1),
        ]
    else:
        raise InputError(f"{engine_spec}: no price table (only cloud engines are priced: {', '.join(PRICES)})")
    prices = PRICES[engine_spec]
    # Tiers apply to each billed group's monthly volume: kinds sharing a tier table are summed.
    volume: dict[int, int] = {}
    for kind, count in kinds:
        if kind in prices.billed:
            volume[id(prices.billed[kind])] = volume.get(id(prices.billed[kind]), 0) + count
    calls = []
    for kind, count in kinds:
        tiers = prices.billed.get(kind)
        if tiers is None or count == 0:
            usd = 0.0
        else:
            total = volume[id(tiers)]
            usd = tiered_usd(total, tiers) * count / total
        calls.append(PlannedCalls(kind, count, usd))
    storage = enrolled_photos / 1000.0 * prices.storage_usd_per_1000_faces_month * STORAGE_DAYS / 30.0
    return CallPlan(engine_spec, tuple(calls), storage, sum(c.usd for c in calls) + storage, prices)


def check_cost(plans: list[CallPlan], max_cost: float | None) -> None:
    """A one-line InputError (exit 2) when the plans' estimate is above ``max_cost`` USD: called
    before the first request, so nothing is spent.

    >>> check_cost([plan_calls("aws:rekognition", 5000, 5000, 500)], 5.0)
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --max-cost 5: the cloud calls are estimated at $5.50 (aws:rekognition $5.50: 5,502 requests); raise --max-cost or make the scan smaller (see --dry-run)
    """
    if max_cost is None:
        return
    if not (max_cost >= 0 and math.isfinite(max_cost)):
        raise InputError(f"--max-cost {max_cost}: give an amount in USD, 0 or more")
    total = sum(plan.usd for plan in plans)
    if total > max_cost:
        parts = "; ".join(f"{plan.engine} ${plan.usd:,.2f}: {plan.requests:,} requests" for plan in plans)
        raise InputError(
            f"--max-cost {max_cost:g}: the cloud calls are estimated at ${total:,.2f} ({parts}); "
            "raise --max-cost or make the scan smaller (see --dry-run)"
        )


def plans_table(plans: list[CallPlan]) -> TextTable:
    """One table: a row per engine and call kind, a total per engine, prices' date and source."""
    rows = []
    for plan in plans:
        for call in plan.calls:
            rows.append((plan.engine, call.kind, f"{call.count:,}", f"${call.usd:,.2f}"))
        rows.append((plan.engine, f"face storage ({STORAGE_DAYS:g} day at most)", "", f"${plan.storage_usd:,.2f}"))
        rows.append((plan.engine, "total", f"{plan.requests:,}", f"${plan.usd:,.2f}"))
    sources = "; ".join(f"{p.engine}: {p.prices.date} {', '.join(p.prices.sources)}" for p in plans)
    return TextTable.build(
        f"Planned cloud calls and estimated cost (USD, list prices; {sources})",
        [Column("engine"), Column("call"), Column("requests", Align.RIGHT), Column("est. USD", Align.RIGHT)],
        rows,
    )


def render_plans(plans: list[CallPlan], target=None) -> None:
    """Print :func:`plans_table` (never wrapped or cut; see :mod:`fvr_audit.cli.console`)."""
    print_table(plans_table(plans), target)
