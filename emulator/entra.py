"""Entra ID's client-credentials token endpoint, for callers of the app (not for Graph).

App Service Authentication in front of the app trusts an issuer by its OpenID configuration; here the
emulator is that issuer, so the devhost can imitate the platform with the same checks (RS256 signature from
the JWKS, issuer, audience, lifetime). Test callers are configured with their secret and app roles
(``POST /_emulator/config {"callers": {clientId: {"secret", "roles", "objectId"?, "tokenLifetimeSeconds"?}}}``);
a token carries the caller's roles for whatever audience it asks for, as if the roles were assigned on the
app's enterprise application.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``
- ``GET /{tenant}/discovery/v2.0/keys`` (the JWKS)
- ``POST /{tenant}/oauth2/v2.0/token`` (``grant_type=client_credentials``, ``client_id``, ``client_secret``,
  ``scope={audience}/.default``); errors are Entra's ``{"error", "error_description", "error_codes"}``.

The RSA key pair is generated when the emulator starts and lives only in this process. The managed identity
endpoint (``/msi/token``, the app's own tokens for Graph) is a separate issuer and is unchanged by this.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["Caller", "EntraIssuer", "add_entra_routes", "parse_callers"]

DEFAULT_LIFETIME_SECONDS = 3600
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ROLE = re.compile(r"[A-Za-z0-9._-]{1,120}")


@dataclass(frozen=True)
class Caller:
    """A client-credentials caller of the app: its secret, app roles and service principal object id."""

    client_id: str
    secret: str
    roles: tuple[str, ...]
    object_id: str
    #: Seconds its tokens live (default one hour); zero or less issues tokens already expired, to test expiry.
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS


def parse_callers(raw: Any) -> dict[str, Caller]:
    """``callers`` of ``/_emulator/config``; raises ``ValueError`` naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("callers must be an object of clientId -> {secret, roles}")
    callers: dict[str, Caller] = {}
    for client_id, spec in raw.items():
        where = f"callers[{client_id!r}]"
        if not isinstance(client_id, str) or _CLIENT_ID.fullmatch(client_id) is None:
            raise ValueError(f"{where}: a client id is 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(spec, dict) or set(spec) - {"secret", "roles", "objectId", "tokenLifetimeSeconds"}:
            raise ValueError(f"{where} must be {{secret, roles, objectId?, tokenLifetimeSeconds?}}")
        secret, roles = spec.get("secret"), spec.get("roles", [])
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"{where}.secret must be a non-empty string")
        if not isinstance(roles, list) or not all(isinstance(r, str) and _ROLE.fullmatch(r) for r in roles):
            raise ValueError(f"{where}.roles must be a list of app role values")
        object_id = spec.get("objectId") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-caller:{client_id}"))
        if not isinstance(object_id, str):
            raise ValueError(f"{where}.objectId must be a string")
        lifetime = spec.get("tokenLifetimeSeconds", DEFAULT_LIFETIME_SECONDS)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise ValueError(f"{where}.tokenLifetimeSeconds must be a whole number")
        callers[client_id] = Caller(client_id, secret, tuple(roles), str(uuid.UUID(object_id)), lifetime)
    return callers


class EntraIssuer:
    """Signs client-credentials tokens with an RSA key generated at start; publishes the public key."""

    def __init__(self, tenant_id: str, clock: Callable[[], float] = time.time) -> None:
        self.tenant_id = tenant_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.callers: dict[str, Caller] = {}
        self._clock = clock

    def issuer(self, origin: str) -> str:
        """The ``iss`` of this tenant's v2.0 tokens, as Entra's OpenID configuration names it."""
        return f"{origin}/{self.tenant_id}/v2.0"

    def openid_configuration(self, origin: str) -> dict[str, Any]:
        """The subset of Entra's OpenID configuration a token validator reads."""
        base = f"{origin}/{self.tenant_id}"
        return {
            "issuer": self.issuer(origin),
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["client_credentials"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
        }

    def jwks(self) -> dict[str, Any]:
        """The public signing key as a JWK Set."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def authenticate(self, client_id: str, secret: str) -> Caller | None:
        """The configured caller when the secret matches (compared in constant time)."""
        caller = self.callers.get(client_id)
        if caller is None or not hmac.compare_digest(caller.secret.encode(), secret.encode()):
            return None
        return caller

    def issue(self, origin: str, caller: Caller, audience: str) -> tuple[str, dict[str, Any]]:
        """An app-only v2.0 access token for ``audience`` carrying the caller's roles."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer(origin),
            "iat": now,
            "nbf": now,
            "exp": now + caller.lifetime_seconds,
            "azp": caller.client_id,
            "azpacr": "1",
            "appid": caller.client_id,
            "oid": caller.object_id,
            "sub": caller.object_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "ver": "2.0",
            "uti": secrets.token_urlsafe(16),
        }
        if caller.roles:
            claims["roles"] = list(caller.roles)
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return token, claims


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
        status=status,
    )


def _issuer_for(request: web.Request) -> EntraIssuer:
    from emulator.state import EMULATOR

    issuer = request.app[EMULATOR].entra
    if request.match_info["tenant"].lower() != issuer.tenant_id.lower():
        raise web.HTTPNotFound(text="unknown tenant")
    return issuer


async def _openid_configuration(request: web.Request) -> web.StreamResponse:
    return web.json_response(_issuer_for(request).openid_configuration(_origin(request)))


async def _keys(request: web.Request) -> web.StreamResponse:
    return web.json_response(_issuer_for(request).jwks())


def _client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """client_secret_post, or client_secret_basic (``Authorization: Basic``)."""
    if authorization and authorization.lower().startswith("basic "):
        import base64
        from urllib.parse import unquote

        try:
            pair = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except ValueError:
            return "", ""
        client_id, _, secret = pair.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


async def _token(request: web.Request) -> web.StreamResponse:
    issuer = _issuer_for(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if form.get("grant_type") != "client_credentials":
        return _entra_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type (client_credentials)."
        )
    client_id, secret = _client_credentials(form, request.headers.get("Authorization"))
    if not client_id:
        return _entra_error(400, "invalid_request", 900144, "The request body must contain the parameter: 'client_id'.")
    if client_id not in issuer.callers:
        return _entra_error(
            400, "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found."
        )
    caller = issuer.authenticate(client_id, secret)
    if caller is None:
        return _entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    scope = form.get("scope", "").strip()
    if not scope.endswith("/.default") or " " in scope or len(scope) <= len("/.default"):
        return _entra_error(
            400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows "
            "must have a scope value with /.default suffixed to the resource identifier.",
        )  # fmt: skip
    token, claims = issuer.issue(_origin(request), caller, scope.removesuffix("/.default"))
    return web.json_response(
        {
            "token_type": "Bearer",
            "expires_in": max(0, int(claims["exp"]) - int(claims["iat"])),
            "ext_expires_in": max(0, int(claims["exp"]) - int(claims["iat"])),
            "access_token": token,
        }
    )


def add_entra_routes(router: web.UrlDispatcher) -> None:
    """Entra's discovery, keys and token endpoints for the emulator's tenant."""
    router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_configuration)
    router.add_get("/{tenant}/discovery/v2.0/keys", _keys)
    router.add_post("/{tenant}/oauth2/v2.0/token", _token)
