"""How long the integration tests wait, in one place.

The suite must pass on a loaded 2-core machine (CI runners, several test runs at once). There one HTTP
answer can take seconds (the app's first Graph call imports the SDK and stalls its event loop for ~3 s
even when idle, and Python and Azurite processes queue for a core), and httpx's default 5 s timeout turns
that into a red test. So every HTTP call names :data:`HTTP_TIMEOUT`, and every wait polls a condition
until :data:`DEADLINE`: a healthy run never waits that long, it only decides how long a broken one takes
to fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

#: Seconds for one HTTP exchange (connect, write, read, pool): above ``Prefer: wait``'s 60 s maximum.
HTTP_TIMEOUT = 120.0
#: Seconds to wait for a condition (a request to finish, a message to arrive, a process to start).
DEADLINE = 120.0
#: Seconds between two looks at a condition.
POLL_INTERVAL = 0.2

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Call ``check`` until it returns something truthy and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last value {result!r})")
        time.sleep(POLL_INTERVAL)
    return result
