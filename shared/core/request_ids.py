"""Request ids that sort by creation time (UUIDv7 layout, written as 32 hex digits).

Why time-ordered: the ledger's PartitionKey is the request id, so "every request older than 90 days" is a
PartitionKey range (``PartitionKey lt <id floor of the cutoff>``) that the retention timer reads without
scanning the whole table. The first 48 bits are Unix milliseconds; the remaining 74 bits are random.
"""

from __future__ import annotations

import secrets
from datetime import datetime


def new_request_id(now: datetime) -> str:
    """A new id for a request created at ``now`` (RFC 9562 UUIDv7 bit layout)."""
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return f"{value:032x}"


def stable_request_id(moment: datetime, seed: str) -> str:
    """An id for ``moment`` whose random part comes from ``seed``: the same message always maps to one id."""
    import hashlib

    millis = int(moment.timestamp() * 1000) & ((1 << 48) - 1)
    digest = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:10], "big")
    rand_a = digest >> 68 & 0xFFF
    rand_b = digest & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return f"{value:032x}"


def id_floor(moment: datetime) -> str:
    """The smallest id a request created at ``moment`` can have: every older id sorts below it."""
    millis = int(moment.timestamp() * 1000) & ((1 << 48) - 1)
    return f"{millis:012x}" + "0" * 20


def created_at(request_id: str) -> int:
    """Unix milliseconds encoded in an id."""
    return int(request_id[:12], 16)
