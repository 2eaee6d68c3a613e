"""The worker: one work item is one Graph call, claimed, paced, made, and recorded.

Delivery is at least once, so every step is safe to repeat: a finished call is never called again, a call
claimed by another worker (ETag) is left to it, and anything that must happen later (a paced slot, a retry,
a held job) goes back on the queue with a visibility delay instead of a sleeping worker. No path drops a
work item while its call is unfinished: it is either processed, or re-enqueued for when it can be.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared import telemetry
from shared.core import aggregate, graph_errors, outcome, retry, textsplit
from shared.core.errors import StaleWrite
from shared.core.pacing import lateness_for, scope_key
from shared.core.ports import (
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
from shared.core.rules import NoRule, TtlCache, normalise_types
from shared.usecases import subjects
from shared.usecases.rule_discovery import RuleDiscovery

log = telemetry.get_logger(__name__)

#: A work item that arrives this much before its due time is put back instead of calling early.
EARLY_TOLERANCE_SECONDS = 1.0
#: A paced item arrives this long before its slot (queue polling is not punctual) and sleeps the rest.
LEAD_SECONDS = 3.0
#: Logs up to this many UTF-16 units (600 KB) are split across properties (an entity holds 1 MiB), larger: a blob.
INLINE_LOG_LIMIT_UNITS = 300_000
#: How long "not entitled" right after an assignment is retried: Entra replicates assignments in minutes.
ENTITLEMENT_GRACE_SECONDS = 5 * 60
ENTITLEMENT_RETRY_SECONDS = 60.0
#: Job states in which provisionOnDemand is pointless: hold the item, do not burn attempts.
HELD_JOB_CODES = {"Quarantine": "JobQuarantined", "Paused": "JobPaused"}
JOB_STATUS_TTL_SECONDS = 15.0
#: Fresh reservations tried before a call that keeps missing its slot (a very loaded host) is deferred.
MAX_SLOT_TRIES = 3
#: Reads and claims of one work item before it is put back because the row keeps changing under it.
MAX_CLAIM_TRIES = 3
#: Re-read-and-merge rounds of one ledger write before giving up (each needs another writer in between).
MAX_SAVE_TRIES = 8
#: Renewals of a claim that ran low before the Graph call (each followed by a fresh slot).
MAX_CLAIM_RENEWALS = 2
#: Retries of one ledger write after a transient storage error (connection, 5xx).
MAX_STORAGE_RETRIES = 3


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
    directory: subjects.Directory | None = None  # resolves subjects named by userPrincipalName

    def __post_init__(self) -> None:
        if self.job_cache is None:
            # a held job is looked at again at least twice per hold, so recovery resumes items promptly
            self.job_cache = TtlCache(min(JOB_STATUS_TTL_SECONDS, self.policy.job_hold_seconds / 2))

    async def process(self, item: WorkItem) -> str:
        """Make the call ``item`` points to, unless it is done, claimed or not yet due. Returns what happened."""
        with telemetry.bound(requestId=item.request_id, callId=item.call_id):
            return await self._process(item)

    async def _process(self, item: WorkItem) -> str:
        ctx = {"requestId": item.request_id, "callId": item.call_id}
        for _ in range(MAX_CLAIM_TRIES):
            call = await self.ledger.get_call(item.request_id, item.call_id)
            if call is None:
                log.error("work item points to no call row; dropped", extra=ctx)
                return "missing"
            status = str(call["status"])
            now = self.clock()
            if status in aggregate.TERMINAL_CALL_STATUSES:
                # The worker that finished it may have died before updating the request: make sure it is current.
                await self._refresh(item.request_id, now)
                log.info("call already finished; duplicate work item ignored", extra={**ctx, "status": status})
                return "duplicate"
            claimed_until = _as_dt(call.get("claimedUntil"))
            if status == "running" and claimed_until > now:
                # Another worker holds it, or one died holding it: look again once the claim has run out.
                await self.queue.send(item, (claimed_until - now).total_seconds() + 1)
                log.info("call is claimed by another worker; looking again after the claim", extra=ctx)
                return "claimed"
            due = _as_dt(call.get("nextAttemptAt"))
            if call.get("reservedAt") is not None and status == "waiting":
                due = _as_dt(call["reservedAt"]) - timedelta(seconds=LEAD_SECONDS + 1)
            if status in ("scheduled", "waiting") and (due - now).total_seconds() > EARLY_TOLERANCE_SECONDS:
                await self.queue.send(item, (due - now).total_seconds())
                log.info("work item arrived early; put back until due", extra={**ctx, "due": due.isoformat()})
                return "early"

            previous_attempts = int(call.get("attempts") or 0)
            if previous_attempts >= self.policy.retry_policy.max_attempts:
                return await self._exhausted(item, call, previous_attempts, ctx)
            reason = _attempt_reason(call)
            try:
                call = await self.ledger.update_call(
                    call,
                    {
                        "status": "running",
                        "attempts": previous_attempts + 1,
                        "claimedUntil": now + timedelta(seconds=self.policy.claim_seconds),
                        "lastAttemptAt": now,
                        "attemptReason": reason,
                    },
                )
            except StaleWrite:
                continue  # changed since read (another worker, the sweeper): read again and decide again
            if previous_attempts:
                log.info("call attempted again", extra={**ctx, "attempts": previous_attempts + 1, "reason": reason})
            await self._refresh(item.request_id, now)
            return await self._run(item, call, previous_attempts, ctx)
        await self.queue.send(item, 1.0)
        log.info("the call kept changing while it was claimed; looking again shortly", extra=ctx)
        return "claimed"

    async def _refresh(self, request_id: str, now: datetime) -> None:
        """Update the request's status; once it is final, it leaves the sweeper's index."""
        request = await self.ledger.refresh_request(request_id, now)
        if request is not None and request.get("status") != aggregate.PENDING:
            await self.pending.remove(request_id)

    async def _save(self, call: dict[str, Any], changes: dict[str, Any], *, owner: int | None) -> dict[str, Any] | None:
        """Write ``changes`` to the call, keeping them when the row changed underneath (bounded re-read and merge).

        ``owner`` None: the changes are a final outcome (Graph's answer, or a final failure). They win over
        whatever else changed on the row (a sweeper's ``redrivenAt``, a newer claim) except another final
        outcome, which is kept instead: one answer, one record. ``owner`` n: the changes belong to attempt n
        (a retry, a deferral) and are written only while that attempt still owns the call.

        Returns the row as written, or None when it was not written because someone else's result stands.
        A transient storage error is retried briefly; one that persists raises (the host retries the message).
        """
        current = call
        for attempt in range(MAX_SAVE_TRIES):
            try:
                return await self.ledger.update_call(current, {**changes, **_stale_parts(current, changes)})
            except StaleWrite:
                fresh = await self.ledger.get_call(str(call["PartitionKey"]), str(call["RowKey"]))
            except (ServiceRequestError, ServiceResponseError) as exc:
                if attempt >= MAX_STORAGE_RETRIES:
                    raise
                log.warning("ledger write failed; trying again", extra={"error": type(exc).__name__})
                await self.sleep(0.5 * 2**attempt)
                continue
            except HttpResponseError as exc:
                if attempt >= MAX_STORAGE_RETRIES or (exc.status_code is not None and exc.status_code < 500):
                    raise
                log.warning("ledger write failed; trying again", extra={"error": type(exc).__name__})
                await self.sleep(0.5 * 2**attempt)
                continue
            if fresh is None:
                log.error("call row disappeared while it was being recorded")
                return None
            if str(fresh["status"]) in aggregate.TERMINAL_CALL_STATUSES:
                log.warning(
                    "the call was recorded by another worker meanwhile; its outcome is kept",
                    extra={"status": fresh["status"], "discarded": changes.get("status")},
                )
                return None
            if owner is not None and int(fresh.get("attempts") or 0) != owner:
                log.info("a newer attempt owns the call; this attempt's result is not written")
                return None
            log.info("the call row changed while this attempt ran; writing over the fresh row")
            current = fresh
        raise StaleWrite(f"{call['PartitionKey']}/{call['RowKey']} kept changing")

    async def _exhausted(self, item: WorkItem, call: dict[str, Any], attempts: int, ctx: dict[str, str]) -> str:
        """A call already at the hard cap of attempts ends ``failed``, without another Graph call."""
        now = self.clock()
        last = f"; the last ended with {call['errorCode']}: {call.get('errorMessage')}" if call.get("errorCode") else ""
        changes = {
            "status": "failed",
            "errorCode": "AttemptsExhausted",
            "errorMessage": f"{attempts} attempts were made without a final outcome{last}",
            "recommendedAction": "The call was attempted as often as the service allows. Check the earlier error, "
            "Graph's service health and the job, then submit the request again.",
            "completedAt": now,
            "claimedUntil": None,
            "reservedAt": None,
        }
        await self._save(call, changes, owner=None)
        await self._refresh(item.request_id, now)
        telemetry.graph_call("failed", None)
        log.error("call failed: attempts exhausted", extra={**ctx, "attempts": attempts})
        return "failed"

    async def _defer(
        self,
        item: WorkItem,
        call: dict[str, Any],
        previous_attempts: int,
        until: datetime,
        changes: dict[str, Any],
        lead: float = 0.0,
    ) -> None:
        """Back to ``waiting`` without spending an attempt, and on the queue again for ``until`` (minus ``lead``).

        Queue delays are whole seconds: rounding down, plus the lead, makes the item arrive a little early
        rather than late.
        """
        now = self.clock()
        saved = await self._save(
            call,
            {
                "status": "waiting",
                "attempts": previous_attempts,
                "claimedUntil": None,
                "nextAttemptAt": until,
                **changes,
            },
            owner=previous_attempts + 1,
        )
        if saved is not None:
            delay = max(0.0, (until - now).total_seconds() - lead)
            await self.queue.send(item, float(int(delay)) if lead else delay)
        await self._refresh(item.request_id, now)

    async def _job_hold(self, sp: str, job: str) -> JobStatus | None:
        """The job's status when it is one that holds calls (cached briefly); None when calls may go."""
        key = (sp.lower(), job)
        assert self.job_cache is not None
        status = self.job_cache.get(key)
        if status is None:
            try:
                fetched = await self.graph.job_status(sp, job)
            except Exception:  # the adapter must not raise; if it does, it is as unknown as a failure
                log.exception("reading the job's status raised; the call goes ahead")
                fetched = GraphFailure(None, "UnexpectedError", "job status could not be read")
            # Cannot tell (a stand-in without this endpoint, a transient error): let calls go; cache that answer.
            status = JobStatus(None) if isinstance(fetched, GraphFailure) else fetched
            self.job_cache.put(key, status)
        return status if status.code in HELD_JOB_CODES else None

    async def _run(self, item: WorkItem, call: dict[str, Any], previous_attempts: int, ctx: dict[str, str]) -> str:
        attempts = previous_attempts + 1
        try:
            ready = await self._prepare(item, call, previous_attempts, ctx)
            if isinstance(ready, _Ready) and ready.failure is None:
                held = await self._keep_claim(item, call, previous_attempts, ready, ctx)
                if isinstance(held, str):
                    return held
                call = held
        except Exception as exc:
            return await self._release(item, call, attempts, exc, ctx)
        if isinstance(ready, str):
            return ready
        if ready.failure is not None:
            return await self._record_failure(item, call, ready.failure, attempts, ctx, ready.extra)
        assert ready.rule_id is not None
        result = await self._call_graph(ready.service_principal_id, ready.job_id, ready.rule_id, ready.subject)
        if isinstance(result, GraphFailure):
            if result.http_status == 429:
                # a bare 429 blocks the scope for our own backoff, grown by this call's 429s (not all its attempts)
                throttles = int(call.get("throttledAttempts") or 0) + 1
                await self._report_throttle(ready.scope, result.retry_after_seconds or retry.backoff(throttles))
            return await self._record_failure(item, call, result, attempts, ctx, ready.extra)
        return await self._record_answer(item, call, result, attempts, ctx, ready.extra)

    async def _prepare(
        self, item: WorkItem, call: dict[str, Any], previous_attempts: int, ctx: dict[str, str]
    ) -> str | _Ready:
        """Everything before the Graph call: job hold, rule, pacing. A string when the item ends here."""
        subject, extra, unresolved = await subjects.prepare(self.directory, json.loads(str(call["subject"])))
        sp, job = str(call["servicePrincipalId"]), str(call["jobId"])

        held = await self._job_hold(sp, job)
        if held is not None:
            until = self.clock() + timedelta(seconds=self.policy.job_hold_seconds)
            message = f"The synchronization job is {held.code}" + (f" ({held.reason})." if held.reason else ".")
            await self._defer(
                item,
                call,
                previous_attempts,
                until,
                {"errorCode": HELD_JOB_CODES[str(held.code)], "errorMessage": message, "reservedAt": None},
            )
            log.warning("job is not running; call held", extra={**ctx, "jobStatus": held.code})
            return "held"

        rule_id = str(call["ruleId"]) if call.get("ruleId") else None
        scope = scope_key(self.policy.rate_scope, sp, job)
        if unresolved is not None:  # a userPrincipalName nobody has, or the directory failed
            return _Ready(sp, job, None, subject, extra, scope, failure=unresolved)
        if rule_id is not None:
            try:
                known = await self.rules.known_rule(sp, job, rule_id)
            except Exception:  # only settles casing; never blocks the call
                log.exception("reading the job's schema raised; the subject is sent as written")
                known = None
            if known is not None:
                subject, notes = normalise_types(subject, known)
                if notes:
                    extra.update(_normalised(subject, notes))
        else:
            try:
                rule = await self.rules.resolve(sp, job, str(subject["objectTypeName"]))
            except Exception as exc:
                rule = _unexpected(exc, "reading the job's schema")
            if isinstance(rule, NoRule):
                await self._save(
                    call,
                    {
                        "status": "rejected",
                        "errorCode": "NoMatchingRule",
                        "errorMessage": rule.reason,
                        "completedAt": self.clock(),
                        "claimedUntil": None,
                    },
                    owner=None,
                )
                await self._refresh(item.request_id, self.clock())
                log.warning("no rule fits the subject; call rejected", extra={**ctx, "reason": rule.reason})
                return "rejected"
            if isinstance(rule, GraphFailure):
                return _Ready(sp, job, None, subject, extra, scope, failure=rule)
            rule_id = rule.id
            extra.update({"ruleId": rule.id, "ruleSource": "schema"})
            subject, notes = normalise_types(subject, rule)
            if notes:
                extra.update(_normalised(subject, notes))

        slot = await self._take_slot(item, call, previous_attempts, scope, ctx)
        if slot is None:
            return "paced"
        return _Ready(sp, job, rule_id, subject, extra, scope, slot)

    async def _keep_claim(
        self, item: WorkItem, call: dict[str, Any], previous_attempts: int, ready: _Ready, ctx: dict[str, str]
    ) -> dict[str, Any] | str:
        """The call, still claimed by this attempt with time enough left to make the call and record it.

        A worker that stalled before the call (a loaded host, a contended limiter row) may find its claim
        almost or already run out; another worker may then take the call over and make it too. So the
        claim is renewed (conditionally, as this attempt's) when less than half of it is left, and the call
        is not made at all when another attempt owns it by now. A slot missed while renewing is replaced.
        """
        attempts = previous_attempts + 1
        lateness = timedelta(seconds=lateness_for(self.limiter.limit))
        slot = ready.slot
        for _ in range(MAX_CLAIM_RENEWALS):
            now = self.clock()
            if (_as_dt(call.get("claimedUntil")) - now).total_seconds() >= self.policy.claim_seconds / 2:
                break
            until = now + timedelta(seconds=self.policy.claim_seconds)
            renewed = await self._save(call, {"claimedUntil": until}, owner=attempts)
            if renewed is None:
                log.warning("claim ran out before the call and another attempt owns it; Graph not called", extra=ctx)
                return "superseded"
            log.info("claim ran low before the call; renewed", extra=ctx)
            call = renewed
            if slot is None or self.clock() > slot + lateness:
                # the slot went by while renewing: give it back for a fresh one (the reservedAt of a missed slot)
                missed = {**call, "reservedAt": slot}
                fresh_slot = await self._take_slot(item, missed, previous_attempts, ready.scope, ctx)
                if fresh_slot is None:
                    return "paced"
                slot = fresh_slot
        return call

    async def _call_graph(self, sp: str, job: str, rule_id: str, subject: dict[str, Any]) -> GraphAnswer | GraphFailure:
        """One provisionOnDemand; whatever escapes the adapter becomes a transient failure, never a lost attempt."""
        try:
            return await self.graph.provision_on_demand(sp, job, rule_id, subject)
        except Exception as exc:
            return _unexpected(exc, "calling provisionOnDemand")

    async def _report_throttle(self, scope: str, seconds: float) -> None:
        """Tell the shared limiter; the 429 itself is recorded whether or not this works."""
        try:
            await self.limiter.report_throttle(scope, seconds)
        except Exception:
            log.warning("could not tell the shared limiter about a 429", exc_info=True)

    async def _release(
        self, item: WorkItem, call: dict[str, Any], attempts: int, exc: Exception, ctx: dict[str, str]
    ) -> str:
        """Something of ours failed before Graph was called: back to ``waiting`` with the reason, retried later.

        The attempt stays counted (no Graph call was made, but a fault that repeats must still reach the
        hard cap instead of looping). If even this write fails, the exception goes to the host, which
        delivers the message again; the claim then runs out and the next attempt says so.
        """
        log.error("preparing the call failed; it will be tried again", exc_info=exc, extra=ctx)
        now = self.clock()
        delay = retry.backoff(attempts)
        changes = {
            "status": "waiting",
            "claimedUntil": None,
            "reservedAt": None,
            "nextAttemptAt": now + timedelta(seconds=delay),
            "errorCode": "InternalError",
            "errorMessage": f"Preparing the call failed ({type(exc).__name__}); Graph was not called.",
        }
        try:
            saved = await self._save(call, changes, owner=attempts)
        except Exception:
            raise exc from None
        if saved is not None:
            await self.queue.send(item, delay)
        await self._refresh(item.request_id, now)
        return "waiting"

    async def _take_slot(
        self, item: WorkItem, call: dict[str, Any], previous_attempts: int, scope: str, ctx: dict[str, str]
    ) -> datetime | None:
        """Start the call inside its rate-limit slot (returned); None when it was deferred to a later slot.

        A slot is only good if the call starts within the allowed lateness after it: a slot reserved "now"
        can already be stale by the time the limiter's write returns under load, so it is checked right
        before the call and given back for a fresh one if it was missed.
        """
        lateness = timedelta(seconds=lateness_for(self.limiter.limit))
        reserved = call.get("reservedAt")
        slot = _as_dt(reserved) if reserved is not None else None
        for _ in range(MAX_SLOT_TRIES):
            now = self.clock()
            if slot is None or now > slot + lateness:
                missed = slot.timestamp() if slot is not None else None
                reservation = await self.limiter.reserve(scope, release=missed)
                if reservation.start is None:
                    until = datetime.fromtimestamp(reservation.retry_at, UTC)
                    await self._defer(item, call, previous_attempts, until, {"reservedAt": None})
                    log.info("rate limit: no slot now; deferred", extra={**ctx, "until": until.isoformat()})
                    return None
                slot = datetime.fromtimestamp(reservation.start, UTC)
                now = self.clock()
                if (slot - now).total_seconds() > LEAD_SECONDS + 1:
                    telemetry.limiter_wait((slot - now).total_seconds())
                    await self._defer(item, call, previous_attempts, slot, {"reservedAt": slot}, lead=LEAD_SECONDS)
                    log.info("rate limit: slot reserved; deferred until it", extra={**ctx, "slot": slot.isoformat()})
                    return None
            wait = (slot - now).total_seconds()
            if wait > 0:
                await self.sleep(wait)
            if self.clock() <= slot + lateness:
                telemetry.limiter_wait(max(0.0, wait))
                return slot
        until = self.clock() + timedelta(seconds=1)
        await self._defer(item, call, previous_attempts, until, {"reservedAt": None})
        log.warning("rate limit: kept missing slots under load; deferred", extra=ctx)
        return None

    async def _record_answer(
        self,
        item: WorkItem,
        call: dict[str, Any],
        answer: GraphAnswer,
        attempts: int,
        ctx: dict[str, str],
        extra: dict[str, Any],
    ) -> str:
        now = self.clock()
        changes = {**_answer_changes(answer, now), **extra, "reservedAt": None}
        if (
            changes["status"] == "skipped"
            and changes.get("errorCode") == "NotEffectivelyEntitled"
            and (now - _as_dt(call.get("createdAt"))).total_seconds() < ENTITLEMENT_GRACE_SECONDS
        ):
            # Right after an assignment Entra may not have replicated it yet: try again in a minute.
            until = now + timedelta(seconds=ENTITLEMENT_RETRY_SECONDS)
            changes.update({"status": "waiting", "nextAttemptAt": until, "completedAt": None})
            if await self._save(call, changes, owner=attempts) is not None:
                await self.queue.send(item, ENTITLEMENT_RETRY_SECONDS)
            await self._refresh(item.request_id, now)
            telemetry.graph_call("waiting", answer.http_status)
            log.info("not entitled yet; retrying while the assignment replicates", extra=ctx)
            return "waiting"
        if answer.value is not None and textsplit.utf16_units(answer.value) > INLINE_LOG_LIMIT_UNITS:
            changes["provisioningLogBlob"] = await self.logs.put(item.request_id, item.call_id, answer.value)
            changes["provisioningLogLength"] = len(answer.value)
            changes["provisioningLog"] = None
        elif answer.value is not None:
            changes.update(textsplit.to_properties("provisioningLog", answer.value))
        saved = await self._save(call, changes, owner=None)
        await self._refresh(item.request_id, now)
        telemetry.graph_call(str(changes["status"]), answer.http_status)
        if saved is None:
            log.warning("graph call finished, but another worker had recorded the call first", extra=ctx)
            return "duplicate"
        log.info(
            "graph call finished",
            extra={**ctx, "status": changes["status"], "attempts": attempts, "errorCode": changes.get("errorCode")},
        )
        return str(changes["status"])

    async def _record_failure(
        self,
        item: WorkItem,
        call: dict[str, Any],
        failure: GraphFailure,
        attempts: int,
        ctx: dict[str, str],
        extra: dict[str, Any],
    ) -> str:
        now = self.clock()
        changes, delay = _failure_changes(failure, call, attempts, now, self.policy.retry_policy)
        changes = {**changes, **extra, "reservedAt": None}
        saved = await self._save(call, changes, owner=attempts if delay is not None else None)
        telemetry.graph_call(str(changes["status"]), failure.http_status)
        details = {**ctx, "httpStatus": failure.http_status, "errorCode": failure.code, "attempts": attempts}
        if saved is None:
            log.warning("graph call failed, but the call had been taken over meanwhile", extra=details)
            await self._refresh(item.request_id, now)
            return "duplicate"
        if delay is not None:
            await self.queue.send(item, delay)
            log.warning("graph call will be retried", extra={**details, "delaySeconds": round(delay, 1)})
        else:
            log.warning("graph call failed", extra=details)
        await self._refresh(item.request_id, now)
        return str(changes["status"])


@dataclass(frozen=True)
class _Ready:
    """A call that may go to Graph now, or the Graph failure that kept its rule from being known."""

    service_principal_id: str
    job_id: str
    rule_id: str | None
    subject: dict[str, Any]
    extra: dict[str, Any]
    scope: str
    slot: datetime | None = None
    failure: GraphFailure | None = None


def _unexpected(exc: Exception, doing: str) -> GraphFailure:
    """An exception that escaped the Graph adapter, as a transient failure with its type kept as evidence."""
    log.error("the Graph adapter raised while %s; recorded as UnexpectedError", doing, exc_info=exc)
    text = str(exc)
    message = f"{type(exc).__name__} while {doing}" + (f": {text[:500]}" if text else "")
    return GraphFailure(None, "UnexpectedError", message)


def _attempt_reason(call: dict[str, Any]) -> str:
    """Why this attempt happens, recorded with it (no Graph call is ever repeated without saying why)."""
    if str(call.get("status")) == "running":
        return "the previous attempt left no outcome (its claim ran out: the worker stopped or its write failed)"
    if not int(call.get("attempts") or 0):
        return "first attempt"
    code = call.get("errorCode")
    return f"retry after {code}" if code else "retry"


#: Texts stored with :mod:`shared.core.textsplit`, whose extra parts must go when the text is replaced.
_SPLIT_TEXTS = ("provisioningLog", "rawResponse")


def _stale_parts(row: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """None for every part of a split text that ``changes`` replaces or removes but would leave behind."""
    stale: dict[str, Any] = {}
    for name in _SPLIT_TEXTS:
        if name not in changes:
            continue
        old = int(row.get(f"{name}Parts") or 1)
        new = int(changes.get(f"{name}Parts") or 1) if changes[name] is not None else 0
        if changes[name] is None:
            stale[f"{name}Parts"] = None
        for i in range(max(1, new), old):
            if f"{name}_{i}" not in changes:
                stale[f"{name}_{i}"] = None
    return stale


def _raw_response(text: str | None) -> dict[str, Any]:
    """``rawResponse`` (split like the provisioning log when long), or its removal when there is none."""
    if text is None:
        return {"rawResponse": None}
    return dict(textsplit.to_properties("rawResponse", text))


def _normalised(subject: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Call-row properties recording that the subject sent differs in spelling from the one requested."""
    return {"subject": json.dumps(subject, separators=(",", ":")), "normalisations": json.dumps(notes)}


def _as_dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.min.replace(tzinfo=UTC) if value is None else datetime.fromisoformat(str(value))


def _answer_changes(answer: GraphAnswer, now: datetime) -> dict[str, Any]:
    parsed = outcome.parse(answer.key, answer.value)
    changes: dict[str, Any] = {
        "status": parsed.status,
        "result": parsed.result,
        "errorCode": parsed.error_code,
        "errorMessage": parsed.error_message,
        "recommendedAction": parsed.recommended_action,
        "action": parsed.action,
        "changeId": parsed.change_id,
        "reportableIdentifier": parsed.reportable_identifier,
        "targetObjectId": parsed.target_object_id,
        "failedStep": parsed.failed_step,
        "rawKey": parsed.raw_key,
        "graphKey": answer.key,
        "graphRequestId": answer.request_id,
        "graphClientRequestId": answer.client_request_id,
        "httpStatus": answer.http_status,
        "completedAt": now,
        "claimedUntil": None,
        "firstFailureAt": None,
        "failureStreak": None,
        **_raw_response(None),
    }
    return changes


def _failure_changes(
    failure: GraphFailure, call: dict[str, Any], attempts: int, now: datetime, policy: retry.Policy
) -> tuple[dict[str, Any], float | None]:
    """The call row after a failed attempt, and the delay before the next one (None: the failure is final)."""
    kind = retry.classify(failure.http_status, failure.code)
    throttles = int(call.get("throttledAttempts") or 0) + (1 if kind == "throttled" else 0)
    started = call.get("firstFailureAt")
    streak_started = started if isinstance(started, datetime) else None
    streak = (int(call.get("failureStreak") or 0) if streak_started else 0) + (1 if kind == "transient" else 0)
    history = retry.History(
        attempts=attempts,
        throttles=throttles,
        streak_started=streak_started,
        previous_code=str(call["errorCode"]) if call.get("errorCode") else None,
        streak=streak,
    )
    decision = retry.decide(kind, history, now, retry_after=failure.retry_after_seconds, policy=policy)
    common: dict[str, Any] = {
        "errorCode": failure.code,
        "errorMessage": failure.message,
        "graphRequestId": failure.request_id,
        "graphClientRequestId": failure.client_request_id,
        "httpStatus": failure.http_status,
        "claimedUntil": None,
        "throttledAttempts": throttles or None,
        **_raw_response(failure.raw_body),
    }
    if decision.retry:
        return {
            **common,
            "status": "waiting",
            "nextAttemptAt": now + timedelta(seconds=decision.delay_seconds),
            # the outage clock runs through transient failures only: Graph answering anything ends the streak
            "firstFailureAt": (history.streak_started or now) if kind == "transient" else None,
            "failureStreak": streak if kind == "transient" else None,
        }, decision.delay_seconds
    advice = graph_errors.recommended_action(failure.http_status, failure.code, failure.message)
    if decision.reason:
        advice = f"{decision.reason} {advice}" if advice else decision.reason
    return {
        **common,
        "status": "failed",
        "recommendedAction": advice,
        "completedAt": now,
    }, None
