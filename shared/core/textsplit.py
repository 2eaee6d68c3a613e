"""Splitting long text across Table properties (pure).

A Table Storage string property holds at most 64 KiB (32 K UTF-16 code units); a provisioning log of a
user with many attributes is larger. The log is stored whole, split over ``name``, ``name_1``, ``name_2``…
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Characters per property: 30 000 UTF-16 units leaves room under the 64 KiB property limit.
CHUNK_UNITS = 30_000


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def utf16_units(text: str) -> int:
    """The length Table Storage counts (UTF-16 code units)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split(text: str, chunk_units: int = CHUNK_UNITS) -> list[str]:
    """Split so no chunk exceeds ``chunk_units`` UTF-16 code units and no surrogate pair is cut."""
    chunks: list[str] = []
    start = 0
    units = 0
    for i, ch in enumerate(text):
        width = _utf16_units(ch)
        if units + width > chunk_units:
            chunks.append(text[start:i])
            start, units = i, 0
        units += width
    chunks.append(text[start:])
    return chunks


def to_properties(name: str, text: str, chunk_units: int = CHUNK_UNITS) -> dict[str, str | int]:
    """Properties holding ``text``: ``name``, ``name_1``… and ``nameParts`` (the count)."""
    parts = split(text, chunk_units)
    props: dict[str, str | int] = {name: parts[0], f"{name}Parts": len(parts)}
    for i, part in enumerate(parts[1:], start=1):
        props[f"{name}_{i}"] = part
    return props


def from_properties(name: str, entity: Mapping[str, Any]) -> str | None:
    """Join what :func:`to_properties` wrote; ``None`` if the entity holds no such text."""
    first = entity.get(name)
    if first is None:
        return None
    count = int(entity.get(f"{name}Parts") or 1)
    return str(first) + "".join(str(entity.get(f"{name}_{i}", "")) for i in range(1, count))
