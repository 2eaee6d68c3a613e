"""Create a table, queue or container on first use, once per process.

In Azure the template creates them; locally (Azurite) and after someone deletes one, the adapters create
what they need themselves. Asking the service on every call would double the round trips, so each adapter
runs its idempotent "create if missing" once, guarded against concurrent first calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from azure.core.exceptions import ResourceExistsError


class CreateOnce:
    """Awaitable guard: the first await runs ``create`` (an "already exists" answer is success)."""

    def __init__(self, create: Callable[[], Awaitable[object]]) -> None:
        self._create = create
        self._done = False
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if self._done:
            return
        async with self._lock:
            if not self._done:
                with contextlib.suppress(ResourceExistsError):
                    await self._create()
                self._done = True
