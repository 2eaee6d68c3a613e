"""Timer triggers: NCRONTAB schedules in UTC, ``runOnStartup``, and no overlapping runs.

The host runs a timer as a singleton and does not fire it again while a run is outstanding; a failed run
is not retried until the next occurrence.  Runs that start noticeably later than scheduled are
``past_due``.  The devhost keeps no schedule monitor in storage, so occurrences missed while it was down
are not caught up (as with ``useMonitor: false``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.functions.timer import TimerRequest

from devhost import ncrontab
from devhost.indexing import FunctionSpec
from devhost.invoke import Invoker
from devhost.queue_listener import resolve_setting_refs

log = logging.getLogger("devhost.timer")

PAST_DUE_TOLERANCE_SECONDS = 1.0


def resolve_schedule(spec: FunctionSpec, environ: Mapping[str, str] | None = None) -> ncrontab.CronSchedule:
    """Parse the function's schedule, resolving a ``%SETTING%`` reference first.

    TimeSpan schedules (``00:05:00``) only work on App Service plans, not on Flex Consumption where this
    app runs, so they are refused here too.
    """
    env = os.environ if environ is None else environ
    raw = str(spec.trigger.get("schedule", ""))
    expression = resolve_setting_refs(raw, env, what=f"function {spec.name} schedule")
    if ":" in expression and len(expression.split()) == 1:
        raise ncrontab.CronError(
            f"function {spec.name}: TimeSpan schedule {expression!r} is not supported on Flex Consumption"
        )
    try:
        return ncrontab.parse(expression)
    except ncrontab.CronError as exc:
        raise ncrontab.CronError(f"function {spec.name}: invalid schedule {expression!r}: {exc}") from exc


class TimerRunner:
    """Fires one timer function on its schedule until stopped."""

    def __init__(
        self,
        spec: FunctionSpec,
        schedule: ncrontab.CronSchedule,
        invoker: Invoker,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.spec = spec
        self.schedule = schedule
        self.invoker = invoker
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last: datetime | None = None

    def start(self) -> None:
        """Begin the schedule loop (and the startup run if ``runOnStartup``)."""
        self._task = asyncio.create_task(self._run(), name=f"timer:{self.spec.name}")

    async def stop(self, grace: float) -> None:
        """Stop scheduling; wait (bounded) for a running invocation to finish."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()

    async def fire(self, *, past_due: bool = False) -> None:
        """Run the function once, waiting for any running invocation first (never overlapping)."""
        async with self._lock:
            now = self._clock()
            nxt = self.schedule.next_after(now)
            status: dict[str, Any] = {
                "Last": (self._last or now).isoformat(),
                "Next": nxt.isoformat(),
                "LastUpdated": now.isoformat(),
            }
            request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True})
            self._last = now
            # Already logged by the invoker; a failed timer run is not retried (host behaviour).
            with contextlib.suppress(Exception):
                await self.invoker.invoke(self.spec, request)

    async def _run(self) -> None:
        if self.spec.trigger.get("runOnStartup"):
            await self.fire(past_due=False)
        while not self._stopping.is_set():
            due = self.schedule.next_after(self._clock())
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                    return
                except TimeoutError:
                    pass
            if self._stopping.is_set():
                return
            late = (self._clock() - due).total_seconds()
            await self.fire(past_due=late > PAST_DUE_TOLERANCE_SECONDS)
