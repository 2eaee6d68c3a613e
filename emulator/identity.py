"""Access tokens: issued by the emulated App Service managed identity endpoint, checked by emulated Graph.

Tokens are JWT-shaped (header.claims.signature, base64url) and HMAC-SHA256 signed with a key that lives
only in this process, so a client cannot forge one and Graph can tell "missing", "invalid" and "expired"
apart the way Entra-protected APIs do.  The key survives ``/_emulator/reset`` so clients' cached tokens
keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# Resources Graph accepts as its own audience, in every national cloud.
GRAPH_AUDIENCES = frozenset(
    {
        GRAPH_APP_ID,
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
    }
)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class TokenProblem(StrEnum):
    """Why a bearer token was refused; the values are the 401 messages Graph gives."""

    EMPTY = "Access token is empty."
    MALFORMED = "Access token validation failure. The token is malformed (IDX14100: JWT is not well formed)."
    SIGNATURE = "Access token validation failure. Signature validation failed."
    AUDIENCE = "Access token validation failure. Invalid audience."
    LIFETIME = "Access token has expired or is not yet valid."


@dataclass(frozen=True)
class TokenCheck:
    """Outcome of checking an ``Authorization`` header: claims when valid, else the problem."""

    claims: dict[str, Any] | None
    problem: TokenProblem | None
    present: bool

    @property
    def valid(self) -> bool:
        """True when the token was present, well formed, signed by us, in date and for this audience."""
        return self.problem is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resource_matches(audience: str, request_origin: str) -> bool:
    """Accept Graph's own audiences, and the emulator's origin (the app derives its scope from the host)."""
    aud = audience.rstrip("/")
    if aud in GRAPH_AUDIENCES or aud == request_origin.rstrip("/"):
        return True
    parsed, here = urlsplit(aud), urlsplit(request_origin)
    return (
        parsed.scheme in {"http", "https"}
        and parsed.hostname in _LOOPBACK
        and here.hostname in _LOOPBACK
        and parsed.port == here.port
    )


class TokenIssuer:
    """Issues and verifies the emulator's tokens."""

    def __init__(
        self,
        *,
        tenant_id: str,
        default_client_id: str,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self.tenant_id = tenant_id
        self.default_client_id = default_client_id
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock

    def issue(self, resource: str, client_id: str | None) -> tuple[str, dict[str, Any]]:
        """Return a signed token for ``resource`` and its claims (``appid``/``oid`` = the identity)."""
        now = int(self._clock())
        identity = client_id or self.default_client_id
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_seconds,
            "appid": identity,
            "azp": identity,
            "oid": identity,
            "sub": identity,
            "tid": self.tenant_id,
            "idtyp": "app",
            "roles": ["Synchronization.ReadWrite.All"],
            "jti": secrets.token_hex(8),
        }
        header = {"alg": "HS256", "typ": "JWT", "kid": "graph-emulator"}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}", claims

    def check_authorization(self, header: str | None, request_origin: str) -> TokenCheck:
        """Check an ``Authorization`` header value the way Graph's front door does."""
        if header is None or not header.strip():
            return TokenCheck(None, TokenProblem.EMPTY, present=False)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return TokenCheck(None, TokenProblem.EMPTY, present=True)
        parts = token.split(".")
        if len(parts) != 3:
            return TokenCheck(None, TokenProblem.MALFORMED, present=True)
        try:
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return TokenCheck(None, TokenProblem.MALFORMED, present=True)
        if not isinstance(claims, dict):
            return TokenCheck(None, TokenProblem.MALFORMED, present=True)
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, signature):
            return TokenCheck(None, TokenProblem.SIGNATURE, present=True)
        now = self._clock()
        nbf, exp = claims.get("nbf"), claims.get("exp")
        if not isinstance(nbf, int) or not isinstance(exp, int) or not nbf <= now < exp:
            return TokenCheck(claims, TokenProblem.LIFETIME, present=True)
        if not resource_matches(str(claims.get("aud", "")), request_origin):
            return TokenCheck(claims, TokenProblem.AUDIENCE, present=True)
        return TokenCheck(claims, None, present=True)
