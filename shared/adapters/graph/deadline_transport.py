"""An httpx transport that refuses to send a paced Graph request past its deadline (:mod:`shared.core.send_deadline`).

It sits under the SDK's middleware, right above the network, so the check is the last thing before the request
leaves: after the token, the request building and whatever else the event loop ran meanwhile. Imported when the
Graph client is built (off the event loop), like the rest of the SDK's stack.
"""

from __future__ import annotations

import time

import httpx  # noqa: TID253 (this module is imported only where the Graph client is built, off the loop)

from shared.core.send_deadline import SEND_BY, SlotMissed


class SendDeadline(httpx.AsyncBaseTransport):
    """Sends through ``inner``, unless the current task's deadline has passed."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The inner transport's answer; :class:`SlotMissed` (nothing sent) once past the deadline."""
        deadline = SEND_BY.get()
        if deadline is not None:
            late = time.time() - deadline
            if late > 0:
                raise SlotMissed(f"the request would have left {late:.3f} s after its slot allowed; not sent")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
