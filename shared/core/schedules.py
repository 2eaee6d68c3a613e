"""``PROVISIONING_SCHEDULES``: recurring provisioning, parsed and validated (pure).

A JSON array of ``{"name", "schedule" (NCRONTAB, 6 fields, UTC), "target", and exactly one of "subjects":
[subject, …], "group": {"id", "as": "members"|"group"}, "retryFailed": {"since": ISO 8601 duration}}``.
Anything wrong is a :class:`SettingsError` naming the schedule and the reason, raised when the settings are
read (at startup), so a bad schedule never silently does nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import ValidationError

from shared.core import ids, ncrontab
from shared.core.errors import SettingsError
from shared.core.models import Subject

SETTING = "PROVISIONING_SCHEDULES"
MAX_SCHEDULES = 50
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"P(?:(?P<w>\d+)W|(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?)")
MAX_SINCE = timedelta(days=31)


@dataclass(frozen=True)
class GroupSource:
    """Provision a group's members (``members``: each member user) or the group itself with its members."""

    group_id: str
    mode: Literal["members", "group"]


@dataclass(frozen=True)
class Schedule:
    """One recurring provisioning."""

    name: str
    cron: ncrontab.CronSchedule
    target: str
    subjects: tuple[Subject, ...] = ()
    group: GroupSource | None = None
    retry_failed_since: timedelta | None = None


def parse_duration(text: str) -> timedelta | None:
    """An ISO 8601 duration of weeks, days, hours, minutes, seconds (``P1D``, ``PT12H``); None if not one."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(
        weeks=parts.get("w", 0),
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def _header(raw: dict[str, Any], where: str, targets: Collection[str]) -> tuple[str, str, ncrontab.CronSchedule, str]:
    unknown = set(raw) - {"name", "schedule", "target", "subjects", "group", "retryFailed"}
    if unknown:
        raise SettingsError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SettingsError(f"{where}.name must be 1-64 letters, digits, '.', '_' or '-'")
    where = f"{SETTING}[{name!r}]"
    expression = raw.get("schedule")
    if not isinstance(expression, str) or len(expression.split()) != 6:
        raise SettingsError(f"{where}.schedule must be an NCRONTAB expression of 6 fields (second first), in UTC")
    try:
        cron = ncrontab.parse(expression)
    except ncrontab.CronError as exc:
        raise SettingsError(f"{where}.schedule: {exc}") from exc
    target = raw.get("target")
    if not isinstance(target, str) or target not in targets:
        raise SettingsError(f"{where}.target must name a target of PROVISIONING_TARGETS")
    return name, where, cron, target


def _subjects(raw: Any, where: str) -> tuple[Subject, ...]:
    if not isinstance(raw, list) or not raw:
        raise SettingsError(f"{where}.subjects must be a non-empty array of subjects")
    try:
        return tuple(Subject.model_validate_json(json.dumps(s)) for s in raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise SettingsError(f"{where}.subjects: {first['loc']} {first['msg']}") from exc


def _group(raw: Any, where: str) -> GroupSource:
    if not isinstance(raw, dict) or set(raw) - {"id", "as"}:
        raise SettingsError(f'{where}.group must be {{"id", "as": "members"|"group"}}')
    group_id, mode = raw.get("id"), raw.get("as", "members")
    if not isinstance(group_id, str) or not ids.is_guid(group_id):
        raise SettingsError(f"{where}.group.id must be the group's object id (a GUID)")
    if mode not in ("members", "group"):
        raise SettingsError(f"{where}.group.as must be 'members' or 'group'")
    return GroupSource(group_id, mode)


def _since(raw: Any, where: str) -> timedelta:
    since = parse_duration(raw.get("since", "")) if isinstance(raw, dict) and set(raw) == {"since"} else None
    if since is None or not timedelta(0) < since <= MAX_SINCE:
        raise SettingsError(f"{where}.retryFailed.since must be an ISO 8601 duration such as P1D, at most P31D")
    return since


def _one(raw: dict[str, Any], where: str, targets: Collection[str]) -> Schedule:
    name, where, cron, target = _header(raw, where, targets)
    kinds = [k for k in ("subjects", "group", "retryFailed") if k in raw]
    if len(kinds) != 1:
        raise SettingsError(f"{where} needs exactly one of subjects, group, retryFailed")
    if kinds == ["subjects"]:
        return Schedule(name, cron, target, subjects=_subjects(raw["subjects"], where))
    if kinds == ["group"]:
        return Schedule(name, cron, target, group=_group(raw["group"], where))
    return Schedule(name, cron, target, retry_failed_since=_since(raw["retryFailed"], where))


def parse_schedules(text: str, targets: Collection[str]) -> tuple[Schedule, ...]:
    """Parse the setting (empty: no schedules); raises SettingsError naming the schedule and the reason."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{SETTING} is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(raw, list) or len(raw) > MAX_SCHEDULES:
        raise SettingsError(f"{SETTING} must be a JSON array of at most {MAX_SCHEDULES} schedules")
    schedules: list[Schedule] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise SettingsError(f"{SETTING}[{index}] must be an object")
        schedule = _one(entry, f"{SETTING}[{index}]", targets)
        if any(s.name == schedule.name for s in schedules):
            raise SettingsError(f"{SETTING}[{schedule.name!r}]: the name is used twice")
        schedules.append(schedule)
    return tuple(schedules)
