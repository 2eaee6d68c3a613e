"""``import FILE``: CSV or JSON Lines rows into provisioning requests, each with a stable ``eventId``.

Columns (CSV header names or JSON keys, case-insensitive): ``objectId`` or ``userPrincipalName``,
``objectTypeName`` (default ``--type``, ``User``), ``eventId``, ``notBefore``, and ``target`` (default
``--target``). Empty values count as absent. A row without ``eventId`` gets one derived from its content:
``import-`` + 40 hex digits of SHA-256 over the request it becomes, the ``--salt`` and how many identical
rows came before it in the file. So re-running an import (after a crash, or with rows appended or
reordered) sends the same event ids, and the app answers the rows it already has with their existing
requests instead of provisioning twice; a new ``--salt`` makes the same rows new requests.

Pure: text in, rows out. What a row says is checked by the app (its per-item problems are the authority);
only what cannot become a request at all (a line that is not JSON, a CSV record longer than its header,
no target) is refused here, with its line number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from cli.errors import CliError, ExitCode

COLUMNS = ("objectId", "userPrincipalName", "objectTypeName", "eventId", "notBefore", "target")
_CANONICAL = {name.lower(): name for name in COLUMNS}
DERIVED_PREFIX = "import-"
Format = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class ImportRow:
    """One row that became a request: where it is in the file, the body to send, and its event id."""

    line: int
    request: dict[str, object]
    event_id: str
    derived: bool


@dataclass(frozen=True)
class RowError:
    """A row that could not become a request: its line, the column at fault (if one) and why."""

    line: int
    detail: str
    field: str | None = None


@dataclass(frozen=True)
class Defaults:
    """What a row takes when its column is absent or empty."""

    target: str | None = None
    object_type: str = "User"
    salt: str = ""


@dataclass(frozen=True)
class Parsed:
    """Every row of a file: the requests to send and the rows refused before sending."""

    rows: tuple[ImportRow, ...]
    errors: tuple[RowError, ...]


def detect_format(name: str, text: str) -> Format:
    """``csv`` or ``jsonl`` from the file name, else from the first character that is not blank."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "jsonl" if text.lstrip("\ufeff \t\r\n").startswith("{") else "csv"


def parse(text: str, fmt: Format, defaults: Defaults) -> Parsed:
    """The rows of a file's text in the given format."""
    records = _csv_records(text) if fmt == "csv" else _jsonl_records(text)
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    seen: Counter[str] = Counter()
    for line, record in records:
        if isinstance(record, RowError):
            errors.append(record)
            continue
        built = build_request(line, record, defaults)
        if isinstance(built, RowError):
            errors.append(built)
            continue
        event_id = record.get("eventId")
        if event_id not in (None, "") and not isinstance(event_id, str):
            errors.append(RowError(line, "must be a string", "eventId"))
            continue
        if isinstance(event_id, str) and event_id:
            rows.append(ImportRow(line, {"eventId": event_id, **built}, event_id, derived=False))
            continue
        content = canonical(built)
        occurrence = seen[content]
        seen[content] += 1
        derived = derive_event_id(content, occurrence, defaults.salt)
        rows.append(ImportRow(line, {"eventId": derived, **built}, derived, derived=True))
    return Parsed(tuple(rows), tuple(errors))


def canonical(request: Mapping[str, object]) -> str:
    """One text per request content: sorted keys, no spaces, so equal requests hash equally."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_event_id(content: str, occurrence: int, salt: str) -> str:
    """The event id of the ``occurrence``-th row (from 0) with this content: stable across runs."""
    digest = hashlib.sha256(f"{salt}\x00{occurrence}\x00{content}".encode()).hexdigest()
    return DERIVED_PREFIX + digest[:40]


def build_request(line: int, record: Mapping[str, object], defaults: Defaults) -> dict[str, object] | RowError:
    """The request a row stands for (without ``eventId``), or why it cannot be one."""
    target = record.get("target") or defaults.target
    if not target:
        return RowError(line, "no target: give --target or a target column", "target")
    subject: dict[str, object] = {}
    for name in ("objectId", "userPrincipalName"):
        if (value := record.get(name)) not in (None, ""):
            subject[name] = value
    if not subject:
        return RowError(line, "needs objectId or userPrincipalName", "objectId")
    subject["objectTypeName"] = record.get("objectTypeName") or defaults.object_type
    request: dict[str, object] = {"target": target, "subjects": [subject]}
    if (not_before := record.get("notBefore")) not in (None, ""):
        request["notBefore"] = not_before
    return request


def _column(name: str) -> str | None:
    return _CANONICAL.get(name.strip().lower())


def _unknown(names: Iterable[str]) -> list[str]:
    return [name for name in names if _column(name) is None]


def _csv_records(text: str) -> Iterator[tuple[int, dict[str, object] | RowError]]:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise CliError(f"line 1: not CSV ({exc})", ExitCode.USAGE) from exc
    if unknown := _unknown(header):
        raise CliError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; known: {', '.join(COLUMNS)}", ExitCode.USAGE
        )
    names = [_column(name) or "" for name in header]
    if len(set(names)) != len(names):
        raise CliError("a column appears twice in the header", ExitCode.USAGE)
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, RowError(start, f"not CSV ({exc})")
            start = reader.line_num + 1
            continue
        if any(value.strip() for value in fields):
            if len(fields) > len(names):
                yield start, RowError(start, f"{len(fields)} fields, but the header names {len(names)}")
            else:
                yield start, {name: value.strip() for name, value in zip(names, fields, strict=False)}
        start = reader.line_num + 1


def _jsonl_records(text: str) -> Iterator[tuple[int, dict[str, object] | RowError]]:
    # Lines end at "\n" only (JSON Lines): str.splitlines would also split inside a string at U+2028 or U+0085.
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, RowError(number, f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield number, RowError(number, "not a JSON object")
            continue
        if unknown := _unknown(value):
            field = unknown[0]
            yield number, RowError(number, f"unknown field; known: {', '.join(COLUMNS)}", field)
            continue
        yield number, {_column(key) or key: item for key, item in value.items()}
