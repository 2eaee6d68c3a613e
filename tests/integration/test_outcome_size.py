"""A big request's outcome event goes on the real queue (Azurite refuses a message past 64 KiB with 413)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from shared.adapters.message_queue import TextQueue
from shared.contract.outcome_events import finished_event, fitted

pytestmark = pytest.mark.integration

RID = "20261202T090000000Z-0123456789abcdef"


async def test_the_fitted_event_of_a_300_call_request_is_accepted_where_the_whole_one_is_refused(azurite: str) -> None:
    calls = [{"callId": f"call-{n:04d}", "status": "succeeded", "errorMessage": "x" * 150} for n in range(300)]
    body = {"requestId": RID, "status": "succeeded", "counts": {"succeeded": 300}, "calls": calls}
    event = finished_event(RID, "succeeded", datetime(2026, 12, 2, 9, tzinfo=UTC), body, public_base_url=None)
    client = QueueClient.from_connection_string(
        azurite,
        "outcome-size",
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    async with client:
        queue = TextQueue(client, keep=True)
        with pytest.raises(HttpResponseError) as refused:
            await queue.send_text(json.dumps(event, separators=(",", ":")))
        assert refused.value.status_code == 413
        await queue.send_text(json.dumps(fitted(event, f"/api/provision/{RID}"), separators=(",", ":")))
        [message] = [m async for m in client.receive_messages()]
        sent = json.loads(message.content)
        assert sent["data"]["callsOmitted"] == 300
        assert sent["dataref"] == f"/api/provision/{RID}"
