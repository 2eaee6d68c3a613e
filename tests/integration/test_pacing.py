"""Pacing, job health, crash safety and the sweeper, on stacks of their own with a compressed window.

Graph's limit (5 per 10 s) is compressed to 5 per 1 s in both the emulator and the app, so a backlog
drains in seconds; the emulator counts and refuses with 429 exactly like the real limit would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import Stack, free_port
from shared.pacing import count_in_any_window
from shared.request_ids import new_request_id
from shared.runtime import Runtime
from shared.settings import Settings
from tests.integration.conftest import example_values, wait_done

pytestmark = pytest.mark.integration

SEED_USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
SCIM = ("c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    env.update({"GRAPH_RATE_LIMIT": "5/1s", "JOB_HOLD_SECONDS": "2", **extra})
    return env


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The app with three worker processes (one serving HTTP) sharing Azurite and one 5-per-second budget."""
    log_path = tmp_path_factory.mktemp("paced") / "stack.log"
    with log_path.open("w") as log:
        stack = Stack(port=free_port(), env=_env(), log=log, emulator_args=["--rate-limit", "5/1s"])
        with stack:
            stack.add_worker()
            stack.add_worker()
            yield stack


def _calls(stack: Stack) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}
    ).json()["calls"]
    return calls


def test_30_requests_at_once_drain_at_the_limit_across_3_workers_with_no_429(paced: Stack) -> None:
    httpx.post(f"{paced.emulator_url}/_emulator/reset").raise_for_status()
    url = f"{paced.base_url}/api/provision"
    body = {"target": "seed-scim-app", "subjects": [SEED_USER]}
    with ThreadPoolExecutor(10) as pool:
        posted = list(pool.map(lambda _: httpx.post(url, json=body, timeout=30), range(30)))
    assert {p.status_code for p in posted} == {202}
    results = [wait_done(p.headers["Location"], timeout=60) for p in posted]
    assert all(r["status"] == "succeeded" for r in results), [r["status"] for r in results]

    calls = _calls(paced)
    assert len(calls) == 30, "one Graph call per request, none repeated"
    assert not [c for c in calls if c["throttled"]], "no 429 caused by us"
    arrivals = [datetime.fromisoformat(c["time"]).timestamp() for c in calls]
    assert count_in_any_window(arrivals, 1.0) <= 5
    ideal = (30 / 5 - 1) * 1.0  # the last batch of 5 may start 5 windows after the first
    took = max(arrivals) - min(arrivals)
    assert took <= 1.5 * ideal, f"{took:.2f} s for 30 calls; ideal {ideal:.1f} s"
    assert all(r["calls"][0]["attempts"] == 1 for r in results), "waiting for a slot spends no attempt"


def test_a_quarantined_job_holds_its_items_and_they_resume_after_recovery(paced: Stack) -> None:
    job = "/".join(SCIM)
    config = f"{paced.emulator_url}/_emulator/config"
    httpx.post(config, json={"jobStatus": {job: "Quarantine"}}).raise_for_status()
    try:
        posted = httpx.post(
            f"{paced.base_url}/api/provision", json={"target": "seed-scim-app", "subjects": [SEED_USER]}
        )
        location = posted.headers["Location"]
        deadline = time.monotonic() + 20
        while True:
            call = httpx.get(location).json()["calls"][0]
            if call["status"] == "waiting" and call.get("errorCode") == "JobQuarantined":
                break
            assert time.monotonic() < deadline, call
            time.sleep(0.2)
        assert call["attempts"] == 0, "a held item burns no attempts"
        assert "Quarantine" in call["errorMessage"]
    finally:
        httpx.post(config, json={"jobStatus": {job: None}}).raise_for_status()
    result = wait_done(location, timeout=30)
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
            call = {
                "PartitionKey": request_id,
                "RowKey": "call-0001",
                "subject": '{"objectId":"9bb0f679-a883-4a6f-8260-35b491b8b8c8","objectTypeName":"User"}',
                "servicePrincipalId": SCIM[0],
                "jobId": SCIM[1],
                "ruleId": "ea807875-5618-4f0a-9125-0b46a05298ca",
                "status": "queued" if enqueued is None else "scheduled",
                "attempts": 0,
                "nextAttemptAt": due,
                "notBefore": due,
                "createdAt": now,
                "enqueued": enqueued,
            }
            row = {
                "PartitionKey": request_id,
                "RowKey": "request",
                "requestId": request_id,
                "source": "http",
                "status": "pending",
                "callCount": 1,
                "createdAt": now,
                "updatedAt": now,
                "servicePrincipalId": SCIM[0],
                "jobId": SCIM[1],
            }
            await runtime.pending.add(request_id, now)
            await runtime.ledger.create(row, [call])
            ids.append(request_id)
        return ids

    lost, far = asyncio.run(write_orphans())
    assert httpx.post(f"{paced.base_url}/admin/functions/sweeper", json={"input": ""}).status_code == 202
    for request_id in (lost, far):
        result = wait_done(f"{paced.base_url}/api/provision/{request_id}", timeout=30)
        assert result["status"] == "succeeded", result


def test_a_worker_killed_mid_call_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while Graph is answering; the item completes after the queue lease, on another worker."""
    env = _env(WORK_CLAIM_SECONDS="3", DEVHOST_QUEUE_LEASE_SECONDS="4")
    with (tmp_path / "crash.log").open("w") as log, Stack(port=free_port(), env=env, log=log) as stack:
        user = {"objectId": "e1a2b3c4-0001-4a5b-8c6d-000000000001", "objectTypeName": "User"}
        httpx.post(
            f"{stack.emulator_url}/_emulator/config",
            json={"faults": [{"operation": "provisionOnDemand", "kind": "slow", "delayMs": 2000}]},
        ).raise_for_status()
        posted = httpx.post(f"{stack.base_url}/api/provision", json={"target": "seed-scim-app", "subjects": [user]})
        request_id = posted.json()["requestId"]
        deadline = time.monotonic() + 20
        while not _calls(stack):
            assert time.monotonic() < deadline, "the call never reached Graph"
            time.sleep(0.05)
        devhost = stack.processes[-1]
        os.killpg(devhost.pid, signal.SIGKILL)  # mid-call: Graph is still answering
        devhost.wait()
        stack.add_worker()

        async def read() -> dict[str, Any] | None:
            request, calls = await Runtime(Settings.from_environ(stack.env)).ledger.get_request(request_id)
            return {"request": request, "calls": calls} if request else None

        deadline = time.monotonic() + 30
        while (state := asyncio.run(read())) is None or state["request"]["status"] == "pending":
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        (call,) = state["calls"]
        assert state["request"]["status"] == "succeeded"
        assert call["attempts"] == 2
        # at least once: the killed worker's call reached Graph, so the repeat is Skipped RedundantExport
        assert call["status"] in ("succeeded", "skipped")
        assert len(_calls(stack)) == 2
