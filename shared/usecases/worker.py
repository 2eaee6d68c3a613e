"""The worker: one work item is one Graph call, claimed, paced, made, and recorded.

Delivery is at least once, so every step is safe to repeat: a finished call is never called again, a call
claimed by another worker (its version) is left to it, and anything that must happen later (a paced slot, a
retry, a held job) goes back on the queue with a visibility delay instead of a sleeping worker. No path drops
a work item while its call is unfinished: it is either processed, or re-enqueued for when it can be.

The steps before the Graph call are in :mod:`shared.usecases.worker_prepare`; every write of an outcome goes
through :class:`shared.usecases.worker_calls.CallWriter` (write the call, re-queue it, refresh the request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import telemetry
from shared.core import retry, send_deadline, textsplit, transitions
from shared.core.backlog import is_parked
from shared.core.errors import StaleWrite
from shared.core.pacing import lateness_for
from shared.core.ports import (
    Directory,
    GraphAnswer,
    GraphFailure,
    JobStatus,
    Ledger,
    LogStore,
    PendingIndex,
    Provisioner,
    RateLimiter,
    WorkItem,
    WorkQueue,
)
from shared.core.records import CallRecord
from shared.core.rules import TtlCache
from shared.core.send_deadline import SLOT_MISSED
from shared.core.vocabulary import CallStatus, WorkerOutcome
from shared.usecases.dispatcher import Dispatcher
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker_calls import MAX_SAVE_TRIES, MAX_STORAGE_RETRIES, CallWriter
from shared.usecases.worker_prepare import (
    HELD_JOB_CODES,
    LEAD_SECONDS,
    MAX_CLAIM_RENEWALS,
    MAX_SLOT_TRIES,
    CallPreparer,
    Ready,
    unexpected,
)

__all__ = [
    "EARLY_TOLERANCE_SECONDS",
    "HELD_JOB_CODES",
    "LEAD_SECONDS",
    "MAX_CLAIM_RENEWALS",
    "MAX_SAVE_TRIES",
    "MAX_SLOT_TRIES",
    "MAX_STORAGE_RETRIES",
    "Worker",
    "WorkerPolicy",
]

log = telemetry.get_logger(__name__)

#: A work item that arrives this much before its due time is put back instead of calling early.
EARLY_TOLERANCE_SECONDS = 1.0
#: Logs up to this many UTF-16 units (600 KB) are split across call-row properties, larger ones go to a blob:
#: a Table entity holds at most 1 MiB in all.
INLINE_LOG_LIMIT_UNITS = 300_000
#: How long "not entitled" right after an assignment is retried: Entra replicates assignments in minutes.
ENTITLEMENT_GRACE_SECONDS = 5 * 60
ENTITLEMENT_RETRY_SECONDS = 60.0
JOB_STATUS_TTL_SECONDS = 15.0
#: Reads and claims of one work item before it is put back because the row keeps changing under it.
MAX_CLAIM_TRIES = 3

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class WorkerPolicy:
    """Timing the operator may tune through settings."""

    claim_seconds: float = 300.0
    job_hold_seconds: float = 60.0
    rate_scope: str = "tenant"
    retry_policy: retry.Policy = retry.DEFAULT_POLICY


@dataclass
class Worker:
    """The adapters a work item needs, and the policy it runs under."""

    ledger: Ledger
    queue: WorkQueue
    graph: Provisioner
    rules: RuleDiscovery
    logs: LogStore
    limiter: RateLimiter
    pending: PendingIndex
    policy: WorkerPolicy = field(default_factory=WorkerPolicy)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    job_cache: TtlCache[tuple[str, str], JobStatus] | None = None
    #: The backlog: calls that find no slot wait there (None: they come back later instead).
    backlog: Dispatcher | None = None
    directory: Directory | None = None  # resolves subjects named by userPrincipalName
    writer: CallWriter = field(init=False)
    preparer: CallPreparer = field(init=False)

    def __post_init__(self) -> None:
        # a held job is looked at again at least twice per hold, so recovery resumes items promptly
        job_cache = self.job_cache or TtlCache(min(JOB_STATUS_TTL_SECONDS, self.policy.job_hold_seconds / 2))
        # clock and sleep are looked up on the worker at each use, so a test may swap them after construction
        self.writer = CallWriter(self.ledger, self.queue, self.pending, lambda s: self.sleep(s))
        self.preparer = CallPreparer(
            graph=self.graph,
            rules=self.rules,
            limiter=self.limiter,
            writer=self.writer,
            clock=lambda: self.clock(),
            sleep=lambda s: self.sleep(s),
            job_cache=job_cache,
            claim_seconds=self.policy.claim_seconds,
            job_hold_seconds=self.policy.job_hold_seconds,
            rate_scope=self.policy.rate_scope,
            backlog=self.backlog,
            directory=self.directory,
        )

    async def process(self, item: WorkItem) -> WorkerOutcome:
        """Make the call ``item`` points to, unless it is done, claimed or not yet due. Returns what happened."""
        with telemetry.bound(requestId=item.request_id, callId=item.call_id):
            return await self._process(item)

    async def _process(self, item: WorkItem) -> WorkerOutcome:
        for _ in range(MAX_CLAIM_TRIES):
            call = await self.ledger.get_call(item.request_id, item.call_id)
            if call is None:
                log.error("work item points to no call row; dropped")
                return WorkerOutcome.MISSING
            now = self.clock()
            settled = await self._settled(call, now) or await self._not_now(item, call, now)
            if settled is not None:
                return settled
            previous_attempts = call.attempts
            if previous_attempts >= self.policy.retry_policy.max_attempts:
                return await self._exhausted(item, call, previous_attempts)
            reason = transitions.attempt_reason(call)
            claim = transitions.claimed(previous_attempts + 1, now, self.policy.claim_seconds, reason)
            try:
                call = await self.ledger.update_call(transitions.apply(call, claim))
            except StaleWrite:
                continue  # changed since read (another worker, the sweeper): read again and decide again
            if previous_attempts:
                log.info("call attempted again", extra={"attempts": previous_attempts + 1, "reason": reason})
            # No refresh of the request here: a claim moves a pending call to running, so the request stays
            # pending; its row's counts catch up at the call's outcome (status views count the calls they read).
            return await self._run(item, call, previous_attempts)
        await self.queue.send(item, 1.0)
        log.info("the call kept changing while it was claimed; looking again shortly")
        return WorkerOutcome.CLAIMED

    async def _settled(self, call: CallRecord, now: datetime) -> WorkerOutcome | None:
        """Why this message has nothing to do, if so: the call is finished, or it waits in the backlog."""
        if call.status.is_terminal:
            # The worker that finished it may have died before updating the request: make sure it is current.
            await self.writer.refresh(call.request_id, now)
            log.info("call already finished; duplicate work item ignored", extra={"status": call.status})
            return WorkerOutcome.DUPLICATE
        if is_parked(call):
            # it waits in the backlog, which hands it a slot and a work item: this one is a duplicate
            log.info("call waits in the backlog for a slot; duplicate work item ignored")
            return WorkerOutcome.PARKED
        return None

    async def _not_now(self, item: WorkItem, call: CallRecord, now: datetime) -> WorkerOutcome | None:
        """Why the call is not attempted now, if so: claimed by another worker, not yet due, or it joins the
        calls already waiting for its scope's slots (parked before any claim)."""
        claimed_until = call.claimed_until or _NEVER
        if call.status is CallStatus.RUNNING and claimed_until > now:
            # Another worker holds it, or one died holding it: look again once the claim has run out.
            await self.queue.send(item, (claimed_until - now).total_seconds() + 1)
            log.info("call is claimed by another worker; looking again after the claim")
            return WorkerOutcome.CLAIMED
        due = call.next_attempt_at or _NEVER
        if call.reserved_at is not None and call.status is CallStatus.WAITING:
            due = call.reserved_at - timedelta(seconds=LEAD_SECONDS + 1)
        waits = call.status in (CallStatus.SCHEDULED, CallStatus.WAITING)
        if waits and (due - now).total_seconds() > EARLY_TOLERANCE_SECONDS:
            await self.queue.send(item, (due - now).total_seconds())
            log.info("work item arrived early; put back until due", extra={"due": due.isoformat()})
            return WorkerOutcome.EARLY
        if self.backlog is not None and await self.backlog.park_fresh(call, self.policy.rate_scope, now):
            return WorkerOutcome.PARKED
        return None

    async def _exhausted(self, item: WorkItem, call: CallRecord, attempts: int) -> WorkerOutcome:
        """A call already at the hard cap of attempts ends ``failed``, without another Graph call."""
        now = self.clock()
        await self.writer.transition(call, transitions.exhausted(call, attempts, now), owner=None, now=now)
        telemetry.graph_call(CallStatus.FAILED.value, None)
        log.error("call failed: attempts exhausted", extra={"attempts": attempts})
        return WorkerOutcome.FAILED

    async def _run(self, item: WorkItem, call: CallRecord, previous_attempts: int) -> WorkerOutcome:
        attempts = previous_attempts + 1
        try:
            ready = await self.preparer.prepare(call, previous_attempts)
            if isinstance(ready, Ready) and ready.failure is None:
                held = await self.preparer.keep_claim(call, previous_attempts, ready)
                if isinstance(held, WorkerOutcome):
                    return held
                call = held
        except Exception as exc:
            return await self._release(item, call, attempts, exc)
        if isinstance(ready, WorkerOutcome):
            return ready
        if ready.failure is not None:
            return await self._record_failure(item, call, ready.failure, attempts, ready.extra)
        assert ready.rule_id is not None
        send_by = None if ready.slot is None else ready.slot.timestamp() + lateness_for(self.limiter.limit)
        calling = self.clock()
        result = await self._call_graph(
            ready.service_principal_id, ready.job_id, ready.rule_id, ready.subject, send_by=send_by
        )
        if isinstance(result, GraphFailure) and result.code == SLOT_MISSED:
            return await self._missed(call, previous_attempts, ready, result)
        if self.backlog is not None:
            await self.backlog.pump_soon(ready.scope)  # the call freed a place: hand slots to the backlog
        if isinstance(result, GraphFailure):
            if result.http_status == 429:
                await self._throttled(call, ready, result, calling)
            return await self._record_failure(item, call, result, attempts, ready.extra)
        return await self._record_answer(item, call, result, attempts, ready.extra)

    async def _call_graph(
        self, sp: str, job: str, rule_id: str, subject: dict[str, Any], *, send_by: float | None
    ) -> GraphAnswer | GraphFailure:
        """One provisionOnDemand, not sent after ``send_by`` (the slot's lateness; see ``shared.core.send_deadline``);
        whatever escapes the adapter becomes a transient failure, never a lost attempt."""
        token = send_deadline.SEND_BY.set(send_by)
        try:
            return await self.graph.provision_on_demand(sp, job, rule_id, subject)
        except Exception as exc:
            return unexpected(exc, "calling provisionOnDemand")
        finally:
            send_deadline.SEND_BY.reset(token)

    async def _missed(self, call: CallRecord, previous_attempts: int, ready: Ready, why: GraphFailure) -> WorkerOutcome:
        """The request would have left too late for its slot and was not sent: the slot is given back for a fresh
        one at once (the next take reserves again, releasing this one), the attempt not spent."""
        log.warning("slot missed before the request went out; taking another", extra={"detail": why.message})
        await self.preparer.defer(call, previous_attempts, self.clock(), {"reserved_at": ready.slot})
        return WorkerOutcome.PACED

    async def _throttled(self, call: CallRecord, ready: Ready, result: GraphFailure, calling: datetime) -> None:
        """Graph said 429: the scope is blocked for its ``Retry-After``, or for a bare 429 our own backoff, grown by
        this call's 429s (not all its attempts). A call on a slot says how late it went: a 429 there means the
        shared limiter's margin was not enough, or something else calls Graph in the same scope."""
        if ready.slot is not None:
            lag = (calling - ready.slot).total_seconds()
            log.warning(
                "Graph answered 429 to a call sent %.3f s after its slot", lag, extra={"slotLagSeconds": round(lag, 3)}
            )
        throttles = (call.throttled_attempts or 0) + 1
        await self._report_throttle(ready.scope, result.retry_after_seconds or retry.backoff(throttles))

    async def _report_throttle(self, scope: str, seconds: float) -> None:
        """Tell the shared limiter; the 429 itself is recorded whether or not this works."""
        try:
            await self.limiter.report_throttle(scope, seconds)
        except Exception:
            log.warning("could not tell the shared limiter about a 429", exc_info=True)

    async def _release(self, item: WorkItem, call: CallRecord, attempts: int, exc: Exception) -> WorkerOutcome:
        """Something of ours failed before Graph was called: back to ``waiting`` with the reason, retried later.

        The attempt stays counted (no Graph call was made, but a fault that repeats must still reach the
        hard cap instead of looping). If even this write fails, the exception goes to the host, which
        delivers the message again; the claim then runs out and the next attempt says so.
        """
        log.error("preparing the call failed; it will be tried again", exc_info=exc)
        now = self.clock()
        delay = retry.backoff(attempts)
        try:
            saved = await self.writer.save(call, transitions.released(exc, now, delay), owner=attempts)
        except Exception:
            raise exc from None
        if saved is not None:
            await self.queue.send(item, delay)
        await self.writer.refresh(item.request_id, now, item.call_id)
        return WorkerOutcome.WAITING

    async def _record_answer(
        self, item: WorkItem, call: CallRecord, answer: GraphAnswer, attempts: int, extra: transitions.Changes
    ) -> WorkerOutcome:
        now = self.clock()
        changes = {**transitions.answered(answer, now), **extra, "reserved_at": None}
        status = transitions.status_of(changes)
        if (
            status is CallStatus.SKIPPED
            and changes.get("error_code") == "NotEffectivelyEntitled"
            and (now - (call.created_at or _NEVER)).total_seconds() < ENTITLEMENT_GRACE_SECONDS
        ):
            # Right after an assignment Entra may not have replicated it yet: try again in a minute.
            until = now + timedelta(seconds=ENTITLEMENT_RETRY_SECONDS)
            changes.update({"status": CallStatus.WAITING, "next_attempt_at": until, "completed_at": None})
            await self.writer.transition(call, changes, owner=attempts, now=now, requeue=ENTITLEMENT_RETRY_SECONDS)
            telemetry.graph_call(CallStatus.WAITING.value, answer.http_status)
            log.info("not entitled yet; retrying while the assignment replicates")
            return WorkerOutcome.WAITING
        if answer.value is not None and textsplit.utf16_units(answer.value) > INLINE_LOG_LIMIT_UNITS:
            changes["provisioning_log_blob"] = await self.logs.put(item.request_id, item.call_id, answer.value)
            changes["provisioning_log_length"] = len(answer.value)
            changes["provisioning_log"] = None
        elif answer.value is not None:
            changes["provisioning_log"] = answer.value
        saved = await self.writer.transition(call, changes, owner=None, now=now)
        telemetry.graph_call(str(status), answer.http_status)
        if saved is None:
            log.warning("graph call finished, but another worker had recorded the call first")
            return WorkerOutcome.DUPLICATE
        log.info(
            "graph call finished",
            extra={"status": status, "attempts": attempts, "errorCode": changes.get("error_code")},
        )
        return WorkerOutcome(str(status))

    async def _record_failure(
        self, item: WorkItem, call: CallRecord, failure: GraphFailure, attempts: int, extra: transitions.Changes
    ) -> WorkerOutcome:
        now = self.clock()
        changes, delay = transitions.failed(failure, call, attempts, now, self.policy.retry_policy)
        changes = {**changes, **extra, "reserved_at": None}
        status = transitions.status_of(changes)
        owner = attempts if delay is not None else None
        saved = await self.writer.transition(call, changes, owner=owner, now=now, requeue=delay)
        telemetry.graph_call(str(status), failure.http_status)
        details = {"httpStatus": failure.http_status, "errorCode": failure.code, "attempts": attempts}
        if saved is None:
            log.warning("graph call failed, but the call had been taken over meanwhile", extra=details)
            return WorkerOutcome.DUPLICATE
        if delay is not None:
            log.warning("graph call will be retried", extra={**details, "delaySeconds": round(delay, 1)})
        else:
            log.warning("graph call failed", extra=details)
        return WorkerOutcome(str(status))
