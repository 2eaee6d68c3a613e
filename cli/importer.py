"""Send parsed rows to ``POST /api/provision/batch`` in chunks and collect one outcome per row.

A chunk holds at most ``chunk_size`` (≤ 1,000, the route's limit) requests and at most
:data:`MAX_CHUNK_BYTES` of JSON. A chunk that meets a transient failure (no answer, a timeout, a 5xx) is
sent again, up to :data:`ATTEMPTS` times in all, after a growing pause: that is safe because every row carries
an event id and the app answers a repeated one with the request it already has. When it still fails, the
import stops and says how far it got; the same command resumes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cli.client import ApiClient, JsonObject
from cli.errors import CliError, ExitCode, ProblemDetails
from cli.rows import ImportRow, RowError, canonical

MAX_CHUNK = 1000
#: The app refuses bodies over 256 KiB on its other routes; stay below that whatever the batch route allows.
MAX_CHUNK_BYTES = 240 * 1024
ATTEMPTS = 3
_MAX_PAUSE_SECONDS = 30.0
_ITEM_POINTER = re.compile(r"^/requests/\d+(?=/|$)")
_FIELDS = {
    "/eventId": "eventId",
    "/target": "target",
    "/notBefore": "notBefore",
    "/subjects/0/objectId": "objectId",
    "/subjects/0/userPrincipalName": "userPrincipalName",
    "/subjects/0/objectTypeName": "objectTypeName",
}


@dataclass(frozen=True)
class RowOutcome:
    """What the app said about one row: ``202`` with a request id, or a refusal with its problem."""

    row: ImportRow
    status: int
    request_id: str | None = None
    problem: ProblemDetails | None = None

    @property
    def accepted(self) -> bool:
        """The app accepted the row (a new request, or the one its event id already has): 202 with its id."""
        return 200 <= self.status < 300 and self.request_id is not None

    def fields(self) -> list[tuple[str, str]]:
        """The offending columns (``objectId``, ``notBefore``…) or pointers, each with the app's detail."""
        if self.problem is None:
            return []
        return [(column(e.pointer) if e.pointer else e.where, e.detail) for e in self.problem.errors]


def column(pointer: str) -> str:
    """A pointer into the batch body (``/requests/7/subjects/0/objectId``) or into one item, as a column."""
    inner = _ITEM_POINTER.sub("", pointer)
    return _FIELDS.get(inner, inner or pointer)


def chunks(rows: Sequence[ImportRow], chunk_size: int) -> Iterator[Sequence[ImportRow]]:
    """Consecutive runs of at most ``chunk_size`` rows and :data:`MAX_CHUNK_BYTES` of request JSON."""
    start = 0
    while start < len(rows):
        end, size = start, 0
        while end < len(rows) and end - start < chunk_size:
            size += len(canonical(rows[end].request).encode()) + 1
            if end > start and size > MAX_CHUNK_BYTES:
                break
            end += 1
        yield rows[start:end]
        start = end


def _outcomes(chunk: Sequence[ImportRow], body: object) -> list[RowOutcome]:
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise CliError("the batch answer has no 'value' list", ExitCode.UNAVAILABLE)
    answers: dict[int, RowOutcome] = {}
    for item in value:
        if not isinstance(item, dict):
            continue
        index, status = item.get("index"), item.get("status")
        if not isinstance(index, int) or not 0 <= index < len(chunk) or not isinstance(status, int):
            continue
        request_id = item.get("requestId")
        problem = item.get("problem")
        answers[index] = RowOutcome(
            row=chunk[index],
            status=status,
            request_id=request_id if isinstance(request_id, str) else None,
            problem=ProblemDetails.from_json(problem, status) if problem is not None else None,
        )
    missing = ProblemDetails(status=0, title="No answer", detail="the batch answer says nothing about this row")
    return [answers.get(i) or RowOutcome(row, 0, problem=missing) for i, row in enumerate(chunk)]


@dataclass
class Importer:
    """Sends chunks, retrying transient failures; ``on_chunk`` is told how many rows each sent chunk held."""

    client: ApiClient
    chunk_size: int = MAX_CHUNK
    sleep: Callable[[float], None] = time.sleep

    def send_chunk(self, chunk: Sequence[ImportRow]) -> list[RowOutcome]:
        """One chunk, sent again after a transient failure; its outcomes in row order."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                answer = self.client.batch([row.request for row in chunk])
            except CliError as exc:
                if exc.exit_code is not ExitCode.UNAVAILABLE or attempt == ATTEMPTS:
                    raise
                self.sleep(min(2.0**attempt, _MAX_PAUSE_SECONDS))
                continue
            return _outcomes(chunk, answer.body)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def run(self, rows: Sequence[ImportRow], on_chunk: Callable[[int], None] = lambda _n: None) -> list[RowOutcome]:
        """Every row's outcome, in file order; a :class:`CliError` says how far it got when it stops."""
        if not 1 <= self.chunk_size <= MAX_CHUNK:
            raise CliError(f"--chunk-size must be 1 to {MAX_CHUNK}", ExitCode.USAGE)
        outcomes: list[RowOutcome] = []
        for chunk in chunks(rows, self.chunk_size):
            try:
                outcomes.extend(self.send_chunk(chunk))
            except CliError as exc:
                raise CliError(
                    f"{exc.message}\nstopped after {len(outcomes)} of {len(rows)} rows (line {chunk[0].line} "
                    "onwards not sent); run the same command again to resume: rows already accepted are "
                    "answered by their event id, not provisioned twice",
                    exc.exit_code,
                    exc.problem,
                ) from exc
            on_chunk(len(chunk))
        return outcomes


@dataclass(frozen=True)
class ImportSummary:
    """What ``import --json`` prints: counts, then one item per row in file order."""

    rows: int
    accepted: int
    refused: int
    items: tuple[JsonObject, ...]

    def to_json(self) -> JsonObject:
        """``{"rows", "accepted", "refused", "items": [...]}``."""
        return {"rows": self.rows, "accepted": self.accepted, "refused": self.refused, "items": list(self.items)}


def summarise(outcomes: Sequence[RowOutcome], local: Sequence[RowError]) -> ImportSummary:
    """Every row: refused here (``sent`` false, the column and why) or the app's answer with its problem."""
    items: list[tuple[int, JsonObject]] = [
        (e.line, {"line": e.line, "sent": False, "field": e.field, "detail": e.detail}) for e in local
    ]
    for o in outcomes:
        item: JsonObject = {"line": o.row.line, "eventId": o.row.event_id, "derivedEventId": o.row.derived}
        item["status"] = o.status
        if o.request_id:
            item["requestId"] = o.request_id
        if o.problem is not None:
            item["problem"] = o.problem.to_json()
            item["fields"] = [{"field": f, "detail": d} for f, d in o.fields()]
        items.append((o.row.line, item))
    items.sort(key=lambda pair: pair[0])
    accepted = sum(o.accepted for o in outcomes)
    return ImportSummary(
        rows=len(outcomes) + len(local),
        accepted=accepted,
        refused=len(outcomes) - accepted + len(local),
        items=tuple(item for _, item in items),
    )
