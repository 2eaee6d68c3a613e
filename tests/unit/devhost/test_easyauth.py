"""The devhost's App Service Authentication imitation: what reaches the app, against the emulator's real issuer.

The emulator runs in-process (its Entra endpoints over loopback HTTP); the devhost's front end runs on aiohttp's
test server with an invoker that records the request the function would get.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.easyauth import EasyAuth, EasyAuthSettings, load_easyauth, principal_headers, strip_platform_headers
from devhost.http_server import HttpFrontEnd
from devhost.indexing import FunctionSpec
from devhost.keys import KeyRing
from devhost.settings import SettingsError
from emulator.testing import RunningEmulator, running_emulator
from shared.contract.principal import OPERATE, SUBMIT, parse_principal
from tests.unit.devhost.recording import RecordingInvoker

AUDIENCE = "api://provision-on-demand-local"
SECRET = "s3cret"  # a test caller's client secret, known only to this test's emulator
FORGED = {
    "X-MS-CLIENT-PRINCIPAL": "eyJjbGFpbXMiOltdfQ==",
    "X-MS-CLIENT-PRINCIPAL-ID": "forged",
    "x-ms-client-principal-name": "forged@example",
    "X-MS-TOKEN-AAD-ACCESS-TOKEN": "forged",
}


def spec(name: str, route: str, auth_level: str = "function") -> FunctionSpec:
    trigger = {"route": route, "methods": ["GET", "POST"], "authLevel": auth_level}
    return FunctionSpec(name, "http", trigger, lambda: None, "req", wants_context=False, is_async=True)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as running:
        async with httpx.AsyncClient(timeout=10) as http:
            callers = {
                "submitter": {"secret": "s3cret", "roles": [SUBMIT]},
                "nobody": {"secret": "s3cret", "roles": []},
                "stale": {"secret": "s3cret", "roles": [SUBMIT], "tokenLifetimeSeconds": -600},
            }
            answer = await http.post(f"{running.base_url}/_emulator/config", json={"callers": callers})
            answer.raise_for_status()
        yield running


def issuer_of(emulator: RunningEmulator) -> str:
    return f"{emulator.base_url}/{emulator.emulator.entra.tenant_id}/v2.0"


async def token(emulator: RunningEmulator, client_id: str, audience: str = AUDIENCE) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{emulator.base_url}/{emulator.emulator.entra.tenant_id}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": SECRET,
                  "scope": f"{audience}/.default"},
        )  # fmt: skip
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


@pytest.fixture
async def front(emulator: RunningEmulator) -> AsyncIterator[tuple[TestClient[Any, Any], RecordingInvoker]]:
    invoker = RecordingInvoker()
    settings = EasyAuthSettings(issuer_of(emulator), frozenset({AUDIENCE}))
    specs = [spec("provision", "provision"), spec("health", "health", "anonymous")]
    app = HttpFrontEnd(specs, "api", invoker, KeyRing(False, "", ""), easyauth=EasyAuth(settings)).make_app()
    async with TestClient(TestServer(app)) as client:
        yield client, invoker
    invoker.close()


def seen(invoker: RecordingInvoker) -> Mapping[str, str]:
    return {k.lower(): v for k, v in invoker.requests[-1].headers.items()}


async def test_a_valid_token_reaches_the_app_as_the_platform_headers_the_app_reads(
    emulator: RunningEmulator, front: tuple[TestClient[Any, Any], RecordingInvoker]
) -> None:
    client, invoker = front
    answer = await client.post(
        "/api/provision", headers={"Authorization": f"Bearer {await token(emulator, 'submitter')}", **FORGED}
    )
    assert answer.status == 200
    headers = seen(invoker)
    principal = parse_principal(headers)
    caller = emulator.emulator.entra.callers["submitter"]
    assert principal is not None
    assert (principal.id, principal.name, principal.roles, principal.app_id) == (
        caller.object_id,
        None,
        frozenset({SUBMIT}),
        "submitter",
    )
    assert "x-ms-token-aad-access-token" not in headers  # a forged token header is stripped, not passed on
    claims = json.loads(base64.b64decode(headers["x-ms-client-principal"]))
    assert {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": caller.object_id} in claims[
        "claims"
    ]


@pytest.mark.parametrize("headers", [{}, FORGED], ids=["no-token", "forged-principal"])
async def test_without_a_token_the_platform_answers_401_before_the_app(
    front: tuple[TestClient[Any, Any], RecordingInvoker], headers: dict[str, str]
) -> None:
    client, invoker = front
    answer = await client.post("/api/provision", headers=headers)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert not invoker.requests


async def test_health_stays_anonymous_and_forged_headers_never_reach_it(
    front: tuple[TestClient[Any, Any], RecordingInvoker],
) -> None:
    client, invoker = front
    answer = await client.get("/api/health", headers={**FORGED, "Authorization": "Bearer garbage"})
    assert answer.status == 200
    assert not any(k.startswith(("x-ms-client-principal", "x-ms-token-")) for k in seen(invoker))


async def test_expired_wrongly_signed_foreign_audience_or_garbage_tokens_are_401(
    emulator: RunningEmulator, front: tuple[TestClient[Any, Any], RecordingInvoker]
) -> None:
    client, invoker = front
    genuine = jwt.decode(await token(emulator, "submitter"), options={"verify_signature": False})
    impostor_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = emulator.emulator.entra.kid
    bad = {
        "expired": await token(emulator, "stale"),
        "other-audience": await token(emulator, "submitter", audience="api://someone-else"),
        "wrong-signature": jwt.encode(genuine, impostor_key, algorithm="RS256", headers={"kid": kid}),
        "unknown-key": jwt.encode(genuine, impostor_key, algorithm="RS256", headers={"kid": "not-published"}),
        "other-issuer": jwt.encode({**genuine, "iss": "https://sts.windows.net/x/"}, impostor_key, algorithm="RS256",
                                   headers={"kid": kid}),
        "hs256": jwt.encode(genuine, "secret-of-32-bytes-or-more-123456", algorithm="HS256", headers={"kid": kid}),
        "garbage": "not.a.jwt",
    }  # fmt: skip
    for name, value in bad.items():
        answer = await client.post("/api/provision", headers={"Authorization": f"Bearer {value}"})
        assert answer.status == 401, name
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"], name
    assert not invoker.requests


async def test_a_token_without_roles_gets_through_with_no_roles_for_the_app_to_refuse(
    emulator: RunningEmulator, front: tuple[TestClient[Any, Any], RecordingInvoker]
) -> None:
    client, invoker = front
    answer = await client.get("/api/provision", headers={"Authorization": f"Bearer {await token(emulator, 'nobody')}"})
    assert answer.status == 200
    principal = parse_principal(seen(invoker))
    assert principal is not None
    assert principal.roles == frozenset()


async def test_allow_anonymous_lets_a_caller_without_token_through_without_a_principal(
    emulator: RunningEmulator,
) -> None:
    invoker = RecordingInvoker()
    settings = EasyAuthSettings(issuer_of(emulator), frozenset({AUDIENCE}), unauthenticated="AllowAnonymous")
    app = HttpFrontEnd(
        [spec("provision", "provision")], "api", invoker, KeyRing(False, "", ""), easyauth=EasyAuth(settings)
    )
    async with TestClient(TestServer(app.make_app())) as client:
        assert (await client.post("/api/provision", headers=FORGED)).status == 200
        assert (await client.post("/api/provision", headers={"Authorization": "Bearer x.y.z"})).status == 401
    invoker.close()
    assert parse_principal(seen(invoker)) is None


async def test_without_easy_auth_forged_principal_headers_are_still_stripped() -> None:
    invoker = RecordingInvoker()
    app = HttpFrontEnd([spec("provision", "provision")], "api", invoker, KeyRing(False, "", "")).make_app()
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/api/provision", headers=FORGED)).status == 200
    invoker.close()
    assert parse_principal(seen(invoker)) is None


def test_stripping_is_case_insensitive_and_keeps_everything_else() -> None:
    kept = strip_platform_headers({**FORGED, "X-Ms-Client-Principal-Idp": "aad", "Authorization": "Bearer t", "a": "b"})
    assert kept == {"Authorization": "Bearer t", "a": "b"}


def test_a_user_token_gives_a_name_and_an_app_token_none() -> None:
    user = principal_headers({"oid": "11111111-2222-3333-4444-555555555555", "upn": "ada@contoso.example",
                              "roles": [OPERATE]})  # fmt: skip
    principal = parse_principal(user)
    assert principal is not None
    assert principal.display_id == "ada@contoso.example"
    assert principal.has_role(SUBMIT)
    app = parse_principal(principal_headers({"oid": "11111111-2222-3333-4444-555555555555", "exp": 1}))
    assert app is not None
    assert app.display_id == "11111111-2222-3333-4444-555555555555"


def test_settings_are_off_by_default_and_complete_when_on() -> None:
    assert load_easyauth({}) is None
    on = {"DEVHOST_EASYAUTH": "true", "DEVHOST_EASYAUTH_ISSUER": "http://127.0.0.1:1/t/v2.0/",
          "DEVHOST_EASYAUTH_AUDIENCES": "api://a, api://b"}  # fmt: skip
    loaded = load_easyauth(on)
    assert loaded == EasyAuthSettings("http://127.0.0.1:1/t/v2.0", frozenset({"api://a", "api://b"}))
    for broken in ({"DEVHOST_EASYAUTH_ISSUER": "nope"}, {"DEVHOST_EASYAUTH_AUDIENCES": " "},
                   {"DEVHOST_EASYAUTH_UNAUTHENTICATED": "RedirectToLoginPage"}):  # fmt: skip
        with pytest.raises(SettingsError):
            load_easyauth({**on, **broken})


async def test_keys_are_fetched_once_and_again_only_for_an_unknown_key(emulator: RunningEmulator) -> None:
    easyauth = EasyAuth(EasyAuthSettings(issuer_of(emulator), frozenset({AUDIENCE})))
    first = await easyauth.validate(await token(emulator, "submitter"))
    assert first["roles"] == [SUBMIT]
    assert first["exp"] > time.time()
    fetched = easyauth._fetched_at
    await easyauth.validate(await token(emulator, "submitter"))
    assert easyauth._fetched_at == fetched  # a known key: no second fetch


async def test_the_emulator_token_endpoint_refuses_like_entra(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/{emulator.emulator.entra.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": "submitter", "client_secret": "s3cret",
            "scope": f"{AUDIENCE}/.default"}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as http:
        wrong_secret = await http.post(url, data={**form, "client_secret": "nope"})
        unknown = await http.post(url, data={**form, "client_id": "stranger"})
        bad_scope = await http.post(url, data={**form, "scope": AUDIENCE})
        bad_grant = await http.post(url, data={**form, "grant_type": "password"})
        other_tenant = await http.post(
            f"{emulator.base_url}/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token", data=form
        )
        config = (await http.get(f"{emulator.base_url}/_emulator/config")).json()
        discovery = (await http.get(f"{issuer_of(emulator)}/.well-known/openid-configuration")).json()
    assert (wrong_secret.status_code, wrong_secret.json()["error"]) == (401, "invalid_client")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unauthorized_client")
    assert (bad_scope.status_code, bad_scope.json()["error"]) == (400, "invalid_scope")
    assert (bad_grant.status_code, bad_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert other_tenant.status_code == 404
    assert "s3cret" not in json.dumps(config)  # the control API never shows a caller's secret
    assert config["callers"]["submitter"]["roles"] == [SUBMIT]
    assert discovery["issuer"] == issuer_of(emulator)


async def test_the_managed_identity_endpoint_is_unchanged(emulator: RunningEmulator) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            emulator.token_endpoint,
            params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
            headers={"X-IDENTITY-HEADER": emulator.identity_header},
        )
    assert answer.status_code == 200
    graph_token = answer.json()["access_token"]
    assert jwt.get_unverified_header(graph_token)["alg"] == "HS256"  # Graph's own issuer, not the callers' one
    assert emulator.emulator.issuer.check_authorization(f"Bearer {graph_token}", emulator.base_url).valid
