"""The provisionOnDemand rate limit ("5 requests per 10 seconds"), with a configurable scope and window.

Graph documents the limit but not its scope, so the emulator lets tests choose one key for the whole
tenant or one per job.  A sliding window of call start times is used: it is the strictest reading of
"N calls per window" and gives an exact ``Retry-After``.  Throttled calls are not recorded, so they do not
consume budget.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$")


class RateScope(StrEnum):
    """Which calls share one budget."""

    TENANT = "tenant"
    JOB = "job"


@dataclass(frozen=True)
class RateLimit:
    """At most ``calls`` calls started in any ``window_seconds`` sliding window."""

    calls: int
    window_seconds: float

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        """Parse ``N/<number>s`` or ``N/<number>ms`` (e.g. ``5/10s``, ``2/200ms``)."""
        match = _SPEC.match(spec)
        if match is None:
            raise ValueError(f"rate limit must look like '5/10s' or '2/200ms', got {spec!r}")
        calls = int(match.group(1))
        amount = float(match.group(2))
        seconds = amount / 1000.0 if match.group(3) == "ms" else amount
        if calls < 1 or seconds <= 0:
            raise ValueError(f"rate limit needs at least one call in a positive window, got {spec!r}")
        return cls(calls=calls, window_seconds=seconds)

    def __str__(self) -> str:
        if self.window_seconds < 1 or not float(self.window_seconds).is_integer():
            return f"{self.calls}/{round(self.window_seconds * 1000)}ms"
        return f"{self.calls}/{int(self.window_seconds)}s"


class RateLimiter:
    """Sliding-window limiter keyed by scope key (``tenant`` or ``spId/jobId``)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._starts: dict[str, deque[float]] = {}

    @property
    def limit(self) -> RateLimit:
        """The limit in force."""
        return self._limit

    def configure(self, limit: RateLimit) -> None:
        """Switch to a new limit; old windows are dropped because they were counted against another rule."""
        self._limit = limit
        self._starts.clear()

    def reset(self) -> None:
        """Forget every window (used by ``/_emulator/reset``)."""
        self._starts.clear()

    def try_acquire(self, key: str) -> float | None:
        """Record a call start and return None, or return the seconds until one would be allowed."""
        now = self._clock()
        window = self._starts.setdefault(key, deque())
        horizon = now - self._limit.window_seconds
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) < self._limit.calls:
            window.append(now)
            return None
        return window[0] + self._limit.window_seconds - now


def retry_after_header(wait_seconds: float) -> str:
    """Graph sends whole seconds; round up so a client that obeys it is never throttled again at once."""
    return str(max(1, math.ceil(wait_seconds)))
