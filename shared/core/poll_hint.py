"""An honest ``Retry-After`` for a pending request (pure): when polling again can tell something new.

Logic Apps polls at the ``Retry-After`` it is given; 2 s for a request scheduled days ahead or queued behind
thousands of calls is thousands of useless polls. The hint is the time until the request's next call is due
(``notBefore``, a retry's backoff, a reserved slot), or until the shared limiter has room for it if that is
later (the scope's backlog as booked), plus the time its own remaining calls take at the limit, bounded to
2-300 s so a poller still looks at least every 5 minutes.
"""

from __future__ import annotations

import math
from datetime import datetime

from shared.core.pacing import RateLimit

MIN_SECONDS = 2
MAX_SECONDS = 300


def retry_after(
    now: datetime, next_due: datetime | None, unfinished_calls: int, next_free: datetime | None, limit: RateLimit
) -> int:
    """Seconds to wait before polling again."""
    start = max(now, next_due or now, next_free or now)
    rate = limit.calls / limit.window_seconds
    drain = max(0, unfinished_calls - 1) / rate if rate > 0 else 0.0
    estimate = (start - now).total_seconds() + drain
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(estimate))))
