"""HTTP boundary of the operator routes: list, retry, cancel, targets, poison.

Routing: the list (``GET /api/provision``) and the actions (``POST /api/provision/{requestId}/retry|cancel``)
are served by the ``provision`` function (route ``provision/{requestId?}/{action?}``), not by functions of
their own, because a function key opens only its own function: an operator who retries with the key they
submit and poll with can then read the ``Location`` the retry answers with. Everything else on that route goes
to :func:`shared.triggers.http_api.provision` unchanged. ``/api/targets`` and ``/api/poison`` are functions
of their own (nothing links between them and the request routes).

Who may call: every route here is guarded by :func:`shared.triggers.auth.authorize` with the operator role
(``auth.OPERATE``) before anything is read; the caller's name is recorded as ``retriedBy``/``cancelledBy``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import telemetry
from shared.contract import operator_views, views
from shared.contract.problems import Problem
from shared.core import ids
from shared.core.errors import SettingsError
from shared.runtime import Runtime, get_runtime
from shared.triggers import auth, http_api, links
from shared.triggers.http_io import (
    dependency_failure,
    json_response,
    method_not_allowed,
    problem_response,
    read_json_body,
)
from shared.usecases.operator import listing, poison

log = telemetry.get_logger(__name__)

ACTIONS = ("retry", "cancel")
MAX_POISON_BODY_BYTES = 64 * 1024


class _Refused(Exception):
    """The caller may not operate: the response :func:`auth.authorize` gave."""

    def __init__(self, response: func.HttpResponse) -> None:
        super().__init__("refused")
        self.response = response


def _operator(req: func.HttpRequest, runtime: Runtime | None) -> str | None:
    """Who is operating (None under keys only); raises :class:`_Refused` unless the caller has ``auth.OPERATE``."""
    caller = auth.authorize(req, auth.OPERATE, runtime)
    if isinstance(caller, func.HttpResponse):
        raise _Refused(caller)
    return auth.requested_by(caller)


async def _link(req: func.HttpRequest, rt: Runtime, *segments: str, query: Mapping[str, str] | None = None) -> str:
    """An absolute link from ``PUBLIC_BASE_URL``, with the caller's key when it may travel, and ``query``."""
    base = links.base_url(req.url, rt.settings.public_base_url)
    key = await links.travelling_key(req.params, req.headers, base, rt.admin_keys)
    url = links.api_url(base, *segments)
    params = {**(query or {}), **({"code": key} if key else {})}
    return f"{url}?{urlencode(params)}" if params else url


Handler = Callable[[func.HttpRequest, Runtime | None], Awaitable[func.HttpResponse]]


class Route(Protocol):
    """A route as the function calls it."""

    async def __call__(
        self, req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
    ) -> func.HttpResponse: ...


def _guarded(name: str) -> Callable[[Handler], Route]:
    """Decorator: Problems become problem+json, storage and settings failures 503/500, with the invocation bound."""

    def wrap(handler: Handler) -> Route:
        async def run(
            req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
        ) -> func.HttpResponse:
            with telemetry.bound(invocationId=invocation_id, operatorRoute=name):
                try:
                    return await handler(req, runtime)
                except _Refused as refused:
                    return refused.response
                except Problem as problem:
                    return problem_response(problem, instance=urlsplit(req.url).path)
                except (AzureError, OSError, SettingsError) as exc:
                    return dependency_failure(exc)

        run.__doc__ = handler.__doc__
        return run

    return wrap


# --- the provision function ---------------------------------------------------------------------------------------


async def provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``provision``: the list and the actions here; submit and status in :mod:`http_api`."""
    has_id = bool(req.route_params.get("requestId"))
    action = req.route_params.get("action")
    method = req.method.upper()
    if action:
        if action not in ACTIONS:
            return problem_response(Problem.not_found("Not found", "No such action on a request.", "not-found"))
        if method != "POST":
            return method_not_allowed("POST")
        handler = retry_request if action == "retry" else cancel_request
        return await handler(req, runtime, invocation_id=invocation_id)
    if method == "GET" and not has_id:
        return await list_requests(req, runtime, invocation_id=invocation_id)
    return await http_api.provision(req, runtime, invocation_id=invocation_id)


@_guarded("list")
async def list_requests(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``GET /api/provision?status=…``: request summaries newest first, a page at a time."""
    _operator(req, runtime)
    rt = runtime or get_runtime()
    query = operator_views.list_filter(req.params, rt.settings.targets)
    page = await listing.list_requests(query, index=rt.request_index, ledger=rt.ledger)
    next_link = None
    if page.next_after is not None:
        next_link = await _link(req, rt, "provision", query=operator_views.next_query(req.params, page.next_after))
    log.info("requests listed", extra={"returned": len(page.summaries), "rowsRead": page.rows_read})
    return json_response(200, operator_views.page_view(page, next_link))


def _request_id(req: func.HttpRequest) -> str:
    request_id = str(req.route_params.get("requestId", ""))
    if not ids.is_request_id(request_id):
        raise Problem.unknown_request()
    return request_id


@_guarded("retry")
async def retry_request(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``POST /api/provision/{id}/retry``: failed calls get new attempts; 202 and where to poll."""
    principal = _operator(req, runtime)
    request_id = _request_id(req)
    rt = runtime or get_runtime()
    retried = await rt.request_actions.retry(request_id, by=principal)
    location = await _link(req, rt, "provision", request_id)
    body = {"requestId": request_id, "status": retried.status.value, "retriedCalls": list(retried.call_ids)}
    wait = await rt.status.retry_after(request_id)
    return json_response(202, body, {"Location": location, "Retry-After": str(wait)})


@_guarded("cancel")
async def cancel_request(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``POST /api/provision/{id}/cancel``: calls not started are cancelled; 200 with the request."""
    principal = _operator(req, runtime)
    request_id = _request_id(req)
    rt = runtime or get_runtime()
    request, calls = await rt.request_actions.cancel(request_id, by=principal)
    return json_response(200, views.request_view(request, calls, include_logs=False))


# --- targets and poison -------------------------------------------------------------------------------------------


@_guarded("targets")
async def list_targets(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``GET /api/targets``: every configured target's job status, backlog and drain estimate."""
    _operator(req, runtime)
    rt = runtime or get_runtime()
    health = await rt.target_health.all(rt.settings.targets.values())
    return json_response(200, {"value": [operator_views.target_view(t) for t in health]})


async def poison_route(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``poison``: ``GET /api/poison`` lists, ``POST /api/poison/requeue`` moves messages back."""
    action = req.route_params.get("action")
    method = req.method.upper()
    if not action:
        if method != "GET":
            return method_not_allowed("GET")
        return await list_poison(req, runtime, invocation_id=invocation_id)
    if action != "requeue":
        return problem_response(Problem.not_found("Not found", "No such poison action.", "not-found"))
    if method != "POST":
        return method_not_allowed("POST")
    return await requeue_poison(req, runtime, invocation_id=invocation_id)


@_guarded("poison")
async def list_poison(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``GET /api/poison``: the messages of both poison queues, each with the ledger's reason."""
    _operator(req, runtime)
    rt = runtime or get_runtime()
    found = await poison.peek_all(rt.poison_queues, ledger=rt.ledger, index=rt.request_index)
    return json_response(200, {"value": [operator_views.poison_view(p) for p in found]})


@_guarded("requeue")
async def requeue_poison(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    """``POST /api/poison/requeue`` ``{"queue", "messageIds"?}``: back to the source queue; how many moved."""
    _operator(req, runtime)
    data = read_json_body(req)
    rt = runtime or get_runtime()
    queues = {q.name: q for q in rt.poison_queues}
    queue_name, message_ids = operator_views.requeue_body(data, tuple(queues))
    moved = await poison.requeue(queues[queue_name], message_ids)
    log.info("poison messages requeued", extra={"queue": queue_name, "moved": moved})
    return json_response(200, {"queue": queue_name, "requeued": moved})
