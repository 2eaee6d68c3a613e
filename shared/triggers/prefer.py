"""RFC 7240 ``Prefer: wait=N``: reading the header, and bounding how many callers a process holds at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT_SECONDS = 60
#: At most this many ``Prefer: wait`` callers hold an invocation at once in one process; the next one gets its
#: 202 at once. Half of the Flex per-instance HTTP concurrency the Bicep sets (16), so waiting callers can
#: never take every slot from intake and status polls.
MAX_CONCURRENT_WAITS = 8


def _split_top_level(text: str, separator: str) -> Iterator[str]:
    """Split on ``separator`` outside quoted strings (RFC 9110 lists and parameters)."""
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def prefer_wait(header: str | None) -> int | None:
    """Seconds from RFC 7240 ``Prefer: wait=N`` (capped at ``MAX_WAIT_SECONDS``), or None.

    Only the first ``wait`` counts (RFC 7240 §2), its value as ASCII digits (``wait="5"`` too). Anything
    else (``wait=²``, ``wait=-1``, ``wait=1.5``) is a preference the server cannot comply with, and RFC 7240
    says to ignore it: the request is answered as if no wait was asked for.
    """
    for preference in _split_top_level(header or "", ","):
        name, equals, value = next(_split_top_level(preference, ";")).partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not equals or re.fullmatch(r"[0-9]+", value) is None:  # ASCII digits only; str.isdigit() takes ²
            return None
        digits = value.lstrip("0") or "0"  # a long run of digits is capped without ever becoming a huge int
        return MAX_WAIT_SECONDS if len(digits) > 6 else min(int(digits), MAX_WAIT_SECONDS)
    return None


class WaitSlots:
    """How many callers may be held by ``Prefer: wait`` at once in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextmanager
    def take(self) -> Iterator[bool]:
        """Yields True with a slot held, or False at once when every slot is taken (never waits for one)."""
        if self.in_use >= self.limit:
            yield False
            return
        self.in_use += 1
        try:
            yield True
        finally:
            self.in_use -= 1


wait_slots = WaitSlots(MAX_CONCURRENT_WAITS)
