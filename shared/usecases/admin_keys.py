"""Whether a caller's function key may travel in the links the app hands out: never the master key.

The Python worker is not told which key the host accepted, so the app asks the host itself, once per key and
process: a key that opens ``GET /admin/host/status`` (admin level: only the master key does) stays out of
every link. If that question gets no answer, the key stays out too (safe, not convenient).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict

from shared import telemetry
from shared.core.ports import HostProbe

log = telemetry.get_logger(__name__)

ADMIN_STATUS_PATH = "/admin/host/status"


class AdminKeyCheck:
    """Asks the host whether a key is admin-level (the master key); remembers the answer per process."""

    def __init__(self, probe: HostProbe, remember: int = 256) -> None:
        self._probe = probe
        self._remember = remember
        self._known: OrderedDict[str, bool] = OrderedDict()
        self._lock = asyncio.Lock()

    async def may_travel(self, base: str, key: str, authorization: str | None = None) -> bool:
        """True when ``key`` is not admin-level at ``base``; False when it is, or when the host did not say.

        ``authorization``: the caller's own ``Authorization`` header, sent along so that App Service
        Authentication (``AUTH_MODE=entra``) lets the question through to the host; it is never stored.
        """
        digest = hashlib.sha256(f"{base}\n{key}".encode()).hexdigest()  # never keep the key itself
        async with self._lock:
            if digest in self._known:
                self._known.move_to_end(digest)
                return self._known[digest]
            answer = await self._ask(base, key, authorization)
            if answer is not None:
                self._known[digest] = answer
                while len(self._known) > self._remember:
                    self._known.popitem(last=False)
        return bool(answer)

    async def _ask(self, base: str, key: str, authorization: str | None) -> bool | None:
        headers = {"x-functions-key": key, **({"authorization": authorization} if authorization else {})}
        answer = await self._probe.get(base + ADMIN_STATUS_PATH, headers)
        if answer.status is None:
            log.warning("could not ask the host whether the caller's key is the master key (%s)", answer.failure)
            return None
        if answer.bearer_challenge:
            # App Service Authentication refused the question before the host saw the key: no answer about it
            log.warning("App Service Authentication refused the master-key question; the key stays out of links")
            return None
        # 401/403: the key does not open admin routes, so it is not the master key. Anything else (200, or a
        # 404 where no admin API answers, e.g. behind a proxy) leaves the key out of links.
        return answer.status in (401, 403)
