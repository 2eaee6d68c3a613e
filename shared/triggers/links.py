"""Absolute links the app hands out (``Location``), and whether the caller's function key may travel in them.

Where a link points: ``PUBLIC_BASE_URL`` when it is set (the Bicep sets it to the app's https host name), so
a forged ``Host`` or ``X-Forwarded-Host`` can never send pollers (and the key they carry) elsewhere; only
when it is unset (local runs) the scheme and host of the request's own URL.

Which key travels: Logic Apps polls ``Location`` exactly as given and does not resend the ``code`` of the
first request's URI, so a key the caller sent as ``?code=`` is copied into ``Location``, pointing only at
the same app. A key sent in ``x-functions-key`` never is (that caller resends its header). The master key
never travels: the Python worker is not told which key the host accepted, so the app asks the host itself,
once per key and process: a key that opens ``GET /admin/host/status`` (admin level: only the master key does)
stays out of every link. If that question gets no answer, the key stays out too (safe, not convenient).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit

from shared import telemetry

if TYPE_CHECKING:
    import httpx

log = telemetry.get_logger(__name__)

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix
ADMIN_STATUS_PATH = "/admin/host/status"
PROBE_TIMEOUT_SECONDS = 5.0


def base_url(request_url: str, public_base_url: str | None) -> str:
    """Where links point: ``PUBLIC_BASE_URL``, else the request's own scheme and host (local runs)."""
    if public_base_url:
        return public_base_url.rstrip("/")
    parts = urlsplit(request_url)
    return f"{parts.scheme}://{parts.netloc}"


def api_url(base: str, *segments: str, key: str | None = None) -> str:
    """``{base}/api/{segments}``, each segment percent-encoded, with ``?code=`` when a key travels."""
    path = "/".join(quote(segment, safe="") for segment in segments)
    url = f"{base}/{ROUTE_PREFIX}/{path}"
    return f"{url}?{urlencode({'code': key})}" if key else url


_KEY = re.compile(r"[\x21-\x7e]{1,512}")  # host keys are base64url-like; anything else is no key of ours


def query_key(params: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key the host read from the query (``code``), or None when it read a header (that one wins).

    A value that cannot be a key (empty, spaces, control or non-ASCII characters) is None too: the host would
    have refused it in Azure, and it could not travel in a URL or a header as it is.
    """
    if headers.get("x-functions-key"):
        return None
    code = params.get("code") or ""
    return code if _KEY.fullmatch(code) else None


class AdminKeyProbe:
    """Asks the host whether a key is admin-level (the master key); remembers the answer per process."""

    def __init__(
        self,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        remember: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._transport = transport
        self._remember = remember
        self._known: OrderedDict[str, bool] = OrderedDict()
        self._lock = asyncio.Lock()

    async def may_travel(self, base: str, key: str) -> bool:
        """True when ``key`` is not admin-level at ``base``; False when it is, or when the host did not say."""
        digest = hashlib.sha256(f"{base}\n{key}".encode()).hexdigest()  # never keep the key itself
        async with self._lock:
            if digest in self._known:
                self._known.move_to_end(digest)
                return self._known[digest]
            answer = await self._ask(base, key)
            if answer is not None:
                self._known[digest] = answer
                while len(self._known) > self._remember:
                    self._known.popitem(last=False)
        return bool(answer)

    async def _ask(self, base: str, key: str) -> bool | None:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
                response = await client.get(base + ADMIN_STATUS_PATH, headers={"x-functions-key": key})
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # ValueError: UnicodeError and kin
            log.warning("could not ask the host whether the caller's key is the master key (%s)", type(exc).__name__)
            return None
        # 401/403: the key does not open admin routes, so it is not the master key. Anything else (200, or a
        # 404 where no admin API answers, e.g. behind a proxy) leaves the key out of links.
        return response.status_code in (401, 403)


admin_keys = AdminKeyProbe()


async def travelling_key(
    params: Mapping[str, str], headers: Mapping[str, str], base: str, probe: AdminKeyProbe | None = None
) -> str | None:
    """The key to copy into links for this request: from ``?code=`` only, and never the master key."""
    key = query_key(params, headers)
    if key is None:
        return None
    return key if await (probe or admin_keys).may_travel(base, key) else None
