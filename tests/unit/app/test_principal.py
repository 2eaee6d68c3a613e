"""Reading App Service Authentication's principal headers: the platform's real shape, and garbage refused clearly."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract.principal import (
    OPERATE,
    ROLE_CLAIM_URI,
    SUBMIT,
    Principal,
    PrincipalError,
    parse_principal,
)

OID = "4f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"
APP_ID = "0b6d4f0e-3a7c-4b3f-9a55-3f3c1d2e4b5a"
OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
NAME_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"


def encode(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def platform_headers(
    *roles: str, oid: str = OID, name: str | None = None, claims: list[dict[str, str]] | None = None
) -> dict[str, str]:
    """What App Service Authentication sends for an Entra client-credentials token (an application caller)."""
    payload = {
        "auth_typ": "aad",
        "claims": [
            {"typ": "aud", "val": "api://provisioning"},
            {"typ": "appid", "val": APP_ID},
            {"typ": OID_URI, "val": oid},
            *({"typ": "roles", "val": role} for role in roles),
            *(claims or []),
        ],
        "name_typ": NAME_URI,
        "role_typ": ROLE_CLAIM_URI,
    }
    headers = {
        "X-MS-CLIENT-PRINCIPAL": encode(payload),
        "X-MS-CLIENT-PRINCIPAL-ID": oid,
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }
    if name is not None:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = name
    return headers


def test_no_principal_headers_is_no_principal() -> None:
    assert parse_principal({"Content-Type": "application/json"}) is None


def test_an_application_caller_is_known_by_its_object_id_with_its_roles() -> None:
    principal = parse_principal(platform_headers(SUBMIT, "Other.Role"))
    assert principal == Principal(OID, None, "aad", frozenset({SUBMIT, "Other.Role"}), APP_ID)
    assert principal.display_id == OID


def test_a_user_is_known_by_name_and_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in platform_headers(OPERATE, name="ada@contoso.example").items()}
    principal = parse_principal(headers)
    assert principal is not None
    assert principal.display_id == "ada@contoso.example"


def test_the_name_claim_counts_when_the_name_header_is_absent() -> None:
    principal = parse_principal(platform_headers(claims=[{"typ": NAME_URI, "val": "Ada Lovelace"}]))
    assert principal is not None
    assert principal.name == "Ada Lovelace"


def test_roles_under_role_typ_count_too() -> None:
    principal = parse_principal(platform_headers(claims=[{"typ": ROLE_CLAIM_URI, "val": OPERATE}]))
    assert principal is not None
    assert principal.roles == {OPERATE}


def test_operate_includes_submit_but_not_the_other_way_round() -> None:
    operator, submitter = parse_principal(platform_headers(OPERATE)), parse_principal(platform_headers(SUBMIT))
    assert operator is not None
    assert submitter is not None
    assert operator.has_role(SUBMIT)
    assert operator.has_role(OPERATE)
    assert submitter.has_role(SUBMIT)
    assert not submitter.has_role(OPERATE)
    assert not parse_principal(platform_headers("provisioning.submit")).has_role(SUBMIT)  # type: ignore[union-attr]


def test_the_id_comes_from_the_oid_claim_when_the_header_is_absent() -> None:
    headers = platform_headers(SUBMIT)
    del headers["X-MS-CLIENT-PRINCIPAL-ID"]
    principal = parse_principal(headers)
    assert principal is not None
    assert principal.id == OID


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda h: h.pop("X-MS-CLIENT-PRINCIPAL"), "X-MS-CLIENT-PRINCIPAL is missing"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": "not base64!"}), "not base64"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"\xff\xfe").decode()}), "UTF-8 JSON"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": encode([1, 2])}), "not a JSON object"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": encode({"claims": "x"})}), "no claims list"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": encode({"claims": [{"typ": 1}]})}), "claim 0"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL": "A" * 20_000}), "longer than"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL-ID": "0000-other"}), "different callers"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL-ID": "has space"}), "visible ASCII"),
        (lambda h: h.update({"X-MS-CLIENT-PRINCIPAL-NAME": "bad\nname"}), "printable name"),
    ],
    ids=[
        "no-principal",
        "not-base64",
        "not-utf8",
        "not-object",
        "no-claims",
        "bad-claim",
        "too-long",
        "ids-disagree",
        "bad-id",
        "bad-name",
    ],
)
def test_malformed_headers_are_refused_saying_what_is_wrong(change: Any, says: str) -> None:
    headers = platform_headers(SUBMIT)
    change(headers)
    with pytest.raises(PrincipalError, match=says):
        parse_principal(headers)


def test_a_principal_without_any_id_is_refused() -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": encode({"auth_typ": "aad", "claims": [{"typ": "roles", "val": SUBMIT}]})}
    with pytest.raises(PrincipalError, match="no id"):
        parse_principal(headers)


def test_a_refusal_never_echoes_the_header_value() -> None:
    with pytest.raises(PrincipalError) as refused:
        parse_principal({"X-MS-CLIENT-PRINCIPAL-ID": "secret-looking-value", "X-MS-CLIENT-PRINCIPAL": "@@@@"})
    assert "secret-looking-value" not in str(refused.value)
    assert "@@@@" not in str(refused.value)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_header_names = st.sampled_from(
    ["X-MS-CLIENT-PRINCIPAL", "X-MS-CLIENT-PRINCIPAL-ID", "X-MS-CLIENT-PRINCIPAL-NAME", "X-MS-CLIENT-PRINCIPAL-IDP"]
)


@given(st.dictionaries(_header_names, st.text(max_size=200)))
def test_any_header_text_gives_a_principal_or_a_clear_refusal(headers: dict[str, str]) -> None:
    try:
        principal = parse_principal(headers)
    except PrincipalError as exc:
        message = str(exc)
        assert message
    else:
        assert principal is None or principal.id


@given(_json_values, st.none() | st.text(max_size=40))
def test_any_json_in_the_principal_gives_a_principal_or_a_clear_refusal(payload: Any, principal_id: str | None) -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": encode(payload)}
    if principal_id is not None:
        headers["X-MS-CLIENT-PRINCIPAL-ID"] = principal_id
    try:
        principal = parse_principal(headers)
    except PrincipalError as exc:
        message = str(exc)
        assert message
    else:
        assert principal is not None
        assert 1 <= len(principal.id) <= 128


@given(st.lists(st.sampled_from([SUBMIT, OPERATE, "Other", "roles"]), max_size=5))
def test_roles_are_exactly_the_role_claims(roles: list[str]) -> None:
    principal = parse_principal(platform_headers(*roles))
    assert principal is not None
    assert principal.roles == set(roles)
