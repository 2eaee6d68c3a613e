"""PROVISIONING_SCHEDULES: parsed strictly (a bad schedule named at startup), occurrences read from NCRONTAB, and
each occurrence submitted once however many runs race for it (over the real intake and fakes)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.core import ncrontab
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.core.ports import GraphFailure, KnownEvent, Member
from shared.core.request_ids import new_request_id
from shared.core.schedules import parse_duration
from shared.core.vocabulary import CallStatus, Source
from shared.settings import Settings
from shared.usecases import intake
from shared.usecases.operator.actions import RequestActions
from shared.usecases.operator.bulk import FailedRetry
from shared.usecases.schedules import ScheduleRunner
from tests.unit.app.fakes import InMemoryLedger, InMemoryPending, InMemoryQueue, request_records

SP = "c8c95753-f628-48e1-9fab-76c2d4cf624c"
JOB = "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"
TARGETS = json.dumps({"app": {"servicePrincipalId": SP, "jobId": JOB, "ruleId": "r1"}})
SUBJECTS = [{"objectId": "u1", "objectTypeName": "User"}]


def _settings(schedules: list[dict[str, Any]]) -> Settings:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PROVISIONING_TARGETS": TARGETS,
        "PROVISIONING_SCHEDULES": json.dumps(schedules),
    }
    return Settings.from_environ(env)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ({"schedule": "0 0 6 * * 1-5", "target": "app", "subjects": SUBJECTS}, r"\[0\]\.name"),
        ({"name": "bad", "schedule": "0 6 * * 1-5", "target": "app", "subjects": SUBJECTS}, "'bad'.*6 fields"),
        ({"name": "bad", "schedule": "0 61 6 * * *", "target": "app", "subjects": SUBJECTS}, "'bad'.*minute"),
        ({"name": "bad", "schedule": "0 0 0 31 2 *", "target": "app", "subjects": SUBJECTS}, "'bad'.*no occurrence"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "nope", "subjects": SUBJECTS}, "'bad'.*target"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app"}, "'bad'.*exactly one"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app", "subjects": [{"objectId": "u"}]}, "'bad'.*subj"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app", "group": {"id": "x"}}, "'bad'.*group.id"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app", "group": {"id": GROUP, "as": "x"}}, "as"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app", "retryFailed": {"since": "1 day"}}, "since"),
        ({"name": "bad", "schedule": "0 0 6 * * *", "target": "app", "retryFailed": {"since": "P40D"}}, "since"),
        ({"name": "bad", "schedule": "* * * * * *", "target": "app", "subjects": SUBJECTS, "x": 1}, "unknown keys"),
    ],
)
def test_a_bad_schedule_is_refused_at_startup_naming_it_and_why(schedule: dict[str, Any], reason: str) -> None:
    with pytest.raises(SettingsError, match=r"^PROVISIONING_SCHEDULES.*" + reason):
        _settings([schedule])


def test_good_schedules_parse() -> None:
    parsed = _settings(
        [
            {"name": "weekday-06", "schedule": "0 0 6 * * 1-5", "target": "app", "subjects": SUBJECTS},
            {"name": "group", "schedule": "0 */15 * * * *", "target": "app", "group": {"id": GROUP, "as": "group"}},
            {"name": "nightly-retry", "schedule": "0 0 2 * * *", "target": "app", "retryFailed": {"since": "P1D"}},
        ]
    ).schedules
    assert [s.name for s in parsed] == ["weekday-06", "group", "nightly-retry"]
    assert parsed[1].group is not None
    assert parsed[1].group.mode == "group"
    assert parsed[2].retry_failed_since == timedelta(days=1)
    with pytest.raises(SettingsError, match="used twice"):
        _settings([parsed_raw := {"name": "a", "schedule": "0 0 6 * * *", "target": "app", "subjects": SUBJECTS}] * 2)
    assert parsed_raw


@pytest.mark.parametrize(
    ("text", "expected"),
    [("P1D", timedelta(days=1)), ("PT12H", timedelta(hours=12)), ("P1W", timedelta(weeks=1)), ("P1DT30M", None)],
)
def test_iso_durations(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == (expected or timedelta(days=1, minutes=30))


@pytest.mark.parametrize("text", ["", "P", "PT", "1D", "P1Y", "P1DT", "-P1D"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_occurrences_in_a_window() -> None:
    every_minute = ncrontab.parse("0 * * * * *")
    now = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)
    found = ncrontab.occurrences(every_minute, now - timedelta(minutes=5), now)
    assert found == [datetime(2026, 12, 2, 9, m, tzinfo=UTC) for m in range(56, 60)] + [
        datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    ]


# --- the runner over the real intake ---------------------------------------------------------------------------


class RacingEvents:
    """The event index: first claim wins; each claim yields to the loop first, so concurrent runs interleave."""

    def __init__(self) -> None:
        self.known: dict[str, KnownEvent] = {}

    async def claim(self, event_id: str, request_id: str, fingerprint: str, now: datetime) -> KnownEvent | None:
        await asyncio.sleep(0)
        if event_id in self.known:
            return self.known[event_id]
        self.known[event_id] = KnownEvent(request_id, fingerprint)
        return None

    async def forget(self, key: str) -> None:
        return None


class Groups:
    def __init__(self, members: list[Member] | GraphFailure | None) -> None:
        self.members = members
        self.reads = 0

    async def user_id(self, user_principal_name: str) -> str | GraphFailure | None:
        return None

    async def group_members(self, group_id: str) -> list[Member] | GraphFailure | None:
        self.reads += 1
        return self.members


def _runner(schedules: list[dict[str, Any]], directory: Groups) -> tuple[ScheduleRunner, InMemoryLedger, InMemoryQueue]:
    settings = _settings(schedules)
    ledger, queue, events, pending = InMemoryLedger(), InMemoryQueue(), RacingEvents(), InMemoryPending()
    ids = iter(f"{0x0196:04x}{n:028x}" for n in range(1000))

    intake_ = intake.Intake(settings, ledger, queue, events, pending, new_request_id=lambda _now: next(ids))

    async def submit(request: ProvisioningRequest) -> intake.Accepted:
        now = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)
        return await intake_.accept(intake.AcceptCommand(request, Source.SCHEDULE, now))

    return ScheduleRunner(settings.schedules, submit, directory), ledger, queue


def _requests(ledger: InMemoryLedger) -> list[dict[str, Any]]:
    return [row for (_, rk), row in ledger.rows.items() if rk == "request"]


NOW = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)


async def test_two_runs_racing_make_one_request_per_occurrence() -> None:
    every_minute = {"name": "m", "schedule": "0 * * * * *", "target": "app", "subjects": SUBJECTS}
    first, ledger, _ = _runner([every_minute], Groups(None))
    # a second instance: its own runner and memory, the same storage
    second = ScheduleRunner(first.schedules, first.submit, first.directory)
    fired_a, fired_b = await asyncio.gather(first.run(NOW), second.run(NOW))
    rows = _requests(ledger)
    assert len(rows) == 5  # 09:56 … 10:00
    assert sorted(r["eventId"] for r in rows) == [
        f"schedule:m:2026-12-02T{t}:00Z" for t in ("09:56", "09:57", "09:58", "09:59", "10:00")
    ]
    assert {r["source"] for r in rows} == {"schedule"}
    by_event = {f.event_id: f.request_id for f in fired_a}
    assert by_event == {f.event_id: f.request_id for f in fired_b}
    assert await first.run(NOW) == []  # remembered: nothing read or submitted again


async def test_a_group_as_members_provisions_each_member_user() -> None:
    members = [Member(f"u{i}", "User") for i in range(7)] + [Member("d1", "Device")]
    runner, ledger, _ = _runner(
        [{"name": "g", "schedule": "0 0 10 * * *", "target": "app", "group": {"id": GROUP, "as": "members"}}],
        Groups(members),
    )
    [fired] = await runner.run(NOW)
    assert fired.outcome == "requested"
    calls = [row for (_, rk), row in ledger.rows.items() if rk.startswith("call-")]
    assert sorted(json.loads(c["subject"])["objectId"] for c in calls) == [f"u{i}" for i in range(7)]


async def test_a_group_as_group_goes_with_its_members_in_chunks_of_5() -> None:
    members = [Member(f"u{i:03d}", "User") for i in range(212)]
    runner, ledger, _ = _runner(
        [{"name": "g", "schedule": "0 0 10 * * *", "target": "app", "group": {"id": GROUP, "as": "group"}}],
        Groups(members),
    )
    await runner.run(NOW)
    calls = sorted((row for (_, rk), row in ledger.rows.items() if rk.startswith("call-")), key=lambda c: c["RowKey"])
    subjects = [json.loads(c["subject"]) for c in calls]
    assert len(subjects) == 43
    assert {s["objectId"] for s in subjects} == {GROUP}
    assert [m["objectId"] for s in subjects for m in s["links"]["members"]] == [m.object_id for m in members]


async def test_a_group_read_that_fails_is_tried_again_next_run() -> None:
    groups = Groups(GraphFailure(503, "ServiceUnavailable", "later"))
    runner, ledger, _ = _runner(
        [{"name": "g", "schedule": "0 0 10 * * *", "target": "app", "group": {"id": GROUP, "as": "members"}}], groups
    )
    assert [f.outcome for f in await runner.run(NOW)] == ["failed"]
    groups.members = [Member("u1", "User")]
    assert [f.outcome for f in await runner.run(NOW)] == ["requested"]
    assert len(_requests(ledger)) == 1


async def test_retry_failed_without_the_operator_api_is_reported_not_run() -> None:
    runner, ledger, _ = _runner(
        [{"name": "r", "schedule": "0 0 10 * * *", "target": "app", "retryFailed": {"since": "P1D"}}], Groups(None)
    )
    assert [f.outcome for f in await runner.run(NOW)] == ["skipped"]
    assert _requests(ledger) == []


async def test_retry_failed_retries_the_targets_failed_requests_of_the_window_once() -> None:
    settings = _settings([{"name": "r", "schedule": "0 0 10 * * *", "target": "app", "retryFailed": {"since": "P1D"}}])
    ledger, queue, pending = InMemoryLedger(), InMemoryQueue(), InMemoryPending()
    seeded = {
        "recent": ("app", NOW - timedelta(hours=3), [CallStatus.FAILED]),
        "old": ("app", NOW - timedelta(days=2), [CallStatus.FAILED]),
        "other-target": ("t2", NOW - timedelta(hours=1), [CallStatus.FAILED]),
        "succeeded": ("app", NOW - timedelta(hours=2), [CallStatus.SUCCEEDED]),
    }
    ids: dict[str, str] = {}
    for name, (target, created, statuses) in seeded.items():
        ids[name] = new_request_id(created)
        request, calls = request_records(ids[name], created, statuses, target=target)
        await ledger.create(request, calls)
    actions = RequestActions(ledger, queue, pending, clock=lambda: NOW)
    runner = ScheduleRunner(settings.schedules, _never, Groups(None), FailedRetry(ledger.index, ledger, actions))

    assert [f.outcome for f in await runner.run(NOW)] == ["requested"]
    assert [item.request_id for item, _ in queue.sent] == [ids["recent"]]
    retried = await ledger.read_request(ids["recent"])
    assert retried is not None
    assert (retried.status, retried.retried_by) == ("pending", "schedule")
    assert await runner.run(NOW) == [], "the occurrence is not fired twice"


async def _never(request: ProvisioningRequest) -> intake.Accepted:
    raise AssertionError("a retryFailed schedule submits nothing new")
