"""Outbox marks on the ledger's request row: which terminal transition was announced, and the callback's state.

A companion of :mod:`shared.adapters.ledger` on the same table and row (RowKey ``request``): it merges only
its own properties (``notifiedFor``, ``notifyClaim*``, ``callback*``), always conditional on the ETag it read,
so it never overwrites what the ledger wrote and two senders can never both claim one transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.contract.names import REQUEST_ROW
from shared.core.errors import StaleWrite
from shared.core.ports import MarkedRow

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

#: The only properties this adapter writes.
OWN_PROPERTIES = frozenset(
    {
        "notifiedFor",
        "notifiedAt",
        "notifyClaimFor",
        "notifyClaimedUntil",
        "callbackFor",
        "callbackStatus",
        "callbackAttempts",
        "callbackLastError",
        "callbackClaimedUntil",
        "callbackNextAt",
        "callbackDeliveredAt",
        "callbackHttpStatus",
    }
)


class TableRequestMarks:
    """Reads the request row with its ETag and merges outbox marks into it."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def read(self, request_id: str) -> MarkedRow | None:
        """The request row and its ETag, or None when there is none."""
        try:
            entity = await self._table.get_entity(request_id, REQUEST_ROW)
        except ResourceNotFoundError:
            return None
        return MarkedRow(dict(entity), str(entity.metadata["etag"]))

    async def mark(self, marked: MarkedRow, changes: Mapping[str, Any]) -> MarkedRow:
        """Merge ``changes`` if the row is still as read; StaleWrite when it changed in between."""
        foreign = set(changes) - OWN_PROPERTIES
        if foreign:
            raise ValueError(f"not an outbox property: {', '.join(sorted(foreign))}")
        pk, rk = marked.row["PartitionKey"], marked.row["RowKey"]
        merged = {k: v for k, v in {**marked.row, **changes}.items() if v is not None}
        # replace with the row as read plus the changes: a property set to None is removed; the ETag
        # condition guarantees nothing else changed since it was read
        try:
            meta = await self._table.update_entity(
                merged, mode="replace", etag=marked.etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):
                raise StaleWrite(f"{pk}/{rk} changed") from exc
            raise
        return MarkedRow(merged, str(meta["etag"]))
