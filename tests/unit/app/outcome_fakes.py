"""In-memory implementations of the outcome ports (``RequestMarks``, ``MessageQueue``, ``EventPublisher``,
``CallbackClient``), over the rows of :class:`tests.unit.app.fakes.InMemoryLedger`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.contract.names import REQUEST_ROW
from shared.core.errors import StaleWrite
from shared.core.ports import CallbackResult, MarkedRow
from tests.unit.app.fakes import InMemoryLedger


class InMemoryMarks:
    """Request-row marks with the ledger's version as the ETag, like the Table adapter."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger

    async def read(self, request_id: str) -> MarkedRow | None:
        row = self.ledger.rows.get((request_id, REQUEST_ROW))
        return None if row is None else MarkedRow(dict(row), str(row["_v"]))

    async def mark(self, marked: MarkedRow, changes: Mapping[str, Any]) -> MarkedRow:
        key = (str(marked.row["PartitionKey"]), REQUEST_ROW)
        current = self.ledger.rows.get(key)
        if current is None or str(current["_v"]) != marked.etag:
            raise StaleWrite("changed")
        self.ledger.version += 1
        row = {k: v for k, v in {**current, **changes}.items() if v is not None}
        row["_v"] = self.ledger.version
        self.ledger.rows[key] = row
        return MarkedRow(dict(row), str(row["_v"]))


class InMemoryMessages:
    """Records texts with their delay; ``fail_next`` makes the next sends raise (a queue that is down)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, float]] = []
        self.fail_next = 0

    async def send_text(self, text: str, delay_seconds: float = 0) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("queue unreachable")
        self.sent.append((text, delay_seconds))


class RecordingPublisher:
    """Records published events."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    async def publish(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)


class ScriptedCallbacks:
    """Answers each POST with the next scripted result (the last one repeats) and records the bodies."""

    def __init__(self, *results: CallbackResult) -> None:
        self.results = list(results) or [CallbackResult(True, 200)]
        self.posts: list[tuple[str, bytes]] = []

    async def post(self, url: str, body: bytes) -> CallbackResult:
        self.posts.append((url, body))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]
