"""Invoking user functions (sync in threads, async awaited, context), the HTTP front end and timers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import azure.functions as func
import pytest
from aiohttp.test_utils import TestClient, TestServer
from azure.functions.timer import TimerRequest

from devhost import ncrontab
from devhost.http_server import HttpFrontEnd, encode_response
from devhost.indexing import FunctionSpec, TriggerKind
from devhost.invoke import InvocationLogFilter, Invoker, make_trace_parent
from devhost.keys import KeyRing
from devhost.timers import TimerRunner

NO_KEYS = KeyRing(required=False, host_key="", master_key="")


def spec(
    fn: Callable[..., Any],
    kind: TriggerKind = "http",
    *,
    trigger: dict[str, Any] | None = None,
    context: bool = False,
    name: str | None = None,
) -> FunctionSpec:
    """A FunctionSpec for a plain Python callable, as indexing would build it."""
    return FunctionSpec(
        name=name or fn.__name__,
        kind=kind,
        trigger=trigger or {"type": "httpTrigger", "name": "req", "authLevel": "ANONYMOUS"},
        func=fn,
        trigger_param="req",
        wants_context=context,
        is_async=asyncio.iscoroutinefunction(fn),
        directory="/app",
    )


async def test_sync_functions_run_in_the_thread_pool_with_context() -> None:
    seen: dict[str, Any] = {}

    def handler(req: str, context: func.Context) -> str:
        seen["thread"] = threading.current_thread().name
        seen["ctx"] = context
        return req.upper()

    invoker = Invoker(max_threads=2)
    result = await invoker.invoke(
        spec(handler, context=True), "hi", trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    assert result == "HI"
    assert seen["thread"].startswith("devhost-fn")
    ctx = seen["ctx"]
    assert isinstance(ctx, func.Context)
    assert ctx.function_name == "handler"
    assert ctx.function_directory == "/app"
    assert ctx.invocation_id
    assert ctx.trace_context.trace_parent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert ctx.retry_context.retry_count == 0
    assert ctx.thread_local_storage is not None
    invoker.close()


async def test_async_functions_run_on_the_loop_and_exceptions_propagate() -> None:
    loop_thread = threading.current_thread().name

    async def handler(req: str) -> str:
        assert threading.current_thread().name == loop_thread
        if req == "bad":
            raise ValueError("boom")
        return req

    invoker = Invoker()
    assert await invoker.invoke(spec(handler), "ok") == "ok"
    with pytest.raises(ValueError, match="boom"):
        await invoker.invoke(spec(handler), "bad")
    assert invoker.in_flight == 0
    invoker.close()


async def test_logs_carry_function_name_and_invocation_id(caplog: pytest.LogCaptureFixture) -> None:
    def handler(req: str) -> None:
        logging.getLogger("user").warning("from user code")

    invoker = Invoker()
    caplog.handler.addFilter(InvocationLogFilter())
    with caplog.at_level(logging.INFO):
        await invoker.invoke(spec(handler), "x", invocation_id="inv-123")
    record = next(r for r in caplog.records if r.getMessage() == "from user code")
    assert record.function_name == "handler"  # type: ignore[attr-defined]
    assert record.invocation_id == "inv-123"  # type: ignore[attr-defined]
    invoker.close()


async def test_drain_waits_for_in_flight_invocations() -> None:
    release = asyncio.Event()

    async def slow(req: str) -> None:
        await release.wait()

    invoker = Invoker()
    task = asyncio.create_task(invoker.invoke(spec(slow), "x"))
    await asyncio.sleep(0.01)
    assert invoker.in_flight == 1
    assert not await invoker.drain(0.05)
    release.set()
    assert await invoker.drain(1)
    await task
    invoker.close()


def test_trace_parent_kept_or_generated() -> None:
    kept = make_trace_parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert kept.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01"):
        fresh = make_trace_parent(bad)
        assert [len(p) for p in fresh.split("-")] == [2, 32, 16, 2]


def test_encode_response_like_the_worker() -> None:
    resp = func.HttpResponse("héllo", status_code=202, headers={"Location": "http://x/1"})
    resp.headers.add_header("Set-Cookie", "a=1")
    resp.headers.add_header("Set-Cookie", "b=2")
    out = encode_response(resp)
    assert out.status == 202
    assert out.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert out.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert out.body == "héllo".encode()
    assert encode_response(func.HttpResponse(b"{}", mimetype="application/json")).headers["Content-Type"] == (
        "application/json"
    )
    custom = encode_response(func.HttpResponse("x", headers={"content-type": "text/csv"}))
    assert custom.headers["Content-Type"] == "text/csv"
    assert encode_response("plain").status == 200
    with pytest.raises(TypeError):
        encode_response({"not": "a response"})


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], list[tuple[str, str]]]]:
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{req.method} {dict(req.route_params)} {req.get_body().decode()}")

    def fails(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("nope")

    def keyed(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("secret")

    def other(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("other")

    calls: list[tuple[str, str]] = []

    async def admin(s: FunctionSpec, value: str) -> None:
        calls.append((s.name, value))

    specs = [
        spec(
            echo,
            trigger={
                "type": "httpTrigger",
                "name": "req",
                "route": "echo/{id:int}",
                "methods": ["POST"],
                "authLevel": "ANONYMOUS",
            },
        ),
        spec(fails, trigger={"type": "httpTrigger", "name": "req", "authLevel": "ANONYMOUS"}),
        spec(keyed, trigger={"type": "httpTrigger", "name": "req", "authLevel": "FUNCTION"}),
        spec(other, trigger={"type": "httpTrigger", "name": "req", "authLevel": "FUNCTION"}),
        spec(lambda req: None, kind="timer", name="tick", trigger={"type": "timerTrigger", "name": "req"}),
    ]
    keys = KeyRing(required=True, host_key="hk", master_key="mk", function_keys={"keyed": "fk"})
    front = HttpFrontEnd(specs, "api", Invoker(), keys, admin_invoke=admin)
    async with TestClient(TestServer(front.make_app())) as test_client:
        yield test_client, calls


async def test_http_front_end(client: tuple[TestClient[Any, Any], list[tuple[str, str]]]) -> None:
    http_client, calls = client
    resp = await http_client.post("/api/echo/5", data=b"body")
    assert resp.status == 200
    assert await resp.text() == "POST {'id': '5'} body"
    assert (await http_client.get("/api/echo/5")).status == 404  # a method the route does not take: no route
    assert (await http_client.post("/api/echo/x")).status == 404
    failed = await http_client.get("/api/fails")
    assert failed.status == 500
    assert await failed.read() == b""
    assert (await http_client.get("/api/keyed")).status == 401
    assert (await http_client.get("/api/keyed?code=fk")).status == 200  # its own function key
    assert (await http_client.get("/api/other?code=fk")).status == 401  # not another function's
    assert (await http_client.get("/api/other", headers={"x-functions-key": "hk"})).status == 200  # host key
    assert (await http_client.get("/api/keyed?code=mk")).status == 200  # master key
    assert (await http_client.get("/admin/host/status?code=hk")).status == 401  # admin: the master key only
    assert (await http_client.get("/admin/host/status", headers={"x-functions-key": "mk"})).status == 200
    assert (await http_client.post("/admin/functions/tick", json={"input": "x"})).status == 401
    resp = await http_client.post("/admin/functions/tick", json={"input": "x"}, headers={"x-functions-key": "mk"})
    assert resp.status == 202
    assert calls == [("tick", "x")]


async def test_a_body_without_content_length_reaches_the_function_empty(
    client: tuple[TestClient[Any, Any], list[tuple[str, str]]],
) -> None:
    """As the host does (issue 7930): chunked bodies are dropped, headers kept; a Content-Length body arrives."""
    http_client, _ = client

    async def chunks() -> AsyncIterator[bytes]:
        yield b"bo"
        yield b"dy"

    chunked = await http_client.post("/api/echo/5", data=chunks())
    assert chunked.status == 200
    assert await chunked.text() == "POST {'id': '5'} "
    sized = await http_client.post("/api/echo/5", data=b"body")
    assert await sized.text() == "POST {'id': '5'} body"


async def test_timer_runs_never_overlap_and_run_on_startup() -> None:
    active = 0
    peak = 0
    requests: list[TimerRequest] = []

    async def tick(req: TimerRequest) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        requests.append(req)
        await asyncio.sleep(0.05)
        active -= 1

    timer_spec = spec(tick, kind="timer", trigger={"type": "timerTrigger", "name": "req", "runOnStartup": True})
    runner = TimerRunner(timer_spec, ncrontab.parse("0 0 0 1 1 *"), Invoker())
    runner.start()
    await asyncio.gather(runner.fire(), runner.fire(past_due=True))
    await runner.stop(1)
    assert len(requests) == 3
    assert peak == 1
    assert [r.past_due for r in requests].count(True) == 1
    assert "Next" in requests[0].schedule_status
