"""Azure Functions entry point: triggers only, each one call into ``shared``.

Kept thin on purpose: no logic and no I/O at import (Flex Consumption allows 30 s to start), so the
real host and the local devhost index exactly the same functions. The one thing done at import is
``telemetry.on_app_load``: pure, it quietens the SDKs' per-call logging and logs an ERROR naming any
invalid app setting, so a broken deployment says so at startup.

Each way in is one HTTP function serving both its submit and its status route: a function key is valid
only for its own function, so the key a caller submits with must also read the ``Location`` it gets back.
For the same reason the operator's list and the retry and cancel actions ride on ``provision``: a retry
answers with the status URL as its ``Location``, readable with the key the retry was sent with.
"""

import os

import azure.functions as func

from shared import telemetry
from shared.contract.names import REQUESTS_QUEUE, WORK_QUEUE
from shared.contract.outcome_events import CALLBACKS_QUEUE
from shared.triggers import batch_api, console_api, http_api, operator_api, queue_api, timer_api

telemetry.on_app_load(os.environ)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("provision")
@app.route(route="provision/{requestId?}/{action?}", methods=["POST", "GET"])
async def provision(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """POST /api/provision submits; GET …/{requestId} reads; GET lists; POST …/{requestId}/retry|cancel acts."""
    return await operator_api.provision(req, invocation_id=context.invocation_id)


@app.function_name("provision_graph_compatible")
@app.route(
    route="servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand/{requestId?}",
    methods=["POST", "GET"],
)
async def provision_graph_compatible(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Graph's own provisionOnDemand body and path (Prefer: wait=N answers Graph-shaped); GET …/{requestId} reads."""
    return await http_api.graph_compatible(req, invocation_id=context.invocation_id)


@app.function_name("targets")
@app.route(route="targets", methods=["GET"])
async def targets(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Every configured target's job status, backlog and estimated drain time."""
    return await operator_api.list_targets(req, invocation_id=context.invocation_id)


@app.function_name("poison")
@app.route(route="poison/{action?}", methods=["GET", "POST"])
async def poison(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """GET /api/poison: both poison queues with reasons; POST /api/poison/requeue: move messages back."""
    return await operator_api.poison_route(req, invocation_id=context.invocation_id)


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"])
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The OpenAPI 3.1 document of this API."""
    return await http_api.openapi_document(req, invocation_id=context.invocation_id)


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """200 once storage and Graph are reachable; 503 naming what is not (an invalid setting by name only)."""
    return await http_api.health(req, invocation_id=context.invocation_id)


@app.function_name("console")
@app.route(route="console/{*asset}", methods=["GET", "HEAD"], auth_level=func.AuthLevel.ANONYMOUS)
async def console(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/console: the operator web page and its static files (no data, no secret: the API holds both)."""
    return console_api.serve(req)


@app.function_name("provision_work")
@app.queue_trigger(arg_name="msg", queue_name=WORK_QUEUE, connection="AzureWebJobsStorage")
async def provision_work(msg: func.QueueMessage, context: func.Context) -> None:
    """Make one Graph call (one work item) and record its outcome."""
    await queue_api.on_work_message(msg, invocation_id=context.invocation_id)


@app.function_name("provision_requests_queue")
@app.queue_trigger(arg_name="msg", queue_name=REQUESTS_QUEUE, connection="AzureWebJobsStorage")
async def provision_requests_queue(msg: func.QueueMessage, context: func.Context) -> None:
    """Requests from provisioning-requests: accepted like HTTP, or rejected and poisoned at once."""
    await queue_api.on_request_message(msg, invocation_id=context.invocation_id)


@app.function_name("ledger_retention")
@app.timer_trigger(arg_name="timer", schedule="0 30 3 * * *", use_monitor=True)
async def ledger_retention(timer: func.TimerRequest, context: func.Context) -> None:
    """Daily at 03:30 UTC: delete requests older than LEDGER_RETENTION_DAYS, with their logs."""
    await timer_api.on_retention_timer(timer, invocation_id=context.invocation_id)


@app.function_name("backlog_dispatch")
@app.timer_trigger(arg_name="timer", schedule="*/10 * * * * *", use_monitor=False)
async def backlog_dispatch(timer: func.TimerRequest, context: func.Context) -> None:
    """Every 10 seconds: hand free rate-limit slots to waiting calls (a safety net; workers do it after calls)."""
    await timer_api.on_backlog_timer(timer, invocation_id=context.invocation_id)


@app.function_name("sweeper")
@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", use_monitor=True)
async def sweeper(timer: func.TimerRequest, context: func.Context) -> None:
    """Every 5 minutes: re-drive stranded calls and enqueue far-future ones that came within 7 days."""
    await timer_api.on_sweeper_timer(timer, invocation_id=context.invocation_id)


# --- Outcome callbacks, batch intake, schedules (h-events) ---------------------------------------------------


@app.function_name("provision_batch")
@app.route(route="provision/batch", methods=["POST"])
async def provision_batch(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """POST /api/provision/batch: up to 1,000 requests, each accepted or refused on its own (the literal route wins)."""
    return await batch_api.provision_batch(req, invocation_id=context.invocation_id)


@app.function_name("provision_callbacks")
@app.queue_trigger(arg_name="msg", queue_name=CALLBACKS_QUEUE, connection="AzureWebJobsStorage")
async def provision_callbacks(msg: func.QueueMessage, context: func.Context) -> None:
    """One callback attempt: POST the finished request's status body to its callbackUrl (retried with backoff)."""
    await queue_api.on_callback_message(msg, invocation_id=context.invocation_id)


@app.function_name("provision_schedules")
@app.timer_trigger(arg_name="timer", schedule="0 * * * * *", use_monitor=False)
async def provision_schedules(timer: func.TimerRequest, context: func.Context) -> None:
    """Every minute: submit each due occurrence of PROVISIONING_SCHEDULES once (eventId schedule:{name}:{time})."""
    await timer_api.on_schedules_timer(timer, invocation_id=context.invocation_id)
