"""The app against a Graph stand-in that is not this project's emulator, and an Azurite of its own.

The stand-in below knows only what a minimal fake would: the App Service managed-identity endpoint and
provisionOnDemand, answering the documented seed bodies. Everything else (GET job, GET schema) is a 404,
as it might be anywhere. The app must still deliver the three seed examples end to end, with the ledger
holding Graph's documented outcome fields, and make exactly one provisionOnDemand call per request.

The second half scripts the stand-in with answers real Graph and a real managed identity give, as a new
user would meet them: a 429 with ``Retry-After: 10``, a 429 with no Retry-After, an HTML or plain-text
200, the synchronization API's bare 401, and App Service's 400 for a wrong ``AZURE_CLIENT_ID``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from azure.data.tables import TableClient

from devhost.stack import Stack, free_port
from shared.core import textsplit
from tests.fixtures import SEED_OUTCOMES, SEED_REQUESTS, seed_response
from tests.integration.conftest import example_values
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

TARGETS = {1: "seed-scim-app", 2: "seed-cloud-sync", 3: "seed-group-app"}


Reply = Callable[[], web.Response]


class StandIn:
    """A tiny Graph stand-in running on its own event loop in a thread.

    ``script[objectId]`` holds the answers for that subject's provisionOnDemand calls, used in order.
    ``identities``, when set, are the only client ids the identity endpoint knows (others get App Service's
    400); tokens last ``token_seconds``, so a test can make the app ask the identity endpoint again.
    """

    def __init__(self, identity_header: str, token_seconds: int = 3600) -> None:
        self.identity_header = identity_header
        self.token_seconds = token_seconds
        self.identities: set[str] | None = None
        self.tokens: set[str] = set()
        self.token_requests: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.script: dict[str, list[Reply]] = {}
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response({"error": "unauthorized"}, status=401)
        client_id = request.query.get("client_id")
        known = self.identities is None or client_id in self.identities
        self.token_requests.append({"at": time.monotonic(), "clientId": client_id, "issued": known})
        if not known:
            return web.json_response(
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated Managed Identity found for specified "
                    "ClientId/ResourceId/PrincipalId.",
                    "correlationId": str(uuid.uuid4()),
                },
                status=400,
            )
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + self.token_seconds),
                "resource": request.query.get("resource", ""),
                "token_type": "Bearer",
            }
        )

    async def provision(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        body = await request.json()
        subject = body["parameters"][0]["subjects"][0]["objectId"]
        self.calls.append(
            {
                "path": request.path,
                "body": body,
                "bearer": auth.removeprefix("Bearer ") in self.tokens,
                "objectId": subject,
                "at": time.monotonic(),
            }
        )
        if auth.removeprefix("Bearer ") not in self.tokens:
            return web.json_response({"error": {"code": "InvalidAuthenticationToken", "message": "no"}}, status=401)
        if self.script.get(subject):
            return self.script[subject].pop(0)()
        for example, seed in SEED_REQUESTS.items():
            if seed["subject"]["objectId"] == subject:
                return web.json_response(seed_response(example), headers={"request-id": secrets.token_hex(8)})
        return web.json_response({"error": {"code": "Request_ResourceNotFound", "message": "?"}}, status=404)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "ResourceNotFound", "message": "not here"}}, status=404)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/identity/token", self.token)
        app.router.add_post(
            "/graph/beta/servicePrincipals/{sp}/synchronization/jobs/{job}/provisionOnDemand", self.provision
        )
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> StandIn:
        self._thread.start()
        assert self._ready.wait(DEADLINE), "the stand-in did not start"
        return self

    def calls_for(self, object_id: str) -> list[dict[str, Any]]:
        """The provisionOnDemand calls made for one subject."""
        return [c for c in self.calls if c["objectId"] == object_id]

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(secrets.token_urlsafe(16)) as running:
        yield running


def test_seed_examples_against_a_foreign_standin_and_separate_azurite(standin: StandIn, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    with (tmp_path / "foreign.log").open("w") as log:
        outside = Stack(env=dict(env), log=log)
        try:
            env["AzureWebJobsStorage"] = outside.start_azurite()
            env["GRAPH_BASE_URL"] = f"http://127.0.0.1:{standin.port}/graph/beta"
            env["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{standin.port}/identity/token"
            env["IDENTITY_HEADER"] = standin.identity_header
            with Stack(port=free_port(), env=env, log=log) as app:
                assert len(app.processes) == 1, "only the devhost is started"
                for example, target in TARGETS.items():
                    seed = SEED_REQUESTS[example]
                    posted = httpx.post(
                        f"{app.base_url}/api/provision",
                        json={"target": target, "subjects": [seed["subject"]]},
                        timeout=HTTP_TIMEOUT,
                    )
                    assert posted.status_code == 202, posted.text
                    deadline = time.monotonic() + DEADLINE
                    while (status := httpx.get(posted.headers["Location"], timeout=HTTP_TIMEOUT)).status_code == 202:
                        assert time.monotonic() < deadline, status.text
                        time.sleep(0.2)
                    (call,) = status.json()["calls"]
                    for field, value in SEED_OUTCOMES[example].items():
                        assert call.get(field) == value, (example, field)
                    log_view = httpx.get(
                        posted.headers["Location"], params={"include": "provisioningLog"}, timeout=HTTP_TIMEOUT
                    ).json()
                    assert log_view["calls"][0]["provisioningLog"] == seed_response(example)["value"]
        finally:
            outside.stop()
    assert [c["bearer"] for c in standin.calls] == [True, True, True]
    assert [c["body"] for c in standin.calls] == [
        {"parameters": [{"ruleId": SEED_REQUESTS[e]["ruleId"], "subjects": [SEED_REQUESTS[e]["subject"]]}]}
        for e in (1, 2, 3)
    ]
    assert json.dumps(standin.calls).count("provisionOnDemand") == 3


# --- what real Graph and a real managed identity answer ------------------------------------------------------

TARGET = "seed-scim-app"
CLIENT_ID = "0aa0aa0a-1111-2222-3333-444444444444"
SUCCESS = {
    "@odata.context": "https://graph.microsoft.com/beta/$metadata#microsoft.graph.stringKeyStringValuePair",
    "key": '{"result":"Success","details":{}}',
    "value": "{}",
}
FRONT_DOOR = (
    "<!DOCTYPE html><html><head><title>Service unavailable</title></head><body><h2>Our services aren't "
    "available right now</h2></body></html>"
)


def success() -> web.Response:
    return web.json_response(SUCCESS, headers={"request-id": str(uuid.uuid4())})


def throttled(retry_after: str | None) -> Reply:
    def reply() -> web.Response:
        headers = {"request-id": str(uuid.uuid4())}
        if retry_after is None:
            return web.Response(status=429, headers=headers)  # no body, no Retry-After
        headers["Retry-After"] = retry_after
        body = {"error": {"code": "TooManyRequests", "message": "Too many requests."}}
        return web.json_response(body, status=429, headers=headers)

    return reply


@dataclass
class Scripted:
    """One app (devhost + its own Azurite) in front of a scripted stand-in."""

    standin: StandIn
    app: Stack
    storage: str

    def submit(self, script: list[Reply]) -> tuple[str, str]:
        """Post a request for a fresh subject whose Graph answers are ``script``; its objectId and Location."""
        object_id = str(uuid.uuid4())
        self.standin.script[object_id] = list(script)
        posted = httpx.post(
            f"{self.app.base_url}/api/provision",
            json={"target": TARGET, "subjects": [{"objectId": object_id, "objectTypeName": "User"}]},
            timeout=60,
        )
        assert posted.status_code == 202, posted.text
        return object_id, posted.headers["Location"]

    def ledger_call(self, location: str) -> dict[str, Any]:
        """The request's one call row as stored in the ledger."""
        request_id = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1]
        with TableClient.from_connection_string(self.storage, table_name="ProvisioningRequests") as table:
            rows = [dict(e) for e in table.query_entities(f"PartitionKey eq '{request_id}'")]
        (call,) = [r for r in rows if str(r["RowKey"]).startswith("call-")]
        return call


def final(location: str, timeout: float = 240) -> dict[str, Any]:
    """Poll the status URL until the request is done (200); its body."""
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(location, timeout=60)
        if status.status_code == 200:
            body: dict[str, Any] = status.json()
            return body
        assert status.status_code == 202, status.text
        assert time.monotonic() < deadline, status.text
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    env["AZURE_CLIENT_ID"] = CLIENT_ID  # a user-assigned identity, as the Bicep sets it
    log_path = tmp_path_factory.mktemp("scripted") / "scripted.log"
    with StandIn(secrets.token_urlsafe(16), token_seconds=3) as standin, log_path.open("w") as log:
        outside = Stack(env=dict(env), log=log)
        try:
            env["AzureWebJobsStorage"] = storage = outside.start_azurite()
            env["GRAPH_BASE_URL"] = f"http://127.0.0.1:{standin.port}/graph/beta"
            env["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{standin.port}/identity/token"
            env["IDENTITY_HEADER"] = standin.identity_header
            with Stack(port=free_port(), env=env, log=log) as app:
                yield Scripted(standin, app, storage)
        finally:
            outside.stop()


def test_a_429_with_retry_after_10_delays_the_next_call_by_10_s(scripted: Scripted) -> None:
    object_id, location = scripted.submit([throttled("10"), success])
    result = final(location)
    assert result["status"] == "succeeded", result
    first, second = scripted.standin.calls_for(object_id)
    assert second["at"] - first["at"] >= 10, "Retry-After: 10 was not honoured"
    assert result["calls"][0]["attempts"] == 2


def test_a_bare_429_backs_off_and_recovers(scripted: Scripted) -> None:
    object_id, location = scripted.submit([throttled(None), success])
    result = final(location)
    assert result["status"] == "succeeded", result
    first, second = scripted.standin.calls_for(object_id)
    assert second["at"] - first["at"] >= 0.5, "the retry came back at once"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(FRONT_DOOR, "text/html"), ("Service is temporarily unavailable", "text/plain")],
)
def test_a_200_that_is_not_json_ends_failed_with_the_raw_text_kept(
    scripted: Scripted, body: str, content_type: str
) -> None:
    # The same answer every time: a bounded number of POSTs, however the app retries.
    object_id, location = scripted.submit([lambda: web.Response(text=body, content_type=content_type)] * 10)
    result = final(location)
    assert result["status"] == "failed", result
    call = result["calls"][0]
    assert call["errorCode"] == "UnparseableResponse"
    assert call["httpStatus"] == 200
    assert len(scripted.standin.calls_for(object_id)) <= 2
    assert textsplit.from_properties("rawResponse", scripted.ledger_call(location)) == body


def test_a_bare_401_ends_failed_naming_the_permission_to_grant(scripted: Scripted) -> None:
    object_id, location = scripted.submit([lambda: web.Response(status=401)] * 10)
    result = final(location)
    assert result["status"] == "failed", result
    call = result["calls"][0]
    assert (call["httpStatus"], call["errorCode"]) == (401, "Unauthorized")
    assert "Synchronization.ReadWrite.All" in call["recommendedAction"]
    assert "Application.ReadWrite.OwnedBy" in call["recommendedAction"]
    assert len(scripted.standin.calls_for(object_id)) == 1


def test_a_failing_managed_identity_fails_the_request_and_recovers_without_a_restart(scripted: Scripted) -> None:
    standin = scripted.standin
    devhost = scripted.app.processes[-1]
    standin.identities = {"another-identity"}  # AZURE_CLIENT_ID names an identity that is not on the app
    try:
        # Wait out the app's cached token, so its next call has to ask the identity endpoint.
        issued = [r["at"] for r in standin.token_requests if r["issued"]]
        deadline = (max(issued) if issued else time.monotonic()) + standin.token_seconds + 1
        while time.monotonic() < deadline:
            time.sleep(0.2)
        object_id, location = scripted.submit([success])
        result = final(location)
        assert result["status"] == "failed", result
        call = result["calls"][0]
        assert call["errorCode"] == "ManagedIdentityUnavailable"
        assert f"AZURE_CLIENT_ID={CLIENT_ID}" in call["errorMessage"]
        assert "No User Assigned or Delegated Managed Identity found" in call["errorMessage"]
        assert "AZURE_CLIENT_ID" in call["recommendedAction"]
        assert standin.calls_for(object_id) == [], "no Graph call without a token"
        assert any(not r["issued"] and r["clientId"] == CLIENT_ID for r in standin.token_requests)
    finally:
        standin.identities = {CLIENT_ID, "another-identity"}  # the identity is assigned to the app
    object_id, location = scripted.submit([success])
    assert final(location)["status"] == "succeeded"
    assert len(standin.calls_for(object_id)) == 1
    assert devhost.poll() is None, "recovered without a restart"


# --- Operating the app against the stand-in (issue 12: what an operator does when a call fails) ------------------


def failure_in_200() -> web.Response:
    """Graph's 200 whose result is a Failure (two users match the source object)."""
    key = {"result": "Failure", "details": {"errorCode": "EntryConflict", "errorMessage": "Two users match"}}
    return web.json_response({"key": json.dumps(key), "value": "{}"}, headers={"request-id": str(uuid.uuid4())})


def test_an_operator_finds_a_failed_request_retries_it_and_both_attempts_stay_readable(scripted: Scripted) -> None:
    base = scripted.app.base_url
    object_id, location = scripted.submit([failure_in_200, success])
    assert final(location)["status"] == "failed"

    listed = httpx.get(f"{base}/api/provision", params={"status": "failed", "objectId": object_id}, timeout=60)
    assert listed.status_code == 200, listed.text
    (summary,) = listed.json()["value"]
    assert summary["status"] == "failed"
    assert object_id in summary["objectIds"]

    retried = httpx.post(f"{base}/api/provision/{summary['requestId']}/retry", timeout=60)
    assert retried.status_code == 202, retried.text
    assert final(retried.headers["Location"])["status"] == "succeeded"
    detail = httpx.get(location, params={"include": "attempts"}, timeout=60).json()
    (call,) = detail["calls"]
    assert call["status"] == "succeeded"
    assert [a["errorCode"] for a in call["attemptHistory"]] == ["EntryConflict"], call
    assert len(scripted.standin.calls_for(object_id)) == 2, "one Graph call per attempt"
    again = httpx.post(f"{base}/api/provision/{summary['requestId']}/retry", timeout=60)
    assert again.status_code == 409, "nothing left to retry"


def test_a_request_scheduled_an_hour_ahead_is_cancelled_and_the_standin_never_sees_it(scripted: Scripted) -> None:
    base = scripted.app.base_url
    object_id = str(uuid.uuid4())
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    body = {"target": TARGET, "notBefore": later, "subjects": [{"objectId": object_id, "objectTypeName": "User"}]}
    posted = httpx.post(f"{base}/api/provision", json=body, timeout=60)
    assert posted.status_code == 202, posted.text
    request_id = posted.json()["requestId"]
    targets = httpx.get(f"{base}/api/targets", timeout=60).json()["value"]
    assert next(t for t in targets if t["name"] == TARGET)["backlog"]["scheduled"] >= 1

    cancelled = httpx.post(f"{base}/api/provision/{request_id}/cancel", timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert [c["status"] for c in cancelled.json()["calls"]] == ["cancelled"]
    assert httpx.post(f"{base}/api/provision/{request_id}/cancel", timeout=60).status_code == 409
    assert scripted.standin.calls_for(object_id) == []
