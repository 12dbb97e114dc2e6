"""Retrying calls to a remote service: exponential backoff with full jitter, one rule for every client.

The HTTP extractor and the cloud engines (AWS Rekognition, Azure Face) all retry the same way:

* a failed attempt that may succeed later (throttling, HTTP 429, 5xx, a dropped connection) waits
  ``uniform(0, min(cap, base * 2 ** (n - 1)))`` seconds after the n-th failure ("full jitter",
  M. Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015): concurrent workers
  that were throttled together do not retry together;
* a ``Retry-After`` given by the server replaces the computed wait;
* it gives up after ``attempts`` tries, or when the next wait would take the total waiting past
  ``budget_s``, whichever comes first;
* anything else fails at once.

Sleep, clock and random source are injectable, so tests run in no time and deterministically.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from fvr_audit.errors import ServiceError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one operation."""

    #: Tries in all, the first one included (1: no retry).
    attempts: int = 5
    #: Upper bound of the first wait (seconds); doubles per failure up to ``cap_s``.
    base_s: float = 0.5
    cap_s: float = 20.0
    #: Most total waiting (Retry-After included) before giving up; None: no limit but ``attempts``.
    budget_s: float | None = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be 1 or more, got {self.attempts}")
        if not (self.base_s >= 0 and self.cap_s >= 0):
            raise ValueError("backoff base and cap must be 0 or more")

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failure (1-based), with full jitter.

        >>> policy = RetryPolicy(base_s=1.0, cap_s=5.0)
        >>> class Top(random.Random):
        ...     def uniform(self, a, b): return b
        >>> [policy.backoff(n, Top()) for n in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5.0]
        """
        ceiling = min(self.cap_s, self.base_s * (2 ** (failures - 1)))
        return rng.uniform(0.0, ceiling)


class GiveUp(Exception):
    """Raised by :meth:`Attempts.wait_after_failure` when no further attempt will be made."""

    def __init__(self, attempts: int, detail: str = "") -> None:
        super().__init__(detail or f"{attempts} attempts")
        self.attempts = attempts
        #: Appended to the last problem: why retrying stopped before ``attempts`` ran out ("" otherwise).
        self.detail = detail

    def message(self, problem: str) -> str:
        """``<problem>[; gave up, ...] (<n> attempts)``: the one line a ServiceError carries."""
        return f"{problem}{self.detail} ({attempts_text(self.attempts)})"


class Attempts:
    """The retry state of one operation: failures so far and waiting spent.

    >>> state = Attempts(RetryPolicy(attempts=3, base_s=0.0, budget_s=None))
    >>> state.wait_after_failure(), state.wait_after_failure(retry_after=2.0)
    (0.0, 2.0)
    >>> state.wait_after_failure()
    Traceback (most recent call last):
    fvr_audit.io.service.GiveUp: 3 attempts
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng or random.Random()
        self.failures = 0
        self.waited = 0.0

    def wait_after_failure(self, retry_after: float | None = None) -> float:
        """Count a failed attempt; the seconds to wait before the next one, or :class:`GiveUp`."""
        self.failures += 1
        if self.failures >= self.policy.attempts:
            raise GiveUp(self.failures)
        delay = retry_after if retry_after is not None else self.policy.backoff(self.failures, self.rng)
        budget = self.policy.budget_s
        if budget is not None and self.waited + delay > budget:
            raise GiveUp(
                self.failures,
                f"; gave up, waiting {delay:g} s more would pass the {budget:g} s backoff budget",
            )
        self.waited += delay
        return delay


@dataclass(frozen=True)
class Retryable:
    """A failure worth retrying: what went wrong (one line) and the server's Retry-After, if any."""

    problem: str
    retry_after: float | None = None


def call_with_retries(
    operation: Callable[[], T],
    *,
    classify: Callable[[Exception], Retryable | None],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``operation()``, retried while ``classify`` calls its exception retryable.

    An exception ``classify`` does not retry propagates unchanged; running out of attempts or
    budget raises :class:`~fvr_audit.errors.ServiceError` (exit code 3): ``<what>: <problem> (n attempts)``.

    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3: raise TimeoutError("slow")
    ...     return "ok"
    >>> call_with_retries(flaky, classify=lambda e: Retryable("timed out"), policy=RetryPolicy(),
    ...                   what="svc", sleep=lambda s: None), len(calls)
    ('ok', 3)
    >>> call_with_retries(lambda: 1 / 0, classify=lambda e: Retryable("boom"), policy=RetryPolicy(attempts=2),
    ...                   what="svc", sleep=lambda s: None)
    Traceback (most recent call last):
    fvr_audit.errors.ServiceError: svc: boom (2 attempts)
    """
    state = Attempts(policy, rng)
    while True:
        try:
            return operation()
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
            try:
                delay = state.wait_after_failure(verdict.retry_after)
            except GiveUp as give_up:
                raise ServiceError(f"{what}: {give_up.message(verdict.problem)}") from None
            sleep(delay)


def attempts_text(count: int) -> str:
    """How many attempts were made, in words.

    >>> attempts_text(1), attempts_text(3)
    ('1 attempt', '3 attempts')
    """
    return f"{count} attempt" if count == 1 else f"{count} attempts"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None.

    >>> parse_retry_after("2"), parse_retry_after("0.5"), parse_retry_after("soon"), parse_retry_after(None)
    (2.0, 0.5, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=datetime(2015, 10, 21, 7, 28, tzinfo=UTC))
    10.0
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
