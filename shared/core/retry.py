"""What to do after a Graph call did not produce an outcome (pure).

The SDK's own RetryHandler is switched off for provisionOnDemand, so every attempt is ours: paced and
recorded. A worker never sleeps on a retry: it re-enqueues the work item with a visibility delay.

Three kinds of "not now", each bounded differently:

- **transient** (5xx, 408, a timeout, a dropped connection, anything unexpected): Graph or the network is
  having an outage. Retried with exponential backoff and jitter for a *time budget*
  (``GRAPH_RETRY_BUDGET_MINUTES``) measured from the first failure of the current streak, so an outage of
  most of an hour is waited out instead of failing after a few quick tries. No retry is scheduled past the
  budget's end; the first failure at or after it is final.
- **throttled** (429): Graph is up and asks us to slow down. Waits ``Retry-After`` (our own backoff when it
  is absent), does not consume the transient budget, and has its own generous cap.
- **token_expired** (401 with an expired token): the adapter has dropped its token, so one immediate retry
  with a fresh token settles it; a second one in a row is final.

Everything else is final at once, among it a managed identity that could not give a token (no POST was
made; retrying would not fix ``AZURE_CLIENT_ID``) and a 200 whose body cannot be read (the raw text is kept).
A hard cap on attempts stands behind all of it, so no call is ever made without bound.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Kind = Literal["throttled", "transient", "token_expired", "permanent"]

#: Backstop for every kind together: with the largest budget allowed (see settings) and every 429 the cap
#: allows, a call still stays below it; reaching it means something loops.
HARD_MAX_ATTEMPTS = 200
#: 429s one call may receive before it is failed (each waits Retry-After; the shared limiter blocks too).
MAX_THROTTLED_ATTEMPTS = 50
BASE_DELAY_SECONDS = 2.0
#: The longest backoff between two transient attempts: an outage is probed at least this often.
MAX_DELAY_SECONDS = 300.0
#: The longest Retry-After honoured as such (a larger value is Graph's business, but a queue message must
#: come back some time; the shared limiter still blocks every instance for the full Retry-After).
MAX_RETRY_AFTER_SECONDS = 3600.0
DEFAULT_BUDGET_SECONDS = 60 * 60.0

#: Codes the Graph adapter produces that are final at once, whatever their http_status.
FAIL_AT_ONCE_CODES = frozenset({"ManagedIdentityUnavailable", "UnparseableResponse"})
#: Codes the adapter produces for no answer at all (http_status None): an outage until proven otherwise.
TRANSIENT_CODES = frozenset({"Timeout", "ConnectionError", "UnexpectedError"})
TOKEN_EXPIRED = "TokenExpired"  # noqa: S105 (an error code, not a secret)


@dataclass(frozen=True)
class Policy:
    """The operator-tunable part: how long an outage is waited out, and the hard cap."""

    budget_seconds: float = DEFAULT_BUDGET_SECONDS
    max_attempts: int = HARD_MAX_ATTEMPTS
    #: The jitter's source (None: the module's); tests pass a seeded one.
    rng: random.Random | None = field(default=None, compare=False)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class History:
    """What the call row says about earlier attempts, as seen right after the one that just failed.

    ``attempts`` and ``throttles`` include the failure being decided on; ``streak_started`` is when the
    current run of transient failures began (None: this failure starts one) and ``streak`` how many it
    holds, this one included (0: count it as ``attempts``); ``previous_code`` is the error code the attempt
    before this one ended with.
    """

    attempts: int
    throttles: int = 0
    streak_started: datetime | None = None
    previous_code: str | None = None
    streak: int = 0


@dataclass(frozen=True)
class Decision:
    """Retry after ``delay_seconds``, or give up (``retry`` false) and say why when it was a limit."""

    retry: bool
    delay_seconds: float = 0.0
    reason: str | None = None


def classify(http_status: int | None, code: str | None = None) -> Kind:
    """The kind of a failure, by its HTTP status and its code (the adapter's own codes come first)."""
    if code in FAIL_AT_ONCE_CODES:
        return "permanent"
    if code == TOKEN_EXPIRED:
        return "token_expired"
    if http_status == 429:
        return "throttled"
    if code in TRANSIENT_CODES:
        return "transient"
    if http_status is None or http_status >= 500 or http_status == 408:
        return "transient"
    return "permanent"


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal" jitter: between half and all of base * 2^(attempts-1), capped.

    Half the delay is guaranteed so a retry never comes back almost at once; the random half spreads
    the retries of many items that failed together.
    """
    ceiling = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** min(max(0, attempts - 1), 30))
    return (rng or random).uniform(ceiling / 2, ceiling)


def decide(
    kind: Kind,
    history: History,
    now: datetime,
    *,
    retry_after: float | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """Retry or give up after a failed attempt of ``kind`` at ``now``."""
    if kind == "permanent":
        return Decision(False)
    if history.attempts >= policy.max_attempts:
        return Decision(False, reason=f"Stopped after {history.attempts} attempts (the hard cap).")
    if kind == "token_expired":
        if history.previous_code == TOKEN_EXPIRED:
            return Decision(False, reason="Graph said the token expired twice in a row, with a fresh token.")
        return Decision(True, 0.0)
    if kind == "throttled":
        if history.throttles >= MAX_THROTTLED_ATTEMPTS:
            return Decision(False, reason=f"Graph throttled this call {history.throttles} times.")
        if retry_after is not None and retry_after >= 0:
            return Decision(True, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return Decision(True, backoff(history.throttles, policy.rng))
    started = history.streak_started or now
    remaining = (started + timedelta(seconds=policy.budget_seconds) - now).total_seconds()
    if remaining <= 0:
        minutes = policy.budget_seconds / 60
        return Decision(
            False,
            reason=f"Graph or the network kept failing for {minutes:g} minutes (GRAPH_RETRY_BUDGET_MINUTES), "
            f"over {history.attempts} attempts.",
        )
    # the exponent is the length of this outage, not of the call's whole life: a dropped connection after
    # an earlier, ended outage (or a few 429s) is retried in seconds, not minutes
    return Decision(True, min(backoff(history.streak or history.attempts, policy.rng), remaining))
