"""userPrincipalName: the strict format, and resolving it before the call (over a fake directory)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.ports import GraphFailure, Member
from shared.core.upn import is_user_principal_name
from shared.usecases import subjects


class FakeDirectory:
    def __init__(self, users: dict[str, str], failure: GraphFailure | None = None) -> None:
        self.users = users
        self.failure = failure
        self.asked: list[str] = []

    async def user_id(self, user_principal_name: str) -> str | GraphFailure | None:
        self.asked.append(user_principal_name)
        if self.failure is not None:
            return self.failure
        return self.users.get(user_principal_name.lower())

    async def group_members(self, group_id: str) -> list[Member] | GraphFailure | None:
        return None


@pytest.mark.parametrize(
    "upn",
    ["jane.doe@contoso.com", "j'o_n-es!#^~@sub.contoso.co.uk", "jane_contoso.com#EXT#@tenant.onmicrosoft.com"],
)
def test_real_upns_are_accepted(upn: str) -> None:
    assert is_user_principal_name(upn)


@pytest.mark.parametrize(
    "upn",
    [
        "",
        "jane",
        "@contoso.com",
        "jane@",
        "jane@contoso",
        "ja ne@contoso.com",
        "jane@@contoso.com",
        ".jane@contoso.com",
        "jane.@contoso.com",
        "ja..ne@contoso.com",
        "ja/ne@contoso.com",
        "ja?ne@contoso.com",
        "ja%41ne@contoso.com",
        "$jane@contoso.com",
        "jane@-contoso.com",
        "a" * 65 + "@contoso.com",
        "a@" + "b" * 45 + ".com",
    ],
)
def test_malformed_upns_are_refused(upn: str) -> None:
    assert not is_user_principal_name(upn)


@given(st.text(max_size=130))
@settings(max_examples=500, deadline=None)
def test_no_accepted_upn_can_change_a_graph_url(text: str) -> None:
    if is_user_principal_name(text):
        assert len(text) <= 113
        assert text.count("@") == 1
        assert not any(c in text for c in "/?%$&= \\\t\n")


async def test_a_resolved_subject_goes_to_graph_by_id_and_both_names_are_recorded() -> None:
    directory = FakeDirectory({"jane@contoso.com": "id-1"})
    resolved = await subjects.resolve(directory, {"userPrincipalName": "Jane@contoso.com", "objectTypeName": "User"})
    assert resolved == (
        {"objectId": "id-1", "objectTypeName": "User"},
        {"user_principal_name": "Jane@contoso.com", "object_id": "id-1"},
    )


async def test_an_unknown_name_is_subject_not_found_which_is_final() -> None:
    resolved = await subjects.resolve(
        FakeDirectory({}), {"userPrincipalName": "x@contoso.com", "objectTypeName": "User"}
    )
    assert isinstance(resolved, GraphFailure)
    assert (resolved.http_status, resolved.code) == (404, "SubjectNotFound")


async def test_a_directory_outage_is_handed_on_for_the_retry_policy() -> None:
    outage = GraphFailure(503, "ServiceUnavailable", "try later")
    resolved = await subjects.resolve(
        FakeDirectory({}, outage), {"userPrincipalName": "x@c.com", "objectTypeName": "U"}
    )
    assert resolved is outage


def test_only_subjects_named_by_upn_alone_are_resolved() -> None:
    assert subjects.needs_resolving({"userPrincipalName": "x@c.com", "objectTypeName": "User"})
    assert not subjects.needs_resolving({"objectId": "1", "objectTypeName": "User"})
