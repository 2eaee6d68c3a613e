"""NCRONTAB schedules as the timer trigger reads them: the app's own reading (``shared.core.ncrontab``).

The app needs the same reading for ``PROVISIONING_SCHEDULES`` and cannot import the devhost, so the one
implementation lives in the app's pure core and the devhost fires its timers with it;
``tests/unit/devhost/test_ncrontab.py`` checks it against the host's documented examples.
"""

from __future__ import annotations

from shared.core.ncrontab import CronError, CronSchedule, occurrences, parse, parse_field

__all__ = ["CronError", "CronSchedule", "occurrences", "parse", "parse_field"]
