"""Outcome events and callbacks end to end: a request with a localhost callbackUrl is called back once with its
final body, its CloudEvent lands on provisioning-outcomes and reaches an Event Grid endpoint (a local receiver
standing in for the topic, through azure-eventgrid and the managed identity), and a callback host outside the
allow-list is refused at intake."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devhost.stack import Stack
from shared.core.records import CallRecord, RequestRecord
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallStatus, RequestStatus
from shared.runtime import Runtime
from shared.settings import Settings
from shared.usecases.outcomes import CallbackMessage
from tests.integration.conftest import app_stack, wait_done
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = pytest.mark.integration

USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"


class Receiver:
    """A small HTTP receiver on loopback: records every POST (path, headers, JSON body) and answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, prefix: str) -> list[tuple[str, dict[str, str], Any]]:
        return [post for post in list(self.posts) if post[0].startswith(prefix)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def events_stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLBACK_ALLOWED_HOSTS", "127.0.0.1")
        patch.setenv("EVENTGRID_TOPIC_ENDPOINT", f"{receiver.url}/api/events")
        with app_stack(tmp_path_factory, "events") as running:
            yield running


def _outcomes(stack: Stack) -> list[dict[str, Any]]:
    queue = QueueClient.from_connection_string(
        stack.env["AzureWebJobsStorage"], "provisioning-outcomes", message_decode_policy=TextBase64DecodePolicy()
    )
    try:
        return [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    except Exception:  # the queue does not exist until the first event
        return []


def _post(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)


def test_a_finished_request_is_called_back_once_and_announced_once(events_stack: Stack, receiver: Receiver) -> None:
    body = {
        "target": "seed-scim-app",
        "eventId": "events-callback-1",
        "subjects": [{"objectId": USER, "objectTypeName": "User"}],
        "callbackUrl": f"{receiver.url}/cb/one?sig=secret",
    }
    posted = _post(events_stack, body)
    assert posted.status_code == 202, posted.text
    request_id = posted.json()["requestId"]
    final = wait_done(posted.headers["Location"])
    assert final["status"] == "succeeded"

    [(path, headers, sent)] = wait_until(lambda: receiver.to("/cb/"), "the callback")
    assert path == "/cb/one?sig=secret"
    assert headers["Content-Type"] == "application/json"
    assert sent["requestId"] == request_id
    assert sent["status"] == "succeeded"
    assert sent["calls"] == final["calls"]

    events = wait_until(lambda: [e for e in _outcomes(events_stack) if e["subject"] == request_id], "the event")
    [event] = events
    assert event["specversion"] == "1.0"
    assert event["type"] == "provisioning.request.finished"
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["calls"] == final["calls"]

    grid = wait_until(lambda: receiver.to("/api/events"), "the Event Grid publish")
    [(grid_path, grid_headers, batch)] = grid
    assert grid_path.startswith("/api/events?api-version=")
    assert grid_headers["Authorization"].startswith("Bearer ")
    assert [(e["id"], e["type"], e["subject"]) for e in batch] == [(event["id"], event["type"], request_id)]

    # the same event again (a retry of the caller) makes no second request, event or callback
    again = _post(events_stack, body)
    assert again.json()["requestId"] == request_id
    wait_done(posted.headers["Location"])
    assert len(receiver.to("/cb/")) == 1
    assert len([e for e in _outcomes(events_stack) if e["subject"] == request_id]) == 1


def test_a_callback_host_outside_the_allow_list_is_refused_at_intake(events_stack: Stack) -> None:
    posted = _post(
        events_stack,
        {
            "target": "seed-scim-app",
            "subjects": [{"objectId": USER, "objectTypeName": "User"}],
            "callbackUrl": "https://prod-01.westeurope.logic.azure.com/workflows/x",
        },
    )
    assert posted.status_code == 400
    assert posted.headers["Content-Type"].startswith("application/problem+json")
    assert [e["pointer"] for e in posted.json()["errors"]] == ["/callbackUrl"]


def test_two_announcers_racing_over_the_same_row_send_one_event_and_one_callback(
    events_stack: Stack, receiver: Receiver
) -> None:
    """The worker finishing the last call and the sweeper (or a duplicate work item) announce the same transition
    at once, each with its own clients, over Azurite: the ETag-conditional claim lets one through."""
    request_id = new_request_id(datetime.now(UTC))
    finished = datetime.now(UTC)

    async def race() -> tuple[list[bool], list[str]]:
        # in-process runtimes have no managed identity (the stack's IDENTITY_ENDPOINT is its processes'
        # environment, not this one's): Event Grid is left out here, the queue and the callback are the race
        env = {k: v for k, v in events_stack.env.items() if k != "EVENTGRID_TOPIC_ENDPOINT"}
        first, second = (Runtime(Settings.from_environ(env)) for _ in range(2))
        row = RequestRecord(
            request_id=request_id,
            status=RequestStatus.SUCCEEDED,
            counts={CallStatus.SUCCEEDED: 1},
            call_count=1,
            created_at=finished,
            updated_at=finished,
            callback_url=f"{receiver.url}/cb/race",
        )
        call = CallRecord(request_id, "call-0001", subject={}, status=CallStatus.SUCCEEDED)
        await first.ledger.create(row, [call])
        announced = await asyncio.gather(
            first.outcomes.request_finished(request_id), second.outcomes.request_finished(request_id)
        )
        marked = await first.ledger.read_request(request_id)
        assert marked is not None
        message = CallbackMessage(request_id, str(marked.marks.notified_for))
        delivered = await asyncio.gather(
            first.outcomes.deliver_callback(message), second.outcomes.deliver_callback(message)
        )
        return list(announced), list(delivered)

    announced, delivered = asyncio.run(race())
    assert sorted(announced) == [False, True] or announced == [True, True]
    assert sorted(delivered) in (["busy", "delivered"], ["delivered", "done"])
    events = wait_until(lambda: [e for e in _outcomes(events_stack) if e["subject"] == request_id], "the event")
    assert len(events) == 1
    # the queued callback message and the two direct attempts: one POST in all
    wait_until(lambda: receiver.to("/cb/race"), "the callback")
    assert len(receiver.to("/cb/race")) == 1
