"""Recurring schedules over the real stack: a schedule due every minute makes exactly one request per occurrence
though two processes fire the timer, and two runs racing in-process over the same storage do the same."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from devhost.stack import Stack
from shared.runtime import Runtime
from shared.settings import Settings
from tests.integration.conftest import app_stack
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = pytest.mark.integration

USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"
MEMBERS = [f"c0ffee00-0000-4000-8000-00000000000{i}" for i in range(1, 8)]
SCHEDULES = [
    {
        "name": "every-minute",
        "schedule": "0 * * * * *",
        "target": "seed-scim-app",
        "subjects": [{"objectId": USER, "objectTypeName": "User"}],
    },
    {"name": "members", "schedule": "0 * * * * *", "target": "seed-scim-app", "group": {"id": GROUP, "as": "members"}},
    {"name": "group", "schedule": "0 * * * * *", "target": "seed-group-app", "group": {"id": GROUP, "as": "group"}},
]


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROVISIONING_SCHEDULES", json.dumps(SCHEDULES))
        with app_stack(tmp_path_factory, "schedules") as running:
            # the group has 7 members, served 2 per page: the app must follow @odata.nextLink
            httpx.post(
                f"{running.emulator_url}/_emulator/directory",
                json={"groups": {GROUP: MEMBERS}, "pageSize": 2},
                timeout=HTTP_TIMEOUT,
            ).raise_for_status()
            running.add_worker()  # a second process firing the same timer
            yield running


def _schedule_requests(stack: Stack) -> list[dict[str, Any]]:
    table = TableClient.from_connection_string(stack.env["AzureWebJobsStorage"], "ProvisioningRequests")
    query = "RowKey eq 'request' and source eq 'schedule'"
    try:
        return [dict(e) for e in table.query_entities(query, select=["PartitionKey", "eventId", "source"])]
    except ResourceNotFoundError:  # no request yet: the ledger creates its table on first use
        return []


def _call_subjects(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    table = TableClient.from_connection_string(stack.env["AzureWebJobsStorage"], "ProvisioningRequests")
    calls = table.query_entities("PartitionKey eq @pk and RowKey ne 'request'", parameters={"pk": request_id})
    return [json.loads(c["subject"]) for c in sorted(calls, key=lambda c: str(c["RowKey"]))]


def test_two_processes_firing_make_one_request_per_occurrence(scheduled: Stack) -> None:
    started = datetime.now(UTC)

    def live() -> list[dict[str, Any]]:
        # occurrences after the stack started: both processes' timers have fired for them
        return [
            r for r in _schedule_requests(scheduled) if r["eventId"] > f"schedule:every-minute:{started:%Y-%m-%dT%H:%M}"
        ]

    wait_until(live, "a request for an occurrence after start", timeout=150)
    rows = _schedule_requests(scheduled)
    event_ids = [r["eventId"] for r in rows if r["eventId"].startswith("schedule:every-minute:2")]
    assert event_ids
    assert len(event_ids) == len(set(event_ids)), sorted(event_ids)


def test_two_runs_racing_over_the_same_storage_make_one_request_each(scheduled: Stack) -> None:
    now = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)

    async def race() -> tuple[list[Any], list[Any]]:
        # the subjects schedule only: in this process there is no managed identity to read groups with
        env = {**scheduled.env, "PROVISIONING_SCHEDULES": json.dumps(SCHEDULES[:1])}
        first = Runtime(Settings.from_environ(env)).schedule_runner
        second = Runtime(Settings.from_environ(env)).schedule_runner
        a, b = await asyncio.gather(first.run(now), second.run(now))
        return a, b

    fired_a, fired_b = asyncio.run(race())
    expected = [f"schedule:every-minute:2025-12-31T23:{m}:00Z" for m in (56, 57, 58, 59)]
    expected.append("schedule:every-minute:2026-01-01T00:00:00Z")
    assert sorted(f.event_id for f in fired_a) == expected
    assert {f.event_id: f.request_id for f in fired_a} == {f.event_id: f.request_id for f in fired_b}
    rows = [r for r in _schedule_requests(scheduled) if r["eventId"] in expected]
    assert sorted(r["eventId"] for r in rows) == expected  # exactly one request per occurrence


def test_a_group_schedule_reads_every_page_of_members(scheduled: Stack) -> None:
    def made(name: str) -> list[dict[str, Any]]:
        return [r for r in _schedule_requests(scheduled) if r["eventId"].startswith(f"schedule:{name}:")]

    [members, *_] = wait_until(lambda: made("members"), "a members-schedule request", timeout=150)
    subjects = _call_subjects(scheduled, members["PartitionKey"])
    assert sorted(s["objectId"] for s in subjects) == MEMBERS  # one call per member user, all 4 pages read
    assert {s["objectTypeName"] for s in subjects} == {"User"}

    [group, *_] = wait_until(lambda: made("group"), "a group-schedule request", timeout=150)
    chunks = _call_subjects(scheduled, group["PartitionKey"])
    assert [s["objectId"] for s in chunks] == [GROUP, GROUP]  # the group with its members in chunks of 5
    assert [len(s["links"]["members"]) for s in chunks] == [5, 2]

    reads = httpx.get(
        f"{scheduled.emulator_url}/_emulator/calls", params={"operation": "getGroupMembers"}, timeout=HTTP_TIMEOUT
    ).json()["calls"]
    assert any("skiptoken" in c["path"] for c in reads)
    assert all(c["authorization"] == "Bearer" for c in reads)
