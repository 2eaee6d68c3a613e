"""The Graph emulator over real HTTP on loopback: tokens, auth, provisionOnDemand semantics, limits, faults."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from emulator.config import EmulatorConfig
from emulator.testing import RunningEmulator, running_emulator
from tests.paths import EMULATOR_FIXTURES, SEEDS

SEED_FILE = SEEDS / "provisionondemand-beta.md"
FIXTURES = EMULATOR_FIXTURES

SP1, JOB1, RULE1 = (
    "c8c95753-f628-48e1-9fab-76c2d4cf624c",
    "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
    "ea807875-5618-4f0a-9125-0b46a05298ca",
)
SP2, JOB2, RULE2 = (
    "3e916d82-dd59-4944-824d-93092908fd8d",
    "264ea562-28cd-42b1-93e0-8de1f0560581",
    "6c409270-f78a-4bc6-af23-7cf3ab6482fe",
)
SP3, JOB3, RULE3 = (
    "4e116d82-dd59-4944-824d-93091408fd8d",
    "664ea562-18cd-42bb-33e0-8de1f0560581",
    "33f7c90d-bf71-41b1-bda6-aaf0ddbee5d8#V2",
)
SP_WD, JOB_WD, RULE_WD = (
    "9d5c1f3e-7b2a-4c8d-9e1f-0a2b3c4d5e6f",
    "Workday2AD.2f3e4d5c6b7a48999a0b1c2d3e4f5061.8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d",
    "c4f1a2b3-5d6e-4f70-8a9b-0c1d2e3f4a5b",
)
SP_XT, JOB_XT, RULE_XT = (
    "2b7e4f1a-3c5d-4e6f-8a9b-1c2d3e4f5a6b",
    "Azure2Azure.5c1e6a2f0b9d4e3a8f472d6b1c9e7a10.6d7e8f9a-0b1c-4d2e-9f3a-4b5c6d7e8f90",
    "4e8d2f1c-6a3b-4c5d-9e7f-8a1b2c3d4e5f",
)
SP_Q, JOB_Q = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "scim.quarantined.0a1b2c3d4e5f"
FRESH_USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
UNASSIGNED_USER = "d15ab1ed-0000-4000-8000-000000000001"
COHORT_GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"
COHORT = [f"c0ffee00-0000-4000-8000-0000000000{n:02d}" for n in range(1, 13)]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Client:
    """A thin HTTP client for the emulator that holds a token from its identity endpoint."""

    def __init__(self, running: RunningEmulator, session: aiohttp.ClientSession) -> None:
        self.running = running
        self.base = running.base_url
        self.session = session
        self.token = ""

    async def fetch_token(self, client_id: str | None = None) -> str:
        params = {"api-version": "2019-08-01", "resource": self.base}
        if client_id:
            params["client_id"] = client_id
        async with self.session.get(
            f"{self.base}/msi/token", params=params, headers={"X-IDENTITY-HEADER": self.running.identity_header}
        ) as resp:
            assert resp.status == 200, await resp.text()
            token = str((await resp.json())["access_token"])
        return token

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        all_headers = {"Authorization": f"Bearer {self.token if token is None else token}", **(headers or {})}
        if token == "":
            del all_headers["Authorization"]
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        async with self.session.request(method, f"{self.base}{path}", data=data, headers=all_headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None), dict(resp.headers)

    async def pod(
        self, sp: str, job: str, body: Any, version: str = "beta", **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        path = f"/{version}/servicePrincipals/{sp}/synchronization/jobs/{job}/provisionOnDemand"
        return await self.request("POST", path, body, **kwargs)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, f"{self.base}/_emulator/{path}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


def pod_body(rule_id: str, object_id: str, type_name: str = "User", members: list[str] | None = None) -> dict[str, Any]:
    subject: dict[str, Any] = {"objectId": object_id, "objectTypeName": type_name}
    if members is not None:
        subject["links"] = {"members": [{"objectId": m, "objectTypeName": "User"} for m in members]}
    return {"parameters": [{"ruleId": rule_id, "subjects": [subject]}]}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    config = EmulatorConfig(identity_header="test-secret", rate_limit="1000/10s")
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        c = Client(running, session)
        c.token = await c.fetch_token()
        yield c


def seed_examples() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(url path, request body, response body) of the three examples of Graph's provisionOnDemand reference page.

    The page is vendored verbatim under ``tests/fixtures/seeds/`` (its source is named in the README there).
    """
    text = SEED_FILE.read_text()
    requests = re.findall(
        r"``` http\nPOST https://graph\.microsoft\.com(\S+)\nContent-Type: application/json\n\n(.*?)\n```", text, re.S
    )
    responses = re.findall(r"```\nHTTP/1\.1 200 OK\nContent-Type: application/json\n\n(.*?)\n```", text, re.S)
    assert len(requests) == len(responses) == 3
    return [(path, json.loads(req), json.loads(resp)) for (path, req), resp in zip(requests, responses, strict=True)]


def fixture(n: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"seed003-example{n}.json").read_text())
    return data


# --- identity -------------------------------------------------------------------------------------------


async def test_health(client: Client) -> None:
    assert await client.control("GET", "health") == {"status": "ok"}


async def test_token_needs_the_identity_header(client: Client) -> None:
    url = f"{client.base}/msi/token?api-version=2019-08-01&resource=https://graph.microsoft.com"
    async with client.session.get(url) as resp:
        assert resp.status == 400
        assert "X-IDENTITY-HEADER" in (await resp.json())["message"]
    async with client.session.get(url, headers={"X-IDENTITY-HEADER": "wrong"}) as resp:
        assert resp.status == 401
        assert (await resp.json())["statusCode"] == 401
    async with client.session.get(url, headers={"X-IDENTITY-HEADER": "test-secret"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "https://graph.microsoft.com"
    assert int(body["expires_on"]) > time.time() + 3600
    assert body["access_token"].count(".") == 2
    status, _, _ = await client.request(
        "GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}", token=body["access_token"]
    )
    assert status == 200


async def test_token_carries_the_requested_client_id(client: Client) -> None:
    token = await client.fetch_token(client_id="11111111-2222-3333-4444-555555555555")
    await client.request("GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}", token=token)
    calls = (await client.control("GET", "calls?operation=getJob"))["calls"]
    assert calls[-1]["clientId"] == "11111111-2222-3333-4444-555555555555"
    assert calls[-1]["authorization"] == "Bearer"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "Access token is empty."),
        ("not-a-jwt", "Access token validation failure"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl", "Access token validation failure"),
    ],
)
async def test_graph_refuses_missing_or_bad_tokens(client: Client, token: str, message: str) -> None:
    status, body, headers = await client.pod(
        SP1, JOB1, pod_body(RULE1, FRESH_USER), token=token, headers={"client-request-id": "my-id"}
    )
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert body["error"]["message"].startswith(message)
    inner = body["error"]["innerError"]
    assert inner["client-request-id"] == "my-id" == headers["client-request-id"]
    assert inner["request-id"] == headers["request-id"]
    assert GUID.match(inner["request-id"])
    assert set(inner) == {"date", "request-id", "client-request-id"}
    calls = (await client.control("GET", "calls?operation=provisionOnDemand"))["calls"]
    assert calls[-1]["authorization"] == ("missing" if token == "" else "invalid")


async def test_tampered_and_expired_tokens_are_refused(client: Client) -> None:
    tampered = client.token[:-2] + ("AA" if not client.token.endswith("AA") else "BB")
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER), token=tampered)
    assert status == 401
    assert "Signature validation failed" in body["error"]["message"]
    await client.control("POST", "config", {"tokenLifetimeSeconds": 0})
    expired = await client.fetch_token()
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER), token=expired)
    assert status == 401
    assert body["error"]["message"] == "Access token has expired or is not yet valid."


async def test_wrong_audience_is_refused(client: Client) -> None:
    async with client.session.get(
        f"{client.base}/msi/token",
        params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": "test-secret"},
    ) as resp:
        token = (await resp.json())["access_token"]
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER), token=token)
    assert status == 401
    assert body["error"]["message"] == "Access token validation failure. Invalid audience."


# --- the seed examples, verbatim ------------------------------------------------------------------------


def test_fixtures_are_the_seed_responses_verbatim() -> None:
    examples = seed_examples()
    for n, (_, _, response) in enumerate(examples, 1):
        assert fixture(n) == response
        for field in ("@odata.context", "key", "value"):
            assert fixture(n)[field] == response[field]


@pytest.mark.parametrize("n", [1, 2, 3])
async def test_seed_requests_return_the_seed_bodies(client: Client, n: int) -> None:
    path, request, _ = seed_examples()[n - 1]
    status, body, headers = await client.request("POST", path, request)
    assert status == 200
    expected = fixture(n)
    assert body["@odata.context"] == expected["@odata.context"]
    assert body["key"] == expected["key"]
    assert body["value"] == expected["value"]
    assert headers["Content-Type"].startswith("application/json")
    assert GUID.match(headers["request-id"])


async def test_seed_example_1_then_generated_redundant_export(client: Client) -> None:
    user = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
    first = await client.pod(SP1, JOB1, pod_body(RULE1, user))
    assert first[1]["value"] == fixture(1)["value"]
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, user))
    assert status == 200
    assert json.loads(body["key"])["details"]["errorCode"] == "RedundantExport"
    log = json.loads(body["value"])
    assert log["action"] == "Other"
    assert log["targetIdentity"]["id"] == "52507a19-96ec-4e73-9250-3e65ffd2d926"


# --- provisioning semantics -----------------------------------------------------------------------------


async def test_create_then_redundant_export(client: Client) -> None:
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    assert status == 200
    assert body["@odata.context"] == (
        "https://graph.microsoft.com/beta/$metadata#microsoft.graph.stringKeyStringValuePair"
    )
    assert json.loads(body["key"]) == {"result": "Success", "details": {}}
    log = json.loads(body["value"])
    assert log["action"] == "Create"
    assert GUID.match(log["changeId"])
    assert [s["type"] for s in log["provisioningSteps"]] == ["Import", "Scoping", "Matching", "Export"]
    assert log["reportableIdentifier"] == "fresh.start@contoso.com"
    assert GUID.match(log["targetIdentity"]["id"])
    assert log["statusInfo"] == {"status": "Success"}
    target_id = log["targetIdentity"]["id"]
    state = await client.control("GET", "state")
    assert state["jobs"][f"{SP1}/{JOB1}"]["inTarget"][FRESH_USER] == target_id

    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    assert status == 200
    assert json.loads(body["key"]) == {
        "result": "Skipped",
        "details": {
            "errorCode": "RedundantExport",
            "errorMessage": "The state of the user in both the source and target systems already match.",
        },
    }
    log = json.loads(body["value"])
    assert log["action"] == "Other"
    assert log["targetIdentity"]["id"] == target_id
    skip = log["provisioningSteps"][-1]
    assert skip["name"] == "EntrySynchronizationSkip"
    assert skip["details"] == {"SkipReason": "RedundantExport"}


async def test_group_assignment_entitles_members(client: Client) -> None:
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, COHORT[7]))
    assert status == 200
    assert json.loads(body["key"])["result"] == "Success"
    assert json.loads(body["value"])["reportableIdentifier"] == "cohort.user08@contoso.com"


async def test_not_assigned_is_skipped_not_effectively_entitled(client: Client) -> None:
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER))
    assert status == 200
    key = json.loads(body["key"])
    assert key["result"] == "Skipped"
    assert key["details"]["errorCode"] == "NotEffectivelyEntitled"
    log = json.loads(body["value"])
    assert log["provisioningSteps"][-1]["details"] == {"SkipReason": "NotEffectivelyEntitled"}
    assert log["statusInfo"]["status"] == "Skipped"


async def test_unknown_subject_is_a_failure(client: Client) -> None:
    missing = str(uuid.uuid4())
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, missing))
    assert status == 200
    key = json.loads(body["key"])
    assert key["result"] == "Failure"
    assert key["details"]["errorCode"] == "EntryNotFound"
    assert missing in key["details"]["errorMessage"]
    log = json.loads(body["value"])
    assert log["statusInfo"]["status"] == "Failure"
    assert log["statusInfo"]["errorCode"] == "EntryNotFound"


async def test_group_subject_returns_empty_log(client: Client) -> None:
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, COHORT_GROUP, "Group", COHORT[:5]))
    assert status == 200
    assert body["key"] == '{"result":"Success","details":{}}'
    assert body["value"] == "{}"
    state = await client.control("GET", "state")
    in_target = state["jobs"][f"{SP1}/{JOB1}"]["inTarget"]
    assert COHORT_GROUP in in_target
    assert all(m in in_target for m in COHORT[:5])
    assert COHORT[5] not in in_target


@pytest.mark.parametrize("rule_id", ["00000000-0000-0000-0000-000000000000", "", None, RULE1.upper()])
async def test_wrong_rule_id_is_request_parameter_invalid(client: Client, rule_id: str | None) -> None:
    body = pod_body(RULE1, FRESH_USER)
    if rule_id is None:
        del body["parameters"][0]["ruleId"]
    else:
        body["parameters"][0]["ruleId"] = rule_id
    status, error, _ = await client.pod(SP1, JOB1, body)
    assert status == 400
    assert error["error"]["code"] == "RequestParameterInvalid"
    assert error["error"]["message"] == (
        f"The request identified this synchronization job: {JOB1}.  The request also identified this "
        f"synchronization rule: {rule_id or ''}.  However, the job does not include the rule."
    )


async def test_more_than_five_members_is_refused(client: Client) -> None:
    status, error, _ = await client.pod(SP1, JOB1, pod_body(RULE1, COHORT_GROUP, "Group", COHORT[:6]))
    assert status == 400
    assert error["error"]["code"] == "BadRequest"
    assert "5 members" in error["error"]["message"]


async def test_one_subject_and_one_parameter_per_call(client: Client) -> None:
    body = pod_body(RULE1, FRESH_USER)
    body["parameters"][0]["subjects"].append({"objectId": COHORT[0], "objectTypeName": "User"})
    status, error, _ = await client.pod(SP1, JOB1, body)
    assert status == 400
    assert error["error"]["code"] == "BadRequest"
    assert "one subject" in error["error"]["message"]
    body = pod_body(RULE1, FRESH_USER)
    body["parameters"].append(pod_body(RULE1, COHORT[0])["parameters"][0])
    status, error, _ = await client.pod(SP1, JOB1, body)
    assert status == 400
    assert error["error"]["code"] == "BadRequest"


async def test_object_type_name_is_case_sensitive(client: Client) -> None:
    status, error, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER, "user"))
    assert status == 400
    assert error["error"]["code"] == "RequestParameterInvalid"
    assert "case-sensitive" in error["error"]["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"parameters": "x"}', b"[]"])
async def test_malformed_bodies_are_bad_requests(client: Client, raw: bytes) -> None:
    status, error, headers = await client.pod(SP1, JOB1, None, raw=raw)
    assert status == 400
    assert error["error"]["code"] == "BadRequest"
    assert error["error"]["innerError"]["request-id"] == headers["request-id"]


async def test_unknown_service_principal_or_job_is_404(client: Client) -> None:
    status, error, _ = await client.pod(str(uuid.uuid4()), JOB1, pod_body(RULE1, FRESH_USER))
    assert status == 404
    assert error["error"]["code"] == "Request_ResourceNotFound"
    status, error, _ = await client.pod(SP1, "nope", pod_body(RULE1, FRESH_USER))
    assert status == 404
    assert error["error"]["code"] == "ResourceNotFound"
    status, error, headers = await client.request("GET", "/beta/users")
    assert status == 400
    assert "request-id" in headers


async def test_v1_and_beta_both_answer(client: Client) -> None:
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER), version="v1.0")
    assert status == 200
    assert body["@odata.context"].startswith("https://graph.microsoft.com/v1.0/$metadata#")
    status, body, _ = await client.pod(
        SP1, JOB1, pod_body(RULE1, "9bb0f679-a883-4a6f-8260-35b491b8b8c8"), version="v1.0"
    )
    assert body["@odata.context"] == fixture(1)["@odata.context"].replace("/beta/", "/v1.0/")
    assert body["key"] == fixture(1)["key"]
    for version in ("beta", "v1.0"):
        status, job, _ = await client.request("GET", f"/{version}/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}")
        assert status == 200
        assert job["id"] == JOB1


async def test_workday_workers(client: Client) -> None:
    status, body, _ = await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21001", "Worker"))
    assert status == 200
    assert json.loads(body["key"])["result"] == "Success"
    assert json.loads(body["value"])["reportableIdentifier"] == "21001"
    status, body, _ = await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21003", "Worker"))
    assert json.loads(body["key"])["details"]["errorCode"] == "RedundantExport"
    status, body, _ = await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21009", "Worker"))
    assert json.loads(body["key"])["details"]["errorCode"] == "NotEffectivelyEntitled"
    status, body, _ = await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21001", "worker"))
    assert status == 400


async def test_ad_cloud_sync_create(client: Client) -> None:
    dn = "CN=NewHire1,OU=Staff,DC=corp,DC=chicago,DC=com"
    status, body, _ = await client.pod(SP2, JOB2, pod_body(RULE2, dn, "user"))
    assert status == 200
    assert body["@odata.context"] == fixture(2)["@odata.context"]
    log = json.loads(body["value"])
    assert log["action"] == "Create"
    assert log["reportableIdentifier"] == "newhire1@chicago.com"
    assert log["targetIdentity"]["type"] == "User"


async def test_status_info_type_name_shape(client: Client) -> None:
    status, body, _ = await client.pod(SP_XT, JOB_XT, pod_body(RULE_XT, "b2b0c0de-0000-4000-8000-000000000001"))
    assert status == 200
    assert body["key"] == "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo"
    value = json.loads(body["value"])
    assert isinstance(value, list)
    assert value[0]["statusInfo"]["status"] == "Success"


async def test_get_job_and_schema(client: Client) -> None:
    status, job, _ = await client.request("GET", f"/beta/servicePrincipals/{SP3}/synchronization/jobs/{JOB3}")
    assert status == 200
    assert job["status"]["code"] == "Active"
    assert job["templateId"] == "aWSSingleSignon"
    status, schema, _ = await client.request("GET", f"/beta/servicePrincipals/{SP3}/synchronization/jobs/{JOB3}/schema")
    assert status == 200
    rule = schema["synchronizationRules"][0]
    assert rule["id"] == RULE3
    assert {"key": "supportsProvisionOnDemand", "value": "true"} in rule["metadata"]
    assert {m["sourceObjectName"] for m in rule["objectMappings"]} == {"User", "Group"}
    assert schema["directories"] == []
    status, job, _ = await client.request("GET", f"/beta/servicePrincipals/{SP_Q}/synchronization/jobs/{JOB_Q}")
    assert job["status"]["code"] == "Quarantine"
    assert job["status"]["quarantine"]["reason"] == "EncounteredQuarantineException"


async def test_job_status_override_and_reset(client: Client) -> None:
    config = await client.control("POST", "config", {"jobStatus": {f"{SP1}/{JOB1}": "Paused"}})
    assert config["jobStatus"] == {f"{SP1}/{JOB1}": {"code": "Paused"}}
    _, job, _ = await client.request("GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}")
    assert job["status"]["code"] == "Paused"
    await client.control("POST", "reset")
    _, job, _ = await client.request("GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}")
    assert job["status"]["code"] == "Active"


# --- rate limit -----------------------------------------------------------------------------------------


async def test_rate_limit_429_and_recovery(client: Client) -> None:
    await client.control("POST", "config", {"rateLimit": "2/300ms"})
    body = pod_body(RULE1, UNASSIGNED_USER)
    assert (await client.pod(SP1, JOB1, body))[0] == 200
    assert (await client.pod(SP1, JOB1, body))[0] == 200
    await asyncio.sleep(0.1)
    status, error, headers = await client.pod(SP1, JOB1, body)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert error["error"]["code"] == "TooManyRequests"
    # Both admitted calls leave the window at ~0.3 s; the throttled one at 0.1 s must not have taken budget.
    await asyncio.sleep(0.25)
    assert (await client.pod(SP1, JOB1, body))[0] == 200
    assert (await client.pod(SP1, JOB1, body))[0] == 200
    calls = (await client.control("GET", "calls?operation=provisionOnDemand"))["calls"]
    assert [c["throttled"] for c in calls] == [False, False, True, False, False]
    assert [c["status"] for c in calls] == [200, 200, 429, 200, 200]
    # GET job is not rate limited.
    status, _, _ = await client.request("GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}")
    assert status == 200


async def test_rate_limit_job_scope(client: Client) -> None:
    await client.control("POST", "config", {"rateLimit": "1/10s", "rateScope": "job"})
    assert (await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER)))[0] == 200
    status, _, headers = await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER))
    assert status == 429
    assert 9 <= int(headers["Retry-After"]) <= 10
    assert (await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21009", "Worker")))[0] == 200
    await client.control("POST", "config", {"rateScope": "tenant"})
    assert (await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER)))[0] == 200
    assert (await client.pod(SP_WD, JOB_WD, pod_body(RULE_WD, "21009", "Worker")))[0] == 429


# --- faults, reset, control API -------------------------------------------------------------------------


async def test_status_faults_then_success(client: Client) -> None:
    await client.control(
        "POST",
        "config",
        {"faults": [{"operation": "provisionOnDemand", "status": 503, "times": 2, "retryAfter": 1}]},
    )
    for _ in range(2):
        status, error, headers = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert error["error"]["code"] == "ServiceUnavailable"
        assert set(error["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    status, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    assert status == 200
    assert json.loads(body["key"])["result"] == "Success"
    calls = (await client.control("GET", "calls"))["calls"]
    assert [c["fault"] for c in calls if c["operation"] == "provisionOnDemand"] == ["status", "status", None]


async def test_429_storm_and_per_operation_faults(client: Client) -> None:
    await client.control(
        "POST",
        "config",
        {
            "faults": [
                {"operation": "getJob", "status": 500},
                {"operation": "provisionOnDemand", "kind": "429storm", "times": 2},
            ]
        },
    )
    job_path = f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}"
    assert (await client.request("GET", job_path))[0] == 500
    assert (await client.request("GET", job_path))[0] == 200
    for _ in range(2):
        status, error, headers = await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER))
        assert (status, error["error"]["code"], headers["Retry-After"]) == (429, "TooManyRequests", "1")
    assert (await client.pod(SP1, JOB1, pod_body(RULE1, UNASSIGNED_USER)))[0] == 200
    assert (await client.control("GET", "config"))["faults"] == []


async def test_drop_and_slow_faults(client: Client) -> None:
    await client.control(
        "POST",
        "config",
        {
            "faults": [
                {"operation": "provisionOnDemand", "kind": "drop", "times": 1},
                {"operation": "provisionOnDemand", "kind": "slow", "delayMs": 300},
            ]
        },
    )
    with pytest.raises(aiohttp.ClientError):
        await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    started = time.monotonic()
    status, _, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    assert status == 200
    assert time.monotonic() - started >= 0.29
    # A dropped call did nothing: the user is created by the slow call, not before.
    calls = (await client.control("GET", "calls?operation=provisionOnDemand"))["calls"]
    assert [(c["fault"], c["status"]) for c in calls] == [("drop", None), ("slow", 200)]


async def test_token_fault(client: Client) -> None:
    await client.control("POST", "config", {"faults": [{"operation": "token", "status": 503, "retryAfter": 2}]})
    async with client.session.get(
        f"{client.base}/msi/token",
        params={"api-version": "2019-08-01", "resource": client.base},
        headers={"X-IDENTITY-HEADER": "test-secret"},
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "2"
    assert await client.fetch_token()


async def test_latency(client: Client) -> None:
    await client.control("POST", "config", {"latencyMs": 150})
    started = time.monotonic()
    await client.request("GET", f"/beta/servicePrincipals/{SP1}/synchronization/jobs/{JOB1}")
    assert time.monotonic() - started >= 0.14


async def test_reset_restores_the_tenant_but_keeps_tokens(client: Client) -> None:
    seed_user = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
    await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    await client.pod(SP1, JOB1, pod_body(RULE1, seed_user))
    await client.control("POST", "config", {"faults": [{"status": 500, "times": 5}]})
    assert (await client.control("POST", "reset")) == {"status": "reset"}
    assert (await client.control("GET", "calls"))["calls"] == []
    assert (await client.control("GET", "config"))["faults"] == []
    _, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER))
    assert json.loads(body["key"])["result"] == "Success"
    _, body, _ = await client.pod(SP1, JOB1, pod_body(RULE1, seed_user))
    assert body["value"] == fixture(1)["value"]
    calls = (await client.control("GET", "calls"))["calls"]
    assert [c["seq"] for c in calls] == [1, 2]


async def test_call_log_shape_and_no_tokens(client: Client) -> None:
    await client.pod(SP1, JOB1, pod_body(RULE1, FRESH_USER), headers={"client-request-id": "abc"})
    await client.pod(SP1, JOB1, None, raw=b"not json")
    dump = await client.control("GET", "calls")
    text = json.dumps(dump)
    assert client.token not in text
    assert client.token.split(".")[2] not in text
    calls = [c for c in dump["calls"] if c["operation"] == "provisionOnDemand"]
    first = calls[0]
    assert {
        "seq",
        "time",
        "operation",
        "method",
        "path",
        "apiVersion",
        "authorization",
        "clientId",
        "body",
        "status",
        "throttled",
        "requestId",
    } <= set(first)
    assert first["method"] == "POST"
    assert first["apiVersion"] == "beta"
    assert first["authorization"] == "Bearer"
    assert first["clientId"] == "7f3e2a1b-9c8d-4e6f-a5b4-3c2d1e0f9a8b"
    assert first["body"] == pod_body(RULE1, FRESH_USER)
    assert first["status"] == 200
    assert first["throttled"] is False
    assert calls[1]["body"] == "not json"
    assert calls[1]["status"] == 400
    tokens = (await client.control("GET", "calls?operation=token"))["calls"]
    assert tokens
    assert all(c["operation"] == "token" for c in tokens)


async def test_bad_config_changes_nothing(client: Client) -> None:
    for patch in (
        {"rateLimit": "fast"},
        {"rateScope": "app"},
        {"faults": [{"operation": "nope"}]},
        {"jobStatus": {"x/y": "Paused"}},
        {"bogus": 1},
    ):
        async with client.session.post(f"{client.base}/_emulator/config", json=patch) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    config = await client.control("GET", "config")
    assert config["rateLimit"] == "1000/10s"
    assert config["rateScope"] == "tenant"
    assert config["faults"] == []


async def test_answer_fault_replaces_only_the_outcome() -> None:
    """An ``answer`` fault gives a scripted 200 after the normal checks (so a bad token still gets 401)."""
    from emulator.config import EmulatorConfig
    from emulator.testing import running_emulator

    async with running_emulator(EmulatorConfig(identity_header="h")) as emu:
        import httpx

        async with httpx.AsyncClient() as client:
            await client.post(
                f"{emu.base_url}/_emulator/config",
                json={"faults": [{"kind": "answer", "key": "garbage", "value": None}]},
            )
            url = (
                f"{emu.base_url}/beta/servicePrincipals/c8c95753-f628-48e1-9fab-76c2d4cf624c/synchronization/jobs/"
                "3f7565a3-fde6-4e4d-bda8-1bb70aba3612/provisionOnDemand"
            )
            body = {"parameters": [{"ruleId": "ea807875-5618-4f0a-9125-0b46a05298ca",
                                    "subjects": [{"objectId": "e1a2b3c4-0001-4a5b-8c6d-000000000001",
                                                  "objectTypeName": "User"}]}]}  # fmt: skip
            unauthenticated = await client.post(url, json=body)
            assert unauthenticated.status_code == 401
            token = (
                await client.get(
                    emu.token_endpoint,
                    params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
                    headers={"X-IDENTITY-HEADER": "h"},
                )
            ).json()["access_token"]
            answered = await client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert answered.status_code == 200
            assert answered.json()["key"] == "garbage"
            assert answered.json()["value"] is None
            normal = await client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
            assert "Success" in normal.json()["key"]
