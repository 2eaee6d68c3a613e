"""Soak: a few thousand requests through faults and a killed worker; every item and every answer accounted for.

One stack (Azurite, the Graph emulator, the HTTP devhost) plus 2 worker-only devhost processes, all sharing
one storage account and one compressed rate window (``--limit``, default 50 per 1 s, in both the emulator
and the app's ``GRAPH_RATE_LIMIT``, so the run takes minutes instead of hours at Graph's real 5 per 10 s).
``WORK_CLAIM_SECONDS=30`` and ``DEVHOST_QUEUE_LEASE_SECONDS=40`` bring a killed worker's items back within
the run (a much shorter claim runs out on a loaded 2-core machine while a live worker still holds the call,
and the call is then made twice by design); the sweeper (every 5 minutes) is not relied on: it is invoked
once through the admin API only if the backlog stops moving, and the output says so.

Every request names a subject of its own, in a tenant file generated for the run (the emulator's default
tenant plus one user, or one 12-member group, per request), so each provisionOnDemand the emulator saw
belongs to exactly one (request, call), and Graph's first answer to it is Create → Success: a repeated call
would be answered Skipped RedundantExport. Mostly single users; every 10th a 12-member group, which fans out
to 3 calls; a few unknown users, which Graph answers Failure; a few User subjects for the Workday target,
whose job maps no User, which are rejected. While requests are POSTed to ``/api/provision``, a batch of
emulator faults is queued every 2 s (``--fault-every``) from a repeating schedule: 503 with Retry-After,
500 without, a 429 storm, dropped connections, slow answers, 504. Once a third of the calls are terminal one worker is
SIGKILLed and replaced (``--no-kill``: not). At the end (bounded wait) every request and call is read from
the ledger, and the poison queues.

``--sweeper-every S --sweeper-grace G`` (the sweeper-heavy mode): the sweeper also runs from this process
every S seconds with a grace of G seconds (e.g. 1 and 1) while the workers drain, so it re-drives and
stamps calls that workers are claiming, retrying and answering all the time.

Printed: submitted / terminal (succeeded, skipped, failed, rejected) / still waiting / poisoned /
unaccounted, for requests and for calls; unaccounted = submitted - everything accounted for, plus waiting
calls with no work message left to carry them. Then, from the emulator's own call log:
- **second calls**: provisionOnDemand calls Graph answered (not a 429, 5xx or dropped connection) beyond
  the first, per (request, call);
- **lost answers**: (request, call)s whose first answer from Graph is not the outcome the ledger records
  (matched by Graph's ``request-id``).
Both leave out what the killed worker had in flight: calls whose first answer came from Graph in the
``--claim-window`` seconds before the kill and whose recorded attempt says the one before it left no
outcome; the output counts those separately. The exit code is 1 unless unaccounted items, lost answers and
second calls are all 0.

    .venv/bin/python -m bench.soak [--items 2000] [--limit 50/1s] [--drain-timeout 480] [--no-kill]
                                   [--sweeper-every 1 --sweeper-grace 1] [--log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost.stack import ROOT, Stack, free_port
from shared.adapters.ledger import TableLedger
from shared.adapters.pending import PENDING_TABLE, TablePendingIndex
from shared.adapters.work_queue import StorageQueue
from shared.contract.names import REQUEST_ROW, REQUESTS_POISON_QUEUE, TABLE_NAME, WORK_QUEUE
from shared.core.aggregate import TERMINAL_CALL_STATUSES
from shared.core.pacing import RateLimit, count_in_any_window
from shared.usecases import sweeper

SCIM_SP, SCIM_JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
DEFAULT_TENANT = ROOT / "emulator" / "tenants" / "default.json"
GROUP_MEMBERS = 12
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
#: Seconds between fault batches (``--fault-every``); a loaded machine drains slowly, so the faults' share grows.
FAULT_EVERY = 2.0


def _request(target: str, object_id: str, type_name: str = "User", **extra: Any) -> dict[str, Any]:
    return {"target": target, "subjects": [{"objectId": object_id, "objectTypeName": type_name, **extra}]}


def _user(i: int) -> str:
    return f"50a4e000-0000-4000-8000-{i:012d}"


def _group(i: int) -> str:
    return f"50a4e900-0000-4000-8000-{i:012d}"


def _member(i: int, m: int) -> str:
    return f"50a4e1{m:02d}-0000-4000-8000-{i:012d}"


def _body(i: int) -> dict[str, Any]:
    """The i-th request, with subjects of its own: mostly one user, every 10th a 12-member group, a few
    failing (not in the directory) and rejected (the Workday job maps no User)."""
    if i % 10 == 9:
        members = [{"objectId": _member(i, m), "objectTypeName": "User"} for m in range(GROUP_MEMBERS)]
        return _request("seed-scim-app", _group(i), "Group", links={"members": members})
    if i % 100 == 48:
        return _request("workday-to-ad", "21001")
    if i % 50 == 17:  # not in the source directory: Graph answers 200 with Failure EntryNotFound
        return _request("seed-scim-app", f"0badf00d-0000-4000-8000-{i:012d}")
    return _request("seed-scim-app", _user(i))


def _tenant(items: int, directory: Path) -> Path:
    """The emulator's default tenant plus every user and group the run's requests name, assigned to the SCIM job."""
    data: dict[str, Any] = json.loads(DEFAULT_TENANT.read_text())
    scim = next(j for sp in data["servicePrincipals"] for j in sp["jobs"] if j["id"] == SCIM_JOB)
    for sp in data["servicePrincipals"]:  # the copy lives elsewhere: fixture paths become absolute
        for job in sp["jobs"]:
            for recorded in job.get("recordedResponses", []):
                for response in recorded["responses"]:
                    if "fixture" in response:
                        response["fixture"] = str((DEFAULT_TENANT.parent / response["fixture"]).resolve())
    for i in range(items):
        if i % 10 == 9:
            members = [_member(i, m) for m in range(GROUP_MEMBERS)]
            data["objects"] += [{"objectTypeName": "User", "objectId": m} for m in members]
            data["objects"].append({"objectTypeName": "Group", "objectId": _group(i), "members": members})
            scim["assigned"].append(_group(i))
        elif i % 100 != 48 and i % 50 != 17:
            data["objects"].append({"objectTypeName": "User", "objectId": _user(i)})
            scim["assigned"].append(_user(i))
    path = directory / "soak-tenant.json"
    path.write_text(json.dumps(data))
    return path


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
    sweeps: int = 0
    swept_redriven: int = 0
    began: float = field(default_factory=time.monotonic)
    submit_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ledger(connection: str) -> tuple[dict[str, str], dict[tuple[str, str], dict[str, Any]]]:
    """Every request row's status and every call row (the properties the accounting needs)."""
    requests: dict[str, str] = {}
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    select = ["PartitionKey", "RowKey", "status", "subject", "servicePrincipalId", "jobId", "graphRequestId"]
    select.append("attemptReason")
    with TableClient.from_connection_string(connection, TABLE_NAME) as table:
        try:
            for row in table.list_entities(select=select):
                if row["RowKey"] == REQUEST_ROW:
                    requests[row["PartitionKey"]] = str(row["status"])
                elif str(row["RowKey"]).startswith("call-"):
                    calls[(row["PartitionKey"], row["RowKey"])] = dict(row)
        except ResourceNotFoundError:  # no request written yet
            pass
    return requests, calls


def _call_statuses(connection: str) -> dict[tuple[str, str], str]:
    return {key: str(row["status"]) for key, row in _ledger(connection)[1].items()}


SubjectKey = tuple[str, str, str, tuple[str, ...]]


def _subject_key(sp: str, job: str, subject: dict[str, Any]) -> SubjectKey:
    """What tells one Graph call's subject from every other in this run (each request's subjects are its own)."""
    links = subject.get("links") or {}
    members = tuple(sorted(str(m.get("objectId", "")).lower() for m in links.get("members") or []))
    return (sp.lower(), job.lower(), str(subject.get("objectId", "")).lower(), members)


@dataclass
class Answers:
    """What the emulator's call log says about the calls the ledger records."""

    second_calls: int = 0
    lost_answers: int = 0
    killed_in_flight: int = 0  # (request, call)s the killed worker had in flight: a second call, excused
    killed_extra_calls: int = 0
    unmatched_calls: int = 0  # answered calls whose subject is no call row of this run
    in_flight_at_end: int = 0  # answered within the claim window before the end, not recorded yet
    examples: list[str] = field(default_factory=list)


def _answers(
    graph: list[dict[str, Any]],
    calls: dict[tuple[str, str], dict[str, Any]],
    killed_utc: str,
    window: float,
    read_at: datetime,
) -> Answers:
    """Second calls and lost answers, per (request, call), from the emulator's call log and the ledger."""
    owner: dict[SubjectKey, tuple[str, str]] = {}
    for key, row in calls.items():
        if row.get("subject"):
            owner[_subject_key(str(row["servicePrincipalId"]), str(row["jobId"]), json.loads(row["subject"]))] = key
    answered: dict[tuple[str, str], list[dict[str, Any]]] = {}
    result = Answers()
    for call in graph:
        status = call["status"]
        # a 429, a 5xx fault or a dropped connection is a failed attempt, not an answer: retrying it is the point
        if status is None or status == 429 or status >= 500:
            continue
        try:
            subject = call["body"]["parameters"][0]["subjects"][0]
        except (KeyError, IndexError, TypeError):
            result.unmatched_calls += 1
            continue
        found = owner.get(_subject_key(str(call["servicePrincipalId"]), str(call["jobId"]), subject))
        if found is None:
            result.unmatched_calls += 1
            continue
        answered.setdefault(found, []).append(call)
    killed = datetime.fromisoformat(killed_utc) if killed_utc else None
    late = timedelta(seconds=window)
    for key, got in answered.items():
        got.sort(key=lambda c: int(c["seq"]))
        first = got[0]
        recorded = calls[key].get("graphRequestId") == first["requestId"]
        extra = len(got) - 1
        at = datetime.fromisoformat(first["time"])
        # in flight in the killed worker: answered just before the kill, and the ledger's last attempt is the
        # one made because an attempt left no outcome
        abandoned = "left no outcome" in str(calls[key].get("attemptReason") or "")
        in_flight = killed is not None and killed - timedelta(seconds=window) <= at <= killed and abandoned
        if in_flight and (extra or not recorded):
            result.killed_in_flight += 1
            result.killed_extra_calls += extra
            continue
        result.second_calls += extra
        if not recorded and calls[key]["status"] not in TERMINAL_CALL_STATUSES and at > read_at - late:
            result.in_flight_at_end += 1  # answered in the last moments of a run that ended by its deadline
        elif not recorded:
            result.lost_answers += 1
        if (extra or not recorded) and len(result.examples) < 5:
            seqs = [(c["seq"], c["status"], c["time"]) for c in got]
            result.examples.append(f"{key[0]}/{key[1]}: answers {seqs}")
    return result


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


def _describe_call(connection: str, request_id: str, call_id: str) -> str:
    """One call row, for a lost answer or a second call: what the ledger says and how it got there."""
    with TableClient.from_connection_string(connection, TABLE_NAME) as table:
        row = table.get_entity(request_id, call_id)
    names = ("status", "attempts", "attemptReason", "errorCode", "graphRequestId", "lastAttemptAt", "completedAt",
             "claimedUntil", "nextAttemptAt", "redrivenAt", "firstFailureAt", "throttledAttempts")  # fmt: skip
    stamp = row.metadata.get("timestamp")
    return ", ".join(f"{n}={row.get(n)}" for n in names if row.get(n) is not None) + f", Timestamp={stamp}"


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


def _inject_faults(emulator_url: str, run: Run, stop: threading.Event, every: float) -> None:
    """Queue the next batch of the schedule every ``every`` seconds until told to stop."""
    while not stop.wait(every):
        batch = FAULT_SCHEDULE[run.fault_batches % len(FAULT_SCHEDULE)]
        faults = [{"operation": "provisionOnDemand", **f} for f in batch]
        httpx.post(f"{emulator_url}/_emulator/config", json={"faults": faults}, timeout=60).raise_for_status()
        run.fault_batches += 1
        run.faults_queued += sum(int(f.get("times", 1)) for f in batch)


def _sweep_constantly(connection: str, every: float, grace: float, run: Run, stop: threading.Event) -> None:
    """The sweeper-heavy mode: the app's own sweep, from this process, every ``every`` seconds until stopped."""
    from azure.data.tables.aio import TableClient as AsyncTableClient
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient as AsyncQueueClient

    async def sweep() -> None:
        ledger_table = AsyncTableClient.from_connection_string(connection, table_name=TABLE_NAME)
        pending_table = AsyncTableClient.from_connection_string(connection, table_name=PENDING_TABLE)
        queue = AsyncQueueClient.from_connection_string(
            connection,
            WORK_QUEUE,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        async with ledger_table, pending_table, queue:
            ledger, pending, work = TableLedger(ledger_table), TablePendingIndex(pending_table), StorageQueue(queue)
            while not stop.is_set():
                try:
                    swept = await sweeper.sweep(ledger, work, pending, now=datetime.now(UTC), grace_seconds=grace)
                except Exception as exc:  # a sweep that fails is tried again, as the timer would
                    print(f"sweep failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                else:
                    run.sweeps += 1
                    run.swept_redriven += swept.redriven
                await asyncio.sleep(every)

    asyncio.run(sweep())


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
            "WORK_CLAIM_SECONDS": "30",
            "DEVHOST_QUEUE_LEASE_SECONDS": "40",
            "JOB_HOLD_SECONDS": "2",
        }
    )
    return env


def _expected_calls(items: int) -> int:
    """Calls the requests will fan out to: a 12-member group is 3 calls of at most 5 members."""
    return sum(3 if _body(i)["subjects"][0].get("links") else 1 for i in range(items))


def _drain(
    stack: Stack, run: Run, submitter: threading.Thread, expected: int, timeout: float, stall: float, kill: bool
) -> None:
    """While and after submitting, wait until every call is terminal; kill and replace a worker on the way."""
    connection = stack.env["AzureWebJobsStorage"]
    began = run.began
    deadline = time.monotonic() + timeout
    last_progress, last_terminal = time.monotonic(), -1
    while time.monotonic() < deadline:
        with run.lock:
            planned = sum(run.submitted.values())
            submitted = set(run.submitted)
        calls = _call_statuses(connection)
        terminal = sum(1 for (rid, _), status in calls.items() if rid in submitted and status in TERMINAL_CALL_STATUSES)
        now = time.monotonic()
        print(
            f"[{now - began:5.0f} s] requests submitted {len(submitted)}, calls terminal {terminal}/{planned}",
            file=sys.stderr,
            flush=True,
        )
        if kill and run.killed_at is None and terminal >= expected / 3:
            worker = stack.processes[-1]  # the last worker added: a worker-only devhost in full flow
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            run.killed_at = now - began
            run.killed_utc = datetime.now(UTC).isoformat(timespec="milliseconds")
            print(f"[{now - began:5.0f} s] SIGKILLed worker pid {worker.pid}; adding a replacement", file=sys.stderr)
            stack.add_worker()
        if terminal >= planned and (run.killed_at is not None or not kill) and not submitter.is_alive():
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
    # Graph's log first, the ledger after: every answer in the log was given before the ledger was read
    graph = _emulator_calls(stack.emulator_url)
    read_at = datetime.now(UTC)
    requests, rows = _ledger(connection)
    calls = {key: str(row["status"]) for key, row in rows.items()}
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

    throttled = [c for c in graph if c["throttled"]]
    ours_429 = [c for c in throttled if not c["fault"]]
    arrivals = [datetime.fromisoformat(c["time"]).timestamp() for c in graph if c["status"] is not None]
    started = [
        datetime.fromisoformat(c["time"]).timestamp() for c in graph if not c["throttled"] and c["status"] is not None
    ]
    ours_5xx = sum(n for code, n in run.rejected_posts.items() if code >= 500)
    ours = {k: r for k, r in rows.items() if k[0] in submitted}
    answers = _answers(graph, ours, run.killed_utc, args.claim_window, read_at)

    print(
        f"soak: {args.items} requests, limit {args.limit} in the emulator and the app (Graph's real limit is 5/10s),"
        f" 2 workers + the HTTP devhost; took {took:.0f} s"
    )
    killed = "never killed"
    if run.killed_at is not None:
        killed = f"SIGKILLed at {run.killed_at:.0f} s ({run.killed_utc}) and replaced"
    sweeper = "not invoked" if run.sweeper_invoked_at is None else f"invoked at {run.sweeper_invoked_at:.0f} s (stall)"
    if args.sweeper_every:
        sweeper = (
            f"run {run.sweeps} times from the bench (every {args.sweeper_every:g} s, grace {args.sweeper_grace:g} s),"
            f" re-driving {run.swept_redriven} calls; {sweeper} by the stall check"
        )
    print(f"faults queued: {run.faults_queued} in {run.fault_batches} batches; worker {killed}; sweeper {sweeper}")
    print(f"{'':28}{'requests':>10}{'calls':>10}")
    print(f"{'submitted':28}{len(submitted):>10}{planned:>10}")
    print(f"{'terminal':28}{req_terminal:>10}{call_terminal:>10}")
    for status in ("succeeded", "skipped", "failed", "rejected"):
        req = str(req_status[status]) if status != "skipped" else "-"
        print(f"{'  ' + status:28}{req:>10}{call_status[status]:>10}")
    print(f"{'still waiting':28}{req_waiting:>10}{call_waiting:>10}")
    print(f"{'poisoned (work/requests q)':28}{request_poison:>10}{work_poison:>10}")
    print(f"{'unaccounted':28}{req_lost:>10}{call_lost:>10}")
    print(f"POSTs not accepted: {dict(run.rejected_posts) or 0} (5xx: {ours_5xx})")
    print(
        f"Graph calls: {len(graph)} for {planned} planned = {len(graph) / max(planned, 1):.2f} per item; "
        f"429: {len(throttled)} ({len(ours_429)} not injected); "
        f"injected faults hit: {sum(1 for c in graph if c['fault'])}; "
        f"max started in any {limit.window_seconds:g} s: {count_in_any_window(started, limit.window_seconds)}"
        f" (limit {limit.calls}), max arrivals: {count_in_any_window(arrivals, limit.window_seconds)}"
    )
    print(f"work messages left: {work_left}; submission took {run.submit_seconds:.0f} s")
    print(f"lost answers: {answers.lost_answers}")
    print(f"second calls: {answers.second_calls}")
    if run.killed_at is not None:
        print(
            f"  left out, in flight in the killed worker: {answers.killed_in_flight} calls "
            f"({answers.killed_extra_calls} second calls)"
        )
    if answers.in_flight_at_end:
        print(
            f"  answered in the last {args.claim_window:g} s, not recorded yet (in flight): {answers.in_flight_at_end}"
        )
    if answers.unmatched_calls:
        print(f"  answered calls matching no call row of this run: {answers.unmatched_calls}")
    for example in answers.examples:
        print(f"  {example}")
        print(f"    ledger: {_describe_call(connection, *example.split(':')[0].split('/'))}")
    print(f"request rows still pending although all their calls are terminal: {len(stale)}")
    for rid in stale[:5]:
        print(f"  {rid}: {_describe(connection, rid)}")
    waiting_ids = sorted({rid for (rid, cid), st in mine.items() if st not in TERMINAL_CALL_STATUSES})
    if waiting_ids:
        print(f"requests with calls still waiting: {waiting_ids[:5]}")
        for rid, cid in sorted(k for k, st in mine.items() if st not in TERMINAL_CALL_STATUSES)[:3]:
            print(f"  {rid}/{cid}: {_describe_call(connection, rid, cid)}")
    bad = call_lost > 0 or req_lost > 0 or answers.lost_answers > 0 or answers.second_calls > 0
    return 1 if bad or answers.unmatched_calls > 0 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=2000, help="requests to submit")
    parser.add_argument("--limit", default="50/1s", help="the compressed window, in the emulator and the app")
    parser.add_argument("--drain-timeout", type=float, default=480, help="seconds to wait for the backlog")
    parser.add_argument("--stall", type=float, default=60, help="seconds without progress before the sweeper runs")
    parser.add_argument("--log", type=Path, help="the stack's output (default: discarded)")
    parser.add_argument("--fault-every", type=float, default=FAULT_EVERY, help="seconds between fault batches")
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="do not SIGKILL a worker")
    parser.add_argument("--sweeper-every", type=float, default=0.0, help="run the sweeper every S seconds (0: off)")
    parser.add_argument("--sweeper-grace", type=float, default=1.0, help="the sweeper's grace in that mode")
    parser.add_argument(
        "--claim-window", type=float, default=30.0, help="seconds before the kill in which a call counts as in flight"
    )
    args = parser.parse_args(argv)
    limit = RateLimit.parse(args.limit)
    run = Run()
    log: IO[str]
    with open(args.log or os.devnull, "w") as log, tempfile.TemporaryDirectory() as tmp:
        tenant = _tenant(args.items, Path(tmp))
        emulator_args = ["--rate-limit", args.limit, "--tenant", str(tenant)]
        stack = Stack(port=free_port(), env=_env(args.limit), log=log, emulator_args=emulator_args)
        with stack:
            assert stack.emulator_url
            stack.add_worker()
            stack.add_worker()
            stop = threading.Event()
            helpers = [
                threading.Thread(
                    target=_inject_faults, args=(stack.emulator_url, run, stop, args.fault_every), daemon=True
                )
            ]
            if args.sweeper_every:
                sweeping = (stack.env["AzureWebJobsStorage"], args.sweeper_every, args.sweeper_grace, run, stop)
                helpers.append(threading.Thread(target=_sweep_constantly, args=sweeping, daemon=True))
            for helper in helpers:
                helper.start()
            submitter = threading.Thread(target=_submit, args=(stack, args.items, run), daemon=True)
            submitter.start()
            try:
                _drain(stack, run, submitter, _expected_calls(args.items), args.drain_timeout, args.stall, args.kill)
            finally:
                stop.set()
                for helper in helpers:
                    helper.join()
                submitter.join()
            return _report(stack, run, limit, time.monotonic() - run.began, args)


if __name__ == "__main__":
    sys.exit(main())
