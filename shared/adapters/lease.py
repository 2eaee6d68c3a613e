"""Short leases by name on a Table row (in ``ProvisioningLimiter``, partition ``lease``), across instances.

A lease is a row holding a random token and an expiry; taking it is a create, or a replace conditional on
the ETag of an expired one, so two instances can never both hold it. Releasing deletes it only if it still
holds our token (ETag). An instance that dies holding a lease blocks others only until it expires.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

_PARTITION = "lease"


class TableLease:
    """Acquire and release named leases."""

    def __init__(self, table: TableClient, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock
        self._ensure_table = CreateOnce(self._table.create_table)
        self._etags: dict[str, str] = {}

    async def acquire(self, name: str, seconds: float) -> str | None:
        """A token when this instance now holds ``name`` for ``seconds``; None when another one holds it."""
        await self._ensure_table()
        now = self._clock()
        token = secrets.token_hex(8)
        entity = {"PartitionKey": _PARTITION, "RowKey": name, "token": token, "until": now + seconds}
        try:
            current = await self._table.get_entity(_PARTITION, name)
        except ResourceNotFoundError:
            current = None
        try:
            if current is None:
                meta = await self._table.create_entity(entity)
            elif float(current.get("until") or 0.0) > now:
                return None
            else:
                meta = await self._table.update_entity(
                    entity,
                    mode="replace",
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return None
            raise
        self._etags[token] = str(meta["etag"])
        return token

    async def release(self, name: str, token: str) -> None:
        """Give the lease up early, if it is still ours (else leave whoever holds it now alone)."""
        etag = self._etags.pop(token, None)
        if etag is None:
            return
        try:
            await self._table.delete_entity(_PARTITION, name, etag=etag, match_condition=MatchConditions.IfNotModified)
        except ResourceNotFoundError:
            return
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
