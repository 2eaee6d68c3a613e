"""The HTTP front end: function routes under the route prefix, plus the admin invoke API.

Requests are turned into ``azure.functions.HttpRequest`` and responses written back the way the worker
encodes ``HttpResponse`` (content type from mimetype/charset unless set, several ``Set-Cookie`` headers
kept, other repeated headers collapsed to the last value).  An unhandled exception is an empty 500, as in
Azure.  Request bodies, headers and query strings are never logged: they carry keys and personal data.

Two host habits that surprise apps are kept on purpose: a body sent without ``Content-Length`` (chunked)
reaches the function empty, with every header intact (the host passes a body to the worker only when
``Content-Length`` > 0: ``GrpcMessageConversionExtensions.ToRpcHttp``, azure-functions-host issue 7930); and a
method a route does not take is a 404, as no route matched (the host's routing has no 405).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import _abc as azf_abc
from multidict import CIMultiDict

from devhost.easyauth import EasyAuth, strip_platform_headers
from devhost.indexing import FunctionSpec
from devhost.invoke import Invoker
from devhost.keys import KeyRing
from devhost.routes import Router, header_dict, query_params

log = logging.getLogger("devhost.http")

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the host's default request size limit (~100 MB)
AdminInvoke = Callable[[FunctionSpec, str], Awaitable[None]]


def encode_response(result: Any) -> web.Response:
    """Write a function's return value like the worker's ``HttpResponseConverter`` + the host."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        return web.Response(
            status=200, body=result.encode("utf-8"), headers={"Content-Type": "text/plain; charset=utf-8"}
        )
    if not isinstance(result, azf_abc.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, expected HttpResponse or str")
    headers: CIMultiDict[str] = CIMultiDict()
    cookies: list[str] = []
    for name, value in result.headers.items():
        if name.lower() == "set-cookie":
            cookies.append(value)
        else:
            headers[name] = value  # the worker sends a dict: the last duplicate wins
    if "content-type" not in headers:
        mimetype = str(result.mimetype)
        headers["Content-Type"] = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
    for cookie in cookies:
        headers.add("Set-Cookie", cookie)
    body = result.get_body() or b""
    return web.Response(status=int(result.status_code), body=body, headers=headers)


def _invoke_input(raw: bytes) -> str | None:
    """The ``input`` of an admin invoke body as the string the function gets; None when the body is not JSON."""
    try:
        payload = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return None
    value = payload.get("input", "") if isinstance(payload, dict) else None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


class HttpFrontEnd:
    """Builds the aiohttp application serving every HTTP function and the admin API."""

    # The host's parts it serves (and two optional admin hooks); one caller, devhost.host.
    def __init__(  # noqa: PLR0913
        self,
        specs: list[FunctionSpec],
        route_prefix: str,
        invoker: Invoker,
        keys: KeyRing,
        admin_invoke: AdminInvoke | None = None,
        all_functions: list[FunctionSpec] | None = None,
        easyauth: EasyAuth | None = None,
    ):
        self.invoker = invoker
        self.easyauth = easyauth
        self.keys = keys
        self.admin_invoke = admin_invoke
        self.router = Router(route_prefix)
        self._http: dict[str, FunctionSpec] = {}
        self._all = {s.name: s for s in (all_functions if all_functions is not None else specs)}
        for spec in specs:
            if spec.kind != "http":
                continue
            self._http[spec.name] = spec
            methods = spec.trigger.get("methods")
            self.router.add(str(spec.trigger.get("route") or spec.name), methods, spec.name)

    def make_app(self) -> web.Application:
        r"""One catch-all route so the devhost, not aiohttp, decides 404/405 like the host.

        ``[\s\S]*``, not ``.*``: aiohttp matches the decoded path, and a segment may hold a newline.
        """
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        response = await self._dispatch(request)
        log.info(
            "%s %s -> %d (%.0f ms)",
            request.method,
            request.rel_url.raw_path,
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        query = query_params(request.query.items())
        # The platform's headers about the caller are never taken from the caller (App Service strips them too).
        headers: Mapping[str, str] = strip_platform_headers(header_dict(request.headers.items()))
        if self.easyauth is not None:  # App Service Authentication runs before the host, keys included
            outcome = await self.easyauth.authenticate(path, headers)
            if isinstance(outcome, web.Response):
                return outcome
            headers = {**headers, **outcome}
        if path.startswith("/admin/"):
            return await self._admin(request, path, query, headers)
        match = self.router.route(request.method, path)
        if match.target is None:
            return web.Response(status=404)  # also for a method the route does not take, as in Azure
        spec = self._http[match.target]
        if not self.keys.allows(spec.name, spec.auth_level, query, headers):
            return web.Response(status=401)
        body = await request.read()
        if body and not (request.content_length or 0) > 0:
            log.info(
                "%s %s: body sent without Content-Length dropped, as the Functions host does", request.method, path
            )
            body = b""
        http_request = func.HttpRequest(
            request.method,
            str(request.url),
            headers=dict(headers),
            params=query,
            route_params=match.route_params,
            body=body,
        )
        try:
            result = await self.invoker.invoke(
                spec,
                http_request,
                trace_parent=headers.get("traceparent"),
                trace_state=headers.get("tracestate", ""),
            )
        except Exception:
            return web.Response(status=500)  # the invoker logged the traceback
        try:
            return encode_response(result)
        except Exception:
            log.exception("function %s returned a value the host cannot send; answering 500", spec.name)
            return web.Response(status=500)

    async def _admin(
        self, request: web.Request, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> web.StreamResponse:
        parts = path.strip("/").split("/")
        if parts == ["admin", "host", "status"] and request.method == "GET":
            if not self.keys.allows(None, "admin", query, headers):
                return web.Response(status=401)
            return web.json_response({"state": "Running", "version": "devhost"})
        if len(parts) != 3 or parts[1] != "functions":
            return web.Response(status=404)
        if request.method != "POST":
            return web.Response(status=405)
        if not self.keys.allows(None, "admin", query, headers):
            return web.Response(status=401)
        spec = self._all.get(parts[2])
        if spec is None:
            return web.Response(status=404)
        if spec.kind == "http" or self.admin_invoke is None:
            return web.json_response({"error": "HTTP functions are invoked through their route"}, status=400)
        value = _invoke_input(await request.read())
        if value is None:
            return web.json_response({"error": 'body must be JSON like {"input": "..."}'}, status=400)
        await self.admin_invoke(spec, value)
        return web.Response(status=202)
