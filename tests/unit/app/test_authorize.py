"""The role check at the top of every route: AUTH_MODE=entra reads the platform's principal, keys ignores it.

Runs the real handlers of shared/triggers/http_api.py against in-memory adapters, so a route that forgot its
check, or a principal that does not reach the ledger as ``requestedBy``, fails here.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from shared.contract.principal import OPERATE, SUBMIT, Principal
from shared.core.records import RequestRecord
from shared.triggers import auth, http_api
from tests.unit.app.test_http_api import GRAPH_URL, JOB, SP, USER, FakeLedger, get, post, problem, runtime
from tests.unit.app.test_principal import OID, platform_headers

BODY = {"target": "scim", "subjects": [USER]}
URL = "http://h/api/provision"


def ledger_row(rt: Any, request_id: str) -> RequestRecord:
    ledger: FakeLedger = rt.ledger
    return ledger.rows[request_id][0]


def refused(response: func.HttpResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_body()
    return problem(response)


async def test_with_keys_principal_headers_are_never_read_so_a_forged_one_records_nothing() -> None:
    rt = runtime()  # AUTH_MODE unset: keys
    answer = await http_api.provision(post(URL, BODY, platform_headers(OPERATE, name="forged@example")), rt)
    assert answer.status_code == 202
    assert ledger_row(rt, json.loads(answer.get_body())["requestId"]).requested_by is None


async def test_entra_without_a_principal_is_a_401_asking_for_a_bearer_token() -> None:
    rt = runtime(AUTH_MODE="entra")
    answer = await http_api.provision(post(URL, BODY), rt)
    body = refused(answer, 401)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["type"].endswith("/unauthenticated")
    ledger: FakeLedger = rt.ledger  # type: ignore[assignment]
    assert not ledger.rows  # nothing was recorded


async def test_entra_with_malformed_principal_headers_is_a_401_not_a_500() -> None:
    rt = runtime(AUTH_MODE="entra")
    answer = await http_api.provision(post(URL, BODY, {"X-MS-CLIENT-PRINCIPAL": "%%%"}), rt)
    assert "not base64" in refused(answer, 401)["detail"]


async def test_entra_without_the_role_is_a_403_naming_it() -> None:
    rt = runtime(AUTH_MODE="entra")
    answer = await http_api.provision(post(URL, BODY, platform_headers("Some.Other.Role")), rt)
    body = refused(answer, 403)
    assert SUBMIT in body["detail"]
    assert "WWW-Authenticate" not in answer.headers


@pytest.mark.parametrize(
    ("role", "name", "recorded"), [(SUBMIT, None, OID), (OPERATE, "ada@contoso.example", "ada@contoso.example")]
)
async def test_entra_with_the_role_records_who_asked_and_shows_it(role: str, name: str | None, recorded: str) -> None:
    rt = runtime(AUTH_MODE="entra")
    headers = platform_headers(role, name=name)
    answer = await http_api.provision(post(URL, BODY, headers), rt)
    assert answer.status_code == 202
    request_id = json.loads(answer.get_body())["requestId"]
    assert ledger_row(rt, request_id).requested_by == recorded
    status = await http_api.provision(get(f"{URL}/{request_id}", headers, requestId=request_id), rt)
    assert json.loads(status.get_body())["requestedBy"] == recorded
    unauthenticated = await http_api.provision(get(f"{URL}/{request_id}", requestId=request_id), rt)
    refused(unauthenticated, 401)


async def test_the_graph_compatible_route_checks_the_role_and_records_who_asked() -> None:
    rt = runtime(AUTH_MODE="entra")
    body = {"parameters": [{"subjects": [USER]}]}
    refused(await http_api.graph_compatible(post(GRAPH_URL, body, servicePrincipalId=SP, jobId=JOB), rt), 401)
    no_role = post(GRAPH_URL, body, platform_headers(), servicePrincipalId=SP, jobId=JOB)
    refused(await http_api.graph_compatible(no_role, rt), 403)
    answer = await http_api.graph_compatible(
        post(GRAPH_URL, body, platform_headers(SUBMIT), servicePrincipalId=SP, jobId=JOB), rt
    )
    assert answer.status_code == 202
    request_id = json.loads(answer.get_body())["requestId"]
    assert ledger_row(rt, request_id).requested_by == OID
    status = get(f"{GRAPH_URL}/{request_id}", servicePrincipalId=SP, jobId=JOB, requestId=request_id)
    refused(await http_api.graph_compatible(status, rt), 401)


async def test_authorize_hands_back_the_principal_for_operator_routes() -> None:
    rt = runtime(AUTH_MODE="entra")
    operator = auth.authorize(get(URL, platform_headers(OPERATE)), OPERATE, rt)
    assert isinstance(operator, Principal)
    assert auth.requested_by(operator) == OID
    submitter = auth.authorize(get(URL, platform_headers(SUBMIT)), OPERATE, rt)
    assert isinstance(submitter, func.HttpResponse)
    assert OPERATE in refused(submitter, 403)["detail"]
    assert auth.authorize(get(URL, platform_headers(SUBMIT)), OPERATE, runtime()) is None  # keys
    assert auth.requested_by(None) is None


async def test_an_invalid_auth_mode_is_a_500_misconfigured_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_runtime", None)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("AUTH_MODE", "Entra ID")
    answer = await http_api.provision(post(URL, BODY, platform_headers(SUBMIT)))
    body = refused(answer, 500)
    assert body["type"].endswith("/misconfigured")
    assert "AUTH_MODE" in body["detail"]
    assert "Entra ID" not in body["detail"]
    monkeypatch.setattr(runtime_module, "_runtime", None)


async def test_the_openapi_document_needs_a_principal_under_entra(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_runtime", runtime(AUTH_MODE="entra"))
    refused(await http_api.openapi_document(get("http://h/api/openapi.json")), 401)
    allowed = await http_api.openapi_document(get("http://h/api/openapi.json", platform_headers(SUBMIT)))
    assert allowed.status_code == 200
    monkeypatch.setattr(runtime_module, "_runtime", None)


async def test_an_invalid_auth_mode_makes_health_503_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_runtime", None)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("AUTH_MODE", "aad")
    answer = await http_api.health(get("http://h/api/health"))
    assert answer.status_code == 503
    assert json.loads(answer.get_body())["invalidSetting"] == "AUTH_MODE"
    monkeypatch.setattr(runtime_module, "_runtime", None)
