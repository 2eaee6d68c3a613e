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

from shared import aggregate, graph_errors, outcome, retry, telemetry, textsplit
from shared.graph import GraphAnswer, GraphFailure, JobStatus, Provisioner
from shared.ledger import Ledger, StaleWrite
from shared.limiter import TableLimiter, scope_key
from shared.log_store import LogStore
from shared.pacing import lateness_for
from shared.pending import PendingIndex
from shared.rule_discovery import RuleDiscovery
from shared.rules import NoRule, TtlCache, normalise_types
from shared.work_queue import WorkItem, WorkQueue

log = telemetry.get_logger(__name__)

#: A work item that arrives this much before its due time is put back instead of calling early.
EARLY_TOLERANCE_SECONDS = 1.0
#: A paced item is enqueued to arrive this long before its slot (queue polling is not punctual), then
#: sleeps the rest; so no worker ever sleeps longer than about this.
LEAD_SECONDS = 3.0
#: Logs up to this many UTF-16 units (600 KB) are split across call-row properties, larger ones go to a blob:
#: a Table entity holds at most 1 MiB in all.
INLINE_LOG_LIMIT_UNITS = 300_000
#: How long "not entitled" right after an assignment is retried: Entra replicates assignments in minutes.
ENTITLEMENT_GRACE_SECONDS = 5 * 60
ENTITLEMENT_RETRY_SECONDS = 60.0
#: Job states in which provisionOnDemand is pointless: hold the item, do not burn attempts.
HELD_JOB_CODES = {"Quarantine": "JobQuarantined", "Paused": "JobPaused"}
JOB_STATUS_TTL_SECONDS = 15.0
#: Fresh reservations tried before a call that keeps missing its slot (a very loaded host) is deferred.
MAX_SLOT_TRIES = 3


@dataclass(frozen=True)
class WorkerPolicy:
    """Timing the operator may tune through settings."""

    claim_seconds: float = 300.0
    job_hold_seconds: float = 60.0
    rate_scope: str = "tenant"


@dataclass
class Worker:
    """The adapters a work item needs, and the policy it runs under."""

    ledger: Ledger
    queue: WorkQueue
    graph: Provisioner
    rules: RuleDiscovery
    logs: LogStore
    limiter: TableLimiter
    pending: PendingIndex
    policy: WorkerPolicy = field(default_factory=WorkerPolicy)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    job_cache: TtlCache[tuple[str, str], JobStatus] | None = None

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
        try:
            call = await self.ledger.update_call(
                call,
                {
                    "status": "running",
                    "attempts": previous_attempts + 1,
                    "claimedUntil": now + timedelta(seconds=self.policy.claim_seconds),
                    "lastAttemptAt": now,
                },
            )
        except StaleWrite:
            await self.queue.send(item, 1.0)
            log.info("another worker changed the call first; looking again shortly", extra=ctx)
            return "claimed"
        await self._refresh(item.request_id, now)
        return await self._run(item, call, previous_attempts, ctx)

    async def _refresh(self, request_id: str, now: datetime) -> None:
        """Update the request's status; once it is final, it leaves the sweeper's index."""
        request = await self.ledger.refresh_request(request_id, now)
        if request is not None and request.get("status") != aggregate.PENDING:
            await self.pending.remove(request_id)

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
        await self.ledger.update_call(
            call,
            {
                "status": "waiting",
                "attempts": previous_attempts,
                "claimedUntil": None,
                "nextAttemptAt": until,
                **changes,
            },
        )
        delay = max(0.0, (until - now).total_seconds() - lead)
        await self.queue.send(item, float(int(delay)) if lead else delay)
        await self._refresh(item.request_id, now)

    async def _job_hold(self, sp: str, job: str) -> JobStatus | None:
        """The job's status when it is one that holds calls (cached briefly); None when calls may go."""
        key = (sp.lower(), job)
        assert self.job_cache is not None
        status = self.job_cache.get(key)
        if status is None:
            fetched = await self.graph.job_status(sp, job)
            # Cannot tell (a Graph stand-in without this endpoint, a transient error): let the calls go, and
            # remember that for the cache period rather than asking again before every call.
            status = JobStatus(None) if isinstance(fetched, GraphFailure) else fetched
            self.job_cache.put(key, status)
        return status if status.code in HELD_JOB_CODES else None

    async def _run(self, item: WorkItem, call: dict[str, Any], previous_attempts: int, ctx: dict[str, str]) -> str:
        attempts = previous_attempts + 1
        subject = json.loads(str(call["subject"]))
        sp, job = str(call["servicePrincipalId"]), str(call["jobId"])
        extra: dict[str, Any] = {}

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
        if rule_id is not None:
            known = await self.rules.known_rule(sp, job, rule_id)
            if known is not None:
                subject, notes = normalise_types(subject, known)
                if notes:
                    extra.update(_normalised(subject, notes))
        else:
            rule = await self.rules.resolve(sp, job, str(subject["objectTypeName"]))
            if isinstance(rule, NoRule):
                await self.ledger.update_call(
                    call,
                    {
                        "status": "rejected",
                        "errorCode": "NoMatchingRule",
                        "errorMessage": rule.reason,
                        "completedAt": self.clock(),
                        "claimedUntil": None,
                    },
                )
                await self._refresh(item.request_id, self.clock())
                log.warning("no rule fits the subject; call rejected", extra={**ctx, "reason": rule.reason})
                return "rejected"
            if isinstance(rule, GraphFailure):
                return await self._record_failure(item, call, rule, attempts, ctx, extra)
            rule_id = rule.id
            extra.update({"ruleId": rule.id, "ruleSource": "schema"})
            subject, notes = normalise_types(subject, rule)
            if notes:
                extra.update(_normalised(subject, notes))

        scope = scope_key(self.policy.rate_scope, sp, job)
        if not await self._take_slot(item, call, previous_attempts, scope, ctx):
            return "paced"
        result = await self.graph.provision_on_demand(sp, job, rule_id, subject)
        if isinstance(result, GraphFailure):
            if result.http_status == 429:
                await self.limiter.report_throttle(scope, result.retry_after_seconds or retry.backoff(attempts))
            return await self._record_failure(item, call, result, attempts, ctx, extra)
        return await self._record_answer(item, call, result, attempts, ctx, extra)

    async def _take_slot(
        self, item: WorkItem, call: dict[str, Any], previous_attempts: int, scope: str, ctx: dict[str, str]
    ) -> bool:
        """Start the call inside its rate-limit slot; False when it was deferred to a later slot.

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
                    return False
                slot = datetime.fromtimestamp(reservation.start, UTC)
                now = self.clock()
                if (slot - now).total_seconds() > LEAD_SECONDS + 1:
                    telemetry.limiter_wait((slot - now).total_seconds())
                    await self._defer(item, call, previous_attempts, slot, {"reservedAt": slot}, lead=LEAD_SECONDS)
                    log.info("rate limit: slot reserved; deferred until it", extra={**ctx, "slot": slot.isoformat()})
                    return False
            wait = (slot - now).total_seconds()
            if wait > 0:
                await self.sleep(wait)
            if self.clock() <= slot + lateness:
                telemetry.limiter_wait(max(0.0, wait))
                return True
        until = self.clock() + timedelta(seconds=1)
        await self._defer(item, call, previous_attempts, until, {"reservedAt": None})
        log.warning("rate limit: kept missing slots under load; deferred", extra=ctx)
        return False

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
            await self.ledger.update_call(call, changes)
            await self.queue.send(item, ENTITLEMENT_RETRY_SECONDS)
            await self._refresh(item.request_id, now)
            telemetry.graph_call("waiting", answer.http_status)
            log.info("not entitled yet; retrying while the assignment replicates", extra=ctx)
            return "waiting"
        if answer.value is not None and textsplit.utf16_units(answer.value) > INLINE_LOG_LIMIT_UNITS:
            changes["provisioningLogBlob"] = await self.logs.put(item.request_id, item.call_id, answer.value)
            changes["provisioningLogLength"] = len(answer.value)
        elif answer.value is not None:
            changes.update(textsplit.to_properties("provisioningLog", answer.value))
        await self.ledger.update_call(call, changes)
        await self._refresh(item.request_id, now)
        telemetry.graph_call(str(changes["status"]), answer.http_status)
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
        changes, delay = _failure_changes(failure, attempts, now)
        changes = {**changes, **extra, "reservedAt": None}
        await self.ledger.update_call(call, changes)
        telemetry.graph_call(str(changes["status"]), failure.http_status)
        if delay is not None:
            await self.queue.send(item, delay)
            log.warning(
                "graph call will be retried",
                extra={
                    **ctx,
                    "httpStatus": failure.http_status,
                    "errorCode": failure.code,
                    "attempts": attempts,
                    "delaySeconds": round(delay, 1),
                },
            )
        else:
            log.warning(
                "graph call failed",
                extra={**ctx, "httpStatus": failure.http_status, "errorCode": failure.code, "attempts": attempts},
            )
        await self._refresh(item.request_id, now)
        return str(changes["status"])


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
        "httpStatus": answer.http_status,
        "completedAt": now,
        "claimedUntil": None,
    }
    return changes


def _failure_changes(failure: GraphFailure, attempts: int, now: datetime) -> tuple[dict[str, Any], float | None]:
    kind = retry.classify(failure.http_status)
    decision = retry.decide(kind, attempts, failure.retry_after_seconds)
    common: dict[str, Any] = {
        "errorCode": failure.code,
        "errorMessage": failure.message,
        "graphRequestId": failure.request_id,
        "httpStatus": failure.http_status,
        "claimedUntil": None,
    }
    if decision.retry:
        return {
            **common,
            "status": "waiting",
            "nextAttemptAt": now + timedelta(seconds=decision.delay_seconds),
        }, decision.delay_seconds
    return {
        **common,
        "status": "failed",
        "recommendedAction": graph_errors.recommended_action(failure.http_status, failure.code),
        "completedAt": now,
    }, None
