"""Fixture app for the devhost integration tests: records what each trigger saw.

Every invocation appends one JSON line to the file named by ``DEVHOST_TEST_RECORD`` so tests can assert
on exactly what the devhost passed in (route params, decoded queue body, dequeue count, past_due).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_lock = threading.Lock()


def record(event: dict[str, Any]) -> None:
    """Append one event to the record file (no-op when the tests did not ask for one)."""
    path = os.environ.get("DEVHOST_TEST_RECORD")
    if not path:
        return
    with _lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")


@app.route(route="items/{id:int}/{name?}", methods=["GET", "POST"])
def items(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Echo what the host passed, so routing and request building can be checked."""
    logging.info("items called")
    payload = {
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
        "trace_parent": context.trace_context.trace_parent,
    }
    return func.HttpResponse(
        json.dumps(payload),
        status_code=201,
        mimetype="application/json",
        headers={"Set-Cookie": "a=1", "X-Test": "yes"},
    )


@app.route(route="files/{*path}", auth_level=func.AuthLevel.ANONYMOUS)
async def files(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous catch-all route, async, with multiple cookies and a text body."""
    resp = func.HttpResponse(req.route_params.get("path", ""))
    resp.headers.add_header("Set-Cookie", "b=2")
    resp.headers.add_header("Set-Cookie", "c=3")
    return resp


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    """Always fails: the host answers an empty 500."""
    raise RuntimeError("secret detail that must not reach the caller")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    """Needs the master key when keys are checked."""
    return func.HttpResponse("ok")


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    """Records each delivery; ``fail…`` bodies raise, ``sleep:N`` sleeps, ``sleep-once:N`` only on try 1."""
    body = msg.get_body().decode()
    dequeue_count = getattr(msg, "dequeue_count", None)
    record(
        {"fn": "work", "event": "start", "id": msg.id, "body": body, "dequeue_count": dequeue_count, "pid": os.getpid()}
    )
    if body.startswith("fail"):
        raise ValueError("failing on purpose")
    if body.startswith("sleep:"):
        time.sleep(float(body.split(":", 1)[1]))
    if body.startswith("sleep-once:") and dequeue_count == 1:
        time.sleep(float(body.split(":", 1)[1]))
    record({"fn": "work", "event": "done", "id": msg.id, "body": body, "pid": os.getpid()})


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False, use_monitor=False)
async def tick(timer: func.TimerRequest) -> None:
    """Records each timer run."""
    record({"fn": "tick", "past_due": timer.past_due, "at": time.time()})
