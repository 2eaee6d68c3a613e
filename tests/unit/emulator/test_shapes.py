"""The emulator answers in the shapes real Graph and App Service send, including the awkward ones.

Retry-After values of 10 to 120 s, fractional or absent; request-id / client-request-id on every answer; the
synchronization API's bare 401; an HTML 200 from a front door; Graph calling a token expired; App Service's
400 for an identity that is not on the app; and raw replays of any captured response.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from emulator.config import EmulatorConfig
from emulator.faults import FRONT_DOOR_HTML, NO_IDENTITY_MESSAGE
from emulator.testing import RunningEmulator, running_emulator

SP, JOB, RULE = (
    "c8c95753-f628-48e1-9fab-76c2d4cf624c",
    "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
    "ea807875-5618-4f0a-9125-0b46a05298ca",
)
USER = "d15ab1ed-0000-4000-8000-000000000001"
JOB_PATH = f"/beta/servicePrincipals/{SP}/synchronization/jobs/{JOB}"
POD_PATH = f"{JOB_PATH}/provisionOnDemand"
POD_BODY = {"parameters": [{"ruleId": RULE, "subjects": [{"objectId": USER, "objectTypeName": "User"}]}]}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SECRET = "shapes-secret"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Emu:
    """Raw HTTP against the emulator: every answer as status, headers and bytes."""

    def __init__(self, running: RunningEmulator, session: aiohttp.ClientSession) -> None:
        self.running = running
        self.session = session
        self.token = ""

    async def send(self, method: str, path: str, body: Any = None, **headers: str) -> Answer:
        all_headers = {"Authorization": f"Bearer {self.token}", **headers}
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(method, self.running.base_url + path, data=data, headers=all_headers) as r:
            return Answer(r.status, dict(r.headers), await r.read())

    async def pod(self, **headers: str) -> Answer:
        return await self.send("POST", POD_PATH, POD_BODY, **headers)

    async def get_token(self, secret: str = SECRET) -> Answer:
        params = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}
        async with self.session.get(
            self.running.token_endpoint, params=params, headers={"X-IDENTITY-HEADER": secret}
        ) as r:
            return Answer(r.status, dict(r.headers), await r.read())

    async def config(self, patch: dict[str, Any], expect: int = 200) -> Any:
        async with self.session.post(f"{self.running.base_url}/_emulator/config", json=patch) as r:
            assert r.status == expect, await r.text()
            return await r.json()

    async def state(self) -> dict[str, Any]:
        async with self.session.get(f"{self.running.base_url}/_emulator/state") as r:
            jobs: dict[str, Any] = (await r.json())["jobs"]
            return dict(jobs[f"{SP}/{JOB}"])

    async def calls(self, operation: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.running.base_url}/_emulator/calls?operation={operation}") as r:
            calls: list[dict[str, Any]] = (await r.json())["calls"]
            return calls


@pytest.fixture
async def emu() -> AsyncIterator[Emu]:
    config = EmulatorConfig(identity_header=SECRET, rate_limit="1000/10s")
    async with (
        running_emulator(config) as running,
        aiohttp.ClientSession(
            # a fresh connection per request: aiohttp silently re-sends a GET whose kept-alive connection drops
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session,
    ):
        client = Emu(running, session)
        client.token = (await client.get_token()).json()["access_token"]
        yield client


# --- throttling -------------------------------------------------------------------------------------------


async def test_throttling_sends_the_configured_retry_after_values_in_turn(emu: Emu) -> None:
    await emu.config({"rateLimit": "1/60s"})
    assert (await emu.pod()).status == 200  # takes the one call per minute
    default = await emu.pod()
    assert default.status == 429
    assert 59 <= int(default.headers["Retry-After"]) <= 60, "by default the real wait, whole seconds"

    config = await emu.config({"retryAfter": [10, 120, 2.128, "none", "Wed, 21 Oct 2065 07:28:00 GMT"]})
    assert config["retryAfter"] == [10, 120, 2.128, "none", "Wed, 21 Oct 2065 07:28:00 GMT"]
    seen = [(await emu.pod()).headers.get("Retry-After") for _ in range(6)]
    assert seen == ["10", "120", "2.128", None, "Wed, 21 Oct 2065 07:28:00 GMT", "10"]

    await emu.config({"retryAfter": 30})
    throttled = await emu.pod()
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "30")
    assert throttled.json()["error"]["code"] == "TooManyRequests"

    await emu.config({"retryAfter": "none"})
    assert "Retry-After" not in (await emu.pod()).headers

    await emu.config({"retryAfter": None})
    assert (await emu.config({}))["retryAfter"] is None
    assert 1 <= int((await emu.pod()).headers["Retry-After"]) <= 60


@pytest.mark.parametrize("bad", [-1, True, [], [10, -2], {"s": 1}, ""])
async def test_a_bad_retry_after_is_refused(emu: Emu, bad: Any) -> None:
    await emu.config({"retryAfter": bad}, expect=400)
    await emu.config({"faults": [{"kind": "429storm", "retryAfter": bad}]}, expect=400)
    assert (await emu.config({}))["faults"] == []


async def test_fault_retry_after_fractional_date_and_none(emu: Emu) -> None:
    await emu.config(
        {
            "faults": [
                {"kind": "429storm", "retryAfter": 2.128},
                {"status": 503, "retryAfter": "Wed, 21 Oct 2065 07:28:00 GMT"},
                {"kind": "429storm", "retryAfter": "none"},
                {"kind": "429storm", "retryAfter": 120},
            ]
        }
    )
    headers = [(await emu.pod()).headers for _ in range(4)]
    assert [h.get("Retry-After") for h in headers] == ["2.128", "Wed, 21 Oct 2065 07:28:00 GMT", None, "120"]


# --- request ids ------------------------------------------------------------------------------------------


async def test_every_graph_answer_carries_both_request_ids(emu: Emu) -> None:
    await emu.config(
        {
            "faults": [
                {"kind": "slow", "delayMs": 1},
                {"status": 500},
                {"status": 401, "bare": True},
                {"kind": "html"},
                {"kind": "expiredToken"},
                {"kind": "429storm"},
                {"kind": "answer", "key": "k", "value": "v"},
                {"kind": "answer", "status": 200, "body": "plain", "headers": {"Content-Type": "text/plain"}},
            ]
        }
    )
    answers = [await emu.pod(**{"client-request-id": f"caller-{n}"}) for n in range(8)]
    answers.append(await emu.send("GET", JOB_PATH, **{"client-request-id": "caller-8"}))
    answers.append(await emu.send("GET", f"{JOB_PATH}/schema", **{"client-request-id": "caller-9"}))
    answers.append(await emu.send("GET", "/beta/nowhere", **{"client-request-id": "caller-10"}))
    answers.append(await emu.send("GET", JOB_PATH.replace(JOB, "no-such-job"), **{"client-request-id": "caller-11"}))
    for n, answer in enumerate(answers):
        assert GUID.match(answer.headers["request-id"]), (n, answer)
        assert answer.headers["client-request-id"] == f"caller-{n}", n
    without = await emu.send("GET", JOB_PATH)
    assert without.headers["client-request-id"] == without.headers["request-id"]


# --- the awkward answers ----------------------------------------------------------------------------------


async def test_the_synchronization_apis_bare_401(emu: Emu) -> None:
    await emu.config({"faults": [{"status": 401, "bare": True, "operation": "getJob"}]})
    bare = await emu.send("GET", JOB_PATH)
    assert (bare.status, bare.body) == (401, b"")
    assert "application/json" not in bare.headers.get("Content-Type", "")
    assert (await emu.send("GET", JOB_PATH)).status == 200
    assert [c["status"] for c in await emu.calls("getJob")] == [401, 200]
    assert (await emu.config({"faults": [{"status": 401, "bare": True}]}))["faults"][0]["bare"] is True


async def test_an_html_200_from_a_front_door(emu: Emu) -> None:
    await emu.config({"faults": [{"kind": "html"}]})
    page = await emu.send("POST", POD_PATH, POD_BODY, Authorization="")  # before any token check
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.body.decode() == FRONT_DOOR_HTML
    assert [(c["fault"], c["status"]) for c in await emu.calls("provisionOnDemand")] == [("html", 200)]
    assert USER.lower() not in (await emu.state())["inTarget"]  # nothing was provisioned


async def test_graph_calls_a_valid_token_expired(emu: Emu) -> None:
    await emu.config({"faults": [{"kind": "expiredToken", "operation": "getSchema"}]})
    expired = await emu.send("GET", f"{JOB_PATH}/schema")
    assert expired.status == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert expired.json()["error"]["message"] == "Access token has expired or is not yet valid."
    assert expired.headers["WWW-Authenticate"].startswith("Bearer ")
    assert (await emu.send("GET", f"{JOB_PATH}/schema")).status == 200
    await emu.config({"faults": [{"kind": "expiredToken", "operation": "token"}]}, expect=400)


async def test_identity_endpoint_failures(emu: Emu) -> None:
    await emu.config(
        {
            "faults": [
                {"operation": "token", "kind": "noIdentity"},
                {"operation": "token", "status": 500},
                # aiohttp re-sends a GET once when the connection drops: both tries are dropped
                {"operation": "token", "kind": "drop", "times": 2},
            ]
        }
    )
    no_identity = await emu.get_token()
    assert no_identity.status == 400
    body = no_identity.json()
    assert body["statusCode"] == 400
    assert body["message"] == NO_IDENTITY_MESSAGE
    assert GUID.match(body["correlationId"])
    assert (await emu.get_token()).status == 500
    with pytest.raises(aiohttp.ClientError):
        await emu.get_token()
    assert (await emu.get_token()).status == 200
    assert [c["fault"] for c in await emu.calls("token")][-5:] == ["noIdentity", "status", "drop", "drop", None]
    await emu.config({"faults": [{"operation": "getJob", "kind": "noIdentity"}]}, expect=400)


# --- replaying captured answers ---------------------------------------------------------------------------


async def test_an_answer_fault_replays_status_headers_and_bytes(emu: Emu) -> None:
    captured = b'{"key": 5, "value": {"nested": true}}'
    await emu.config(
        {
            "faults": [
                {"kind": "answer", "status": 200, "headers": {"Content-Type": "text/plain"}, "body": "OK"},
                {
                    "kind": "answer",
                    "bodyBase64": base64.b64encode(captured).decode(),
                    "headers": {"Content-Type": "application/json", "request-id": "captured-id"},
                },
                {"kind": "answer", "status": 204, "body": ""},
                {"kind": "answer", "status": 429, "body": "", "retryAfter": 2.128},
                {"kind": "answer", "key": 5, "value": {"a": 1}},
                {"kind": "answer", "operation": "getJob", "status": 200, "body": "<html/>",
                 "headers": {"Content-Type": "text/html"}},
                {"kind": "answer", "operation": "getSchema", "status": 401, "body": ""},
                {"kind": "answer", "operation": "token", "status": 400,
                 "body": '{"error":"invalid_request","error_description":"Identity not found"}',
                 "headers": {"Content-Type": "application/json"}},
            ]
        }
    )  # fmt: skip
    text = await emu.pod()
    assert (text.status, text.headers["Content-Type"], text.body) == (200, "text/plain", b"OK")
    replayed = await emu.pod(**{"client-request-id": "mine"})
    assert (replayed.body, replayed.headers["request-id"]) == (captured, "captured-id")
    assert replayed.headers["client-request-id"] == "mine"
    empty = await emu.pod()
    assert (empty.status, empty.body) == (204, b"")
    throttled = await emu.pod()
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "2.128")
    typed = await emu.pod()
    assert (typed.json()["key"], typed.json()["value"]) == (5, {"a": 1})
    page = await emu.send("GET", JOB_PATH)
    assert (page.status, page.body) == (200, b"<html/>")
    assert (await emu.send("GET", f"{JOB_PATH}/schema")).status == 401
    identity = await emu.get_token()
    assert (identity.status, identity.json()["error"]) == (400, "invalid_request")
    assert (await emu.get_token()).status == 200
    assert [c["fault"] for c in await emu.calls("provisionOnDemand")] == ["answer"] * 5


async def test_an_answer_fault_still_needs_a_valid_token(emu: Emu) -> None:
    await emu.config({"faults": [{"kind": "answer", "status": 200, "body": "OK"}]})
    assert (await emu.send("POST", POD_PATH, POD_BODY, Authorization="Bearer nope")).status == 401
    assert (await emu.pod()).body == b"OK"


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "answer", "body": "a", "bodyBase64": "YQ=="},
        {"kind": "answer", "bodyBase64": "not base64!"},
        {"kind": "answer", "body": 5},
        {"kind": "answer", "body": "x", "headers": {"X": 1}},
        {"kind": "answer", "status": 404},
        {"kind": "answer", "operation": "getJob", "key": "k"},
        {"kind": "answer", "status": 99, "body": ""},
        {"status": 500, "body": "x"},
    ],
)
async def test_bad_answer_faults_are_refused(emu: Emu, fault: dict[str, Any]) -> None:
    await emu.config({"faults": [fault]}, expect=400)


async def test_the_call_log_reads_from_a_seq_on(emu: Emu) -> None:
    """A poller (the backlog bench) reads only what is new: the whole log of 20,000 calls every 5 s held the
    emulator's event loop while calls arrived, and so moved the times it stamps on them."""
    for _ in range(3):
        await emu.pod()
    every = await emu.calls("provisionOnDemand")
    assert len(every) == 3
    async with emu.session.get(
        f"{emu.running.base_url}/_emulator/calls", params={"operation": "provisionOnDemand", "after": every[0]["seq"]}
    ) as r:
        later = (await r.json())["calls"]
    assert [c["seq"] for c in later] == [c["seq"] for c in every[1:]]
    async with emu.session.get(f"{emu.running.base_url}/_emulator/calls", params={"after": "-1"}) as r:
        assert r.status == 400
