"""Graph's directory reads the app makes: ``GET /users/{id|upn}`` and ``GET /groups/{id}/members`` (paged).

Users come from the tenant file (its ``User`` objects, by ``objectId`` or ``attributes.userPrincipalName``,
case-insensitively as Graph matches UPNs) plus any added through ``POST /_emulator/directory``; an unknown
one is Graph's ``404 Request_ResourceNotFound``. Group members are the tenant group's ``members`` or those set
through the control route, served ``pageSize`` at a time (``$top`` lowers it) with an absolute
``@odata.nextLink`` carrying ``$skiptoken``, as Graph pages. Both need a valid bearer token, like every route.

Control: ``POST /_emulator/directory`` ``{"users": [{"id", "userPrincipalName"}], "groups": {"<id>":
["<member id>", …]}, "pageSize": n}``; ``POST /_emulator/reset`` does not clear it (``{"clear": true}`` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from emulator.identity import TokenCheck
from emulator.replies import json_response
from emulator.responses import error_body, new_guid
from emulator.state import EMULATOR, Emulator

__all__ = ["DIRECTORY", "Directory", "add_directory_routes"]

DEFAULT_PAGE_SIZE = 100


@dataclass
class Directory:
    """Users and group memberships added through the control route, and the page size."""

    users: dict[str, str] = field(default_factory=dict)  # lower-case UPN → id
    groups: dict[str, list[str]] = field(default_factory=dict)
    page_size: int = DEFAULT_PAGE_SIZE

    def user(self, emu: Emulator, key: str) -> tuple[str, str] | None:
        """(id, upn) of the user with this id or UPN."""
        wanted = key.lower()
        for obj in emu.state.tenant.objects.values():
            if obj.object_type_name != "User":
                continue
            upn = obj.attributes.get("userPrincipalName", "")
            if obj.object_id.lower() == wanted or upn.lower() == wanted:
                return obj.object_id, upn
        for upn, object_id in self.users.items():
            if upn == wanted or object_id.lower() == wanted:
                return object_id, upn
        return None

    def members(self, emu: Emulator, group_id: str) -> list[dict[str, str]] | None:
        """The group's members as Graph lists them, or None when there is no such group."""
        ids = self.groups.get(group_id.lower())
        if ids is None:
            group = emu.state.tenant.find_object("Group", group_id)
            if group is None:
                return None
            ids = list(group.members)
        return [{"@odata.type": "#microsoft.graph.user", "id": member} for member in ids]


DIRECTORY = web.AppKey("directory", Directory)


def _not_found(key: str, request_id: str, client_request_id: str) -> web.Response:
    message = f"Resource '{key}' does not exist or one of its queried reference-property objects are not present."
    body = error_body("Request_ResourceNotFound", message, request_id, client_request_id)
    return json_response(404, body, {"request-id": request_id, "client-request-id": client_request_id})


def _front_door(request: web.Request, operation: str) -> tuple[Emulator, TokenCheck, str, str, Any]:
    emu = request.app[EMULATOR]
    request_id = new_guid()
    client_request_id = request.headers.get("client-request-id") or request_id
    check = emu.issuer.check_authorization(request.headers.get("Authorization"), f"{request.scheme}://{request.host}")
    record = emu.calls.start(
        operation=operation,
        method=request.method,
        path=request.path_qs,
        api_version=request.path.split("/", 2)[1],
        authorization="Bearer" if check.valid else ("invalid" if check.present else "missing"),
        client_id=str(check.claims.get("appid")) if check.valid and check.claims else None,
        body=None,
        request_id=request_id,
    )
    return emu, check, request_id, client_request_id, record


async def _get_user(request: web.Request) -> web.StreamResponse:
    emu, check, request_id, client_request_id, record = _front_door(request, "getUser")
    headers = {"request-id": request_id, "client-request-id": client_request_id}
    if check.problem is not None:
        record.status = 401
        body = error_body("InvalidAuthenticationToken", str(check.problem), request_id, client_request_id)
        return json_response(401, body, headers)
    key = request.match_info["user"]
    found = request.app[DIRECTORY].user(emu, key)
    if found is None:
        record.status = 404
        return _not_found(key, request_id, client_request_id)
    object_id, upn = found
    version = request.path.split("/", 2)[1]
    select = request.query.get("$select")
    user: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/{version}/$metadata#users/$entity"}
    user |= {"id": object_id} if select == "id" else {"id": object_id, "userPrincipalName": upn}
    record.status = 200
    return json_response(200, user, headers)


async def _get_members(request: web.Request) -> web.StreamResponse:
    emu, check, request_id, client_request_id, record = _front_door(request, "getGroupMembers")
    headers = {"request-id": request_id, "client-request-id": client_request_id}
    if check.problem is not None:
        record.status = 401
        body = error_body("InvalidAuthenticationToken", str(check.problem), request_id, client_request_id)
        return json_response(401, body, headers)
    directory = request.app[DIRECTORY]
    group_id = request.match_info["group"]
    members = directory.members(emu, group_id)
    if members is None:
        record.status = 404
        return _not_found(group_id, request_id, client_request_id)
    try:
        size = min(directory.page_size, int(request.query.get("$top", directory.page_size)))
        start = int(request.query.get("$skiptoken", "0"))
    except ValueError:
        record.status = 400
        body = error_body("BadRequest", "Invalid $top or $skiptoken.", request_id, client_request_id)
        return json_response(400, body, headers)
    version = request.path.split("/", 2)[1]
    body = {
        "@odata.context": f"https://graph.microsoft.com/{version}/$metadata#directoryObjects",
        "value": members[start : start + max(1, size)],
    }
    if start + size < len(members):
        body["@odata.nextLink"] = str(request.url.with_query({"$top": str(size), "$skiptoken": str(start + size)}))
    record.status = 200
    return json_response(200, body, headers)


async def _configure(request: web.Request) -> web.StreamResponse:
    directory = request.app[DIRECTORY]
    try:
        patch = json.loads(await request.read() or b"{}")
        if patch.get("clear"):
            directory.users.clear()
            directory.groups.clear()
            directory.page_size = DEFAULT_PAGE_SIZE
        users = {str(u["userPrincipalName"]).lower(): str(u["id"]) for u in patch.get("users", [])}
        groups = {str(g).lower(): [str(m) for m in ms] for g, ms in dict(patch.get("groups", {})).items()}
        page_size = int(patch.get("pageSize", directory.page_size))
        if page_size < 1:
            raise ValueError("pageSize must be >= 1")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    directory.users.update(users)
    directory.groups.update(groups)
    directory.page_size = page_size
    return web.json_response(
        {"users": len(directory.users), "groups": sorted(directory.groups), "pageSize": directory.page_size}
    )


def add_directory_routes(app: web.Application) -> None:
    """Register before the Graph routes, whose catch-all would answer these paths with 400."""
    app[DIRECTORY] = Directory()
    app.router.add_post("/_emulator/directory", _configure)
    for version in ("beta", "v1.0"):
        app.router.add_get(f"/{version}/users/{{user}}", _get_user)
        app.router.add_get(f"/{version}/groups/{{group}}/members", _get_members)
