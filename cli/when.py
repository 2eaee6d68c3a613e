"""Times on the command line: RFC 3339, or a duration such as ``90m``, ``2h``, ``7d`` from now."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cli.errors import CliError, ExitCode

_DURATION = re.compile(r"(\d{1,6})([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def resolve(value: str, *, ago: bool, option: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """``value`` as RFC 3339 in UTC (``…Z``): a duration counts back from now (``ago``) or forward."""
    if match := _DURATION.fullmatch(value.strip()):
        delta = timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})
        moment = now() - delta if ago else now() + delta
    else:
        try:
            parsed: datetime | None = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise CliError(
                f"{option}: {value!r} is neither RFC 3339 with a time zone (2026-12-02T06:00:00Z) nor a duration "
                "(30m, 2h, 7d)",
                ExitCode.USAGE,
            )
        moment = parsed
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
