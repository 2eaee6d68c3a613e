"""Suite-wide settings."""

from __future__ import annotations

from hypothesis import settings

# No per-example deadline: the suite runs in two processes on a loaded 2-core machine (scripts/test), where a
# 200 ms deadline measured the machine, not the code (a text-splitting example took 246 ms under load).
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
