"""Run the emulator inside the caller's event loop, on a free loopback port.

For tests and benchmarks that want the real HTTP path (so the real SDKs can talk to it) without a
subprocess.  Nothing in the emulator behaves differently when run this way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from emulator.app import create_app
from emulator.config import EmulatorConfig
from emulator.state import EMULATOR, Emulator


@dataclass(frozen=True)
class RunningEmulator:
    """Where the emulator listens and a handle on its state."""

    base_url: str
    identity_header: str
    app: web.Application

    @property
    def emulator(self) -> Emulator:
        """The shared state behind the routes (tenant, limiter, faults, call log)."""
        return self.app[EMULATOR]

    @property
    def token_endpoint(self) -> str:
        """The value for ``IDENTITY_ENDPOINT``."""
        return f"{self.base_url}/msi/token"


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[RunningEmulator]:
    """Serve ``create_app(config)`` on ``host`` and a free port until the block exits."""
    config = config or EmulatorConfig()
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        port = runner.addresses[0][1]
        yield RunningEmulator(base_url=f"http://{host}:{port}", identity_header=config.identity_header, app=app)
    finally:
        await runner.cleanup()
