"""Deep backlogs: drain rate against Graph's limit, storage operations per call, limiter state, fairness.

One stack (Azurite, the Graph emulator, the HTTP devhost, plus worker-only devhosts for ``--workers`` > 1) per
worker configuration, all at one compressed limit (``--limit``, default 50 per 1 s, in the emulator and in the
app's ``GRAPH_RATE_LIMIT``). Azurite runs with its access log on, so every storage request of every process is
counted where it is served, not where the app thinks it made one.

For each depth in ``--depths`` (default 1,000, 5,000 and 20,000 calls) the calls are submitted at once
(requests of 100 users each, from 16 concurrent clients) and drained; the columns:
- ``drain s``: from the first POST to the last call Graph accepted;
- ``steady``: the same over the middle 80 % of the calls (10th to 90th percentile arrival): the pace once the
  drain is under way. With a long window and few windows' worth of calls (1,000 at 200/10 s is 5 windows), the
  whole-drain figure's added window weighs: an even drain exactly at the limit shows 0.83 there, 0.99 at 20,000;
- ``rate/lim``: calls Graph accepted ÷ (first to last accepted arrival + one window) ÷ the limit, over the whole
  drain (1.00 is a drain at exactly the limit);
- ``idle s``: the longest stretch with no call arriving at Graph while calls were still due (all are due at once);
- ``ops/call``: Azurite requests (tables, queues, blobs, every process) during the drain ÷ calls;
- ``limiter B``: the largest limiter row (its ``state`` property, bytes) seen during the drain, polled each second;
- ``429``: throttled answers (self-caused: nothing else calls the emulator);
- ``done``: calls Graph accepted ÷ depth. A drain that stops making progress for ``--stall`` seconds (or runs past
  its deadline) is reported as it stands instead of aborting the bench, so a slow machine still gives figures;
- ``load``: the 1-minute load average at the end (the benches share the machine: read the figures with it).
The storage requests are also broken down by table or queue and method (``--breakdown``).

Then fairness, on a stack of its own at ``--fair-limit`` (default Graph's real 5/10 s): one 1,000-call request (50
groups of 100 members, 5 members per call) drains while 20 single-call requests arrive at random moments of its first
150 s; each one's wait is counted in slots (window ÷ calls) from its POST to its call's arrival at Graph: p50 and
max. Not at the compressed limit: a dispatched call's message is sent ``LEAD_SECONDS`` (3 s, the queue's polling
interval and more) before its slot and the dispatcher hands out up to 6 s of slots ahead, both fixed in seconds,
so at 200/10 s a newcomer's wait is 60-180 slots of 0.05 s whatever the fairness; at Graph's limit those are 1.5
and 3 slots.

    .venv/bin/python -m bench.backlog [--limit 200/10s] [--workers 1 4] [--depths 1000 5000 20000] [--log FILE]
        [--arrivals DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from devhost.stack import ROOT, Stack, free_port
from shared.core.pacing import RateLimit

#: The seed user and the 12 cohort users of the emulator's default tenant (all assigned to the SCIM app).
USERS = ["9bb0f679-a883-4a6f-8260-35b491b8b8c8"] + [f"c0ffee00-0000-4000-8000-0000000000{i:02d}" for i in range(1, 13)]
TARGET = "seed-scim-app"
PER_REQUEST = 100
LIMITER_TABLE = "ProvisioningLimiter"
HTTP_TIMEOUT = 600.0  # a POST of 100 subjects waits its turn behind a drain on a 2-core machine


@dataclass(frozen=True)
class Drain:
    """One depth drained."""

    workers: int
    depth: int
    seconds: float
    rate: float
    idle: float
    ops_per_call: float
    limiter_bytes: int
    throttled: int
    done: float = 1.0
    load: float = 0.0
    steady: float = 0.0
    breakdown: tuple[tuple[str, int], ...] = ()
    #: Seconds from the first POST until every POST was answered (intake), and until the longest idle began.
    intake: float = 0.0
    idle_at: float = 0.0
    #: Accepted and throttled arrivals, seconds after the first POST (``--arrivals`` writes them out).
    arrivals: tuple[float, ...] = ()
    throttled_at: tuple[float, ...] = ()


@dataclass(frozen=True)
class Fairness:
    """Single-call requests' waits, in slots, while a big request drains."""

    workers: int
    waits: list[float]
    expected: int = 0
    big_done: int = 0
    limit: RateLimit | None = None


def _env(limit: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")
    }
    env.update(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    env["GRAPH_RATE_LIMIT"] = limit
    return env


def _post_all(base_url: str, bodies: list[dict[str, Any]]) -> list[str]:
    with httpx.Client(timeout=HTTP_TIMEOUT) as client, ThreadPoolExecutor(16) as pool:
        posted = list(pool.map(lambda body: client.post(f"{base_url}/api/provision", json=body), bodies))
    bad = [p for p in posted if p.status_code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} POSTs not accepted, first: {bad[0].status_code} {bad[0].text[:200]}")
    return [str(p.json()["requestId"]) for p in posted]


class _CallLog:
    """The emulator's provisionOnDemand calls, read incrementally: what is new, and what was still in flight.

    Reading the whole log every 5 s (20,000 calls) held the emulator's event loop while calls arrived, and so
    moved the arrival times it stamps and counts its rate limit by: the bench perturbed what it measured.
    """

    def __init__(self, emulator_url: str) -> None:
        self._url = f"{emulator_url}/_emulator/calls"
        self._calls: dict[int, dict[str, Any]] = {}

    def read(self) -> list[dict[str, Any]]:
        """Every call so far, in arrival order."""
        in_flight = [seq for seq, call in self._calls.items() if call["status"] is None]
        after = min(in_flight) - 1 if in_flight else max(self._calls, default=0)
        params: dict[str, str | int] = {"operation": "provisionOnDemand", "after": after}
        answer = httpx.get(self._url, params=params, timeout=HTTP_TIMEOUT).raise_for_status()
        for call in answer.json()["calls"]:
            self._calls[int(call["seq"])] = call
        return [self._calls[seq] for seq in sorted(self._calls)]


def _arrival(call: dict[str, Any]) -> float:
    return datetime.fromisoformat(call["time"]).timestamp()


def _accepted(calls: list[dict[str, Any]]) -> list[float]:
    return sorted(_arrival(c) for c in calls if c["status"] is not None and not c["throttled"])


class _LimiterWatch:
    """Polls the limiter rows once a second and keeps the largest ``state`` seen."""

    def __init__(self, connection: str) -> None:
        self._connection = connection
        self._stop = threading.Event()
        self.largest = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with TableClient.from_connection_string(self._connection, LIMITER_TABLE) as table:
            while not self._stop.wait(1.0):
                try:
                    for row in table.list_entities(select=["state"]):
                        self.largest = max(self.largest, len(str(row.get("state") or "").encode()))
                except ResourceNotFoundError:
                    continue

    def __enter__(self) -> _LimiterWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) /devstoreaccount1/(?P<resource>[A-Za-z0-9-]+)')


def _storage_requests(log_path: Path) -> Counter[str]:
    """Azurite access-log lines so far (one per storage request it served), by method and table or queue."""
    counts: Counter[str] = Counter()
    with log_path.open(errors="replace") as log:
        for line in log:
            if line.startswith("[azurite] ") and "HTTP/1.1" in line:
                match = _REQUEST_LINE.search(line)
                counts[f"{match['method']} {match['resource']}" if match else "other"] += 1
    return counts


def _reset(stack: Stack, limit: RateLimit) -> None:
    assert stack.emulator_url
    time.sleep(limit.window_seconds * 1.5)  # earlier starts leave every window
    httpx.post(f"{stack.emulator_url}/_emulator/reset", timeout=HTTP_TIMEOUT).raise_for_status()


#: A drain that makes no progress for this long is reported as it stands (``--stall``).
STALL_SECONDS = 120.0
_stall = STALL_SECONDS


def _wait_calls(log: _CallLog, count: int, timeout: float) -> list[dict[str, Any]]:
    """The emulator's calls once ``count`` are accepted, or once progress stalls or the deadline passes."""
    deadline = time.monotonic() + timeout
    seen, progressed = -1, time.monotonic()
    while True:
        calls = log.read()
        accepted = len(_accepted(calls))
        if accepted >= count:
            return calls
        now = time.monotonic()
        if accepted != seen:
            seen, progressed = accepted, now
            print(f"  {accepted}/{count} calls accepted", file=sys.stderr, flush=True)
        if now > deadline or now - progressed > _stall:
            print(f"  giving up at {accepted}/{count}: reported as it stands", file=sys.stderr, flush=True)
            return calls
        time.sleep(5.0)


def _steady(accepted: list[float], limit: RateLimit) -> float:
    """Calls ÷ time ÷ the limit between the 10th and the 90th percentile arrivals (0 for too few calls)."""
    low, high = len(accepted) // 10, len(accepted) * 9 // 10
    if high - low < 2 or accepted[high] <= accepted[low]:
        return 0.0
    return (high - low) / (accepted[high] - accepted[low]) / (limit.calls / limit.window_seconds)


def drain(stack: Stack, log_path: Path, workers: int, depth: int, limit: RateLimit) -> Drain:
    """``depth`` calls submitted at once, drained; measured as the module docstring says."""
    assert stack.emulator_url
    _reset(stack, limit)
    subjects = [{"objectId": USERS[i % len(USERS)], "objectTypeName": "User"} for i in range(depth)]
    bodies = [{"target": TARGET, "subjects": subjects[i : i + PER_REQUEST]} for i in range(0, depth, PER_REQUEST)]
    ops_before = _storage_requests(log_path)
    ideal = depth / limit.calls * limit.window_seconds
    with _LimiterWatch(stack.env["AzureWebJobsStorage"]) as watch:
        started = time.time()
        _post_all(stack.base_url, bodies)
        intake = time.time() - started
        calls = _wait_calls(_CallLog(stack.emulator_url), depth, 120 + 4 * ideal)
    ops = _storage_requests(log_path) - ops_before
    accepted = _accepted(calls) or [started]
    gaps = [b - a for a, b in zip([started, *accepted], accepted, strict=False)]
    if len(accepted) < depth:
        gaps.append(time.time() - accepted[-1])  # work was still due until the bench gave up
    span = accepted[-1] - accepted[0] + limit.window_seconds
    done = len(_accepted(calls))
    longest = max(range(1, len(gaps)), key=gaps.__getitem__, default=0)
    return Drain(
        workers=workers,
        depth=depth,
        seconds=accepted[-1] - started,
        rate=done / span / (limit.calls / limit.window_seconds),
        steady=_steady(accepted, limit),
        idle=max(gaps[1:], default=0.0),
        ops_per_call=sum(ops.values()) / max(done, 1),
        limiter_bytes=watch.largest,
        throttled=sum(1 for c in calls if c["throttled"]),
        done=done / depth,
        load=os.getloadavg()[0],
        breakdown=tuple(ops.most_common()),
        intake=intake,
        idle_at=([started, *accepted][longest] - started) if longest else 0.0,
        arrivals=tuple(round(t - started, 3) for t in accepted),
        throttled_at=tuple(round(_arrival(c) - started, 3) for c in calls if c["throttled"]),
    )


@dataclass(frozen=True)
class FairRun:
    """The fairness run's shape: its limit, the big request's calls, the singles and the seconds they arrive in."""

    limit: RateLimit
    big: int = 1000
    singles: int = 20
    within: float = 150.0


def fairness(stack: Stack, workers: int, run_: FairRun) -> Fairness:
    """A ``big``-call request drains; ``singles`` one-call requests arrive at random moments of its first
    ``within`` seconds; their waits in slots. Only the singles are waited for: at Graph's real 5/10 s a
    1,000-call request drains for 33 minutes, and what is measured is how soon a newcomer gets in meanwhile."""
    assert stack.emulator_url
    limit, big, singles, within = run_.limit, run_.big, run_.singles, run_.within
    _reset(stack, limit)
    run = uuid.uuid4().hex[:6]  # short member ids: 5,000 of them must fit the 256 KiB body limit
    groups = [
        {
            "objectId": f"g{run}{g:02d}",
            "objectTypeName": "Group",
            "links": {"members": [{"objectId": f"u{run}{g:02d}{m:02d}", "objectTypeName": "User"} for m in range(100)]},
        }
        for g in range(big // 20)
    ]
    _post_all(stack.base_url, [{"target": TARGET, "subjects": groups}])
    rng = random.Random(13)
    moments = sorted(rng.uniform(0.1, 1.0) * within for _ in range(singles))
    began = time.time()
    submitted: dict[str, float] = {}
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for moment in moments:
            time.sleep(max(0.0, began + moment - time.time()))
            object_id = str(uuid.uuid4())
            submitted[object_id] = time.time()
            body = {"target": TARGET, "subjects": [{"objectId": object_id, "objectTypeName": "User"}]}
            client.post(f"{stack.base_url}/api/provision", json=body).raise_for_status()
    slot = limit.window_seconds / limit.calls
    deadline = time.monotonic() + 120 + 4 * singles * slot + 10 * limit.window_seconds
    log = _CallLog(stack.emulator_url)
    while True:
        calls = log.read()
        waits = _single_waits(calls, submitted, slot)
        if len(waits) >= singles or time.monotonic() > deadline:
            done = len(_accepted(calls))
            return Fairness(workers, sorted(waits), singles, big_done=done, limit=limit)
        time.sleep(2.0)


def _single_waits(calls: list[dict[str, Any]], submitted: dict[str, float], slot: float) -> list[float]:
    """Each single-call request's wait, in slots, from its POST to its call's arrival at Graph."""
    waits: list[float] = []
    for call in calls:
        if call["throttled"] or call["status"] is None:
            continue
        sent_body: dict[str, Any] = call.get("body") or {}
        for parameter in sent_body.get("parameters", []):
            for subject in parameter.get("subjects", []):
                sent = submitted.get(subject.get("objectId"))
                if sent is not None:
                    waits.append((_arrival(call) - sent) / slot)
    return waits


def _write_arrivals(folder: Path, d: Drain) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"intake": d.intake, "accepted": d.arrivals, "throttled": d.throttled_at}
    (folder / f"arrivals-{d.workers}w-{d.depth}.json").write_text(json.dumps(data))


def _print(drains: list[Drain], fair: list[Fairness], limit: RateLimit, took: float, breakdown: bool) -> None:
    print(f"limit {limit.calls}/{limit.window_seconds:g}s in the emulator and the app; bench took {took:.0f} s")
    columns = f"{'workers':>8}{'depth':>8}{'drain s':>9}{'rate/lim':>10}{'steady':>8}{'idle s':>8}{'ops/call':>10}"
    print(f"{columns}{'limiter B':>11}{'429':>6}{'done':>7}{'load':>7}")
    for d in drains:
        print(
            f"{d.workers:>8}{d.depth:>8}{d.seconds:>9.1f}{d.rate:>10.2f}{d.steady:>8.2f}{d.idle:>8.2f}"
            f"{d.ops_per_call:>10.1f}"
            f"{d.limiter_bytes:>11}{d.throttled:>6}{d.done:>7.2f}{d.load:>7.1f}"
        )
        print(f"        intake took {d.intake:.1f} s; the longest idle began {d.idle_at:.1f} s after the first POST")
        if breakdown:
            calls = max(d.done * d.depth, 1)
            print("        " + ", ".join(f"{name} {n / calls:.2f}" for name, n in d.breakdown[:12]))
    by_workers: dict[int, list[Drain]] = {}
    for d in drains:
        by_workers.setdefault(d.workers, []).append(d)
    for workers, rows in sorted(by_workers.items()):
        rows.sort(key=lambda r: r.depth)
        if len(rows) > 1:
            print(
                f"{workers} worker(s): ops/call at depth {rows[-1].depth} ÷ at {rows[0].depth} = "
                f"{rows[-1].ops_per_call / rows[0].ops_per_call:.2f} (flat is 1.00)"
            )
    for f in fair:
        if f.waits and f.limit is not None:
            print(
                f"{f.workers} worker(s), at {f.limit.calls}/{f.limit.window_seconds:g}s: {len(f.waits)}/"
                f"{f.expected} single-call requests during the big drain ({f.big_done} of its calls made by then) "
                f"waited p50 {statistics.median(f.waits):.1f} slots, max {max(f.waits):.1f} slots"
            )
        else:
            print(f"{f.workers} worker(s): none of {f.expected} single-call requests reached Graph")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backlog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", default="200/10s", help="the compressed limit, in the emulator and the app")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--depths", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--no-fairness", action="store_true")
    parser.add_argument("--fair-calls", type=int, default=1000, help="calls of the big request in the fairness run")
    parser.add_argument("--fair-singles", type=int, default=20, help="single-call requests in the fairness run")
    parser.add_argument("--fair-within", type=float, default=150.0, help="seconds over which the singles arrive")
    parser.add_argument(
        "--fair-limit", default="5/10s", help="the fairness run's limit (slots are counted at it; Graph's own)"
    )
    parser.add_argument("--stall", type=float, default=STALL_SECONDS, help="seconds without progress: give up")
    parser.add_argument("--breakdown", action="store_true", help="storage requests per call by table/queue")
    parser.add_argument("--log", type=Path, help="the stacks' output, Azurite's access log included")
    parser.add_argument("--arrivals", type=Path, help="a folder: each drain's arrival times as JSON, to plot")
    args = parser.parse_args(argv)
    global _stall  # one bench run, one setting
    _stall = args.stall
    limit, fair_limit = RateLimit.parse(args.limit), RateLimit.parse(args.fair_limit)
    began = time.monotonic()
    drains: list[Drain] = []
    fair: list[Fairness] = []
    log_path = args.log or Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-backlog-{os.getpid()}.log"  # noqa: S108
    log: IO[str]
    with log_path.open("w", buffering=1) as log:
        for workers in args.workers:
            stack = Stack(
                port=free_port(),
                env=_env(args.limit),
                log=log,
                emulator_args=["--rate-limit", args.limit],
                azurite_access_log=True,
            )
            with stack:
                for _ in range(workers - 1):
                    stack.add_worker()
                for depth in args.depths:
                    drains.append(drain(stack, log_path, workers, depth, limit))
                    if args.arrivals:
                        _write_arrivals(args.arrivals, drains[-1])
                    print(f"[{time.monotonic() - began:.0f} s] {drains[-1]}", file=sys.stderr, flush=True)
            if args.no_fairness:
                continue
            # fairness on a stack of its own at its own limit: a slot there is Graph's 2 s, not a compressed one
            fair_stack = Stack(
                port=free_port(), env=_env(args.fair_limit), log=log, emulator_args=["--rate-limit", args.fair_limit]
            )
            with fair_stack:
                for _ in range(workers - 1):
                    fair_stack.add_worker()
                shape = FairRun(fair_limit, args.fair_calls, args.fair_singles, args.fair_within)
                fair.append(fairness(fair_stack, workers, shape))
                print(f"[{time.monotonic() - began:.0f} s] {fair[-1]}", file=sys.stderr, flush=True)
    _print(drains, fair, limit, time.monotonic() - began, args.breakdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
