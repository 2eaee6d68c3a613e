"""Pacing, job health, crash safety and the sweeper, on stacks of their own with a compressed window.

Graph's limit (5 per 10 s) is compressed to 5 per 1 s in both the emulator and the app, so a backlog
drains in seconds; the emulator counts and refuses with 429 exactly like the real limit would.

These tests must hold on a loaded 2-core machine, so they assert what the app guarantees whatever the
machine's speed, never how fast it drained (that is measured by ``bench/pacing.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import Stack, free_port
from shared.core.pacing import RateLimit
from shared.core.records import CallRecord, RequestRecord
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallStatus, RequestStatus, Source
from shared.runtime import Runtime
from shared.settings import Settings
from shared.usecases.worker import EARLY_TOLERANCE_SECONDS
from tests.integration.conftest import example_values, wait_done
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = pytest.mark.integration

SEED_USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
BODY = {"target": "seed-scim-app", "subjects": [SEED_USER]}
SCIM = ("c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612")
LIMIT_SPEC = "5/1s"
LIMIT = RateLimit.parse(LIMIT_SPEC)
#: Seconds after posting that the burst falls due: intake of 30 requests is over by then on a healthy machine
#: (on a slow one the test still holds, it only starts the drain later).
RELEASE_AFTER_SECONDS = 5.0
#: Requests that warm the workers before the burst: two per worker process, if the queue spreads them so.
WARM_UP = 6
#: Clock resolution between the app's and the emulator's stamps (milliseconds, same host clock).
CLOCK_SLACK_SECONDS = 0.02
#: 429s tolerated in a 30-call burst. The limiter keeps *starts* within the limit; on a loaded machine a call
#: can reach Graph late, among the next window's calls, and be refused (the app then waits Retry-After and
#: tries again). Measured on a loaded 2-core machine: 0 in 6 runs; 7 with the app's limit lifted to 1000/1s
#: (paced only by the 429s themselves). Without pacing every call beyond 5 in a window draws one.
MAX_THROTTLED = 3
#: Queue lease in the crash test: how long after a killed worker's delivery the item is delivered again.
LEASE_SECONDS = 30


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    env.update({"GRAPH_RATE_LIMIT": LIMIT_SPEC, "JOB_HOLD_SECONDS": "2", **extra})
    return env


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The app with three worker processes (one serving HTTP) sharing Azurite and one 5-per-second budget."""
    log_path = tmp_path_factory.mktemp("paced") / "stack.log"
    with log_path.open("w") as log:
        stack = Stack(port=free_port(), env=_env(), log=log, emulator_args=["--rate-limit", LIMIT_SPEC])
        with stack:
            stack.add_worker()
            stack.add_worker()
            yield stack


def _calls(stack: Stack) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()["calls"]
    return calls


def _arrival(call: dict[str, Any]) -> float:
    return datetime.fromisoformat(call["time"]).timestamp()


def test_30_requests_due_at_once_reach_graph_paced_to_the_limit_across_3_workers(paced: Stack) -> None:
    """A burst of 30 drains through three workers at no more than 5 starts per window, none lost, none repeated.

    All 30 are posted with one ``notBefore``, so they fall due together however long intake took on this
    machine, and no call may start before ``notBefore`` (less the worker's early tolerance). The limiter
    hands out start slots with at most ``LIMIT.calls`` in any window, and a call reaches Graph at or after
    its slot: so the k-th call to arrive (counting from 0) cannot arrive before ``k // 5`` windows after
    that moment. That holds on any machine, however loaded; a limiter that stopped limiting breaks it (and
    the 429 bound) on any machine that can call faster than the limit. How much *later* than its slot a call
    arrives depends on the machine, so arrivals per sliding window are not required to be ideal here, nor
    is the drain rate: ``bench/pacing.py`` measures both.
    """
    url = f"{paced.base_url}/api/provision"
    # Warm the workers first (the first Graph call in a process imports the SDK), so the burst shows pacing.
    with ThreadPoolExecutor(WARM_UP) as pool:
        warming = list(pool.map(lambda _: httpx.post(url, json=BODY, timeout=HTTP_TIMEOUT), range(WARM_UP)))
    for warm in warming:
        assert wait_done(warm.headers["Location"])["status"] == "succeeded"
    httpx.post(f"{paced.emulator_url}/_emulator/reset", timeout=HTTP_TIMEOUT).raise_for_status()

    due = datetime.now(UTC) + timedelta(seconds=RELEASE_AFTER_SECONDS)
    body = {**BODY, "notBefore": due.isoformat()}
    with ThreadPoolExecutor(10) as pool:
        posted = list(pool.map(lambda _: httpx.post(url, json=body, timeout=HTTP_TIMEOUT), range(30)))
    assert {p.status_code for p in posted} == {202}, [p.text for p in posted if p.status_code != 202]
    results = [wait_done(p.headers["Location"]) for p in posted]
    assert all(r["status"] == "succeeded" for r in results), [r["status"] for r in results]

    calls = _calls(paced)
    throttled = [c for c in calls if c["throttled"]]
    assert len(calls) - len(throttled) == 30, "one accepted Graph call per request, none repeated"
    assert sum(r["calls"][0]["attempts"] for r in results) == len(calls), (
        "every attempt is one Graph call: waiting for a slot spends none"
    )
    released = due.timestamp() - EARLY_TOLERANCE_SECONDS
    arrivals = sorted(_arrival(c) for c in calls)

    early = [
        f"call {k} at {at - released:+.2f} s"
        for k, at in enumerate(arrivals)
        if at < released + k // LIMIT.calls * LIMIT.window_seconds - CLOCK_SLACK_SECONDS
    ]
    assert not early, f"more than {LIMIT.calls} calls per {LIMIT.window_seconds:g} s after release: {early}"
    assert len(throttled) <= MAX_THROTTLED, f"{len(throttled)} of {len(calls)} calls answered 429"


def test_a_quarantined_job_holds_its_items_and_they_resume_after_recovery(paced: Stack) -> None:
    job = "/".join(SCIM)
    config = f"{paced.emulator_url}/_emulator/config"
    httpx.post(config, json={"jobStatus": {job: "Quarantine"}}, timeout=HTTP_TIMEOUT).raise_for_status()
    try:
        posted = httpx.post(
            f"{paced.base_url}/api/provision",
            json={"target": "seed-scim-app", "subjects": [SEED_USER]},
            timeout=HTTP_TIMEOUT,
        )
        location = posted.headers["Location"]

        def held() -> dict[str, Any] | None:
            call: dict[str, Any] = httpx.get(location, timeout=HTTP_TIMEOUT).json()["calls"][0]
            return call if call["status"] == "waiting" and call.get("errorCode") == "JobQuarantined" else None

        call = wait_until(held, "the call held as JobQuarantined")
        assert call["attempts"] == 0, "a held item burns no attempts"
        assert "Quarantine" in call["errorMessage"]
    finally:
        httpx.post(config, json={"jobStatus": {job: None}}, timeout=HTTP_TIMEOUT).raise_for_status()
    result = wait_done(location)
    assert result["status"] == "succeeded"
    assert result["calls"][0]["attempts"] == 1
    assert "errorCode" not in result["calls"][0] or result["calls"][0]["errorCode"] == "RedundantExport"


def test_the_sweeper_redrives_lost_and_far_future_items(paced: Stack) -> None:
    """A call whose message was lost (crash between ledger and queue), and one that came within reach."""
    runtime = Runtime(Settings.from_environ(paced.env))
    now = datetime.now(UTC)

    async def write_orphans() -> list[str]:
        ids = []
        for due, enqueued in ((now - timedelta(minutes=10), None), (now + timedelta(seconds=1), False)):
            request_id = new_request_id(now)
            call = CallRecord(
                request_id,
                "call-0001",
                subject={"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"},
                service_principal_id=SCIM[0],
                job_id=SCIM[1],
                rule_id="ea807875-5618-4f0a-9125-0b46a05298ca",
                status=CallStatus.QUEUED if enqueued is None else CallStatus.SCHEDULED,
                attempts=0,
                next_attempt_at=due,
                not_before=due,
                created_at=now,
                enqueued=enqueued,
            )
            row = RequestRecord(
                request_id,
                RequestStatus.PENDING,
                source=Source.HTTP,
                call_count=1,
                created_at=now,
                updated_at=now,
                service_principal_id=SCIM[0],
                job_id=SCIM[1],
            )
            await runtime.pending.add(request_id, now)
            await runtime.ledger.create(row, [call])
            ids.append(request_id)
        return ids

    lost, far = asyncio.run(write_orphans())
    invoked = httpx.post(f"{paced.base_url}/admin/functions/sweeper", json={"input": ""}, timeout=HTTP_TIMEOUT)
    assert invoked.status_code == 202
    for request_id in (lost, far):
        result = wait_done(f"{paced.base_url}/api/provision/{request_id}")
        assert result["status"] == "succeeded", result


def test_a_worker_killed_mid_call_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while Graph is answering; the item completes after the queue lease, on another worker."""
    # The lease outlasts a cold worker's first Graph call: on a loaded machine the SDK import blocked the event
    # loop for 12-15 s, the lease renewals with it, and a 4 s lease then expired mid-call: the item was
    # delivered twice to the new worker and called twice (the first-call stall of issue 10, not crash safety).
    env = _env(WORK_CLAIM_SECONDS="3", DEVHOST_QUEUE_LEASE_SECONDS=str(LEASE_SECONDS))
    with (tmp_path / "crash.log").open("w") as log, Stack(port=free_port(), env=env, log=log) as stack:
        user = {"objectId": "e1a2b3c4-0001-4a5b-8c6d-000000000001", "objectTypeName": "User"}
        httpx.post(
            f"{stack.emulator_url}/_emulator/config",
            # long enough that the kill below lands while Graph is still answering, even on a loaded machine
            json={"faults": [{"operation": "provisionOnDemand", "kind": "slow", "delayMs": 5000}]},
            timeout=HTTP_TIMEOUT,
        ).raise_for_status()
        posted = httpx.post(
            f"{stack.base_url}/api/provision",
            json={"target": "seed-scim-app", "subjects": [user]},
            timeout=HTTP_TIMEOUT,
        )
        request_id = posted.json()["requestId"]
        wait_until(lambda: _calls(stack), "the call reaching Graph")
        devhost = stack.processes[-1]
        os.killpg(devhost.pid, signal.SIGKILL)  # mid-call: Graph is still answering
        devhost.wait()
        stack.add_worker()

        async def read() -> dict[str, Any] | None:
            request, calls = await Runtime(Settings.from_environ(stack.env)).ledger.get_request(request_id)
            return {"request": request, "calls": calls} if request else None

        def finished() -> dict[str, Any] | None:
            state = asyncio.run(read())
            return state if state is not None and state["request"].status != "pending" else None

        state = wait_until(finished, "the request finishing on the new worker")
        (call,) = state["calls"]
        assert state["request"].status == "succeeded"
        assert call.attempts == 2
        # at least once: the killed worker's call reached Graph, so the repeat is Skipped RedundantExport
        assert call.status in ("succeeded", "skipped")
        assert len(_calls(stack)) == 2


def test_a_wake_on_the_work_queue_reaches_the_dispatcher_through_the_host(paced: Stack) -> None:
    """The dispatcher's wake travels as the host delivers it: base64 on ``provisioning-work``, read by the work
    trigger and handed to a pump of its scope (not to the worker, which would poison it as no work item). When to
    send one is the simulation's to show (``tests/unit/app/test_dispatcher_wakes.py``)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    from shared.contract.names import WORK_QUEUE
    from shared.core.ports import Wake

    log = Path(paced.log.name)
    before = log.read_text(errors="replace").count("backlog: woken")
    connection = paced.env["AzureWebJobsStorage"]
    with QueueClient.from_connection_string(
        connection, WORK_QUEUE, message_encode_policy=TextBase64EncodePolicy()
    ) as queue:
        queue.send_message(Wake("tenant").to_json())
    wait_until(lambda: log.read_text(errors="replace").count("backlog: woken") > before, "the wake pumped the scope")
    with QueueClient.from_connection_string(
        connection, f"{WORK_QUEUE}-poison", message_decode_policy=TextBase64DecodePolicy()
    ) as poison:
        try:
            poisoned = [m.content for m in poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            poisoned = []
        assert not [text for text in poisoned if "wake" in text]
