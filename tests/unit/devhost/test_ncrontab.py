"""NCRONTAB parsing and next-occurrence search, including property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.ncrontab import CronError, parse

T0 = datetime(2026, 3, 2, 10, 3, 7, 500_000, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 3, 2, 10, 5, 0, tzinfo=UTC)),
        ("*/2 * * * * *", datetime(2026, 3, 2, 10, 3, 8, tzinfo=UTC)),
        ("0 30 9 * * 1-5", datetime(2026, 3, 3, 9, 30, tzinfo=UTC)),
        ("0 30 9 * * Sat,sun", datetime(2026, 3, 7, 9, 30, tzinfo=UTC)),
        ("5 4 * * *", datetime(2026, 3, 3, 4, 5, tzinfo=UTC)),  # 5-field: second 0
        ("0 0 0 1 jan *", datetime(2027, 1, 1, tzinfo=UTC)),
        ("0 0 0 29 2 *", datetime(2028, 2, 29, tzinfo=UTC)),
        ("0 0 0 13 * 5", datetime(2026, 3, 13, tzinfo=UTC)),  # day AND weekday (NCrontab, not cron's OR)
        ("0 10-20/5 * * * *", datetime(2026, 3, 2, 10, 10, tzinfo=UTC)),
        ("0 7/20 * * * *", datetime(2026, 3, 2, 10, 7, tzinfo=UTC)),
        ("0 0 12 * December *", datetime(2026, 12, 1, 12, tzinfo=UTC)),
    ],
)
def test_next_occurrence(expression: str, expected: datetime) -> None:
    assert parse(expression).next_after(T0) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "*/0 * * * * *",
        "5-1 * * * * *",
        "a * * * * *",
        "0 0 0 31 2 *",
        "1,,2 * * * * *",
    ],
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(CronError):
        parse(expression)


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    num = st.integers(lo, hi)
    single = num.map(str)
    star = st.just("*")
    step = st.integers(1, hi - lo + 1).map(lambda n: f"*/{n}")
    rng = st.tuples(num, num).map(lambda ab: f"{min(ab)}-{max(ab)}")
    rng_step = st.tuples(num, num, st.integers(1, 10)).map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}")
    item = st.one_of(star, single, step, rng, rng_step)
    return st.lists(item, min_size=1, max_size=3).map(",".join)


expressions = st.tuples(
    _field(0, 59), _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), st.just("*") | _field(0, 6)
).map(" ".join)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(expressions, instants)
def test_next_occurrence_matches_and_increases(expression: str, start: datetime) -> None:
    schedule = parse(expression)
    first = schedule.next_after(start)
    second = schedule.next_after(first)
    assert schedule.matches(first)
    assert schedule.matches(second)
    assert start < first < second
    assert first.microsecond == 0


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(_field(0, 59), _field(0, 59), st.just("*"), st.just("*"), st.just("*"), st.just("*")).map(" ".join),
    instants,
)
def test_no_occurrence_is_skipped(expression: str, start: datetime) -> None:
    schedule = parse(expression)
    found = schedule.next_after(start)
    t = start.replace(microsecond=0) + timedelta(seconds=1)
    while t < found:
        assert not schedule.matches(t)
        t += timedelta(seconds=1)
