"""Intake throughput: accepted POST /api/provision per second and latency, against the storage floor.

Starts the local stack (Azurite, emulator, devhost) exactly as scripts/start does, lifts the Graph rate limits
(emulator and app) so the background work does not pile up, then sends N requests for one subject of the seed
target from C concurrent clients over real HTTP and measures each POST until its 202. The devhost's queue
workers run as usual and consume the accepted work in the background, in the same process as the HTTP
intake: what a Functions instance does too.

The baseline, in the same run, is the storage floor of one request: one Table insert followed by one Queue put
from this process, with the same async SDK clients the app uses, against the same Azurite, at the same
concurrency. The app does at least that per request (its request and call rows, one work item).

    .venv/bin/python -m bench.intake [-n 1000] [-c 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from devhost.stack import ROOT, Stack, free_port

TARGET = "seed-scim-app"
SUBJECT = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
WARMUP = 50
MAX_REQUESTS = 5000


@dataclass(frozen=True)
class Run:
    """One measured run: per-request latencies (s) and the wall time (s) the whole batch took."""

    latencies: list[float]
    wall: float

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _measure(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> Run:
    """``n`` calls of ``one`` from ``concurrency`` workers pulling from a shared counter."""
    latencies: list[float] = []
    next_index = iter(range(n))

    async def worker() -> None:
        for i in next_index:
            start = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, time.perf_counter() - start)


async def _app(base_url: str, n: int, concurrency: int) -> Run:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        body = {"target": TARGET, "subjects": [SUBJECT]}

        async def post(_: int) -> None:
            response = await client.post("/api/provision", json=body)
            assert response.status_code == 202, response.text

        await _measure(WARMUP, concurrency, post)
        return await _measure(n, concurrency, post)


async def _floor(connection: str, n: int, concurrency: int) -> Run:
    name = f"benchfloor{uuid.uuid4().hex[:8]}"
    async with (
        TableClient.from_connection_string(connection, table_name=name) as table,
        QueueClient.from_connection_string(connection, queue_name=name) as queue,
    ):
        await table.create_table()
        await queue.create_queue()
        subject = json.dumps(SUBJECT)

        async def insert_and_put(i: int) -> None:
            key = uuid.uuid4().hex
            await table.create_entity(
                {"PartitionKey": key, "RowKey": "request", "target": TARGET, "subject": subject, "n": i}
            )
            await queue.send_message(json.dumps({"requestId": key, "callId": "call-0001"}))

        try:
            await _measure(WARMUP, concurrency, insert_and_put)
            return await _measure(n, concurrency, insert_and_put)
        finally:
            await table.delete_table()
            await queue.delete_queue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help=f"measured requests per side (at most {MAX_REQUESTS})")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    args = parser.parse_args()
    n = min(args.n, MAX_REQUESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    env["GRAPH_RATE_LIMIT"] = "100000/1s"  # the workers drain in the background instead of queueing up
    with open(os.devnull, "w") as quiet, Stack(port=free_port(), env=env, log=quiet) as stack:
        assert stack.emulator_url
        httpx.post(
            f"{stack.emulator_url}/_emulator/config", json={"rateLimit": "100000/1s"}, timeout=60
        ).raise_for_status()
        # The floor first, while Azurite is idle: after the app's run, its workers are still draining.
        floor = asyncio.run(_floor(stack.env["AzureWebJobsStorage"], n, args.concurrency))
        app = asyncio.run(_app(stack.base_url, n, args.concurrency))
    print(
        f"{n} requests per side after {WARMUP} warm-up, {args.concurrency} concurrent clients, loopback, Azurite in "
        f"memory, {os.cpu_count()} CPUs; floor measured first; the devhost's queue workers consume the accepted "
        "work in the background (same process as the HTTP intake)"
    )
    print(f"{'':40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for label, run in (("POST /api/provision -> 202 (app)", app), ("table insert + queue put (floor)", floor)):
        print(f"{label:40}{run.per_second:>10.1f}{run.pct(0.5) * 1000:>10.1f}{run.pct(0.99) * 1000:>10.1f}")
    print(
        f"ratio app/floor: throughput {app.per_second / floor.per_second:.2f}x, "
        f"p50 {statistics.median(app.latencies) / statistics.median(floor.latencies):.2f}x, "
        f"p99 {app.pct(0.99) / floor.pct(0.99):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
