"""What people read: rich tables and lines on stdout, errors on stderr. Scripts use ``--json`` instead."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.client import JsonObject
from cli.importer import RowOutcome
from cli.rows import RowError
from shared.core.vocabulary import CallStatus, RequestStatus

_STYLE = {
    RequestStatus.SUCCEEDED: "green",
    RequestStatus.FAILED: "red",
    RequestStatus.REJECTED: "red",
    RequestStatus.CANCELLED: "yellow",
    RequestStatus.PENDING: "cyan",
}
_FINISHED = tuple(s for s in CallStatus if s.is_terminal)


def dumps(value: object) -> str:
    """The JSON that ``--json`` prints: indented, keys in the API's order, non-ASCII kept."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def text(value: object) -> str:
    """A JSON value as a table cell ('' for missing)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def cell(value: object) -> Text:
    """A JSON value as a table cell, shown as it is: never read as rich markup."""
    return Text(text(value))


def styled_status(value: object) -> Text:
    """A status word in its colour."""
    word = text(value)
    style = _STYLE.get(RequestStatus(word)) if word in RequestStatus.__members__.values() else None
    return Text(word, style=style or "")


def counts_of(body: Mapping[str, object]) -> dict[str, int]:
    """``counts`` of a request or summary, only the numbers."""
    counts = body.get("counts")
    if not isinstance(counts, dict):
        return {}
    return {str(k): v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}


def counts_line(counts: Mapping[str, int]) -> str:
    """``2 succeeded, 1 failed`` (statuses with a count only)."""
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


def progress(body: Mapping[str, object]) -> tuple[int, int]:
    """(finished calls, all calls) of a request."""
    counts = counts_of(body)
    total = sum(counts.values())
    return sum(counts.get(s, 0) for s in _FINISHED), total


def request_view(body: JsonObject) -> RenderableType:
    """One request: a heading, a progress bar, counts by status and a table of its calls."""
    done, total = progress(body)
    head = Text.assemble(
        ("request ", "bold"),
        (text(body.get("requestId")), "bold"),
        "  ",
        styled_status(body.get("status")),
        f"  target {text(body.get('target'))}  {done}/{total} calls finished",
    )
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=max(total, 1), completed=done if total else 0, width=40), f"{done}/{total}")
    counts = Text("  ".join(f"{status} {n}" for status, n in counts_of(body).items() if n))
    parts: list[RenderableType] = [head, bar, counts]
    calls = body.get("calls")
    if isinstance(calls, list) and calls:
        parts.append(calls_table(calls))
    return Group(*parts)


def calls_table(calls: Sequence[object]) -> Table:
    """The calls of a request with Graph's outcome."""
    table = Table(title="calls", title_justify="left")
    table.add_column("call", no_wrap=True)
    table.add_column("subject", overflow="fold", min_width=12)
    for name in ("type", "status", "attempts", "result", "errorCode"):
        table.add_column(name, no_wrap=True)
    table.add_column("advice", overflow="fold", min_width=16)
    for call in calls:
        if not isinstance(call, dict):
            continue
        subject = _object(call.get("subject"))
        table.add_row(
            cell(call.get("callId")),
            cell(subject.get("objectId") or subject.get("userPrincipalName")),
            cell(subject.get("objectTypeName")),
            styled_status(call.get("status")),
            cell(call.get("attempts")),
            cell(call.get("result")),
            cell(call.get("errorCode")),
            cell(call.get("recommendedAction") or call.get("errorMessage")),
        )
    return table


def summaries_table(rows: Sequence[object]) -> Table:
    """``list``: one line per request, newest first."""
    table = Table()
    for name in ("requestId", "status", "target", "source", "eventId", "createdAt", "calls"):
        table.add_column(name, overflow="fold")
    for row in rows:
        if isinstance(row, dict):
            table.add_row(
                cell(row.get("requestId")),
                styled_status(row.get("status")),
                cell(row.get("target")),
                cell(row.get("source")),
                cell(row.get("eventId")),
                cell(row.get("createdAt")),
                cell(f"{text(row.get('callCount'))}: {counts_line(counts_of(row))}"),
            )
    return table


def targets_table(rows: Sequence[object]) -> Table:
    """``targets``: each target's job health, backlog and how long it takes to drain."""
    table = Table()
    for name in ("target", "job", "status", "quarantine", "queued", "scheduled", "waiting", "running", "drain"):
        table.add_column(name, overflow="fold")
    for row in rows:
        if not isinstance(row, dict):
            continue
        job = _object(row.get("jobStatus"))
        backlog = _object(row.get("backlog"))
        drain = row.get("estimatedDrainSeconds")
        table.add_row(
            cell(row.get("name")),
            cell(row.get("jobId")),
            cell(job.get("code")),
            cell(job.get("quarantine")),
            *(cell(backlog.get(k, 0)) for k in ("queued", "scheduled", "waiting", "running")),
            cell(f"{drain} s" if isinstance(drain, int | float) else drain),
        )
    return table


def _object(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def poison_table(rows: Sequence[object]) -> Table:
    """``poison``: each message with its queue and the ledger's reason."""
    table = Table()
    for name in ("queue", "messageId", "requestId", "insertedAt", "dequeueCount", "reason"):
        table.add_column(name, overflow="fold")
    for row in rows:
        if isinstance(row, dict):
            table.add_row(
                *(cell(row.get(k)) for k in ("queue", "messageId", "requestId", "insertedAt", "dequeueCount")),
                cell(row.get("reason")),
            )
    return table


def import_summary(outcomes: Sequence[RowOutcome], local: Sequence[RowError]) -> Table | None:
    """``import``: every refused row with its line, status and the offending column's detail."""
    refused = [o for o in outcomes if not o.accepted]
    if not refused and not local:
        return None
    table = Table(title="refused rows", title_justify="left")
    for name in ("line", "eventId", "status", "field", "why"):
        table.add_column(name, overflow="fold")
    entries: list[tuple[int, str, str, str, str]] = [(e.line, "", "not sent", e.field or "", e.detail) for e in local]
    for outcome in refused:
        problem = outcome.problem
        title = problem.title + (f": {problem.detail}" if problem and problem.detail else "") if problem else ""
        fields = outcome.fields() or [("", title)]
        entries.extend(
            (outcome.row.line, outcome.row.event_id, str(outcome.status), where, detail or title)
            for where, detail in fields
        )
    for entry in sorted(entries, key=lambda e: e[0]):
        table.add_row(*(cell(part) for part in entry))
    return table


def print_error(console: Console, message: str, lines: Sequence[str] = ()) -> None:
    """An error for people on stderr: the message, then the problem's offending fields."""
    console.print(Text("error: ", style="bold red") + Text(message))
    for line in lines:
        console.print(Text(line))
