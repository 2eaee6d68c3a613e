"""Who is calling, as App Service Authentication tells the app (pure).

With App Service Authentication ("Easy Auth") in front of the app, the platform validates the caller's Entra
token and passes the caller on in request headers that callers themselves cannot set (the platform strips them
from incoming requests):

- ``X-MS-CLIENT-PRINCIPAL``: base64 of ``{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}``.
  Claim types go through the platform's claim mapping (``oid`` arrives as
  ``http://schemas.microsoft.com/identity/claims/objectidentifier``); app roles arrive as ``roles`` claims,
  one per role, although ``role_typ`` names ``http://schemas.microsoft.com/ws/2008/06/identity/claims/role``,
  so both types count as roles here.
- ``X-MS-CLIENT-PRINCIPAL-ID`` (the object id for Entra), ``-NAME`` (UPN for a user; none for an application
  such as a Logic App's managed identity), ``-IDP`` (``aad``).

:func:`parse_principal` turns them into a :class:`Principal` or refuses with a :class:`PrincipalError` that
says what is wrong, never echoing a header's value. It never raises anything else, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.core.errors import ProvisioningError

#: App roles (the app registration defines them; the Bicep assigns them).
SUBMIT = "Provisioning.Submit"
OPERATE = "Provisioning.Operate"
#: The roles that grant each role: an operator may also submit.
_GRANTED_BY: dict[str, frozenset[str]] = {SUBMIT: frozenset({SUBMIT, OPERATE}), OPERATE: frozenset({OPERATE})}

PRINCIPAL_HEADER = "x-ms-client-principal"
ID_HEADER = "x-ms-client-principal-id"
NAME_HEADER = "x-ms-client-principal-name"
IDP_HEADER = "x-ms-client-principal-idp"
#: Every header the platform sets about the caller: all start with this, and the platform strips them from
#: incoming requests (the devhost does the same).
HEADER_PREFIX = "x-ms-client-principal"

ROLE_CLAIM = "roles"
ROLE_CLAIM_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
APP_ID_CLAIMS = ("appid", "azp")

MAX_PRINCIPAL_CHARS = 16 * 1024  # base64 text; the platform's whole header block is smaller than this
MAX_CLAIMS = 500
MAX_CLAIM_CHARS = 2048
MAX_NAME_CHARS = 256
_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: an Entra object id is a GUID
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class PrincipalError(ProvisioningError):
    """The principal headers are malformed or inconsistent; the message says how (never their value)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    id: str  # the object id for Entra (X-MS-CLIENT-PRINCIPAL-ID)
    name: str | None  # a user's UPN; None for an application (a managed identity has no name)
    identity_provider: str  # "aad"
    roles: frozenset[str]
    app_id: str | None = None  # the calling application's client id (appid / azp claim)

    @property
    def display_id(self) -> str:
        """Who asked, as the ledger records it (``requestedBy``): the name, else the object id."""
        return self.name or self.id

    def has_role(self, role: str) -> bool:
        """Whether the caller holds ``role`` or a role that includes it (Operate includes Submit)."""
        return bool(self.roles & _GRANTED_BY.get(role, frozenset({role})))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def has_principal_headers(headers: Mapping[str, str]) -> bool:
    """Whether any ``X-MS-CLIENT-PRINCIPAL*`` header is present."""
    return any(key.lower().startswith(HEADER_PREFIX) for key in headers)


def _decode(text: str) -> dict[str, object]:
    raw = text.strip()
    if len(raw) > MAX_PRINCIPAL_CHARS:
        raise PrincipalError(f"X-MS-CLIENT-PRINCIPAL is longer than {MAX_PRINCIPAL_CHARS} characters")
    if _BASE64.fullmatch(raw) is None or not raw:
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL is not base64")
    try:
        data = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL is not base64-encoded UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL is not a JSON object")
    return data


def _claims(data: Mapping[str, object]) -> list[tuple[str, str]]:
    raw = data.get("claims")
    if not isinstance(raw, list):
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL has no claims list")
    if len(raw) > MAX_CLAIMS:
        raise PrincipalError(f"X-MS-CLIENT-PRINCIPAL has more than {MAX_CLAIMS} claims")
    claims: list[tuple[str, str]] = []
    for index, claim in enumerate(raw):
        typ = claim.get("typ") if isinstance(claim, dict) else None
        val = claim.get("val") if isinstance(claim, dict) else None
        if not isinstance(typ, str) or not isinstance(val, str):
            raise PrincipalError(f"X-MS-CLIENT-PRINCIPAL claim {index} is not {{typ, val}} strings")
        if len(typ) > MAX_CLAIM_CHARS or len(val) > MAX_CLAIM_CHARS:
            raise PrincipalError(f"X-MS-CLIENT-PRINCIPAL claim {index} is longer than {MAX_CLAIM_CHARS} characters")
        claims.append((typ, val))
    return claims


def _optional_str(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise PrincipalError(f"X-MS-CLIENT-PRINCIPAL {key} is not a string")
    return value


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str | None:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted:
                return val
    return None


def _name(value: str | None, where: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        raise PrincipalError(f"{where} is not a printable name of at most {MAX_NAME_CHARS} characters")
    return value


def parse_principal(headers: Mapping[str, str]) -> Principal | None:
    """The caller the platform authenticated, None when no ``X-MS-CLIENT-PRINCIPAL*`` header is present.

    Raises :class:`PrincipalError` when the headers are present but malformed or disagree with each other.
    """
    if not has_principal_headers(headers):
        return None
    encoded = _header(headers, PRINCIPAL_HEADER)
    if encoded is None:
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL is missing next to the other X-MS-CLIENT-PRINCIPAL-* headers")
    data = _decode(encoded)
    claims = _claims(data)
    auth_typ = _optional_str(data, "auth_typ")
    name_typ = _optional_str(data, "name_typ")
    role_typ = _optional_str(data, "role_typ")

    claimed_id = _first(claims, OBJECT_ID_CLAIMS)
    header_id = _header(headers, ID_HEADER)
    principal_id = (header_id or "").strip() or claimed_id
    if principal_id is None:
        raise PrincipalError("the caller has no id: neither X-MS-CLIENT-PRINCIPAL-ID nor an oid claim")
    if _ID.fullmatch(principal_id) is None:
        raise PrincipalError("the caller's id is not 1-128 visible ASCII characters")
    if claimed_id is not None and header_id is not None and claimed_id.lower() != principal_id.lower():
        raise PrincipalError("X-MS-CLIENT-PRINCIPAL-ID and the oid claim name different callers")

    name = _name(_header(headers, NAME_HEADER), "X-MS-CLIENT-PRINCIPAL-NAME")
    if name is None and name_typ:
        name = _name(_first(claims, (name_typ,)), "the name claim")
    idp = _name(_header(headers, IDP_HEADER), "X-MS-CLIENT-PRINCIPAL-IDP") or _name(auth_typ, "auth_typ") or "aad"
    role_types = {ROLE_CLAIM, ROLE_CLAIM_URI, *([role_typ] if role_typ else [])}
    roles = frozenset(val for typ, val in claims if typ in role_types)
    app_id = _first(claims, APP_ID_CLAIMS)
    if app_id is not None and _ID.fullmatch(app_id) is None:
        raise PrincipalError("the appid claim is not 1-128 visible ASCII characters")
    return Principal(id=principal_id, name=name, identity_provider=idp, roles=roles, app_id=app_id)
