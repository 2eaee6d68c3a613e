"""App Service Authentication ("Easy Auth") imitated in front of the functions, so ``AUTH_MODE=entra`` runs locally.

In Azure the platform validates a caller's Entra token before the Functions host sees the request and passes
the caller on in ``X-MS-CLIENT-PRINCIPAL*`` headers; callers can never set those headers themselves, because
the platform removes them from every incoming request. The devhost does the same:

- it **always** removes incoming ``X-MS-CLIENT-PRINCIPAL*`` and ``X-MS-TOKEN-*`` headers (enabled or not: a
  forged principal never reaches the app);
- with ``DEVHOST_EASYAUTH=true`` it validates ``Authorization: Bearer`` tokens like the platform's Entra
  provider (RS256 signature against the issuer's JWKS found through its OpenID configuration, ``iss``,
  ``aud`` among the allowed audiences, ``exp``/``nbf`` with the usual five minutes of clock skew) and injects
  the headers the platform would (claims through the platform's claim mapping: ``oid`` becomes the
  ``objectidentifier`` URI, app roles stay ``roles`` claims);
- a token that fails any check is a ``401`` (the platform's answer for an invalid token); a request without
  a token is a ``401`` too under ``Return401`` (the default, as the Bicep configures it), or reaches the app
  without a principal under ``AllowAnonymous``. Excluded paths (default ``/api/health``) skip all of it.

Settings: ``DEVHOST_EASYAUTH``, ``DEVHOST_EASYAUTH_ISSUER`` (the issuer URL, e.g. the emulator's
``http://127.0.0.1:PORT/{tenantId}/v2.0``), ``DEVHOST_EASYAUTH_AUDIENCES`` (comma-separated allowed
audiences), ``DEVHOST_EASYAUTH_UNAUTHENTICATED`` (``Return401`` | ``AllowAnonymous``) and
``DEVHOST_EASYAUTH_EXCLUDED_PATHS`` (comma-separated, default ``/api/health``). Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from aiohttp import web

from devhost.settings import SettingsError, env_flag

log = logging.getLogger("devhost.easyauth")

#: What callers may never send: the platform's own headers about the caller and its tokens.
STRIPPED_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
CLOCK_SKEW_SECONDS = 300
JWKS_REFRESH_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 10.0
UNAUTHENTICATED_ACTIONS = ("Return401", "AllowAnonymous")

NAME_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
#: The platform's inbound claim mapping (the .NET JWT handler's defaults) for the claims an app reads.
CLAIM_MAP = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "idp": "http://schemas.microsoft.com/identity/claims/identityprovider",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
}


class TokenRefused(Exception):
    """Why a bearer token was not accepted (said in the devhost's log, never with the token)."""


def strip_platform_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` without any the platform sets itself (``X-MS-CLIENT-PRINCIPAL*``, ``X-MS-TOKEN-*``)."""
    return {k: v for k, v in headers.items() if not k.lower().startswith(STRIPPED_PREFIXES)}


def principal_headers(claims: Mapping[str, Any]) -> dict[str, str]:
    """The headers the platform injects for a validated Entra token's claims."""
    entries: list[dict[str, str]] = []
    for name, value in claims.items():
        typ = CLAIM_MAP.get(name, name)
        for item in value if isinstance(value, list) else [value]:
            text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
            entries.append({"typ": typ, "val": text})
    principal = {"auth_typ": "aad", "claims": entries, "name_typ": NAME_TYPE, "role_typ": ROLE_TYPE}
    encoded = base64.b64encode(json.dumps(principal, separators=(",", ":")).encode("utf-8")).decode("ascii")
    headers = {"x-ms-client-principal": encoded, "x-ms-client-principal-idp": "aad"}
    object_id = claims.get("oid") or claims.get("sub")
    if isinstance(object_id, str):
        headers["x-ms-client-principal-id"] = object_id
    names = [str(claims[k]) for k in ("preferred_username", "upn", "unique_name") if isinstance(claims.get(k), str)]
    if names:  # a user; an application (client credentials) has no name
        headers["x-ms-client-principal-name"] = names[0]
    return headers


@dataclass(frozen=True)
class EasyAuthSettings:
    """What the platform's Entra provider is configured with."""

    issuer: str
    audiences: frozenset[str]
    unauthenticated: str = "Return401"
    excluded_paths: tuple[str, ...] = ("/api/health",)


def load_easyauth(environ: Mapping[str, str]) -> EasyAuthSettings | None:
    """The settings when ``DEVHOST_EASYAUTH`` is on; None when off; ``SettingsError`` when incomplete."""
    if not env_flag("DEVHOST_EASYAUTH", environ):
        return None
    issuer = environ.get("DEVHOST_EASYAUTH_ISSUER", "").strip().rstrip("/")
    parts = urlsplit(issuer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            "DEVHOST_EASYAUTH_ISSUER must be the token issuer's URL (e.g. the emulator's /{tenant}/v2.0)"
        )
    audiences = frozenset(a.strip() for a in environ.get("DEVHOST_EASYAUTH_AUDIENCES", "").split(",") if a.strip())
    if not audiences:
        raise SettingsError("DEVHOST_EASYAUTH_AUDIENCES must name the audience(s) tokens are for (the app's id URI)")
    action = environ.get("DEVHOST_EASYAUTH_UNAUTHENTICATED", "").strip() or "Return401"
    if action not in UNAUTHENTICATED_ACTIONS:
        raise SettingsError(f"DEVHOST_EASYAUTH_UNAUTHENTICATED must be one of {', '.join(UNAUTHENTICATED_ACTIONS)}")
    excluded = environ.get("DEVHOST_EASYAUTH_EXCLUDED_PATHS", "/api/health")
    paths = tuple("/" + p.strip().strip("/").lower() for p in excluded.split(",") if p.strip())
    return EasyAuthSettings(issuer, audiences, action, paths)


def _unauthorized(error: str | None) -> web.Response:
    challenge = 'Bearer realm="devhost"' + (f', error="{error}"' if error else "")
    return web.Response(
        status=401,
        text="You do not have permission to view this directory or page.",
        headers={"WWW-Authenticate": challenge},
    )


class EasyAuth:
    """Validates bearer tokens against the issuer's published keys and turns them into principal headers."""

    def __init__(self, settings: EasyAuthSettings) -> None:
        self.settings = settings
        self._keys: dict[str, Any] = {}
        self._fetched_at = -JWKS_REFRESH_SECONDS
        self._lock = asyncio.Lock()

    def excluded(self, path: str) -> bool:
        """Whether the path skips authentication (the platform's ``excludedPaths``)."""
        return path.rstrip("/").lower() in self.settings.excluded_paths

    async def authenticate(self, path: str, headers: Mapping[str, str]) -> dict[str, str] | web.Response:
        """Headers to add for the caller, ``{}`` for an anonymous caller let through, or the 401 to answer."""
        if self.excluded(path):
            return {}
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            if self.settings.unauthenticated == "AllowAnonymous":
                return {}
            return _unauthorized(None)
        try:
            claims = await self.validate(token.strip())
        except TokenRefused as exc:
            log.info("%s: bearer token refused: %s", path, exc)
            return _unauthorized("invalid_token")
        return principal_headers(claims)

    async def validate(self, token: str) -> dict[str, Any]:
        """The token's claims when it is signed by the issuer, for an allowed audience, and in date."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWT ({type(exc).__name__})") from exc
        key = await self._key(str(kid))
        if key is None:
            raise TokenRefused("signed with a key the issuer does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=sorted(self.settings.audiences),
                issuer=self.settings.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"{type(exc).__name__}: {exc}") from exc
        return claims

    async def _key(self, kid: str) -> Any:
        if kid not in self._keys:
            async with self._lock:
                if kid not in self._keys and time.monotonic() - self._fetched_at >= JWKS_REFRESH_SECONDS:
                    await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Read the issuer's OpenID configuration and its JWKS (again: keys rotate)."""
        self._fetched_at = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(f"{self.settings.issuer}/.well-known/openid-configuration") as answer:
                    answer.raise_for_status()
                    configuration = await answer.json(content_type=None)
                if configuration.get("issuer") != self.settings.issuer:
                    raise TokenRefused("the issuer's OpenID configuration names another issuer")
                async with session.get(str(configuration["jwks_uri"])) as answer:
                    answer.raise_for_status()
                    jwks = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise TokenRefused(f"the issuer's keys could not be read ({type(exc).__name__})") from exc
        keys: dict[str, Any] = {}
        for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
            try:
                keys[str(jwk["kid"])] = jwt.PyJWK(jwk).key
            except (jwt.PyJWTError, KeyError, TypeError):
                continue
        self._keys = keys
