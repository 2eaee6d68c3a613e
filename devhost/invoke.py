"""Calling a user function the way the Python worker does.

The worker passes the trigger input under the binding's ``name`` and a ``context`` if the function asks
for one; ``async def`` functions run on the event loop while plain functions run in a thread pool, so a
blocking sync function does not stall other invocations (and a blocking async one does, as in Azure).
Every invocation gets an id that is attached to its log records, and in-flight invocations are tracked
so shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.functions import _abc as azf_abc

from devhost.indexing import FunctionSpec

log = logging.getLogger("devhost")

current_function: contextvars.ContextVar[str] = contextvars.ContextVar("devhost_function", default="-")
current_invocation: contextvars.ContextVar[str] = contextvars.ContextVar("devhost_invocation", default="-")


class InvocationLogFilter(logging.Filter):
    """Stamps every record with the function name and invocation id of the code that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``function_name``/``invocation_id`` attributes; never drops a record."""
        record.function_name = current_function.get()
        record.invocation_id = current_invocation.get()
        return True


class TraceContext(azf_abc.TraceContext):
    """W3C trace context of one invocation, as the worker exposes it."""

    def __init__(self, trace_parent: str, trace_state: str = "", attributes: Mapping[str, str] | None = None):
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._attributes = dict(attributes or {})

    @property
    def trace_parent(self) -> str:
        """``traceparent`` value (``00-<trace id>-<span id>-<flags>``)."""
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        """``tracestate`` value, empty if the caller sent none."""
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        """Extra trace attributes (none locally)."""
        return self._attributes


class RetryContext(azf_abc.RetryContext):
    """Retry state; the devhost has no function-level retry policies, so always the first attempt."""

    @property
    def retry_count(self) -> int:
        """Always 0."""
        return 0

    @property
    def max_retry_count(self) -> int:
        """Always 0."""
        return 0

    @property
    def exception(self) -> Any:
        """Always None."""
        return None


class Context(azf_abc.Context):
    """The ``context`` argument: a real ``azure.functions.Context`` so isinstance checks hold."""

    def __init__(
        self, invocation_id: str, function_name: str, function_directory: str, trace_parent: str, trace_state: str = ""
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = TraceContext(trace_parent, trace_state)
        self._retry_context = RetryContext()
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        """Unique id of this invocation (also in every log line)."""
        return self._invocation_id

    @property
    def function_name(self) -> str:
        """Name of the function as indexed."""
        return self._function_name

    @property
    def function_directory(self) -> str:
        """The app directory (the worker reports the script root)."""
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        """W3C trace context."""
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:
        """Retry state (always first attempt)."""
        return self._retry_context

    @property
    def thread_local_storage(self) -> Any:
        """Per-invocation ``threading.local``."""
        return self._thread_local_storage


_TRACEPARENT_CHARS = set("0123456789abcdef-")


def make_trace_parent(incoming: str | None) -> str:
    """Keep a well-formed incoming ``traceparent`` (same trace, as the host does), else start a trace."""
    if incoming:
        value = incoming.strip().lower()
        parts = value.split("-")
        if (
            len(parts) == 4
            and set(value) <= _TRACEPARENT_CHARS
            and [len(p) for p in parts] == [2, 32, 16, 2]
            and parts[1] != "0" * 32
        ):
            return f"{parts[0]}-{parts[1]}-{secrets.token_hex(8)}-{parts[3]}"
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _default_threads() -> int:
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return min(32, (os.cpu_count() or 1) + 4)


class Invoker:
    """Runs user functions and tracks in-flight invocations for graceful shutdown."""

    def __init__(self, max_threads: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_threads or _default_threads(), thread_name_prefix="devhost-fn")
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Number of invocations currently running."""
        return len(self._in_flight)

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        *,
        trace_parent: str | None = None,
        trace_state: str = "",
        invocation_id: str | None = None,
    ) -> Any:
        """Call ``spec``'s function with ``trigger_value`` and return what it returned.

        Exceptions propagate to the caller (the trigger decides what failure means); they are logged
        here with the traceback, once, tagged with the invocation.
        """
        inv_id = invocation_id or str(uuid.uuid4())
        kwargs: dict[str, Any] = {spec.trigger_param: trigger_value}
        if spec.wants_context:
            kwargs["context"] = Context(inv_id, spec.name, spec.directory, make_trace_parent(trace_parent), trace_state)
        fn_token = current_function.set(spec.name)
        inv_token = current_invocation.set(inv_id)
        try:
            log.info("Executing '%s' (id=%s)", spec.name, inv_id)
            task: asyncio.Future[Any]
            if spec.is_async:
                task = asyncio.ensure_future(spec.func(**kwargs))
            else:
                ctx = contextvars.copy_context()
                call = functools.partial(ctx.run, spec.func, **kwargs)
                task = asyncio.get_running_loop().run_in_executor(self._pool, call)
            self._in_flight.add(task)
            self._idle.clear()
            task.add_done_callback(self._done)
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                # Our caller was cancelled; the invocation itself keeps running to completion, as a
                # worker never abandons a started invocation.
                raise
            except Exception:
                log.exception("Executed '%s' (Failed, id=%s)", spec.name, inv_id)
                raise
            log.info("Executed '%s' (Succeeded, id=%s)", spec.name, inv_id)
            return result
        finally:
            current_function.reset(fn_token)
            current_invocation.reset(inv_token)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._in_flight.discard(task)
        if not self._in_flight:
            self._idle.set()

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` s for in-flight invocations; True if all finished."""
        if not self._in_flight:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Release the thread pool without waiting for stuck sync functions."""
        self._pool.shutdown(wait=False, cancel_futures=True)
