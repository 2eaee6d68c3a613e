"""The HTTP boundary against in-memory adapters: what the real Functions host does to requests, and what the app
answers. Chunked bodies, misconfiguration, Prefer parsing and its bound, links and keys, idempotency keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import azure.functions as func
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.host_probe import HttpxHostProbe
from shared.core.ports import KnownEvent, WorkItem
from shared.core.records import CallRecord, RequestRecord
from shared.runtime import Runtime
from shared.settings import Settings
from shared.triggers import http_api, prefer

SP, JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
OTHER_JOB = "Workday2AD.2f3e4d5c6b7a48999a0b1c2d3e4f5061"
TARGETS = json.dumps({"scim": {"servicePrincipalId": SP, "jobId": JOB, "ruleId": "rule-1"}})
USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
GRAPH_URL = f"https://func.example.net/api/servicePrincipals/{SP}/synchronization/jobs/{JOB}/provisionOnDemand"


class FakeLedger:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[RequestRecord, list[CallRecord]]] = {}
        self.reads = 0
        self.read_twice = asyncio.Event()

    async def create(
        self, request: RequestRecord, calls: Sequence[CallRecord], *, tolerate_existing: bool = False
    ) -> None:
        self.rows.setdefault(request.request_id, (request, list(calls)))

    async def get_request(self, request_id: str) -> tuple[RequestRecord | None, list[CallRecord]]:
        self.reads += 1
        if self.reads >= 2:
            self.read_twice.set()
        return self.rows.get(request_id, (None, []))


class FakeEvents:
    def __init__(self) -> None:
        self.known: dict[str, KnownEvent] = {}

    async def claim(self, event_id: str, request_id: str, fingerprint: str, now: datetime) -> KnownEvent | None:
        if event_id in self.known:
            return self.known[event_id]
        self.known[event_id] = KnownEvent(request_id, fingerprint)
        return None


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[WorkItem] = []

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None:
        self.sent.append(item)


class FakePending:
    async def add(self, request_id: str, now: datetime) -> None:
        return None


def runtime(**env: str) -> Runtime:
    settings = Settings.from_environ(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PROVISIONING_TARGETS": TARGETS, **env}
    )
    rt = Runtime(settings)
    rt.__dict__.update(ledger=FakeLedger(), events=FakeEvents(), work_queue=FakeQueue(), pending=FakePending())
    rt.__dict__.update(dispatcher=None)  # no backlog: every call queued (intake's parking: test_backlog.py)
    return rt


def post(
    url: str, body: Any, headers: dict[str, str] | None = None, *, sized: bool = True, **route: str
) -> func.HttpRequest:
    raw = json.dumps(body).encode()
    sent = {
        "Content-Type": "application/json",
        **({"Content-Length": str(len(raw))} if sized else {}),
        **(headers or {}),
    }
    params = dict(httpx.URL(url).params)
    return func.HttpRequest("POST", url, headers=sent, params=params, route_params=route, body=raw if sized else b"")


def get(url: str, headers: dict[str, str] | None = None, **route: str) -> func.HttpRequest:
    return func.HttpRequest(
        "GET", url, headers=headers or {}, params=dict(httpx.URL(url).params), route_params=route, body=b""
    )


def problem(response: func.HttpResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.get_body())
    return body


@pytest.fixture(autouse=True)
def no_admin_probe(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The host's answer to "is this key admin-level?": only ``master`` is; every question is recorded."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url} {request.headers.get('x-functions-key')}")
        return httpx.Response(200 if request.headers.get("x-functions-key") == "master" else 401)

    monkeypatch.setattr(Runtime, "host_probe", HttpxHostProbe(transport=httpx.MockTransport(handler)))
    return asked


# --- (a) bodies the host drops -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"Transfer-Encoding": "chunked"}, {}],
    ids=["chunked", "http2-without-content-length"],
)
async def test_a_body_that_arrived_empty_without_content_length_is_a_411_naming_the_header(
    headers: dict[str, str],
) -> None:
    req = func.HttpRequest(
        "POST", "http://localhost/api/provision", headers={"Content-Type": "application/json", **headers}, body=b""
    )
    response = await http_api.provision(req, runtime())
    assert response.status_code == 411
    body = problem(response)
    assert body["type"].endswith("/length-required")
    assert body["errors"] == [
        {"header": "Content-Length", "detail": "is required: the body arrived empty because it had no Content-Length"}
    ]
    assert "Content-Length" in body["detail"]


async def test_an_empty_body_with_content_length_zero_is_malformed_json_not_411() -> None:
    req = func.HttpRequest(
        "POST",
        "http://localhost/api/provision",
        headers={"Content-Type": "application/json", "Content-Length": "0"},
        body=b"",
    )
    response = await http_api.provision(req, runtime())
    assert response.status_code == 400
    assert problem(response)["type"].endswith("/malformed-json")


# --- 6: misconfiguration is a 500 "misconfigured", not "retry later" --------------------------------------------


async def test_an_invalid_setting_makes_posts_a_500_misconfigured_without_retry_after(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from shared import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_runtime", None)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("PROVISIONING_TARGETS", "{not json")
    answers = [
        await http_api.provision(post("http://localhost/api/provision", {"target": "scim", "subjects": [USER]})),
        await http_api.graph_compatible(
            post(GRAPH_URL, {"parameters": [{"subjects": [USER]}]}, servicePrincipalId=SP, jobId=JOB)
        ),
        await http_api.provision(get("http://localhost/api/provision/" + "0" * 32, requestId="0" * 32)),
    ]
    for response in answers:
        assert response.status_code == 500
        body = problem(response)
        assert body["type"].endswith("/misconfigured")
        assert "PROVISIONING_TARGETS" in body["detail"]
        assert "Retry-After" not in response.headers
    assert any("PROVISIONING_TARGETS" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    monkeypatch.setattr(runtime_module, "_runtime", None)


# --- Prefer: wait ------------------------------------------------------------------------------------------------


@given(st.text())
def test_prefer_never_raises_and_only_ascii_digits_count(header: str) -> None:
    wait = prefer.prefer_wait(header)
    assert wait is None or 0 <= wait <= prefer.MAX_WAIT_SECONDS


@given(st.integers(0, 10**12), st.sampled_from(["{}", '"{}"', " {} ", "{};x=1"]))
def test_prefer_wait_reads_ascii_numbers(seconds: int, form: str) -> None:
    assert prefer.prefer_wait("respond-async, wait=" + form.format(seconds)) == min(seconds, 60)


@given(st.sampled_from("²³¹٣٤۵߃३൬๒໓᠓１𝟗"))
def test_prefer_wait_refuses_non_ascii_digits(digit: str) -> None:
    assert digit.isdigit()  # what the old parser trusted, and int() then choked on
    assert prefer.prefer_wait(f"wait={digit}") is None


def test_prefer_wait_first_instance_wins_and_bad_values_are_ignored() -> None:
    assert prefer.prefer_wait("wait=5, wait=30") == 5
    assert prefer.prefer_wait("wait=x, wait=30") is None  # the first instance counts, and it is unusable
    assert prefer.prefer_wait('foo="a, wait=9", wait=3') == 3  # a comma inside quotes separates nothing
    for bad in ("wait", "wait=", "wait=-1", "wait=1.5", "wait=1e3", "wait=0x10"):
        assert prefer.prefer_wait(bad) is None


async def test_an_unusable_prefer_wait_is_ignored_after_accepting_not_a_500() -> None:
    rt = runtime()
    req = post(
        GRAPH_URL, {"parameters": [{"subjects": [USER]}]}, {"Prefer": "wait=²"}, servicePrincipalId=SP, jobId=JOB
    )
    response = await http_api.graph_compatible(req, rt)
    assert response.status_code == 202
    assert "Preference-Applied" not in response.headers
    assert len(rt.work_queue.sent) == 1  # type: ignore[attr-defined]


async def test_waiting_callers_are_bounded_the_next_one_gets_its_202_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefer, "wait_slots", prefer.WaitSlots(2))
    rt = runtime()
    rt.status.poll_seconds = 0.01

    def waiting(n: int) -> func.HttpRequest:
        subject = {**USER, "objectId": f"user-{n}"}
        return post(
            GRAPH_URL,
            {"parameters": [{"subjects": [subject]}]},
            {"Prefer": "wait=30"},
            servicePrincipalId=SP,
            jobId=JOB,
        )

    holders = [asyncio.create_task(http_api.graph_compatible(waiting(n), rt)) for n in range(2)]
    await asyncio.wait_for(rt.ledger.read_twice.wait(), 10)  # type: ignore[attr-defined]  # both are polling
    assert prefer.wait_slots.in_use == 2
    started = asyncio.get_running_loop().time()
    third = await http_api.graph_compatible(waiting(3), rt)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert third.status_code == 202
    assert "Preference-Applied" not in third.headers
    assert not any(h.done() for h in holders)  # the first two are still waiting for their calls
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    assert prefer.wait_slots.in_use == 0


# --- Links and keys ----------------------------------------------------------------------------------------------


async def test_location_comes_from_public_base_url_never_from_a_forged_host() -> None:
    rt = runtime(PUBLIC_BASE_URL="https://func-api.azurewebsites.net/")
    req = post(
        "http://evil.example/api/provision",
        {"target": "scim", "subjects": [USER]},
        {"X-Forwarded-Host": "evil.example"},
    )
    response = await http_api.provision(req, rt)
    assert response.status_code == 202
    request_id = json.loads(response.get_body())["requestId"]
    assert response.headers["Location"] == f"https://func-api.azurewebsites.net/api/provision/{request_id}"


async def test_without_public_base_url_location_follows_the_request_url() -> None:
    response = await http_api.provision(
        post("http://127.0.0.1:7071/api/provision", {"target": "scim", "subjects": [USER]}), runtime()
    )
    request_id = json.loads(response.get_body())["requestId"]
    assert response.headers["Location"] == f"http://127.0.0.1:7071/api/provision/{request_id}"


async def test_a_query_key_travels_in_location_but_never_the_master_key(no_admin_probe: list[str]) -> None:
    rt = runtime(PUBLIC_BASE_URL="https://func-api.azurewebsites.net")
    body = {"target": "scim", "subjects": [USER]}
    keyed = await http_api.provision(post("https://func-api.azurewebsites.net/api/provision?code=fn-key", body), rt)
    assert keyed.headers["Location"].endswith("?code=fn-key")
    again = await http_api.provision(post("https://func-api.azurewebsites.net/api/provision?code=fn-key", body), rt)
    assert again.headers["Location"].endswith("?code=fn-key")
    assert no_admin_probe == ["https://func-api.azurewebsites.net/admin/host/status fn-key"]  # asked once, by header
    master = await http_api.provision(post("https://func-api.azurewebsites.net/api/provision?code=master", body), rt)
    assert "code=" not in master.headers["Location"]
    header = await http_api.provision(
        post("https://func-api.azurewebsites.net/api/provision?code=fn-key", body, {"x-functions-key": "other"}), rt
    )
    assert "code=" not in header.headers["Location"]  # the host read the header; that caller resends it


async def test_a_key_stays_out_when_the_host_does_not_say(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    monkeypatch.setattr(Runtime, "host_probe", HttpxHostProbe(transport=httpx.MockTransport(unreachable)))
    rt = runtime(PUBLIC_BASE_URL="https://func-api.azurewebsites.net")
    response = await http_api.provision(
        post("https://x/api/provision?code=k", {"target": "scim", "subjects": [USER]}), rt
    )
    assert response.status_code == 202
    assert "code=" not in response.headers["Location"]


async def test_the_graph_compatible_route_polls_under_its_own_function() -> None:
    rt = runtime(PUBLIC_BASE_URL="https://app.example")
    posted = await http_api.graph_compatible(
        post(GRAPH_URL + "?code=graph-key", {"parameters": [{"subjects": [USER]}]}, servicePrincipalId=SP, jobId=JOB),
        rt,
    )
    request_id = json.loads(posted.get_body())["requestId"]
    location = posted.headers["Location"]
    assert location == (
        f"https://app.example/api/servicePrincipals/{SP}/synchronization/jobs/{JOB}/provisionOnDemand/"
        f"{request_id}?code=graph-key"
    )
    status = await http_api.graph_compatible(get(location, servicePrincipalId=SP, jobId=JOB, requestId=request_id), rt)
    assert status.status_code == 202
    assert status.headers["Location"] == location
    elsewhere = await http_api.graph_compatible(
        get(location, servicePrincipalId=SP, jobId=OTHER_JOB, requestId=request_id), rt
    )
    assert elsewhere.status_code == 404  # a job's path reads only that job's requests


async def test_one_function_serves_submit_and_status_and_refuses_other_methods() -> None:
    rt = runtime()
    posted = await http_api.provision(post("http://h/api/provision", {"target": "scim", "subjects": [USER]}), rt)
    request_id = json.loads(posted.get_body())["requestId"]
    status = await http_api.provision(get(f"http://h/api/provision/{request_id}", requestId=request_id), rt)
    assert status.status_code == 202
    assert json.loads(status.get_body())["requestId"] == request_id
    wrong = await http_api.provision(post(f"http://h/api/provision/{request_id}", {}, requestId=request_id), rt)
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET")
    listing = await http_api.provision(get("http://h/api/provision"), rt)
    assert (listing.status_code, listing.headers["Allow"]) == (405, "POST")


# --- Idempotency ------------------------------------------------------------------------------------------------


async def test_a_409_never_names_the_request_the_event_made() -> None:
    rt = runtime()
    first = await http_api.provision(
        post("http://h/api/provision", {"eventId": "e1", "target": "scim", "subjects": [USER]}), rt
    )
    first_id = json.loads(first.get_body())["requestId"]
    other = {"eventId": "e1", "target": "scim", "subjects": [{**USER, "objectId": "someone-else"}]}
    conflict = await http_api.provision(post("http://h/api/provision", other), rt)
    assert conflict.status_code == 409
    assert first_id not in conflict.get_body().decode()
    assert problem(conflict)["errors"] == [{"pointer": "/eventId", "detail": "was already used with a different body"}]


async def test_the_graph_compatible_route_honours_client_request_id() -> None:
    rt = runtime()
    body = {"parameters": [{"subjects": [USER]}]}
    key = {"client-request-id": "5e7a1b0c-1111-4222-8333-944455556666"}
    first = await http_api.graph_compatible(post(GRAPH_URL, body, key, servicePrincipalId=SP, jobId=JOB), rt)
    again = await http_api.graph_compatible(post(GRAPH_URL, body, key, servicePrincipalId=SP, jobId=JOB), rt)
    assert first.status_code == again.status_code == 202
    assert json.loads(first.get_body())["requestId"] == json.loads(again.get_body())["requestId"]
    assert again.headers["client-request-id"] == key["client-request-id"]
    assert len(rt.work_queue.sent) == 1  # type: ignore[attr-defined]  # one request, one Graph call

    changed = {"parameters": [{"subjects": [{**USER, "objectId": "someone-else"}]}]}
    conflict = await http_api.graph_compatible(post(GRAPH_URL, changed, key, servicePrincipalId=SP, jobId=JOB), rt)
    assert conflict.status_code == 409
    assert problem(conflict)["errors"] == [
        {"header": "client-request-id", "detail": "was already used with a different body"}
    ]
    assert json.loads(first.get_body())["requestId"] not in conflict.get_body().decode()

    without = await http_api.graph_compatible(post(GRAPH_URL, body, servicePrincipalId=SP, jobId=JOB), rt)
    assert json.loads(without.get_body())["requestId"] != json.loads(first.get_body())["requestId"]

    bad = await http_api.graph_compatible(
        post(GRAPH_URL, body, {"client-request-id": "has space"}, servicePrincipalId=SP, jobId=JOB), rt
    )
    assert bad.status_code == 400
    assert problem(bad)["errors"][0]["header"] == "client-request-id"


@pytest.mark.parametrize("code", ["\U000403a1ò\x0b", "has space", "é", "a" * 513])
async def test_a_code_that_cannot_be_a_key_never_travels_and_never_fails(code: str, no_admin_probe: list[str]) -> None:
    req = post("http://h/api/provision", {"target": "scim", "subjects": [USER]})
    req = func.HttpRequest("POST", req.url, headers=dict(req.headers), params={"code": code}, body=req.get_body())
    response = await http_api.provision(req, runtime())
    assert response.status_code == 202
    assert "code=" not in response.headers["Location"]
    assert no_admin_probe == []
