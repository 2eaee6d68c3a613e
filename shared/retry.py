"""What to do after a Graph call did not produce an outcome (pure).

The SDK's own RetryHandler is switched off for provisionOnDemand, so every attempt is ours: paced and
recorded. A worker never sleeps on a retry: it re-enqueues the work item with a visibility delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal["throttled", "transient", "permanent"]

MAX_TRANSIENT_ATTEMPTS = 5
MAX_THROTTLED_ATTEMPTS = 30
BASE_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 300.0


@dataclass(frozen=True)
class Decision:
    """Retry after ``delay_seconds``, or give up (``retry`` false)."""

    retry: bool
    delay_seconds: float = 0.0


def classify(http_status: int | None) -> Kind:
    """429 is throttling; 5xx, 408 and no answer at all are transient; every other error is final."""
    if http_status == 429:
        return "throttled"
    if http_status is None or http_status >= 500 or http_status == 408:
        return "transient"
    return "permanent"


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal" jitter: between half and all of base * 2^(attempts-1), capped.

    Half the delay is guaranteed so a retry never comes back almost at once; the random half spreads
    the retries of many items that failed together.
    """
    ceiling = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** max(0, attempts - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def decide(kind: Kind, attempts: int, retry_after: float | None, rng: random.Random | None = None) -> Decision:
    """Decide after ``attempts`` attempts (the failed one included)."""
    if kind == "permanent":
        return Decision(False)
    if kind == "throttled":
        if attempts >= MAX_THROTTLED_ATTEMPTS:
            return Decision(False)
        delay = retry_after if retry_after is not None and retry_after >= 0 else backoff(attempts, rng)
        return Decision(True, min(delay, MAX_DELAY_SECONDS))
    if attempts >= MAX_TRANSIENT_ATTEMPTS:
        return Decision(False)
    return Decision(True, backoff(attempts, rng))
