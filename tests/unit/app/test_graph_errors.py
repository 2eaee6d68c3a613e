"""Advice for failed Graph calls follows Graph's status, code and message, and names what to change."""

from __future__ import annotations

import pytest

from emulator.provisioning import BAD_JSON_MESSAGE
from shared.core.graph_errors import recommended_action

PERMISSIONS = ("Synchronization.ReadWrite.All", "Application.ReadWrite.OwnedBy", "owner")


def advice(status: int | None, code: str | None, message: str | None = None) -> str:
    text = recommended_action(status, code, message)
    assert text is not None
    return text


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("Unauthorized", "Graph answered HTTP 401 with no body"),  # the sync API's bare 401
        (None, None),
        ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    ],
)
def test_a_401_that_is_not_about_the_token_names_the_permission(code: str | None, message: str | None) -> None:
    text = advice(401, code, message)
    assert all(p in text for p in PERMISSIONS)


@pytest.mark.parametrize(
    "message",
    [
        "Access token is empty.",
        "Access token validation failure. Invalid audience.",
        "Access token validation failure. Signature validation failed.",
        "Access token validation failure. The token is malformed (IDX14100: JWT is not well formed).",
    ],
)
def test_a_refused_token_names_the_identity_and_the_cloud(message: str) -> None:
    text = advice(401, "InvalidAuthenticationToken", message)
    assert "AZURE_CLIENT_ID" in text
    assert "GRAPH_CLOUD" in text


def test_a_403_names_the_permission() -> None:
    text = advice(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    assert all(p in text for p in PERMISSIONS)


def test_managed_identity_unavailable_names_azure_client_id_and_the_identity() -> None:
    text = advice(None, "ManagedIdentityUnavailable", "No token for Microsoft Graph from …")
    assert "AZURE_CLIENT_ID" in text
    assert "user-assigned managed identity" in text
    assert "system-assigned identity" in text
    assert "Synchronization.ReadWrite.All" not in text


def test_token_expired_and_unparseable_answers() -> None:
    assert "clock" in advice(401, "TokenExpired", "Access token has expired or is not yet valid.")
    text = advice(200, "UnparseableResponse", "Graph answered HTTP 200 with a body that is not JSON")
    assert "GRAPH_BASE_URL" in text
    assert "raw answer is kept" in text


RULE_MESSAGE = (
    "The request identified this synchronization job: job1.  The request also identified this synchronization "
    "rule: r1.  However, the job does not include the rule."
)
TYPE_MESSAGE = (
    "The synchronization rule r1 has no object mapping for objectTypeName 'user' (object type names are "
    "case-sensitive). The rule maps: User, Group."
)
MEMBERS_MESSAGE = (
    "The on-demand provisioning request can only accept a single group with up to 5 members at a time; the "
    "request has 6 members."
)


def test_400_advice_follows_graphs_code_and_message() -> None:
    assert "ruleId" in advice(400, "RequestParameterInvalid", RULE_MESSAGE)
    type_advice = advice(400, "RequestParameterInvalid", TYPE_MESSAGE)
    assert "objectTypeName" in type_advice
    assert "ruleId is not a rule" not in type_advice
    members = advice(400, "BadRequest", MEMBERS_MESSAGE)
    assert "5 members" in members
    assert "ruleId" not in members
    assert "bug" in advice(400, "BadRequest", BAD_JSON_MESSAGE)
    other = advice(400, "BadRequest", "Each subject needs a non-empty 'objectId' and 'objectTypeName'.")
    assert "ruleId" not in other
    generic = advice(400, "InvalidRequest", "Something else entirely.")
    assert "InvalidRequest" in generic
    assert "ruleId" not in generic
    assert "ruleId" not in advice(400, None)


def test_404_tells_an_unknown_service_principal_from_an_unknown_job() -> None:
    sp = advice(404, "Request_ResourceNotFound", "Resource 'x' does not exist or one of its queried …")
    assert "servicePrincipalId" in sp
    assert "object id" in sp
    for code, message in (
        ("UnknownError", "No HTTP resource was found that matches the request URI."),
        ("ResourceNotFound", "The synchronization job 'j' was not found."),
        (None, None),
    ):
        assert "jobId" in advice(404, code, message)


@pytest.mark.parametrize("code", ["Timeout", "ConnectionError", "UnexpectedError", None])
def test_no_answer_at_all(code: str | None) -> None:
    assert "submit the request again" in advice(None, code)


def test_other_statuses() -> None:
    assert "conflict" in advice(409, "Conflict")
    assert "throttling" in advice(429, "TooManyRequests")
    assert "service health" in advice(503, "ServiceUnavailable")
    assert recommended_action(418, "Teapot") is None
