"""NCRONTAB schedules (``{second} {minute} {hour} {day} {month} {day-of-week}``) as the timer trigger reads them (pure).

Used for ``PROVISIONING_SCHEDULES``, and by the devhost to fire timers (``devhost/ncrontab.py`` re-exports it:
one reading, checked against the host's documented examples in ``tests/unit/devhost/test_ncrontab.py``).

The host uses the NCrontab library: 6 fields (5-field expressions get second 0), ``*``, ``*/n``, ``a-b``,
``a-b/n``, ``a/n``, lists, month and weekday names, day-of-week 0-6 with Sunday 0, and — unlike classic
cron — a day must satisfy *both* the day-of-month and the day-of-week fields.  All times are UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.core.errors import ProvisioningError


class CronError(ProvisioningError, ValueError):
    """An expression NCrontab would reject."""


_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_name) if name})
# calendar.day_abbr starts on Monday; NCRONTAB counts from Sunday = 0.
_DAYS = {name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}
_DAYS.update({name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_name)})

_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)

# Far enough to cover every leap-day schedule; a schedule with no occurrence in this window never fires.
_SEARCH_YEARS = 28  # weekdays repeat on the same dates every 28 years (1901-2099)


def _value(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    token = text.strip().lower()
    if token in names:
        return names[token]
    if not token.isdigit():
        raise CronError(f"{field}: {text!r} is not a number or name")
    value = int(token)
    if not lo <= value <= hi:
        raise CronError(f"{field}: {value} is outside {lo}-{hi}")
    return value


def parse_field(text: str, lo: int, hi: int, names: dict[str, int], field: str) -> frozenset[int]:
    """Parse one field into the set of values it allows."""
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, lo, hi, names, field), _value(b, lo, hi, names, field)
            if start > end:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _value(base, lo, hi, names, field)
            end = hi if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule; ``next_after`` gives the next matching UTC second."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def matches(self, when: datetime) -> bool:
        """Whether ``when`` (UTC, second resolution) is an occurrence."""
        return (
            when.second in self.seconds
            and when.minute in self.minutes
            and when.hour in self.hours
            and when.day in self.days
            and when.month in self.months
            and (when.isoweekday() % 7) in self.weekdays
        )

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after ``when``; raises CronError if there is none."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        t = when.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * _SEARCH_YEARS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
                continue
            if t.day not in self.days or (t.isoweekday() % 7) not in self.weekdays:
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t = t + timedelta(seconds=1)
                continue
            return t
        raise CronError(f"schedule {self.expression!r} has no occurrence")


def occurrences(schedule: CronSchedule, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
    """The occurrences in ``(after, until]``, oldest first (at most ``limit``: the newest are kept)."""
    found: list[datetime] = []
    t = after
    while True:
        try:
            t = schedule.next_after(t)
        except CronError:
            return found
        if t > until:
            return found[-limit:]
        found.append(t)


def parse(expression: str) -> CronSchedule:
    """Parse a 5- or 6-field NCRONTAB expression; fails on anything NCrontab would refuse."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise CronError(f"{expression!r}: expected 5 or 6 fields, got {len(fields)}")
    parsed = [
        parse_field(text, lo, hi, names, name) for text, (name, lo, hi, names) in zip(fields, _FIELDS, strict=True)
    ]
    schedule = CronSchedule(expression, *parsed)
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # reject schedules that never fire (31 Feb)
    return schedule
