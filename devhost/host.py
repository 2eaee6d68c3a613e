"""Wiring the pieces into one running host: triggers up, READY line, graceful stop.

Kept apart from the CLI so tests and scripts can reason about the lifecycle: everything that can be
checked before serving (settings, indexing, schedules, connections) is checked first so a broken app
fails at startup, as it does in Azure, instead of on the first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from aiohttp import web
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.functions.timer import TimerRequest

from devhost.easyauth import EasyAuth
from devhost.http_server import HttpFrontEnd
from devhost.indexing import FunctionSpec
from devhost.invoke import Invoker
from devhost.keys import KeyRing
from devhost.queue_listener import QueueListener
from devhost.settings import HostConfig
from devhost.timers import TimerRunner, resolve_schedule

log = logging.getLogger("devhost")

SHUTDOWN_SECONDS = 10.0


@dataclass
class HostOptions:
    """What the CLI decided."""

    host: str
    port: int
    http: bool


class Host:
    """Owns the invoker, listeners, timers and HTTP server of one devhost process."""

    # The host's parts the CLI decided, plus the environment and the optional Easy Auth imitation (keyword-only).
    def __init__(  # noqa: PLR0913
        self,
        specs: list[FunctionSpec],
        config: HostConfig,
        keys: KeyRing,
        options: HostOptions,
        *,
        environ: Mapping[str, str] | None = None,
        easyauth: EasyAuth | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.specs = specs
        self.config = config
        self.options = options
        self.invoker = Invoker()
        # Resolve everything now so configuration errors surface before READY.
        self.listeners = [
            QueueListener.from_spec(s, config.queues, self.invoker, env) for s in specs if s.kind == "queue"
        ]
        self.timers = {
            s.name: TimerRunner(s, resolve_schedule(s, env), self.invoker) for s in specs if s.kind == "timer"
        }
        self.keys = keys
        self.easyauth = easyauth
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self.url = "none"

    async def _admin_invoke(self, spec: FunctionSpec, value: str) -> None:
        """Start a non-HTTP function now, like the host's admin API (fire and forget, 202)."""
        if spec.kind == "timer":
            coro: Any = (
                self.timers[spec.name].fire(past_due=False)
                if spec.name in self.timers
                else self.invoker.invoke(spec, TimerRequest(past_due=False))
            )
        else:
            msg = FuncQueueMessage(  # type: ignore[no-untyped-call]
                id=str(uuid.uuid4()), body=value.encode("utf-8"), dequeue_count=1, pop_receipt=None
            )
            value_for_fn: Any = msg
            if spec.trigger_annotation is str:
                value_for_fn = value
            elif spec.trigger_annotation is bytes:
                value_for_fn = value.encode("utf-8")
            coro = self.invoker.invoke(spec, value_for_fn)
        task = asyncio.create_task(self._swallow(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _swallow(coro: Any) -> None:
        with contextlib.suppress(Exception):  # the invoker already logged the failure
            await coro

    async def start(self) -> None:
        """Start listeners, timers and the HTTP server; sets ``self.url``."""
        for listener in self.listeners:
            await listener.start()
        for timer in self.timers.values():
            timer.start()
        if self.options.http:
            front = HttpFrontEnd(
                self.specs,
                self.config.route_prefix,
                self.invoker,
                self.keys,
                admin_invoke=self._admin_invoke,
                easyauth=self.easyauth,
            )
            self._runner = web.AppRunner(
                front.make_app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.options.host, self.options.port)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"http://{self.options.host}:{port}"

    def request_stop(self) -> None:
        """Signal handler target: begin graceful shutdown."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Block until a stop is requested."""
        await self._stop.wait()

    async def shutdown(self) -> None:
        """Stop polling, let in-flight invocations finish (bounded), close the server."""
        budget = SHUTDOWN_SECONDS
        await asyncio.gather(
            *(listener.stop(budget) for listener in self.listeners),
            *(timer.stop(budget) for timer in self.timers.values()),
        )
        if self._background:
            await asyncio.wait(self._background, timeout=budget)
        if not await self.invoker.drain(budget):
            log.warning("shutdown: %d invocation(s) still running after %.0f s", self.invoker.in_flight, budget)
        if self._runner is not None:
            await self._runner.cleanup()
        self.invoker.close()


async def run(host: Host, out: TextIO | None = None) -> int:
    """Run ``host`` until SIGINT/SIGTERM; prints the READY line once everything is started."""
    stream = out if out is not None else sys.stdout
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, host.request_stop)
    try:
        await host.start()
        print(f"DEVHOST_READY {host.url}", file=stream, flush=True)
        await host.wait_stopped()
        log.info("stopping: waiting for in-flight invocations")
    finally:
        await host.shutdown()
    return 0
