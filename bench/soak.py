"""Soak: a few thousand requests through faults and a killed worker; every item must be accounted for.

One stack (Azurite, the Graph emulator, the HTTP devhost) plus 2 worker-only devhost processes, all sharing
one storage account and one compressed rate window (``--limit``, default 50 per 1 s, in both the emulator
and the app's ``GRAPH_RATE_LIMIT``, so the run takes minutes instead of hours at Graph's real 5 per 10 s).
``WORK_CLAIM_SECONDS=10`` and ``DEVHOST_QUEUE_LEASE_SECONDS=15`` bring a killed worker's items back within
the run; the sweeper (every 5 minutes) is not relied on: it is invoked once through the admin API only if
the backlog stops moving, and the output says so.

While requests are POSTed to ``/api/provision`` (mostly single users of the emulator's default tenant; every
10th a 12-member group, which fans out to 3 calls; a few unknown users, which Graph answers Failure; a few
User subjects for the Workday target, whose job maps no User, which are rejected), a batch of emulator
faults is queued every 2 s from a repeating schedule: 503 with Retry-After, 500 without, a 429 storm,
dropped connections, slow answers, 504. Once a third of the calls are terminal one worker is SIGKILLed and
replaced. At the end (bounded wait) every request and call is read from the ledger, and the poison queues.

Printed: submitted / terminal (succeeded, skipped, failed, rejected) / still waiting / poisoned / lost, for
requests and for calls; lost = submitted - everything accounted for, plus waiting calls with no work message
left to carry them (must be 0; the exit code is 1 otherwise); Graph calls per item = provisionOnDemand calls
the emulator saw ÷ calls planned.

    .venv/bin/python -m bench.soak [--items 2000] [--limit 50/1s] [--drain-timeout 480] [--log FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost.stack import ROOT, Stack, free_port
from shared.aggregate import TERMINAL_CALL_STATUSES
from shared.ledger import REQUEST_ROW, TABLE_NAME
from shared.pacing import count_in_any_window
from shared.settings import RateLimit
from shared.work_queue import REQUESTS_POISON_QUEUE, WORK_QUEUE

SEED_USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
FRESH_USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
COHORT = [f"c0ffee00-0000-4000-8000-0000000000{i:02d}" for i in range(1, 13)]
GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"
WORK_POISON_QUEUE = f"{WORK_QUEUE}-poison"
TERMINAL_REQUEST = ("succeeded", "failed", "rejected")
#: The repeating fault schedule; one batch is queued every FAULT_EVERY seconds while the backlog drains.
FAULT_SCHEDULE: list[list[dict[str, Any]]] = [
    [{"status": 503, "times": 3, "retryAfter": 1}],
    [{"status": 500, "times": 3}],
    [{"kind": "429storm", "times": 6, "retryAfter": 1}],
    [{"kind": "drop", "times": 3}],
    [{"kind": "slow", "delayMs": 2500, "times": 3}],
    [{"status": 504, "times": 2}],
]
FAULT_EVERY = 2.0


def _request(target: str, object_id: str, type_name: str = "User", **extra: Any) -> dict[str, Any]:
    return {"target": target, "subjects": [{"objectId": object_id, "objectTypeName": type_name, **extra}]}


def _body(i: int) -> dict[str, Any]:
    """The i-th request: mostly single users, every 10th a 12-member group, a few failing and rejected."""
    if i % 10 == 9:
        members = [{"objectId": m, "objectTypeName": "User"} for m in COHORT]
        return _request("seed-scim-app", GROUP, "Group", links={"members": members})
    if i % 100 == 48:  # Workday's job maps Worker only: no rule fits a User, so the call is rejected
        return _request("workday-to-ad", "21001")
    if i % 50 == 17:  # not in the source directory: Graph answers 200 with Failure EntryNotFound
        return _request("seed-scim-app", f"0badf00d-0000-4000-8000-{i:012d}")
    users = [SEED_USER, FRESH_USER, *COHORT]
    return _request("seed-scim-app", users[i % len(users)])


@dataclass
class Run:
    """What happened, gathered while it happened."""

    submitted: dict[str, int] = field(default_factory=dict)  # requestId -> calls planned
    rejected_posts: Counter[int] = field(default_factory=Counter)
    fault_batches: int = 0
    faults_queued: int = 0
    killed_at: float | None = None
    killed_utc: str = ""
    sweeper_invoked_at: float | None = None
    began: float = field(default_factory=time.monotonic)
    submit_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ledger(connection: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Every request row's status and every call row's status."""
    requests: dict[str, str] = {}
    calls: dict[tuple[str, str], str] = {}
    with TableClient.from_connection_string(connection, TABLE_NAME) as table:
        try:
            for row in table.list_entities(select=["PartitionKey", "RowKey", "status"]):
                if row["RowKey"] == REQUEST_ROW:
                    requests[row["PartitionKey"]] = str(row["status"])
                elif str(row["RowKey"]).startswith("call-"):
                    calls[(row["PartitionKey"], row["RowKey"])] = str(row["status"])
        except ResourceNotFoundError:  # no request written yet
            pass
    return requests, calls


def _queue_count(connection: str, name: str) -> int:
    try:
        props = QueueClient.from_connection_string(connection, name).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def _poisoned_calls(connection: str) -> set[tuple[str, str]]:
    """The (requestId, callId) of work items in the work poison queue (peeked, left in place)."""
    found: set[tuple[str, str]] = set()
    client = QueueClient.from_connection_string(connection, WORK_POISON_QUEUE)
    try:
        messages = client.peek_messages(max_messages=32)
    except ResourceNotFoundError:
        return found
    for message in messages:
        try:
            data = json.loads(base64.b64decode(str(message.content)))
            found.add((str(data["requestId"]), str(data["callId"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _describe(connection: str, request_id: str) -> str:
    """A stuck request's rows, briefly: when they last changed and what their calls did."""
    with TableClient.from_connection_string(connection, TABLE_NAME) as table:
        rows = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": request_id}))
    parts = []
    for row in sorted(rows, key=lambda r: str(r["RowKey"])):
        stamp = row.get("completedAt") or row.get("updatedAt") or row.get("lastAttemptAt")
        when = stamp.isoformat(timespec="milliseconds") if isinstance(stamp, datetime) else stamp
        parts.append(f"{row['RowKey']} {row.get('status')} attempts={row.get('attempts', '-')} at {when}")
    return "; ".join(parts)


def _emulator_calls(emulator_url: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=60)
    calls: list[dict[str, Any]] = answer.raise_for_status().json()["calls"]
    return calls


def _submit(stack: Stack, items: int, run: Run) -> None:
    url = f"{stack.base_url}/api/provision"

    def post(i: int) -> None:
        for _ in range(3):  # a transport error is retried; an HTTP answer is final
            try:
                answer = client.post(url, json=_body(i))
            except httpx.TransportError:
                continue
            with run.lock:
                if answer.status_code == 202:
                    run.submitted[str(answer.json()["requestId"])] = int(answer.json()["calls"])
                else:
                    run.rejected_posts[answer.status_code] += 1
            return
        with run.lock:
            run.rejected_posts[0] += 1

    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(items)))
    run.submit_seconds = time.monotonic() - run.began


def _inject_faults(emulator_url: str, run: Run, stop: threading.Event) -> None:
    """Queue the next batch of the schedule every FAULT_EVERY seconds until told to stop."""
    while not stop.wait(FAULT_EVERY):
        batch = FAULT_SCHEDULE[run.fault_batches % len(FAULT_SCHEDULE)]
        faults = [{"operation": "provisionOnDemand", **f} for f in batch]
        httpx.post(f"{emulator_url}/_emulator/config", json={"faults": faults}, timeout=60).raise_for_status()
        run.fault_batches += 1
        run.faults_queued += sum(int(f.get("times", 1)) for f in batch)


def _env(limit: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")
    }
    env.update(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    env.update(
        {
            "GRAPH_RATE_LIMIT": limit,
            "WORK_CLAIM_SECONDS": "10",
            "DEVHOST_QUEUE_LEASE_SECONDS": "15",
            "JOB_HOLD_SECONDS": "2",
        }
    )
    return env


def _expected_calls(items: int) -> int:
    """Calls the requests will fan out to: a 12-member group is 3 calls of at most 5 members."""
    return sum(3 if _body(i)["subjects"][0].get("links") else 1 for i in range(items))


def _drain(stack: Stack, run: Run, submitter: threading.Thread, expected: int, timeout: float, stall: float) -> None:
    """While and after submitting, wait until every call is terminal; kill and replace a worker on the way."""
    connection = stack.env["AzureWebJobsStorage"]
    began = run.began
    deadline = time.monotonic() + timeout
    last_progress, last_terminal = time.monotonic(), -1
    while time.monotonic() < deadline:
        with run.lock:
            planned = sum(run.submitted.values())
            submitted = set(run.submitted)
        _, calls = _ledger(connection)
        terminal = sum(1 for (rid, _), status in calls.items() if rid in submitted and status in TERMINAL_CALL_STATUSES)
        now = time.monotonic()
        print(
            f"[{now - began:5.0f} s] requests submitted {len(submitted)}, calls terminal {terminal}/{planned}",
            file=sys.stderr,
            flush=True,
        )
        if run.killed_at is None and terminal >= expected / 3:
            worker = stack.processes[-1]  # the last worker added: a worker-only devhost in full flow
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            run.killed_at = now - began
            run.killed_utc = datetime.now(UTC).isoformat(timespec="milliseconds")
            print(f"[{now - began:5.0f} s] SIGKILLed worker pid {worker.pid}; adding a replacement", file=sys.stderr)
            stack.add_worker()
        if terminal >= planned and run.killed_at is not None and not submitter.is_alive():
            return
        if terminal != last_terminal:
            last_progress, last_terminal = now, terminal
        elif now - last_progress > stall and run.sweeper_invoked_at is None:
            print(f"[{now - began:5.0f} s] no progress for {stall:.0f} s: invoking the sweeper", file=sys.stderr)
            httpx.post(f"{stack.base_url}/admin/functions/sweeper", json={"input": ""}, timeout=60)
            run.sweeper_invoked_at = now - began
        time.sleep(3)


def _report(stack: Stack, run: Run, limit: RateLimit, took: float, args: argparse.Namespace) -> int:
    assert stack.emulator_url
    connection = stack.env["AzureWebJobsStorage"]
    requests, calls = _ledger(connection)
    submitted = dict(run.submitted)
    poisoned = _poisoned_calls(connection)
    work_poison = _queue_count(connection, WORK_POISON_QUEUE)
    request_poison = _queue_count(connection, REQUESTS_POISON_QUEUE)
    work_left = _queue_count(connection, WORK_QUEUE)

    req_status = Counter(requests.get(rid, "missing") for rid in submitted)
    mine = {key: status for key, status in calls.items() if key[0] in submitted}
    call_status = Counter(mine.values())
    planned = sum(submitted.values())
    call_terminal = sum(call_status[s] for s in TERMINAL_CALL_STATUSES)
    call_poisoned = sum(1 for key, status in mine.items() if key in poisoned and status not in TERMINAL_CALL_STATUSES)
    call_waiting = len(mine) - call_terminal - call_poisoned
    # a waiting call needs a work message to carry it; with none left at all, nothing ever will (but the sweeper)
    stranded = call_waiting if work_left == 0 else 0
    call_lost = planned - call_terminal - call_waiting - call_poisoned + stranded
    req_terminal = sum(req_status[s] for s in TERMINAL_REQUEST)
    req_waiting = req_status["pending"]
    req_lost = len(submitted) - req_terminal - req_waiting
    stale = sorted(
        rid
        for rid in submitted
        if requests.get(rid) == "pending"
        and all(status in TERMINAL_CALL_STATUSES for (r, _), status in mine.items() if r == rid)
    )

    graph = _emulator_calls(stack.emulator_url)
    throttled = [c for c in graph if c["throttled"]]
    ours_429 = [c for c in throttled if not c["fault"]]
    arrivals = [datetime.fromisoformat(c["time"]).timestamp() for c in graph if c["status"] is not None]
    started = [
        datetime.fromisoformat(c["time"]).timestamp() for c in graph if not c["throttled"] and c["status"] is not None
    ]
    ours_5xx = sum(n for code, n in run.rejected_posts.items() if code >= 500)

    print(
        f"soak: {args.items} requests, limit {args.limit} in the emulator and the app (Graph's real limit is 5/10s),"
        f" 2 workers + the HTTP devhost; took {took:.0f} s"
    )
    killed = "never killed"
    if run.killed_at is not None:
        killed = f"SIGKILLed at {run.killed_at:.0f} s ({run.killed_utc}) and replaced"
    sweeper = "not invoked" if run.sweeper_invoked_at is None else f"invoked at {run.sweeper_invoked_at:.0f} s (stall)"
    print(f"faults queued: {run.faults_queued} in {run.fault_batches} batches; worker {killed}; sweeper {sweeper}")
    print(f"{'':28}{'requests':>10}{'calls':>10}")
    print(f"{'submitted':28}{len(submitted):>10}{planned:>10}")
    print(f"{'terminal':28}{req_terminal:>10}{call_terminal:>10}")
    for status in ("succeeded", "skipped", "failed", "rejected"):
        req = str(req_status[status]) if status != "skipped" else "-"
        print(f"{'  ' + status:28}{req:>10}{call_status[status]:>10}")
    print(f"{'still waiting':28}{req_waiting:>10}{call_waiting:>10}")
    print(f"{'poisoned (work/requests q)':28}{request_poison:>10}{work_poison:>10}")
    print(f"{'lost':28}{req_lost:>10}{call_lost:>10}")
    print(f"POSTs not accepted: {dict(run.rejected_posts) or 0} (5xx: {ours_5xx})")
    print(
        f"Graph calls: {len(graph)} for {planned} planned = {len(graph) / max(planned, 1):.2f} per item; "
        f"429: {len(throttled)} ({len(ours_429)} not injected); "
        f"injected faults hit: {sum(1 for c in graph if c['fault'])}; "
        f"max started in any {limit.window_seconds:g} s: {count_in_any_window(started, limit.window_seconds)}"
        f" (limit {limit.calls}), max arrivals: {count_in_any_window(arrivals, limit.window_seconds)}"
    )
    print(f"work messages left: {work_left}; submission took {run.submit_seconds:.0f} s")
    print(f"request rows still pending although all their calls are terminal: {len(stale)}")
    for rid in stale[:5]:
        print(f"  {rid}: {_describe(connection, rid)}")
    waiting_ids = sorted({rid for (rid, cid), st in mine.items() if st not in TERMINAL_CALL_STATUSES})
    if waiting_ids:
        print(f"requests with calls still waiting: {waiting_ids[:5]}")
    return 1 if (call_lost > 0 or req_lost > 0) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=2000, help="requests to submit")
    parser.add_argument("--limit", default="50/1s", help="the compressed window, in the emulator and the app")
    parser.add_argument("--drain-timeout", type=float, default=480, help="seconds to wait for the backlog")
    parser.add_argument("--stall", type=float, default=60, help="seconds without progress before the sweeper runs")
    parser.add_argument("--log", type=Path, help="the stack's output (default: discarded)")
    args = parser.parse_args(argv)
    limit = RateLimit.parse(args.limit)
    run = Run()
    log: IO[str]
    with open(args.log or os.devnull, "w") as log:
        stack = Stack(port=free_port(), env=_env(args.limit), log=log, emulator_args=["--rate-limit", args.limit])
        with stack:
            assert stack.emulator_url
            stack.add_worker()
            stack.add_worker()
            stop = threading.Event()
            injector = threading.Thread(target=_inject_faults, args=(stack.emulator_url, run, stop), daemon=True)
            injector.start()
            submitter = threading.Thread(target=_submit, args=(stack, args.items, run), daemon=True)
            submitter.start()
            try:
                _drain(stack, run, submitter, _expected_calls(args.items), args.drain_timeout, args.stall)
            finally:
                stop.set()
                injector.join()
                submitter.join()
            return _report(stack, run, limit, time.monotonic() - run.began, args)


if __name__ == "__main__":
    sys.exit(main())
