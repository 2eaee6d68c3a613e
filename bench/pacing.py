"""Pacing under a compressed window: the app's shared limiter against fire-and-forget SDK calls.

A backlog of N single-user requests goes to the Graph emulator with its limit compressed to ``--limit``
(default 5 per 1 s; the app's ``GRAPH_RATE_LIMIT`` is set to the same), once per configuration of 1, 2 and 4
worker processes sharing one Azurite (the stack's HTTP devhost is worker 1, ``Stack.add_worker`` adds the
others; a fresh stack per configuration). Each stack is warmed first (2 requests per worker, then the
emulator's call log and rate windows are reset), so what is measured is pacing, not imports and tokens.

The baseline, on the same emulator right after, is what fire-and-forget code does: the same N calls through
``msgraph-beta``'s ``GraphServiceClient`` with the SDK's defaults (its RetryHandler on: 3 retries on
429/503/504, honouring ``Retry-After``), no shared limiter, from 1, 2 and 4 concurrent asyncio tasks, each
with its own client and managed-identity credential, each calling as fast as it can.

Columns:
- ``wall s``: ours, from the first POST /api/provision to the last request's ``updatedAt`` (all terminal);
  baseline, from the first call to the last call's return.
- ``acc/lim``: calls Graph accepted ÷ (first to last accepted arrival at the emulator + one window),
  ÷ the limit. An ideal drain in bursts of N-per-window scores 1.00, and the safety margin (a 10.4 s window at
  5/10 s) caps ours at 0.96. Only bursts reach that on a short run: whatever the spacing, the first window
  decides when the last can start, and an even drain's last window ends a window less one slot later
  (0.90 for 60 items at 5/10 s). So at a slow limit the app hands out a window's slots together (5 within
  0.4 s), just before they begin (``dispatcher.HAND_OUT_WITHIN_SECONDS``), so a newcomer can still take one.
- ``e2e/lim``: items ÷ (wall s + one window) ÷ the limit, the same yardstick end to end (ours includes intake,
  queueing, the ledger and the limiter's safety margin, which alone caps it at window ÷ (window + margin)).
- ``429``: throttled answers the emulator gave; ``max/win``: most arrivals (any status) in any window;
  ``calls/item``: every provisionOnDemand the emulator saw ÷ items; ``failed``: items that did not end in an
  answer from Graph (ours: requests whose status is ``failed``; baseline: calls that raised).

    .venv/bin/python -m bench.pacing [--items 60] [--limit 5/1s] [--workers 1 2 4] [--log FILE] [--arrivals]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
from azure.data.tables import TableClient

from devhost.stack import ROOT, Stack, free_port
from shared.contract.names import REQUEST_ROW, TABLE_NAME
from shared.core.pacing import RateLimit, count_in_any_window
from shared.settings import Settings

SP, JOB, RULE = (
    "c8c95753-f628-48e1-9fab-76c2d4cf624c",
    "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
    "ea807875-5618-4f0a-9125-0b46a05298ca",
)
#: The seed user and the 12 cohort users of the emulator's default tenant (all assigned to the SCIM app).
SUBJECTS = ["9bb0f679-a883-4a6f-8260-35b491b8b8c8"] + [
    f"c0ffee00-0000-4000-8000-0000000000{i:02d}" for i in range(1, 13)
]
TERMINAL_REQUEST = frozenset({"succeeded", "failed", "rejected"})
MI_VARIABLES = ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID")


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    who: str
    workers: int
    items: int
    wall: float
    accepted_rate: float
    e2e_rate: float
    throttled: int
    max_per_window: int
    calls_per_item: float
    failed: int
    #: Accepted arrivals at the emulator, seconds after the first (``--arrivals`` prints them).
    arrivals: tuple[float, ...] = ()


def _subject(i: int) -> dict[str, str]:
    return {"objectId": SUBJECTS[i % len(SUBJECTS)], "objectTypeName": "User"}


def _emulator_calls(emulator_url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=60)
    calls: list[dict[str, Any]] = answer.raise_for_status().json()["calls"]
    return calls


def _arrivals(calls: list[dict[str, Any]], accepted_only: bool = False) -> list[float]:
    return [
        datetime.fromisoformat(c["time"]).timestamp()
        for c in calls
        if not accepted_only or (c["status"] is not None and not c["throttled"])
    ]


def _accepted_rate(calls: list[dict[str, Any]], limit: RateLimit) -> float:
    """Accepted calls per second over the windows they occupied, as a fraction of the limit."""
    accepted = _arrivals(calls, accepted_only=True)
    if not accepted:
        return 0.0
    span = max(accepted) - min(accepted) + limit.window_seconds
    return len(accepted) / span / (limit.calls / limit.window_seconds)


def _offsets(times: list[float]) -> tuple[float, ...]:
    """Seconds after the first, in order."""
    ordered = sorted(times)
    return tuple(round(t - ordered[0], 2) for t in ordered)


def _request_rows(connection: str) -> list[dict[str, Any]]:
    with TableClient.from_connection_string(connection, TABLE_NAME) as table:
        rows = table.query_entities(
            "RowKey eq @r", parameters={"r": REQUEST_ROW}, select=["PartitionKey", "status", "updatedAt"]
        )
        return [dict(r) for r in rows]


def _timestamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).timestamp()


def _post_all(base_url: str, bodies: list[dict[str, Any]]) -> list[str]:
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:
        posted = list(pool.map(lambda body: client.post(f"{base_url}/api/provision", json=body), bodies))
    bad = [p for p in posted if p.status_code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} POSTs not accepted, first: {bad[0].status_code} {bad[0].text[:200]}")
    return [str(p.json()["requestId"]) for p in posted]


def _wait_terminal(connection: str, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """The request rows of ``ids`` once all are terminal (polling the ledger every 0.1 s)."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in _request_rows(connection) if r["PartitionKey"] in wanted]
        if len(rows) == len(wanted) and all(r["status"] in TERMINAL_REQUEST for r in rows):
            return rows
        if time.monotonic() > deadline:
            done = sum(r["status"] in TERMINAL_REQUEST for r in rows)
            raise TimeoutError(f"{done}/{len(wanted)} requests terminal after {timeout:.0f} s")
        time.sleep(0.1)


def run_ours(stack: Stack, workers: int, items: int, limit: RateLimit) -> Row:
    """N requests through the app; the stack already runs ``workers`` worker processes."""
    assert stack.emulator_url
    connection = stack.env["AzureWebJobsStorage"]
    warm = 2 * workers
    warm_ids = _post_all(stack.base_url, [{"target": "seed-scim-app", "subjects": [_subject(i)]} for i in range(warm)])
    _wait_terminal(connection, warm_ids, 60)
    time.sleep(limit.window_seconds * 1.5)  # let the warm-up's starts leave every window
    httpx.post(f"{stack.emulator_url}/_emulator/reset", timeout=60).raise_for_status()

    bodies = [{"target": "seed-scim-app", "subjects": [_subject(i)]} for i in range(items)]
    started = time.time()
    ids = _post_all(stack.base_url, bodies)
    ideal = items / limit.calls * limit.window_seconds
    rows = _wait_terminal(connection, ids, 60 + 5 * ideal)
    finished = max(_timestamp(r["updatedAt"]) for r in rows)
    calls = _emulator_calls(stack.emulator_url)
    wall = finished - started
    return Row(
        who="ours",
        workers=workers,
        items=items,
        wall=wall,
        accepted_rate=_accepted_rate(calls, limit),
        e2e_rate=items / (wall + limit.window_seconds) / (limit.calls / limit.window_seconds),
        throttled=sum(1 for c in calls if c["throttled"]),
        max_per_window=count_in_any_window(_arrivals(calls), limit.window_seconds),
        calls_per_item=len(calls) / items,
        failed=sum(1 for r in rows if r["status"] != "succeeded"),
        arrivals=_offsets(_arrivals(calls, accepted_only=True)),
    )


async def _naive(env: dict[str, str], workers: int, items: int) -> tuple[float, int]:
    """Fire and forget: ``workers`` tasks, SDK defaults, no limiter. Returns (wall seconds, calls that raised)."""
    from azure.identity.aio import ManagedIdentityCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph_beta.generated.models.synchronization_job_application_parameters import (
        SynchronizationJobApplicationParameters,
    )
    from msgraph_beta.generated.models.synchronization_job_subject import SynchronizationJobSubject
    from msgraph_beta.generated.service_principals.item.synchronization.jobs.item.provision_on_demand.provision_on_demand_post_request_body import (  # noqa: E501
        ProvisionOnDemandPostRequestBody,
    )
    from msgraph_beta.graph_request_adapter import GraphRequestAdapter
    from msgraph_beta.graph_service_client import GraphServiceClient

    settings = Settings.from_environ(env)
    backlog: asyncio.Queue[int] = asyncio.Queue()
    for i in range(items):
        backlog.put_nowait(i)
    failed = 0

    def body(i: int) -> ProvisionOnDemandPostRequestBody:
        subject = SynchronizationJobSubject(object_id=SUBJECTS[i % len(SUBJECTS)], object_type_name="User")
        return ProvisionOnDemandPostRequestBody(
            parameters=[SynchronizationJobApplicationParameters(rule_id=RULE, subjects=[subject])]
        )

    async def worker(credential: ManagedIdentityCredential, client: GraphServiceClient) -> None:
        nonlocal failed
        builder = (
            client.service_principals.by_service_principal_id(SP)
            .synchronization.jobs.by_synchronization_job_id(JOB)
            .provision_on_demand
        )
        while True:
            try:
                i = backlog.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await builder.post(body(i))
            except Exception:  # what the caller sees: the call failed, whatever the reason
                failed += 1

    credentials = [ManagedIdentityCredential() for _ in range(workers)]
    try:
        clients = []
        for credential in credentials:
            await credential.get_token(settings.graph_scope)  # a token before the clock starts
            auth = AzureIdentityAuthenticationProvider(credential, scopes=[settings.graph_scope])
            adapter = GraphRequestAdapter(auth)
            adapter.base_url = settings.graph_base_url
            clients.append(GraphServiceClient(request_adapter=adapter))
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, g) for c, g in zip(credentials, clients, strict=True)))
        return time.perf_counter() - started, failed
    finally:
        for credential in credentials:
            await credential.close()


def run_baseline(stack: Stack, workers: int, items: int, limit: RateLimit) -> Row:
    """The same N calls, SDK defaults, no limiter, against the same emulator window."""
    assert stack.emulator_url
    time.sleep(limit.window_seconds * 1.5)
    httpx.post(f"{stack.emulator_url}/_emulator/reset", timeout=60).raise_for_status()
    saved = dict(os.environ)
    os.environ.update({k: stack.env[k] for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")})
    for name in MI_VARIABLES:
        os.environ.pop(name, None)
    try:
        wall, failed = asyncio.run(_naive(stack.env, workers, items))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    calls = _emulator_calls(stack.emulator_url)
    return Row(
        who="baseline",
        workers=workers,
        items=items,
        wall=wall,
        accepted_rate=_accepted_rate(calls, limit),
        e2e_rate=(items - failed) / (wall + limit.window_seconds) / (limit.calls / limit.window_seconds),
        throttled=sum(1 for c in calls if c["throttled"]),
        max_per_window=count_in_any_window(_arrivals(calls), limit.window_seconds),
        calls_per_item=len(calls) / items,
        failed=failed,
    )


def _env(limit: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")
    }
    env.update(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    env["GRAPH_RATE_LIMIT"] = limit
    return env


def _print(rows: list[Row], limit: RateLimit, took: float, *, arrivals: bool = False) -> None:
    header = (
        f"{'':10}{'workers':>8}{'items':>7}{'wall s':>8}{'acc/lim':>9}{'e2e/lim':>9}"
        f"{'429':>6}{'max/win':>9}{'calls/item':>12}{'failed':>8}"
    )
    print(f"limit {limit.calls}/{limit.window_seconds:g}s in the emulator and the app; bench took {took:.0f} s")
    print(header)
    for r in rows:
        print(
            f"{r.who:10}{r.workers:>8}{r.items:>7}{r.wall:>8.2f}{r.accepted_rate:>9.3f}{r.e2e_rate:>9.3f}"
            f"{r.throttled:>6}{r.max_per_window:>9}{r.calls_per_item:>12.2f}{r.failed:>8}"
        )
    ours = {r.workers: r for r in rows if r.who == "ours"}
    base = {r.workers: r for r in rows if r.who == "baseline"}
    for workers in sorted(ours.keys() & base.keys()):
        o, b = ours[workers], base[workers]
        print(
            f"{workers} worker(s): wall ours/baseline {o.wall / b.wall:.2f}x, "
            f"Graph calls per item ours/baseline {o.calls_per_item / b.calls_per_item:.2f}x, "
            f"429s {o.throttled} vs {b.throttled}, failed {o.failed} vs {b.failed}"
        )
    for r in rows:
        if arrivals and r.arrivals:
            print(f"{r.who}, {r.workers} worker(s), accepted arrivals (s after the first): {list(r.arrivals)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pacing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--limit", default="5/1s", help="the compressed window, in the emulator and the app")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--log", type=Path, help="the stacks' output (default: discarded)")
    parser.add_argument("--arrivals", action="store_true", help="print when each accepted call reached Graph")
    args = parser.parse_args(argv)
    limit = RateLimit.parse(args.limit)
    began = time.monotonic()
    rows: list[Row] = []
    log: IO[str]
    with open(args.log or os.devnull, "w") as log:
        for workers in args.workers:
            stack = Stack(port=free_port(), env=_env(args.limit), log=log, emulator_args=["--rate-limit", args.limit])
            with stack:
                for _ in range(workers - 1):
                    stack.add_worker()
                rows.append(run_ours(stack, workers, args.items, limit))
                rows.append(run_baseline(stack, workers, args.items, limit))
            print(f"[{time.monotonic() - began:.0f} s] {workers} worker(s) done", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r.who != "ours", r.workers))
    _print(rows, limit, time.monotonic() - began, arrivals=args.arrivals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
