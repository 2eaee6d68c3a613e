"""Subjects named by userPrincipalName: resolved through Graph (GET /users/{upn}?$select=id, the SDK's request
builders, against the emulator) and provisioned under the resolved id; an unknown name fails SubjectNotFound."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devhost.stack import Stack
from tests.integration.conftest import wait_done
from tests.integration.timeouts import HTTP_TIMEOUT

pytestmark = pytest.mark.integration

UPN = "Cohort.User07@contoso.com"  # the tenant's cohort.user07@contoso.com: Graph matches UPNs case-insensitively
USER_ID = "c0ffee00-0000-4000-8000-000000000007"


def _submit(stack: Stack, upn: str) -> str:
    body = {"target": "seed-scim-app", "subjects": [{"userPrincipalName": upn, "objectTypeName": "User"}]}
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    return str(posted.headers["Location"])


def _calls(stack: Stack, operation: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.emulator_url}/_emulator/calls", params={"operation": operation}, timeout=HTTP_TIMEOUT)
    calls: list[dict[str, Any]] = answer.json()["calls"]
    return calls


def test_a_subject_given_by_upn_is_provisioned_under_its_resolved_id(stack: Stack) -> None:
    done = wait_done(_submit(stack, UPN))
    [call] = done["calls"]
    assert call["subject"] == {"userPrincipalName": UPN, "objectTypeName": "User"}
    assert call["status"] in ("succeeded", "skipped"), call
    # the SDK's request builder percent-encodes the name into the path
    lookups = [c for c in _calls(stack, "getUser") if c["path"] == "/beta/users/Cohort.User07%40contoso.com?$select=id"]
    assert lookups
    assert lookups[-1]["authorization"] == "Bearer"
    sent = [c["body"]["parameters"][0]["subjects"][0] for c in _calls(stack, "provisionOnDemand")]
    assert {"objectId": USER_ID, "objectTypeName": "User"} in sent
    assert all(s.get("objectId") != UPN for s in sent)


def test_a_name_that_does_not_resolve_fails_the_call_with_subject_not_found(stack: Stack) -> None:
    before = len(_calls(stack, "provisionOnDemand"))
    done = wait_done(_submit(stack, "nobody.here@contoso.com"))
    assert done["status"] == "failed"
    [call] = done["calls"]
    assert (call["status"], call["errorCode"], call["attempts"]) == ("failed", "SubjectNotFound", 1)
    assert len(_calls(stack, "provisionOnDemand")) == before


@pytest.mark.parametrize(
    "upn", ["no-at-sign", "a@b", "a@@contoso.com", ".a@contoso.com", "a..b@contoso.com", "a/b@contoso.com", "$x@c.com"]
)
def test_a_malformed_upn_is_refused_at_intake(stack: Stack, upn: str) -> None:
    body = {"target": "seed-scim-app", "subjects": [{"userPrincipalName": upn, "objectTypeName": "User"}]}
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 400
    assert [e["pointer"] for e in posted.json()["errors"]] == ["/subjects/0/userPrincipalName"]


def test_both_or_neither_name_is_refused(stack: Stack) -> None:
    for subject in (
        {"objectTypeName": "User"},
        {"objectId": USER_ID, "userPrincipalName": UPN, "objectTypeName": "User"},
    ):
        body = {"target": "seed-scim-app", "subjects": [subject]}
        posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
        assert posted.status_code == 400
        assert [e["pointer"] for e in posted.json()["errors"]] == ["/subjects/0"]
