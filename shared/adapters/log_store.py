"""Provisioning logs too large for a Table entity, kept whole in blob container ``provisioning-logs``.

A Table entity holds at most 1 MiB; a log split across properties covers most users, but a log with many
attributes can exceed it. Those go to a blob named ``<requestId>/<callId>.json``, and the call row records
the blob name instead.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.create_once import CreateOnce

if TYPE_CHECKING:
    from azure.storage.blob.aio import ContainerClient

CONTAINER = "provisioning-logs"


class BlobLogStore:
    """Writes, reads and deletes large provisioning logs."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ensure_container = CreateOnce(self._container.create_container)

    async def put(self, request_id: str, call_id: str, text: str) -> str:
        """Store ``text``; returns the blob name to record on the call row."""
        await self._ensure_container()
        name = f"{request_id}/{call_id}.json"
        await self._container.upload_blob(name, text.encode("utf-8"), overwrite=True)
        return name

    async def get(self, name: str) -> str | None:
        """The stored text, or None if the blob is gone."""
        try:
            downloader = await self._container.download_blob(name)
        except ResourceNotFoundError:
            return None
        data = await downloader.readall()
        return data.decode("utf-8")

    async def delete_request(self, request_id: str) -> int:
        """Delete every log of a request; returns how many blobs were deleted."""
        await self._ensure_container()
        count = 0
        async for blob in self._container.list_blobs(name_starts_with=f"{request_id}/"):
            with contextlib.suppress(ResourceNotFoundError):
                await self._container.delete_blob(blob.name)
                count += 1
        return count
