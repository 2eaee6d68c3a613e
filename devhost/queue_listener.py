"""Storage-queue trigger listener with the host's ``extensions.queues`` semantics.

The app's at-least-once handling (idempotency, poison handling, lease length) is only tested honestly if
the local listener leases, retries, poisons and redelivers messages the way the WebJobs queue extension
does: batches processed in parallel, a fresh batch when in-flight drops to ``newBatchThreshold``,
randomised exponential back-off when the queue is empty, a renewed lease while a function runs,
``visibilityTimeout`` after a failure, and ``<queue>-poison`` after ``maxDequeueCount`` attempts (or at once
for a message that is not valid base64).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue.aio import QueueClient

from devhost.indexing import FunctionSpec
from devhost.invoke import Invoker
from devhost.settings import QueueOptions

if TYPE_CHECKING:
    from azure.storage.queue import QueueMessage as SdkQueueMessage

log = logging.getLogger("devhost.queue")

MIN_POLL_SECONDS = 0.1
DEFAULT_LEASE_SECONDS = 600  # the real host leases a message for 10 minutes


class ConnectionSettingError(Exception):
    """A trigger's ``connection`` names no usable storage connection string."""


_SETTING_REF = re.compile(r"%([^%]+)%")


def resolve_setting_refs(value: str, environ: Mapping[str, str], *, what: str) -> str:
    """Resolve ``%NAME%`` binding expressions from app settings, as the host does for queue names."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise ConnectionSettingError(f"{what}: app setting {name!r} referenced by {value!r} is not set")
        return environ[name]

    return _SETTING_REF.sub(repl, value)


def resolve_connection(name: str, environ: Mapping[str, str]) -> str:
    """Find the connection string for a binding's ``connection`` like the host.

    Empty means ``AzureWebJobsStorage``; otherwise the setting ``NAME`` or else ``AzureWebJobsNAME``.
    Identity-based connections (``NAME__queueServiceUri``) need Entra tokens that Azurite cannot issue,
    so they are reported rather than half-supported.
    """
    name = name or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = environ.get(candidate, "").strip()
        if value:
            return value
    if any(k.startswith(f"{name}__") for k in environ):
        raise ConnectionSettingError(
            f"connection {name!r} is identity-based ({name}__…); the devhost needs a connection string "
            f"(e.g. UseDevelopmentStorage=true) in app setting {name!r}"
        )
    raise ConnectionSettingError(f"connection {name!r}: app setting {name!r} is not set")


def lease_seconds(environ: Mapping[str, str]) -> int:
    """``DEVHOST_QUEUE_LEASE_SECONDS`` (default 600, the host's lease); tests shorten it."""
    raw = environ.get("DEVHOST_QUEUE_LEASE_SECONDS", "")
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConnectionSettingError(f"DEVHOST_QUEUE_LEASE_SECONDS={raw!r} is not an integer") from exc
    if not 1 <= value <= 7 * 24 * 3600:
        raise ConnectionSettingError("DEVHOST_QUEUE_LEASE_SECONDS must be between 1 and 604800")
    return value


def decode_body(content: str, encoding: str) -> bytes | None:
    """The body the function sees, or None when a base64 queue holds a non-base64 message."""
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def next_backoff(current: float, maximum: float, rng: random.Random) -> float:
    """Randomised exponential back-off after an empty poll, capped at ``maxPollingInterval``."""
    grown = current * 2 * rng.uniform(0.8, 1.2)
    return max(MIN_POLL_SECONDS, min(maximum, grown))


@dataclass
class _Lease:
    message_id: str
    pop_receipt: str


class QueueListener:
    """Polls one queue for one function until stopped."""

    # The parts one queue trigger needs; one caller, from_spec, which reads them from the spec and settings.
    def __init__(  # noqa: PLR0913
        self,
        spec: FunctionSpec,
        options: QueueOptions,
        invoker: Invoker,
        connection_string: str,
        queue_name: str,
        lease: int = DEFAULT_LEASE_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.invoker = invoker
        self.queue_name = queue_name
        self.poison_name = f"{queue_name}-poison"
        self.lease = lease
        self._conn = connection_string
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._client: QueueClient | None = None
        self._poison: QueueClient | None = None
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    @classmethod
    def from_spec(
        cls, spec: FunctionSpec, options: QueueOptions, invoker: Invoker, environ: Mapping[str, str] | None = None
    ) -> QueueListener:
        """Resolve the connection and queue name from app settings (fails at startup, not at poll)."""
        env = os.environ if environ is None else environ
        conn = resolve_connection(str(spec.trigger.get("connection") or ""), env)
        queue = resolve_setting_refs(str(spec.trigger["queueName"]), env, what=f"function {spec.name}")
        return cls(spec, options, invoker, conn, queue, lease_seconds(env))

    async def start(self) -> None:
        """Connect and create the trigger queue if missing (the host does both at startup)."""
        # The SDK's default retry waits ~80 s before giving up on an unreachable account; a developer
        # whose Azurite is down needs to hear that in seconds, and a poll loop retries anyway.
        # (These kwargs configure the async client's own ExponentialRetry.) The host's own polling never
        # reaches the app's log: its HTTP lines go to DEBUG, leaving INFO to what the app itself logs.
        retry: dict[str, Any] = {
            "initial_backoff": 1,
            "increment_base": 2,
            "retry_total": 2,
            "http_logging_level": logging.DEBUG,
        }
        self._client = QueueClient.from_connection_string(self._conn, self.queue_name, **retry)
        self._poison = QueueClient.from_connection_string(self._conn, self.poison_name, **retry)
        with contextlib.suppress(ResourceExistsError):
            await self._client.create_queue()
        self._runner = asyncio.create_task(self._run(), name=f"queue:{self.spec.name}")

    async def stop(self, grace: float) -> None:
        """Stop polling and wait (bounded) for in-flight messages to be settled."""
        self._stopping.set()
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), grace)
            except TimeoutError:
                self._runner.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                log.warning("queue %s: message still in flight at shutdown; its lease will expire", self.queue_name)
                task.cancel()
        for client in (self._client, self._poison):
            if client is not None:
                await client.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        delay = MIN_POLL_SECONDS
        opts = self.options
        while not self._stopping.is_set():
            if len(self._tasks) > opts.new_batch_threshold:
                self._slot_freed.clear()
                waiter = asyncio.create_task(self._slot_freed.wait())
                stopper = asyncio.create_task(self._stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            try:
                messages = await self._receive(opts.batch_size)
            except AzureError as exc:
                log.warning("queue %s: receive failed (%s); backing off", self.queue_name, type(exc).__name__)
                messages = []
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
            if messages:
                delay = MIN_POLL_SECONDS
                if len(self._tasks) > opts.new_batch_threshold:
                    continue
            else:
                delay = next_backoff(delay, opts.max_polling_interval, self._rng)
            await self._sleep(delay)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("queue %s: settling a message failed", self.queue_name, exc_info=task.exception())

    async def _receive(self, count: int) -> list[SdkQueueMessage]:
        assert self._client is not None
        pager = self._client.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=self.lease
        )
        return [message async for message in pager]

    def _trigger_value(self, message: SdkQueueMessage, body: bytes) -> Any:
        annotation = self.spec.trigger_annotation
        if annotation is str:
            return body.decode("utf-8")
        if annotation is bytes:
            return body
        return FuncQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    async def _renew(self, lease: _Lease, done: asyncio.Event, lock: asyncio.Lock) -> None:
        """Keep the message invisible while the function runs, renewing at half the lease."""
        assert self._client is not None
        while True:
            try:
                await asyncio.wait_for(done.wait(), self.lease / 2)
                return
            except TimeoutError:
                pass
            async with lock:
                if done.is_set():
                    return
                try:
                    updated = await self._client.update_message(
                        lease.message_id, lease.pop_receipt, visibility_timeout=self.lease
                    )
                except AzureError as exc:
                    log.warning(
                        "queue %s: renewing the lease of %s failed (%s)",
                        self.queue_name,
                        lease.message_id,
                        type(exc).__name__,
                    )
                    continue
                if updated.pop_receipt:
                    lease.pop_receipt = updated.pop_receipt

    async def _process(self, message: SdkQueueMessage) -> None:
        assert self._client is not None
        content = message.content if isinstance(message.content, str) else str(message.content)
        lease = _Lease(message.id, str(message.pop_receipt))
        body = decode_body(content, self.options.message_encoding)
        if body is None:
            log.error(
                "queue %s: message %s is not valid base64; moving it to %s without invoking %s",
                self.queue_name,
                message.id,
                self.poison_name,
                self.spec.name,
            )
            await self._move_to_poison(content, lease)
            return
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.options.max_dequeue_count:
            # The WebJobs QueueProcessor checks this on receipt (BeginProcessingMessageAsync): a message that
            # has already been delivered maxDequeueCount times (its runs crashed, or another reader took it)
            # is poisoned without running the function again.
            log.warning(
                "queue %s: message %s was dequeued %d times (maxDequeueCount %d); moving it to %s without running %s",
                self.queue_name,
                message.id,
                dequeue_count,
                self.options.max_dequeue_count,
                self.poison_name,
                self.spec.name,
            )
            await self._move_to_poison(content, lease)
            return
        done = asyncio.Event()
        lock = asyncio.Lock()
        renewer = asyncio.create_task(self._renew(lease, done, lock))
        ok = True
        try:
            await self.invoker.invoke(self.spec, self._trigger_value(message, body), invocation_id=str(uuid.uuid4()))
        except Exception:
            ok = False
        finally:
            async with lock:
                done.set()
            await renewer
        if ok:
            await self._delete(lease)
        elif dequeue_count >= self.options.max_dequeue_count:
            log.warning(
                "queue %s: message %s failed %d time(s); moving it to %s",
                self.queue_name,
                message.id,
                dequeue_count,
                self.poison_name,
            )
            await self._move_to_poison(content, lease)
        else:
            try:
                await self._client.update_message(
                    lease.message_id,
                    lease.pop_receipt,
                    visibility_timeout=round(self.options.visibility_timeout),
                )
            except ResourceNotFoundError:
                log.warning(
                    "queue %s: message %s lost its lease before it could be released", self.queue_name, message.id
                )

    async def _delete(self, lease: _Lease) -> None:
        assert self._client is not None
        try:
            await self._client.delete_message(lease.message_id, lease.pop_receipt)
        except ResourceNotFoundError:
            # Lease expired and someone else owns it now: the host logs and moves on, too.
            log.warning("queue %s: message %s could not be deleted (lease lost)", self.queue_name, lease.message_id)

    async def _move_to_poison(self, content: str, lease: _Lease) -> None:
        assert self._poison is not None
        try:
            await self._poison.send_message(content)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self._poison.create_queue()
            await self._poison.send_message(content)
        await self._delete(lease)
