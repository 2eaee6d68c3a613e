"""Who asked, end to end: Entra tokens from the emulator, the devhost imitating App Service Authentication,
``AUTH_MODE=entra`` in the app, and function keys still checked by the host as a second factor.

A caller with ``Provisioning.Submit`` gets its 202 and the request records it as ``requestedBy``; no token, a
token without the role, a forged ``X-MS-CLIENT-PRINCIPAL``, an expired or wrongly signed token are refused;
``/api/health`` stays anonymous.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.stack import LOCAL_AUDIENCE, Stack, free_port
from tests.integration.conftest import example_values
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT, POLL_INTERVAL

pytestmark = pytest.mark.integration

SUBMIT, OPERATE = "Provisioning.Submit", "Provisioning.Operate"
SECRET = "integration-caller-secret"  # test callers' client secret, known only to this module's emulator
KEY = "provision-key-1"
CALLERS = {
    "logic-app": {"secret": SECRET, "roles": [SUBMIT]},
    "operator": {"secret": SECRET, "roles": [OPERATE]},
    "no-role": {"secret": SECRET, "roles": []},
    "stale": {"secret": SECRET, "roles": [SUBMIT], "tokenLifetimeSeconds": -900},
}
SEED_SP, SEED_JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """AUTH_MODE=entra behind the devhost's Easy Auth (trusting the emulator's tenant), keys required too."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    env.update(
        GRAPH_RATE_LIMIT="1000/1s",
        AUTH_MODE="entra",
        DEVHOST_EASYAUTH="true",
        DEVHOST_REQUIRE_KEYS="true",
        DEVHOST_HOST_KEY="host-key-1",
        DEVHOST_MASTER_KEY="master-key-1",
        DEVHOST_FUNCTION_KEYS=json.dumps({"provision": KEY, "provision_graph_compatible": "graph-key-1"}),
    )
    log_path = tmp_path_factory.mktemp("entra") / "stack.log"
    with log_path.open("w") as log, Stack(port=free_port(), env=env, log=log) as running:
        assert running.emulator_url
        config = {"rateLimit": "1000/1s", "callers": CALLERS}
        httpx.post(f"{running.emulator_url}/_emulator/config", json=config, timeout=HTTP_TIMEOUT).raise_for_status()
        yield running


def token_url(stack: Stack) -> str:
    return stack.env["DEVHOST_EASYAUTH_ISSUER"].removesuffix("/v2.0") + "/oauth2/v2.0/token"


def token(stack: Stack, client_id: str) -> str:
    """A client-credentials token for the app, as a Logic App's or a script's identity gets one from Entra."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": SECRET,
            "scope": f"{LOCAL_AUDIENCE}/.default"}  # fmt: skip
    answer = httpx.post(token_url(stack), data=form, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


def caller_id(stack: Stack, client_id: str) -> str:
    config = httpx.get(f"{stack.emulator_url}/_emulator/config", timeout=HTTP_TIMEOUT).json()
    object_id: str = config["callers"][client_id]["objectId"]
    return object_id


def submit(stack: Stack, headers: dict[str, str], event: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"target": "seed-scim-app", "subjects": [USER]}
    if event:
        body["eventId"] = event
    return httpx.post(f"{stack.base_url}/api/provision", json=body, headers=headers, timeout=HTTP_TIMEOUT)


def bearer(value: str, key: str | None = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", **({"x-functions-key": key} if key else {})}


def wait_done(location: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while (status := httpx.get(location, headers=headers, timeout=HTTP_TIMEOUT)).status_code == 202:
        assert time.monotonic() < deadline, status.text
        time.sleep(POLL_INTERVAL)
    assert status.status_code == 200, status.text
    body: dict[str, Any] = status.json()
    return body


def test_a_submitter_gets_its_202_and_the_request_records_who_asked(stack: Stack) -> None:
    headers = bearer(token(stack, "logic-app"))
    answer = submit(stack, headers, event=f"entra-{time.time_ns()}")
    assert answer.status_code == 202, answer.text
    done = wait_done(answer.headers["Location"], headers)
    assert done["status"] == "succeeded"
    assert done["requestedBy"] == caller_id(stack, "logic-app")  # an application: its object id


def test_an_operator_may_submit_too_through_graphs_path(stack: Stack) -> None:
    url = f"{stack.base_url}/api/servicePrincipals/{SEED_SP}/synchronization/jobs/{SEED_JOB}/provisionOnDemand"
    headers = bearer(token(stack, "operator"), key="graph-key-1")
    body = {"parameters": [{"ruleId": "ea807875-5618-4f0a-9125-0b46a05298ca", "subjects": [USER]}]}
    answer = httpx.post(url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 202, answer.text
    assert wait_done(answer.headers["Location"], headers)["requestedBy"] == caller_id(stack, "operator")


def test_no_token_is_a_401_from_the_platform(stack: Stack) -> None:
    answer = submit(stack, {"x-functions-key": KEY})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_without_the_role_is_a_403_naming_it(stack: Stack) -> None:
    answer = submit(stack, bearer(token(stack, "no-role")))
    assert answer.status_code == 403
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert SUBMIT in answer.json()["detail"]


def forged_principal(*roles: str) -> dict[str, str]:
    claims = [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "forged"}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    encoded = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    return {
        "X-MS-CLIENT-PRINCIPAL": encoded,
        "X-MS-CLIENT-PRINCIPAL-ID": "forged",
        "X-MS-CLIENT-PRINCIPAL-NAME": "forged@example",
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }


def test_a_forged_principal_header_never_counts(stack: Stack) -> None:
    alone = submit(stack, {"x-functions-key": KEY, **forged_principal(OPERATE)})
    assert alone.status_code == 401
    # next to a real token without the role, the forged roles are dropped: the token's (none) are what count
    beside = submit(stack, {**bearer(token(stack, "no-role")), **forged_principal(OPERATE)})
    assert beside.status_code == 403
    # next to a real Submit token, the forged name never becomes who asked: the headers are stripped, not merged
    headers = bearer(token(stack, "logic-app"))
    named = submit(stack, {**headers, **forged_principal(OPERATE)}, event=f"forged-{time.time_ns()}")
    assert named.status_code == 202, named.text
    assert wait_done(named.headers["Location"], headers)["requestedBy"] == caller_id(stack, "logic-app")


def test_an_expired_or_wrongly_signed_token_is_a_401(stack: Stack) -> None:
    expired = submit(stack, bearer(token(stack, "stale")))
    assert expired.status_code == 401
    genuine = token(stack, "logic-app")
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = jwt.get_unverified_header(genuine)["kid"]
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, impostor, algorithm="RS256", headers={"kid": kid})
    resigned = submit(stack, bearer(forged))
    assert resigned.status_code == 401
    assert 'error="invalid_token"' in resigned.headers["WWW-Authenticate"]


def test_the_function_key_is_still_a_second_factor(stack: Stack) -> None:
    answer = submit(stack, bearer(token(stack, "logic-app"), key=None))
    assert answer.status_code == 401


def test_health_stays_anonymous(stack: Stack) -> None:
    answer = httpx.get(f"{stack.base_url}/api/health", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
