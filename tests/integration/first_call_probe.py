"""Measure how long a cold process's first Graph call blocks its event loop (run in a fresh subprocess).

``python -m tests.integration.first_call_probe`` prints one JSON line:
- ``maxGapMs``: the longest a 10 ms ticker on the event loop waited beyond its sleep while the first Graph
  call (through the app's own ``Runtime.graph``) ran;
- ``maxGetMs``: the slowest answer to an HTTP GET served on that same event loop, sent every 50 ms from
  another thread during the call;
- ``callSeconds`` and ``result``: how long the call took and what it returned;
- ``idleMaxGapMs``: the ticker's longest wait in the 2 s before the call (the machine's noise floor);
- ``modulesImportedOnLoop``: how many modules the event loop's thread imported during the call.

Graph and the managed identity endpoint are the emulator, served from a thread of its own, so only the app's
loop is measured. The probe is code-agnostic: pointing PYTHONPATH at another checkout's ``shared`` measures
that code (how the "before" number was taken).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import httpx
from aiohttp import web

from emulator.config import EmulatorConfig
from emulator.testing import RunningEmulator, running_emulator

SP, JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"


def start_emulator() -> RunningEmulator:
    """The emulator on its own event loop in a daemon thread."""
    ready: list[RunningEmulator] = []
    started = threading.Event()

    async def serve() -> None:
        async with running_emulator(EmulatorConfig(identity_header="probe-secret")) as emu:
            ready.append(emu)
            started.set()
            await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    if not started.wait(60):
        raise RuntimeError("the emulator did not start")
    return ready[0]


class ImportWatch:
    """A meta path hook that records which thread imported which module (it finds nothing itself)."""

    def __init__(self) -> None:
        self.on_loop: list[str] = []
        self.loop_thread = threading.get_ident()
        self.active = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if self.active and threading.get_ident() == self.loop_thread:
            self.on_loop.append(name)


def poll(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """GET ``url`` every 50 ms until ``stop``; record each answer's latency (seconds)."""
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(url).raise_for_status()
            latencies.append(time.perf_counter() - started)
            stop.wait(0.05)


async def main() -> dict[str, Any]:
    # What the Functions host imports at start-up, before any invocation; not part of the first call.
    import function_app  # noqa: F401
    from shared.runtime import Runtime
    from shared.settings import Settings

    emu = start_emulator()
    os.environ.update(
        {
            "IDENTITY_ENDPOINT": emu.token_endpoint,
            "IDENTITY_HEADER": emu.identity_header,
            "GRAPH_BASE_URL": f"{emu.base_url}/beta",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
        os.environ.pop(name, None)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/api/health", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/health"

    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            gaps.append(time.perf_counter() - before - 0.01)

    latencies: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(url, stop, latencies), daemon=True)
    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.3)  # the ticker and the poller are running; their own start-up is not measured
    gaps.clear()
    poller.start()
    await asyncio.sleep(0.2)
    latencies.clear()
    gaps.clear()
    await asyncio.sleep(2)  # the noise floor: the same loop and poller with no Graph call

    baseline = max(gaps) if gaps else 0.0
    gaps.clear()
    watch = ImportWatch()
    sys.meta_path.insert(0, watch)
    watch.active = True
    started = time.perf_counter()
    graph = Runtime(Settings.from_environ(os.environ)).graph
    result = await graph.job_status(SP, JOB)
    seconds = time.perf_counter() - started
    watch.active = False
    stop.set()
    await asyncio.to_thread(poller.join, 60)
    ticker.cancel()
    await runner.cleanup()
    return {
        "maxGapMs": round(max(gaps) * 1000, 1),
        "idleMaxGapMs": round(baseline * 1000, 1),
        "modulesImportedOnLoop": len(watch.on_loop),
        "importedOnLoop": sorted(set(watch.on_loop))[:20],
        "maxGetMs": round(max(latencies) * 1000, 1) if latencies else None,
        "gets": len(latencies),
        "callSeconds": round(seconds, 2),
        "result": repr(result),
        "modules": len(sys.modules),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
