"""Reading Graph's response headers: one header's whole value whatever holds it, and ``Retry-After``."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds (``10``), fractional seconds (``2.128``) or an HTTP-date.

    RFC 9110 §10.2.3 allows a number of seconds or an HTTP-date; Graph's throttling guidance shows whole
    seconds and a documented sample a fractional value. A date in the past means "now" (0). Anything else,
    including non-ASCII digits, is not a Retry-After: None, so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        delta = (when - (now or datetime.now(UTC))).total_seconds()
    except OverflowError:
        return None
    return max(0.0, delta)


def header_value(headers: Any, name: str) -> str | None:
    """One header's whole value from ``httpx.Headers``, kiota's ``HeadersCollection`` or a plain mapping.

    Header names compare case-insensitively. A header sent more than once is combined with ", " (RFC 9110
    §5.3), as ``httpx.Headers.get`` does. None when absent.
    """
    if headers is None:
        return None
    lowered = name.lower()
    raw: Any
    if hasattr(headers, "get_list") or hasattr(headers, "try_get"):
        # httpx.Headers (a str per name, already combined) or kiota's HeadersCollection (a set per name)
        raw = headers.get(lowered)
    elif isinstance(headers, Mapping):
        raw = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    else:
        return None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw.decode("latin-1")
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Iterable):
        values = sorted(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in raw)
        return ", ".join(values) if values else None
    return str(raw)


@dataclass(frozen=True)
class RawResponse:
    """One raw HTTP answer from Graph (or whatever answered in its place)."""

    status: int
    headers: Any
    body: bytes
    bearer: str | None

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300
