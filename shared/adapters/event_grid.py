"""Outcome events to an Event Grid topic (``EVENTGRID_TOPIC_ENDPOINT``) with the app's managed identity.

Through ``azure-eventgrid``'s publisher client, as CloudEvents 1.0 (the topic's input schema must be
CloudEvents). The SDK refuses a bearer token over plain http; a local receiver (``http://localhost`` or
``127.0.0.1``, which the setting allows only for this machine) is reached with ``enforce_https`` off.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.eventgrid.aio import EventGridPublisherClient

_LOCAL = frozenset({"localhost", "127.0.0.1"})


class EventGridPublisher:
    """Publishes one CloudEvent per call."""

    def __init__(self, endpoint: str, credential: AsyncTokenCredential) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._client: EventGridPublisherClient | None = None
        parts = urlsplit(endpoint)
        self._local_http = parts.scheme == "http" and (parts.hostname or "") in _LOCAL

    async def publish(self, event: Mapping[str, Any]) -> None:
        """Send ``event`` (a CloudEvents 1.0 JSON object) with its own id, time and subject."""
        from azure.core.messaging import CloudEvent
        from azure.eventgrid.aio import EventGridPublisherClient

        if self._client is None:
            self._client = EventGridPublisherClient(self._endpoint, self._credential)
        cloud_event = CloudEvent(
            source=str(event["source"]),
            type=str(event["type"]),
            data=event.get("data"),
            subject=str(event["subject"]),
            id=str(event["id"]),
            time=datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")),
            datacontenttype=str(event.get("datacontenttype") or "application/json"),
        )
        options: dict[str, Any] = {"enforce_https": False} if self._local_http else {}
        await self._client.send([cloud_event], **options)
