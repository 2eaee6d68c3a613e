"""The :class:`~shared.core.ports.HostProbe` port over httpx: one bounded ``GET``, and only its status is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.core.ports import HostAnswer

if TYPE_CHECKING:
    import httpx

PROBE_TIMEOUT_SECONDS = 5.0


class HttpxHostProbe:
    """One ``GET`` per question with a timeout; any HTTP answer is a status, anything else is no answer."""

    def __init__(self, timeout: float = PROBE_TIMEOUT_SECONDS, transport: httpx.AsyncBaseTransport | None = None):
        self._timeout = timeout
        self._transport = transport

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HostAnswer:
        """The status of ``GET url``; ``HostAnswer(None, reason)`` when no answer came (timeout, refused, bad URL)."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
                response = await client.get(url, headers=dict(headers or {}))
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # ValueError: UnicodeError and kin
            return HostAnswer(None, type(exc).__name__)
        challenge = response.headers.get("www-authenticate", "").lower().startswith("bearer")
        return HostAnswer(response.status_code, bearer_challenge=challenge)
