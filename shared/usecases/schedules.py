"""Recurring schedules (``PROVISIONING_SCHEDULES``): each due occurrence becomes one request, exactly once.

A timer runs every minute on every instance. Each run looks at the occurrences of every schedule in the last
few minutes (so a late or missed timer run still catches up) and submits one request per occurrence through
the intake use case, with ``source`` ``schedule`` and ``eventId`` ``schedule:{name}:{occurrence}``: however
many instances and runs see the same occurrence, the event index lets only the first make a request, and the
others are answered with it. An occurrence is remembered per process once submitted, so a run does not
re-read a group it has already provisioned.

``group`` reads the members from Graph at each occurrence (all pages): ``members`` provisions each member
user, ``group`` provisions the group with its members (the worker's fan-out sends them in chunks of 5).
``retryFailed`` retries the target's failed requests of the window through the operator's retry
(``shared.usecases.operator.bulk``, passed in as ``retry_failed``); without it such a schedule is logged as not run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared import telemetry
from shared.contract.problems import Problem
from shared.core import ncrontab
from shared.core.models import LinkedSubject, Links, ProvisioningRequest, Subject
from shared.core.ports import Directory, GraphFailure
from shared.core.schedules import Schedule
from shared.usecases.intake import Accepted

log = telemetry.get_logger(__name__)

#: How far back a run looks for occurrences it may have missed.
LOOKBACK = timedelta(minutes=5)
#: At most this many group members go into one occurrence's request.
MAX_GROUP_MEMBERS = 10_000
#: Occurrences remembered per process (the newest), so a long-running instance does not grow without bound.
MEMORY = 10_000

Submit = Callable[[ProvisioningRequest], Awaitable[Accepted]]
RetryFailed = Callable[[str, datetime], Awaitable[int]]


def event_id(schedule: Schedule, occurrence: datetime) -> str:
    """``schedule:{name}:{occurrence}``, the occurrence in ISO 8601 UTC (``2026-12-02T06:00:00Z``)."""
    return f"schedule:{schedule.name}:{occurrence.strftime('%Y-%m-%dT%H:%M:%SZ')}"


@dataclass(frozen=True)
class Fired:
    """What one occurrence did: ``requested`` (with the request, ``duplicate`` if another run made it),
    ``empty`` (nothing to provision), ``failed`` (retried next run), or ``skipped``."""

    event_id: str
    outcome: str
    request_id: str | None = None
    duplicate: bool = False


@dataclass
class ScheduleRunner:
    """The schedules of this app and what submitting needs."""

    schedules: tuple[Schedule, ...]
    submit: Submit
    directory: Directory
    retry_failed: RetryFailed | None = None
    _done: dict[str, None] = field(default_factory=dict)

    async def run(self, now: datetime) -> list[Fired]:
        """Submit every occurrence due in ``(now - LOOKBACK, now]`` that this process has not submitted yet."""
        fired: list[Fired] = []
        for schedule in self.schedules:
            for occurrence in ncrontab.occurrences(schedule.cron, now - LOOKBACK, now):
                key = event_id(schedule, occurrence)
                if key in self._done:
                    continue
                result = await self._fire(schedule, occurrence, key)
                if result.outcome != "failed":
                    self._remember(key)
                fired.append(result)
        return fired

    def _remember(self, key: str) -> None:
        self._done[key] = None
        while len(self._done) > MEMORY:
            del self._done[next(iter(self._done))]

    async def _fire(self, schedule: Schedule, occurrence: datetime, key: str) -> Fired:
        ctx = {"schedule": schedule.name, "eventId": key}
        if schedule.retry_failed_since is not None:
            if self.retry_failed is None:
                log.warning("retryFailed schedule not run: the operator API's retry is not available", extra=ctx)
                return Fired(key, "skipped")
            count = await self.retry_failed(schedule.target, occurrence - schedule.retry_failed_since)
            log.info("failed requests resubmitted", extra={**ctx, "requests": count})
            return Fired(key, "requested")
        subjects = await self._subjects(schedule, ctx)
        if isinstance(subjects, GraphFailure):
            return Fired(key, "failed")
        if not subjects:
            return Fired(key, "empty")
        # the envelope is validated like a caller's; the subjects were validated one by one (settings, or
        # built from Graph's ids): a group's size is what it is, the 100-subject limit of a caller's body is not
        placeholder = {"objectId": "-", "objectTypeName": "User"}
        base = ProvisioningRequest.model_validate(
            {"eventId": key, "target": schedule.target, "subjects": [placeholder]}
        )
        request = base.model_copy(update={"subjects": subjects})
        try:
            accepted = await self.submit(request)
        except Problem as problem:
            if problem.status == 409:  # another run submitted this occurrence with other members: it is done
                return Fired(key, "requested", duplicate=True)
            log.error("schedule occurrence refused", extra={**ctx, "status": problem.status, "title": problem.title})
            return Fired(key, "skipped")
        log.info(
            "schedule occurrence submitted",
            extra={**ctx, "requestId": accepted.request_id, "duplicate": accepted.duplicate},
        )
        return Fired(key, "requested", accepted.request_id, accepted.duplicate)

    async def _subjects(self, schedule: Schedule, ctx: dict[str, str]) -> list[Subject] | GraphFailure:
        if schedule.group is None:
            return list(schedule.subjects)
        members = await self.directory.group_members(schedule.group.group_id)
        if isinstance(members, GraphFailure):
            log.warning("group members not read; the next run tries again", extra={**ctx, "code": members.code})
            return members
        if members is None:
            log.error("the schedule's group does not exist", extra=ctx)
            return []
        users = [m for m in members if m.object_type_name == "User"][:MAX_GROUP_MEMBERS]
        if schedule.group.mode == "members":
            return [Subject(object_id=m.object_id, object_type_name="User") for m in users]
        linked = [LinkedSubject(object_id=m.object_id, object_type_name="User") for m in users]
        group = Subject(object_id=schedule.group.group_id, object_type_name="Group", links=Links(members=[]))
        return [group.model_copy(update={"links": Links(members=[]).model_copy(update={"members": linked})})]
