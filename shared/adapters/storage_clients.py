"""The app's storage account as SDK clients: tables, queues and blobs, by connection string or managed identity.

One factory for the composition root (:mod:`shared.runtime`), which creates each client once per process. Every
client gets the same transport options: the environment's proxy variables are honoured only when set
(``Settings.env_proxies``), so aiohttp does not re-read the environment and ``~/.netrc`` on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.core.errors import SettingsError
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient


@dataclass(frozen=True)
class StorageClients:
    """Creates the storage clients (the caller keeps them); ``identity`` gives the managed identity by client id."""

    settings: Settings
    identity: Callable[[str | None], AsyncTokenCredential]

    @property
    def _http(self) -> dict[str, Any]:
        return {"use_env_settings": self.settings.env_proxies}

    def table(self, name: str) -> TableClient:
        """A client of table ``name``."""
        from azure.data.tables.aio import TableClient

        storage = self.settings.storage
        if storage.connection_string:
            return TableClient.from_connection_string(storage.connection_string, table_name=name, **self._http)
        assert storage.table_service_uri
        credential = self.identity(storage.credential_client_id)
        return TableClient(endpoint=storage.table_service_uri, table_name=name, credential=credential, **self._http)

    def queue(self, name: str, *, raw: bool = False) -> QueueClient:
        """A client of queue ``name``, base64 like the Functions trigger expects; ``raw``: messages as stored
        (a poison queue may hold text that is not base64)."""
        from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
        from azure.storage.queue.aio import QueueClient

        storage = self.settings.storage
        encode = None if raw else TextBase64EncodePolicy()
        decode = None if raw else TextBase64DecodePolicy()
        if storage.connection_string:
            connection = storage.connection_string
            return QueueClient.from_connection_string(
                connection, name, message_encode_policy=encode, message_decode_policy=decode, **self._http
            )
        assert storage.queue_service_uri
        credential = self.identity(storage.credential_client_id)
        return QueueClient(
            storage.queue_service_uri,
            name,
            credential=credential,
            message_encode_policy=encode,
            message_decode_policy=decode,
            **self._http,
        )

    def blobs(self) -> BlobServiceClient:
        """The blob service (for logs too large for a Table entity)."""
        from azure.storage.blob.aio import BlobServiceClient

        storage = self.settings.storage
        if storage.connection_string:
            return BlobServiceClient.from_connection_string(storage.connection_string, **self._http)
        if not storage.blob_service_uri:
            raise SettingsError("AzureWebJobsStorage__blobServiceUri is needed for large provisioning logs")
        credential = self.identity(storage.credential_client_id)
        return BlobServiceClient(storage.blob_service_uri, credential=credential, **self._http)
