"""Directory reads through the app's GraphServiceClient: a user's id by UPN, a group's members (paged).

Through the SDK's request builders (``users.by_user_id(upn)``, ``groups.by_group_id(id).members``, and
``with_url`` for ``@odata.nextLink``), sent with kiota's native response handler like the provisioning calls,
so authentication and middleware are the SDK's. The SDK's retry handler is off here too: a 429 or 5xx is
handed back as a :class:`GraphFailure` and retried by the caller's own (paced, recorded) policy.
A ``nextLink`` is followed only to the Graph host the app talks to, so the token never goes elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from shared.core.ports import GraphFailure, Member

#: Largest page Graph serves for members.
PAGE_SIZE = 999
#: Pages read at most for one group (999 x 500 members): a bound, not a limit anyone should reach.
MAX_PAGES = 500
_TEXT_LIMIT = 2000


def _type_name(odata_type: Any) -> str:
    text = str(odata_type or "")
    name = text.rsplit(".", 1)[-1] if text.startswith("#microsoft.graph.") else ""
    return name[:1].upper() + name[1:] if name else "Unknown"


class GraphDirectory:
    """Users by UPN and group members, read with the provisioning adapter's client."""

    def __init__(self, client: Callable[[], Awaitable[Any]], graph_base_url: str) -> None:
        self._client = client
        base = urlsplit(graph_base_url)
        self._origin = (base.scheme, base.netloc.lower())

    async def _get(self, build: Callable[[Any, Any], Any]) -> tuple[int, Any, Any] | GraphFailure:
        import httpx
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption

        try:
            client = await self._client()
            config: RequestConfiguration[Any] = RequestConfiguration(
                options=[ResponseHandlerOption(NativeResponseHandler()), RetryHandlerOption(max_retries=0)]
            )
            info = build(client, config)
            response = await client.request_adapter.send_async(info, None, None)
        except httpx.TimeoutException:
            return GraphFailure(None, "Timeout", "Graph did not answer in time.")
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", f"No answer from Graph: {type(exc).__name__}")
        except Exception as exc:  # the SDK or the identity failed: a failure to record, never a crash
            return GraphFailure(None, "UnexpectedError", f"The directory read raised {type(exc).__name__}")
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        return response.status_code, body, response.headers

    @staticmethod
    def _failure(status: int, body: Any, headers: Any) -> GraphFailure:
        error = body.get("error") if isinstance(body, dict) else None
        code = str(error.get("code")) if isinstance(error, dict) and error.get("code") else None
        message = str(error.get("message"))[:_TEXT_LIMIT] if isinstance(error, dict) else f"Graph answered {status}"
        retry_after = headers.get("Retry-After") if headers is not None else None
        seconds = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        return GraphFailure(status, code, message, headers.get("request-id") if headers else None, seconds)

    async def user_id(self, user_principal_name: str) -> str | GraphFailure | None:
        """``GET /users/{upn}?$select=id``: the id, None on 404, or the failure."""

        def build(client: Any, config: Any) -> Any:
            builder = client.users.by_user_id(user_principal_name)
            config.query_parameters = builder.UserItemRequestBuilderGetQueryParameters(select=["id"])
            return builder.to_get_request_information(config)

        answer = await self._get(build)
        if isinstance(answer, GraphFailure):
            return answer
        status, body, headers = answer
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return self._failure(status, body, headers)
        return str(body["id"])

    def _same_origin(self, link: str) -> bool:
        parts = urlsplit(link)
        return (parts.scheme, parts.netloc.lower()) == self._origin

    async def group_members(self, group_id: str) -> list[Member] | GraphFailure | None:
        """``GET /groups/{id}/members?$select=id&$top=999``, following ``@odata.nextLink``."""
        members: list[Member] = []
        next_link: str | None = None
        for _ in range(MAX_PAGES):

            def build(client: Any, config: Any, link: str | None = next_link) -> Any:
                builder = client.groups.by_group_id(group_id).members
                if link is not None:
                    return builder.with_url(link).to_get_request_information(config)
                config.query_parameters = builder.MembersRequestBuilderGetQueryParameters(select=["id"], top=PAGE_SIZE)
                return builder.to_get_request_information(config)

            answer = await self._get(build)
            if isinstance(answer, GraphFailure):
                return answer
            status, body, headers = answer
            if status == 404 and next_link is None:
                return None
            if status != 200 or not isinstance(body, dict) or not isinstance(body.get("value"), list):
                return self._failure(status, body, headers)
            members.extend(
                Member(str(m["id"]), _type_name(m.get("@odata.type")))
                for m in body["value"]
                if isinstance(m, dict) and isinstance(m.get("id"), str)
            )
            link = body.get("@odata.nextLink")
            if not link:
                return members
            if not isinstance(link, str) or not self._same_origin(link):
                return GraphFailure(status, "UnexpectedNextLink", "Graph's nextLink points to another host.")
            next_link = link
        return GraphFailure(200, "TooManyPages", f"More than {MAX_PAGES} pages of members.")
