"""An honest Retry-After on 202s: a request due in a minute is polled in about a minute, one due in days every
5 minutes, one due now at the minimum; the status GET says the same as the POST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devhost.stack import Stack
from tests.integration.timeouts import HTTP_TIMEOUT

pytestmark = pytest.mark.integration


def _post(stack: Stack, event: str, delay: timedelta) -> httpx.Response:
    body = {
        "eventId": event,
        "target": "seed-scim-app",
        "notBefore": (datetime.now(UTC) + delay).isoformat(),
        "subjects": [{"objectId": f"retry-after-{event}", "objectTypeName": "User"}],
    }
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    return posted


@pytest.mark.parametrize(("delay", "low", "high"), [(timedelta(seconds=90), 60, 91), (timedelta(days=3), 300, 300)])
def test_retry_after_follows_the_due_time(stack: Stack, delay: timedelta, low: int, high: int) -> None:
    posted = _post(stack, f"retry-after-{int(delay.total_seconds())}", delay)
    assert low <= int(posted.headers["Retry-After"]) <= high
    polled = httpx.get(posted.headers["Location"], timeout=HTTP_TIMEOUT)
    assert polled.status_code == 202
    assert low <= int(polled.headers["Retry-After"]) <= high
