"""The Graph adapter fed canned bytes and headers through the real SDK stack.

Every Graph answer here goes through msgraph-beta-sdk's request builders, kiota's request adapter and its
default middleware, down to an ``httpx.MockTransport``: only the bytes on the wire are canned. Tokens come
from a counting fake credential, or from the real ``ManagedIdentityCredential`` talking to the emulator's
App Service identity endpoint when the test is about the identity.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError
from hypothesis import given
from hypothesis import strategies as st
from kiota_abstractions.headers_collection import HeadersCollection

from emulator.app import create_app
from emulator.config import EmulatorConfig
from emulator.testing import RunningEmulator, running_emulator
from shared.adapters import graph
from shared.adapters.graph import GraphProvisioner
from shared.adapters.graph.sdk import request_body
from shared.core import graph_errors, retry, send_deadline
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus
from shared.core.rules import NoRule, RuleInfo, TtlCache, choose_rule
from shared.settings import Settings, StorageSettings

pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

SP, JOB, RULE = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612", "ea807875-r"
USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
CLIENT_ID = "0aa0aa0a-1111-2222-3333-444444444444"
REQUEST_ID = "7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
CLIENT_REQUEST_ID = "11111111-2222-4333-8444-555555555555"
SETTINGS = Settings(
    storage=StorageSettings(connection_string="UseDevelopmentStorage=true"),
    graph_base_url="https://graph.microsoft.com/beta",
    graph_scope="https://graph.microsoft.com/.default",
    azure_client_id=CLIENT_ID,
)
PAIR = {
    "@odata.context": "https://graph.microsoft.com/beta/$metadata#microsoft.graph.stringKeyStringValuePair",
    "key": '{"result":"Success","details":{}}',
    "value": '{"action":"Create"}',
}

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeCredential:
    """An AsyncTokenCredential that counts its calls; it raises ``fail`` while that is set."""

    def __init__(self) -> None:
        self.calls: list[str | None] = []
        self.fail: Exception | None = None

    async def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> AccessToken:
        self.calls.append(claims)
        if self.fail is not None:
            raise self.fail
        return AccessToken(f"token-{len(self.calls)}", int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeGraph:
    """The network under the SDK: answers the requests it gets with canned replies, in order."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def bearers(self) -> list[str]:
        return [r.headers.get("Authorization", "") for r in self.requests]


def reply(
    status: int,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json; charset=utf-8",
) -> httpx.Response:
    """The bytes and headers Graph (or something in its place) sends."""
    content = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    all_headers = {"Content-Type": content_type} if content_type and content else {}
    all_headers.update(headers or {})
    return httpx.Response(status, content=content or b"", headers=all_headers)


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"date": "2025-01-01T00:00:00"}}}
    return reply(status, body, headers)


def adapter(fake: FakeGraph, credential: Any = None, settings: Settings = SETTINGS) -> GraphProvisioner:
    return GraphProvisioner(settings, credential or FakeCredential(), http_client=fake.client())


async def pod(provisioner: GraphProvisioner) -> GraphAnswer | GraphFailure:
    return await provisioner.provision_on_demand(SP, JOB, RULE, USER)


# --- the request ------------------------------------------------------------------------------------------


async def test_the_post_goes_through_the_request_builders_with_the_sdks_retries_off() -> None:
    fake = FakeGraph(graph_error(503, "ServiceUnavailable", "busy", {"Retry-After": "3"}))
    job_id = "Workday2AD.2f3e/4d5c 6b7a"
    failure = await adapter(fake).provision_on_demand(SP, job_id, RULE, USER)
    assert isinstance(failure, GraphFailure)
    assert (failure.http_status, failure.code, failure.retry_after_seconds) == (503, "ServiceUnavailable", 3.0)
    (sent,) = fake.requests  # the SDK's RetryHandler did not send it again
    assert sent.method == "POST"
    assert sent.url.raw_path.decode() == (
        f"/beta/servicePrincipals/{SP}/synchronization/jobs/Workday2AD.2f3e%2F4d5c%206b7a/provisionOnDemand"
    )
    assert json.loads(sent.content) == {"parameters": [{"ruleId": RULE, "subjects": [USER]}]}
    assert sent.headers["Authorization"] == "Bearer token-1"
    assert "SdkVersion" in sent.headers  # the SDK's telemetry middleware is in place


async def test_a_200_answer_keeps_key_value_and_both_request_ids_whole() -> None:
    headers = {"request-id": REQUEST_ID, "client-request-id": CLIENT_REQUEST_ID}
    answer = await pod(adapter(FakeGraph(reply(200, PAIR, headers))))
    assert answer == GraphAnswer(PAIR["key"], PAIR["value"], REQUEST_ID, 200, CLIENT_REQUEST_ID)


# --- throttling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("10", 10.0), ("30", 30.0), ("120", 120.0), ("2.128", 2.128), (None, None)],
)
async def test_a_429_reads_retry_after_whole(header: str | None, seconds: float | None) -> None:
    headers = {"request-id": REQUEST_ID, "client-request-id": CLIENT_REQUEST_ID}
    if header is not None:
        headers["Retry-After"] = header
    failure = await pod(adapter(FakeGraph(graph_error(429, "TooManyRequests", "slow down", headers))))
    assert failure == GraphFailure(429, "TooManyRequests", "slow down", REQUEST_ID, seconds, CLIENT_REQUEST_ID)


async def test_a_429_with_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=45)
    headers = {"Retry-After": format_datetime(when, usegmt=True)}
    failure = await pod(adapter(FakeGraph(graph_error(429, "TooManyRequests", "slow down", headers))))
    assert isinstance(failure, GraphFailure)
    assert failure.retry_after_seconds is not None
    assert 40 <= failure.retry_after_seconds <= 46


async def test_a_bare_429_has_no_retry_after_and_keeps_the_raw_text() -> None:
    failure = await pod(adapter(FakeGraph(reply(429, "Too Many Requests", content_type="text/plain"))))
    assert failure == GraphFailure(
        429, None, "Graph answered HTTP 429 with a body that is not Graph's error JSON", raw_body="Too Many Requests"
    )


# --- 401 --------------------------------------------------------------------------------------------------


async def test_a_bare_401_is_unauthorized() -> None:
    fake = FakeGraph(reply(401, None, {"request-id": REQUEST_ID}))
    failure = await pod(adapter(fake))
    assert failure == GraphFailure(401, "Unauthorized", "Graph answered HTTP 401 with no body", REQUEST_ID, raw_body="")
    assert len(fake.requests) == 1


def use_identity_endpoint(monkeypatch: pytest.MonkeyPatch, url: str, secret: str) -> None:
    """Make ManagedIdentityCredential use an App Service identity endpoint, as on a function app."""
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", url)
    monkeypatch.setenv("IDENTITY_HEADER", secret)


@pytest.fixture
async def identity(monkeypatch: pytest.MonkeyPatch, loopback: None) -> AsyncIterator[RunningEmulator]:
    """The emulator's App Service managed identity endpoint on loopback, where the credential gets tokens."""
    config = EmulatorConfig(identity_header="adapter-secret")
    async with running_emulator(config) as emu:
        use_identity_endpoint(monkeypatch, emu.token_endpoint, emu.identity_header)
        yield emu


@pytest.fixture
async def closing() -> AsyncIterator[list[GraphProvisioner]]:
    """Adapters to close after the test (their managed identity credential holds an HTTP session)."""
    adapters: list[GraphProvisioner] = []
    yield adapters
    for provisioner in adapters:
        await provisioner.aclose()


def own_identity(fake: FakeGraph, closing: list[GraphProvisioner]) -> GraphProvisioner:
    """An adapter with the app's own managed identity credential, as in production."""
    provisioner = GraphProvisioner(SETTINGS, http_client=fake.client())
    closing.append(provisioner)
    return provisioner


def token_requests(emu: RunningEmulator) -> list[dict[str, Any]]:
    return emu.emulator.calls.list("token")


async def test_an_expired_token_is_replaced_by_a_fresh_one_on_the_next_call(
    identity: RunningEmulator, closing: list[GraphProvisioner]
) -> None:
    expired = graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
    fake = FakeGraph(expired, reply(200, PAIR))
    provisioner = own_identity(fake, closing)

    failure = await pod(provisioner)
    assert isinstance(failure, GraphFailure)
    assert (failure.http_status, failure.code) == (401, "TokenExpired")
    assert failure.message == "Access token has expired or is not yet valid."
    assert len(token_requests(identity)) == 1

    assert isinstance(await pod(provisioner), GraphAnswer)
    assert len(token_requests(identity)) == 2, "the cached token Graph refused was not used again"
    first, second = fake.bearers()
    assert first != second
    assert all(c["clientId"] == CLIENT_ID and c["status"] == 200 for c in token_requests(identity))


async def test_other_401s_keep_the_cached_token(identity: RunningEmulator, closing: list[GraphProvisioner]) -> None:
    fake = FakeGraph(reply(401), reply(200, PAIR))
    provisioner = own_identity(fake, closing)
    failure = await pod(provisioner)
    assert isinstance(failure, GraphFailure)
    assert failure.code == "Unauthorized"
    assert isinstance(await pod(provisioner), GraphAnswer)
    assert len(token_requests(identity)) == 1
    assert fake.bearers()[0] == fake.bearers()[1]


async def test_an_expired_token_with_a_credential_that_does_not_cache() -> None:
    credential = FakeCredential()
    expired = graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
    fake = FakeGraph(expired, reply(200, PAIR))
    provisioner = adapter(fake, credential)
    assert isinstance(await pod(provisioner), GraphFailure)
    assert isinstance(await pod(provisioner), GraphAnswer)
    assert credential.calls == [None, None], "a credential that already gives a new token is asked once"


# --- 2xx that is not a stringKeyStringValuePair -----------------------------------------------------------

HTML = "<!DOCTYPE html><html><body><h2>Our services aren't available right now</h2></body></html>"


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (reply(200, HTML, content_type="text/html"), "not JSON (Content-Type text/html)"),
        (reply(200, "OK", content_type="text/plain"), "not JSON (Content-Type text/plain)"),
        (reply(200, "", content_type=None), "with no body"),
        (reply(204, None), "with no body"),
        (reply(200, '{"key": 5, "value": {"a": [1, 2]}}'), "'key' that is a JSON number"),
        (reply(200, '{"key": "k", "value": {"a": [1, 2]}}'), "'value' that is a JSON object"),
        (reply(200, '{"key": "k", "value": [1]}'), "'value' that is a JSON array"),
        (reply(200, '{"key": true, "value": "v"}'), "'key' that is a JSON boolean"),
        (reply(200, '["key", "value"]'), "not a stringKeyStringValuePair"),
        (reply(200, '{"@odata.context": "x"}'), "not a stringKeyStringValuePair"),
        (reply(200, "[" * 10_000), "not JSON"),
    ],
)
async def test_an_answer_that_is_not_a_pair_is_unparseable_and_its_raw_text_is_kept(
    answer: httpx.Response, why: str
) -> None:
    raw = answer.content.decode()
    answer.headers["request-id"] = REQUEST_ID
    failure = await pod(adapter(FakeGraph(answer)))
    assert isinstance(failure, GraphFailure)
    assert (failure.http_status, failure.code, failure.request_id) == (
        answer.status_code,
        "UnparseableResponse",
        REQUEST_ID,
    )
    assert why in failure.message
    assert failure.raw_body == raw


async def test_raw_evidence_is_capped() -> None:
    failure = await pod(adapter(FakeGraph(reply(200, "x" * 100_000, content_type="text/plain"))))
    assert isinstance(failure, GraphFailure)
    assert failure.raw_body is not None
    assert failure.raw_body.startswith("x" * graph.RAW_BODY_LIMIT)
    assert failure.raw_body.endswith("[cut: 34464 more characters]")


async def test_null_key_or_value_is_an_answer_for_the_worker_to_judge() -> None:
    answer = await pod(adapter(FakeGraph(reply(200, {"key": None, "value": "log"}))))
    assert answer == GraphAnswer(None, "log", None)


# --- errors with Graph's JSON, or without -------------------------------------------------------------------


async def test_graph_error_json_gives_code_message_and_request_ids_from_the_body() -> None:
    body = {
        "error": {
            "code": "RequestParameterInvalid",
            "message": "However, the job does not include the rule.",
            "innerError": {"request-id": REQUEST_ID, "client-request-id": CLIENT_REQUEST_ID},
        }
    }
    failure = await pod(adapter(FakeGraph(reply(400, body))))
    assert failure == GraphFailure(
        400,
        "RequestParameterInvalid",
        "However, the job does not include the rule.",
        REQUEST_ID,
        None,
        CLIENT_REQUEST_ID,
    )


async def test_a_502_html_page_keeps_the_page() -> None:
    failure = await pod(adapter(FakeGraph(reply(502, HTML, content_type="text/html"))))
    assert isinstance(failure, GraphFailure)
    assert (failure.http_status, failure.code, failure.raw_body) == (502, None, HTML)


# --- the network ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectError("[Errno -2] Name or service not known"), "ConnectionError"),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "ConnectionError"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "ConnectionError"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "ConnectionError"),
        (httpx.ReadError("connection reset"), "ConnectionError"),
        (httpx.ConnectTimeout("timed out"), "Timeout"),
        (httpx.ReadTimeout("timed out"), "Timeout"),
        (RuntimeError("something nobody expected"), "UnexpectedError"),
    ],
)
async def test_network_failures_become_failures(error: Exception, code: str) -> None:
    for call in ("pod", "schema", "job"):
        provisioner = adapter(FakeGraph(error))
        if call == "pod":
            failure: Any = await pod(provisioner)
        elif call == "schema":
            failure = await provisioner.schema_rules(SP, JOB)
        else:
            failure = await provisioner.job_status(SP, JOB)
        assert isinstance(failure, GraphFailure), call
        assert (failure.http_status, failure.code) == (None, code)
        assert str(error) in failure.message
        assert type(error).__name__ in failure.message


# --- the managed identity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ClientAuthenticationError("Unexpected response from the identity endpoint"),
        CredentialUnavailableError("ManagedIdentityCredential authentication unavailable, no response from the IMDS"),
    ],
)
async def test_a_credential_error_is_managed_identity_unavailable_and_recovers(error: Exception) -> None:
    credential = FakeCredential()
    credential.fail = error
    fake = FakeGraph(reply(200, PAIR))
    provisioner = adapter(fake, credential)
    failure = await pod(provisioner)
    assert isinstance(failure, GraphFailure)
    assert (failure.http_status, failure.code) == (None, "ManagedIdentityUnavailable")
    assert f"AZURE_CLIENT_ID={CLIENT_ID}" in failure.message
    assert str(error.args[0]) in failure.message
    assert fake.requests == [], "no Graph call without a token"
    credential.fail = None
    assert isinstance(await pod(provisioner), GraphAnswer)


async def test_the_system_assigned_identity_is_named_when_no_client_id_is_set() -> None:
    credential = FakeCredential()
    credential.fail = ClientAuthenticationError("nope")
    settings = Settings(SETTINGS.storage, SETTINGS.graph_base_url, SETTINGS.graph_scope)
    failure = await adapter(FakeGraph(), credential, settings).job_status(SP, JOB)
    assert isinstance(failure, GraphFailure)
    assert "system-assigned managed identity (AZURE_CLIENT_ID is not set)" in failure.message


async def configure(emu: RunningEmulator, patch: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        (await client.post(f"{emu.base_url}/_emulator/config", json=patch)).raise_for_status()


async def test_app_service_400_for_an_unknown_identity_then_recovery(
    identity: RunningEmulator, closing: list[GraphProvisioner]
) -> None:
    await configure(identity, {"faults": [{"operation": "token", "kind": "noIdentity"}]})
    fake = FakeGraph(reply(200, PAIR))
    provisioner = own_identity(fake, closing)
    failure = await pod(provisioner)
    assert isinstance(failure, GraphFailure)
    assert failure.code == "ManagedIdentityUnavailable"
    assert f"AZURE_CLIENT_ID={CLIENT_ID}" in failure.message
    assert "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId." in (
        failure.message
    )
    assert failure.raw_body is not None
    assert json.loads(failure.raw_body)["statusCode"] == 400
    assert fake.requests == []
    # The identity is fixed (the fault is used up): the same adapter, no restart.
    assert isinstance(await pod(provisioner), GraphAnswer)
    assert [c["status"] for c in token_requests(identity)] == [400, 200]


async def test_identity_endpoint_500s_and_drops_fail_in_bounded_time(
    identity: RunningEmulator, closing: list[GraphProvisioner]
) -> None:
    provisioner = own_identity(FakeGraph(reply(200, PAIR)), closing)
    for fault in ({"status": 500, "times": 3}, {"kind": "drop", "times": 20}):
        await configure(identity, {"clearFaults": True, "faults": [{"operation": "token", **fault}]})
        started = time.monotonic()
        failure = await pod(provisioner)
        assert time.monotonic() - started < 30, "the identity endpoint's retries are bounded"
        assert isinstance(failure, GraphFailure)
        assert failure.code == "ManagedIdentityUnavailable"
    assert [c["status"] for c in token_requests(identity)][:3] == [500, 500, 500], "two retries after a 500"
    await configure(identity, {"clearFaults": True})
    assert isinstance(await pod(provisioner), GraphAnswer)


async def test_an_unreachable_identity_endpoint_then_recovery_without_restart(
    monkeypatch: pytest.MonkeyPatch, closing: list[GraphProvisioner], loopback: None
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    use_identity_endpoint(monkeypatch, f"http://127.0.0.1:{port}/msi/token", "adapter-secret")
    provisioner = own_identity(FakeGraph(reply(200, PAIR)), closing)
    failure = await pod(provisioner)
    assert isinstance(failure, GraphFailure)
    assert failure.code == "ManagedIdentityUnavailable"
    assert "AZURE_CLIENT_ID" in failure.message
    runner = web.AppRunner(create_app(EmulatorConfig(identity_header="adapter-secret")), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        assert isinstance(await pod(provisioner), GraphAnswer)
    finally:
        await runner.cleanup()


# --- the reads: schema and job status ---------------------------------------------------------------------

SCHEMA = {
    "id": "customappsso",
    "synchronizationRules": [
        {
            "id": RULE,
            "name": "USER_TO_SCIM",
            "metadata": [{"key": "supportsProvisionOnDemand", "value": "true"}],
            "objectMappings": [
                {"sourceObjectName": "User", "enabled": True},
                {"sourceObjectName": "Group", "enabled": False},
            ],
        },
        {"id": "", "name": "nameless"},
    ],
}
JOB_BODY = {"id": JOB, "status": {"code": "Quarantine", "quarantine": {"reason": "EncounteredQuarantineException"}}}


async def test_schema_rules_and_job_status() -> None:
    provisioner = adapter(FakeGraph(reply(200, SCHEMA), reply(200, JOB_BODY)))
    assert await provisioner.schema_rules(SP, JOB) == [RuleInfo(RULE, "USER_TO_SCIM", True, ("User",))]
    assert await provisioner.job_status(SP, JOB) == JobStatus("Quarantine", "EncounteredQuarantineException")


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (reply(200, HTML, content_type="text/html"), "UnparseableResponse", 200),
        (reply(200, "[1, 2]"), "UnparseableResponse", 200),
        (reply(204), "UnparseableResponse", 204),
        (reply(200, '{"synchronizationRules": 7, "status": "Active"}'), "UnparseableResponse", 200),
        (reply(200, '{"synchronizationRules": [7], "status": {"code": 7}}'), "UnparseableResponse", 200),
        (
            reply(200, '{"synchronizationRules": [{"metadata": {}}], "status": {"quarantine": []}}'),
            "UnparseableResponse",
            200,
        ),
        (reply(401), "Unauthorized", 401),
        (graph_error(404, "UnknownError", "No HTTP resource was found"), "UnknownError", 404),
    ],
)
async def test_the_reads_never_raise(answer: httpx.Response, code: str, status: int) -> None:
    for read in ("schema", "job"):
        copy = httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)
        provisioner = adapter(FakeGraph(copy))
        failure: Any = await (
            provisioner.schema_rules(SP, JOB) if read == "schema" else provisioner.job_status(SP, JOB)
        )
        assert isinstance(failure, GraphFailure), (read, failure)
        assert (failure.http_status, failure.code) == (status, code), read


# --- off the event loop -----------------------------------------------------------------------------------


async def test_the_client_is_built_once_even_when_calls_race() -> None:
    fake = FakeGraph(*[reply(200, PAIR) for _ in range(5)])
    provisioner = adapter(fake)
    answers = await asyncio.gather(*(pod(provisioner) for _ in range(5)))
    assert all(isinstance(a, GraphAnswer) for a in answers)
    client = provisioner._client
    assert client is not None
    await provisioner.warm()
    assert provisioner._client is client


# --- headers and Retry-After, pure ------------------------------------------------------------------------


def test_header_value_reads_every_shape_the_sdk_hands_over() -> None:
    collection = HeadersCollection()
    collection.add("Retry-After", "120")
    collection.add("request-id", REQUEST_ID)
    shapes: list[Any] = [
        httpx.Headers({"Retry-After": "120", "request-id": REQUEST_ID}),
        collection,
        {"retry-after": "120", "Request-Id": REQUEST_ID},
        {"retry-after": ["120"], "request-id": {REQUEST_ID}},
    ]
    for headers in shapes:
        assert graph.header_value(headers, "Retry-After") == "120", headers
        assert graph.header_value(headers, "request-id") == REQUEST_ID, headers
        assert graph.header_value(headers, "client-request-id") is None
    assert graph.header_value(None, "request-id") is None
    assert graph.header_value(httpx.Headers([("x", "a"), ("x", "b")]), "X") == "a, b"


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_parse_retry_after_examples() -> None:
    assert graph.parse_retry_after("10") == 10.0
    assert graph.parse_retry_after(" 120 ") == 120.0
    assert graph.parse_retry_after("2.128") == 2.128
    assert graph.parse_retry_after("0") == 0.0
    assert graph.parse_retry_after("Sat, 01 Mar 2025 12:00:30 GMT", NOW) == 30.0
    assert graph.parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", NOW) == 0.0
    for bad in (None, "", " ", "-1", "1e3", "+5", "10s", "\u0661\u0660", "nan", "inf", "1_0", ".5", "Sat, 99 Foo"):
        assert graph.parse_retry_after(bad, NOW) is None, bad


@given(st.integers(min_value=0, max_value=10**12))
def test_delta_seconds_round_trip(seconds: int) -> None:
    assert graph.parse_retry_after(str(seconds)) == float(seconds)


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_fractional_seconds_round_trip(whole: int, thousandths: int) -> None:
    text = f"{whole}.{thousandths:03d}"
    assert graph.parse_retry_after(text) == float(text)


@given(st.integers(min_value=-(10**8), max_value=10**8))
def test_http_dates_are_seconds_from_now(offset: int) -> None:
    when = NOW + timedelta(seconds=offset)
    assert graph.parse_retry_after(format_datetime(when, usegmt=True), NOW) == max(0.0, float(offset))


@given(st.text())
def test_any_text_gives_none_or_a_finite_non_negative_number(text: str) -> None:
    parsed = graph.parse_retry_after(text, NOW)
    assert parsed is None or (parsed >= 0 and parsed == parsed and parsed != float("inf"))


# --- decisions and advice per error class -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(400, "permanent"), (401, "permanent"), (403, "permanent"),
                                              (404, "permanent"), (409, "permanent"), (429, "throttled"),
                                              (500, "transient"), (503, "transient"), (None, "transient")])  # fmt: skip
def test_each_error_class_has_a_final_decision_and_advice(status: int | None, kind: str) -> None:
    assert retry.classify(status) == kind
    advice = graph_errors.recommended_action(status, None)
    if status in (401, 403, 404, 409, 429, 500, 503, None):
        assert advice
    if status == 403:
        assert advice is not None
        assert "Synchronization.ReadWrite.All" in advice
        assert "Application.ReadWrite.OwnedBy" in advice


# --- request body and rule choice -------------------------------------------------------------------------


def test_request_body_uses_the_sdk_models_and_passes_links_through() -> None:
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter

    subject = {
        "objectId": "g1",
        "objectTypeName": "Group",
        "links": {"members": [{"objectId": "u1", "objectTypeName": "User"}],
                  "manager": {"objectId": "m1", "objectTypeName": "User"}},
    }  # fmt: skip
    body = request_body("r#V2", subject)
    writer = JsonSerializationWriter()
    writer.write_object_value(None, body)

    sent = json.loads(writer.get_serialized_content())
    assert sent == {"parameters": [{"ruleId": "r#V2", "subjects": [subject]}]}


RULES = [
    RuleInfo("r-user", "USER_TO_USER", True, ("User",)),
    RuleInfo("r-group#V2", "GROUP", True, ("Group",)),
    RuleInfo("r-off", "NO_OD", False, ("Worker",)),
]


def test_choose_rule() -> None:
    assert choose_rule(RULES, "User") == RULES[0]
    assert choose_rule(RULES, "user") == RULES[0]
    assert choose_rule(RULES, "Group") == RULES[1]
    worker = choose_rule(RULES, "Worker")
    assert isinstance(worker, NoRule)
    assert "Worker" in worker.reason
    assert isinstance(choose_rule([RULES[2]], "Worker"), NoRule)
    ambiguous = choose_rule([*RULES, RuleInfo("r-user-2", "OTHER", True, ("User",))], "User")
    assert isinstance(ambiguous, NoRule)
    assert "More than one" in ambiguous.reason


def test_ttl_cache_expires() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, clock=lambda: now[0])
    cache.put("k", 1)
    assert cache.get("k") == 1
    now[0] = 10.0
    assert cache.get("k") is None


# --- the send deadline ------------------------------------------------------------------------------------


async def test_a_request_past_its_send_deadline_is_not_sent_and_says_so() -> None:
    fake = FakeGraph(reply(200, PAIR), reply(200, PAIR), reply(200, PAIR))
    provisioner = adapter(fake)
    token = send_deadline.SEND_BY.set(time.time() - 0.01)  # the slot's lateness ran out before the send
    try:
        missed = await pod(provisioner)
    finally:
        send_deadline.SEND_BY.reset(token)
    assert isinstance(missed, GraphFailure)
    assert (missed.http_status, missed.code) == (None, send_deadline.SLOT_MISSED)
    assert fake.requests == [], "nothing reached the network"
    token = send_deadline.SEND_BY.set(time.time() + 60)
    try:
        assert isinstance(await pod(provisioner), GraphAnswer), "in time: sent"
    finally:
        send_deadline.SEND_BY.reset(token)
    assert isinstance(await pod(provisioner), GraphAnswer), "no deadline (schema, job status reads): sent"
    assert len(fake.requests) == 2
