"""The emulator's directory: users by id or UPN (404 like Graph for unknown ones), group members paged with an
absolute @odata.nextLink, both behind the bearer token, configurable through /_emulator/directory."""

from __future__ import annotations

from urllib.parse import quote

from tests.unit.emulator.test_graph import Client, client  # noqa: F401 (the fixture)

GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"


async def test_a_user_is_found_by_upn_case_insensitively_or_by_id(client: Client) -> None:  # noqa: F811
    status, body, headers = await client.request("GET", f"/beta/users/{quote('Fresh.Start@contoso.com')}?$select=id")
    assert status == 200
    assert body["id"] == "e1a2b3c4-0001-4a5b-8c6d-000000000001"
    assert set(body) == {"@odata.context", "id"}
    assert headers["request-id"]
    status, body, _ = await client.request("GET", "/v1.0/users/e1a2b3c4-0001-4a5b-8c6d-000000000001")
    assert (status, body["userPrincipalName"]) == (200, "fresh.start@contoso.com")


async def test_an_unknown_user_is_graphs_404(client: Client) -> None:  # noqa: F811
    status, body, _ = await client.request("GET", "/beta/users/nobody%40contoso.com?$select=id")
    assert status == 404
    assert body["error"]["code"] == "Request_ResourceNotFound"


async def test_users_and_groups_added_through_the_control_route(client: Client) -> None:  # noqa: F811
    await client.control(
        "POST",
        "directory",
        {"users": [{"id": "new-1", "userPrincipalName": "new.hire@contoso.com"}], "groups": {GROUP: ["a", "b", "c"]}},
    )
    status, body, _ = await client.request("GET", "/beta/users/new.hire%40contoso.com?$select=id")
    assert (status, body["id"]) == (200, "new-1")
    await client.control("POST", "directory", {"pageSize": 2})
    status, page, _ = await client.request("GET", f"/beta/groups/{GROUP}/members?$select=id")
    assert status == 200
    assert [m["id"] for m in page["value"]] == ["a", "b"]
    assert page["@odata.nextLink"].startswith(client.base)
    status, page, _ = await client.request("GET", page["@odata.nextLink"][len(client.base) :])
    assert [m["id"] for m in page["value"]] == ["c"]
    assert "@odata.nextLink" not in page


async def test_directory_reads_need_a_token(client: Client) -> None:  # noqa: F811
    status, body, _ = await client.request("GET", "/beta/users/fresh.start%40contoso.com", token="")
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    status, _, _ = await client.request("GET", "/beta/groups/unknown/members")
    assert status == 404
