"""Everything before a call goes to Graph: the job's hold, the rule, the subject's spelling, the rate-limit slot.

Anything that must happen later (a held job, a slot far ahead) goes back on the queue with a visibility delay
instead of a sleeping worker, without spending an attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import telemetry
from shared.core import transitions
from shared.core.pacing import LimiterState, lateness_for, scope_key
from shared.core.ports import Directory, GraphFailure, JobStatus, Provisioner, RateLimiter
from shared.core.records import CallRecord
from shared.core.rules import NoRule, TtlCache, normalise_types
from shared.core.vocabulary import RuleSource, WorkerOutcome
from shared.usecases import subjects
from shared.usecases.dispatcher import Dispatcher
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker_calls import CallWriter

log = telemetry.get_logger(__name__)

#: A paced item is enqueued to arrive this long before its slot (queue polling is not punctual), then
#: sleeps the rest; so no worker ever sleeps longer than about this.
LEAD_SECONDS = 3.0
#: Job states in which provisionOnDemand is pointless: hold the item, do not burn attempts.
HELD_JOB_CODES = {"Quarantine": "JobQuarantined", "Paused": "JobPaused"}
#: Fresh reservations tried before a call that keeps missing its slot (a very loaded host) is deferred.
MAX_SLOT_TRIES = 3
#: Renewals of a claim that ran low before the Graph call (each followed by a fresh slot).
MAX_CLAIM_RENEWALS = 2

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Ready:
    """A call that may go to Graph now, or the Graph failure that kept its rule from being known."""

    service_principal_id: str
    job_id: str
    rule_id: str | None
    subject: dict[str, Any]
    extra: transitions.Changes
    scope: str
    slot: datetime | None = None
    failure: GraphFailure | None = None


def unexpected(exc: Exception, doing: str) -> GraphFailure:
    """An exception that escaped the Graph adapter, as a transient failure with its type kept as evidence."""
    log.error("the Graph adapter raised while %s; recorded as UnexpectedError", doing, exc_info=exc)
    text = str(exc)
    message = f"{type(exc).__name__} while {doing}" + (f": {text[:500]}" if text else "")
    return GraphFailure(None, "UnexpectedError", message)


@dataclass
class CallPreparer:
    """Prepares one claimed call; defers it (and says so) when it cannot go now."""

    graph: Provisioner
    rules: RuleDiscovery
    limiter: RateLimiter
    writer: CallWriter
    clock: Callable[[], datetime]
    sleep: Callable[[float], Awaitable[None]]
    job_cache: TtlCache[tuple[str, str], JobStatus]
    claim_seconds: float
    job_hold_seconds: float
    rate_scope: str
    backlog: Dispatcher | None = None
    directory: Directory | None = None  # resolves subjects named by userPrincipalName

    async def defer(
        self,
        call: CallRecord,
        previous_attempts: int,
        until: datetime,
        changes: transitions.Changes,
        lead: float = 0.0,
    ) -> None:
        """Back to ``waiting`` without spending an attempt, and on the queue again for ``until`` (minus ``lead``).

        Queue delays are whole seconds: rounding down, plus the lead, makes the item arrive a little early
        rather than late.
        """
        now = self.clock()
        delay = max(0.0, (until - now).total_seconds() - lead)
        await self.writer.transition(
            call,
            {**transitions.waiting(previous_attempts, until), **changes},
            owner=previous_attempts + 1,
            now=now,
            requeue=float(int(delay)) if lead else delay,
        )

    async def job_hold(self, sp: str, job: str) -> JobStatus | None:
        """The job's status when it is one that holds calls (cached briefly); None when calls may go."""
        key = (sp.lower(), job)
        status = self.job_cache.get(key)
        if status is None:
            try:
                fetched = await self.graph.job_status(sp, job)
            except Exception:  # the adapter must not raise; if it does, it is as unknown as a failure
                log.exception("reading the job's status raised; the call goes ahead")
                fetched = GraphFailure(None, "UnexpectedError", "job status could not be read")
            # Cannot tell (a Graph stand-in without this endpoint, a transient error): let the calls go, and
            # remember that for the cache period rather than asking again before every call.
            status = JobStatus(None) if isinstance(fetched, GraphFailure) else fetched
            self.job_cache.put(key, status)
        return status if status.code in HELD_JOB_CODES else None

    async def prepare(self, call: CallRecord, previous_attempts: int) -> WorkerOutcome | Ready:
        """Everything before the Graph call: job hold, rule, pacing. An outcome when the item ends here."""
        if call.subject is None:
            raise ValueError("the call's subject is not readable JSON")
        subject, extra, unresolved = await subjects.prepare(self.directory, dict(call.subject))
        sp, job = str(call.service_principal_id), str(call.job_id)

        held = await self.job_hold(sp, job)
        if held is not None:
            until = self.clock() + timedelta(seconds=self.job_hold_seconds)
            message = f"The synchronization job is {held.code}" + (f" ({held.reason})." if held.reason else ".")
            changes = {"error_code": HELD_JOB_CODES[str(held.code)], "error_message": message, "reserved_at": None}
            await self.defer(call, previous_attempts, until, changes)
            log.warning("job is not running; call held", extra={"jobStatus": held.code})
            return WorkerOutcome.HELD

        scope = scope_key(self.rate_scope, sp, job)
        if unresolved is not None:  # a userPrincipalName nobody has, or the directory failed
            return Ready(sp, job, None, subject, extra, scope, failure=unresolved)
        rule = await self._rule(call, subject, extra)
        if isinstance(rule, WorkerOutcome):
            return rule
        if isinstance(rule, GraphFailure):
            return Ready(sp, job, None, subject, extra, scope, failure=rule)
        rule_id, subject = rule

        slot = await self.take_slot(call, previous_attempts, scope)
        if slot is None:
            return WorkerOutcome.PACED
        return Ready(sp, job, rule_id, subject, extra, scope, slot)

    async def _rule(
        self, call: CallRecord, subject: dict[str, Any], extra: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | GraphFailure | WorkerOutcome:
        """The call's rule id and the subject spelled as that rule spells it (``extra`` gets what to record);
        or the Graph failure that kept the rule from being known; or ``rejected`` when no rule fits."""
        sp, job = str(call.service_principal_id), str(call.job_id)
        if call.rule_id:
            try:
                known = await self.rules.known_rule(sp, job, call.rule_id)
            except Exception:  # only settles casing; never blocks the call
                log.exception("reading the job's schema raised; the subject is sent as written")
                known = None
            if known is not None:
                subject, notes = normalise_types(subject, known)
                if notes:
                    extra.update(transitions.normalised(subject, notes))
            return call.rule_id, subject
        try:
            rule = await self.rules.resolve(sp, job, str(subject["objectTypeName"]))
        except Exception as exc:
            rule = unexpected(exc, "reading the job's schema")
        if isinstance(rule, NoRule):
            now = self.clock()
            await self.writer.transition(call, transitions.rejected(rule.reason, now), owner=None, now=now)
            log.warning("no rule fits the subject; call rejected", extra={"reason": rule.reason})
            return WorkerOutcome.REJECTED
        if isinstance(rule, GraphFailure):
            return rule
        extra.update({"rule_id": rule.id, "rule_source": RuleSource.SCHEMA})
        subject, notes = normalise_types(subject, rule)
        if notes:
            extra.update(transitions.normalised(subject, notes))
        return rule.id, subject

    async def take_slot(self, call: CallRecord, previous_attempts: int, scope: str) -> datetime | None:
        """Start the call inside its rate-limit slot (returned); None when it was deferred to a later slot.

        A slot is only good if the call starts within the allowed lateness after it: a slot reserved "now"
        can already be stale by the time the limiter's write returns under load, so it is checked right
        before the call and given back for a fresh one if it was missed.
        """
        lateness = timedelta(seconds=lateness_for(self.limiter.limit))
        slot = call.reserved_at
        for _ in range(MAX_SLOT_TRIES):
            now = self.clock()
            if slot is None or now > slot + lateness:
                missed = slot.timestamp() if slot is not None else None
                if self.backlog is None:
                    reservation = await self.limiter.reserve(scope, release=missed)
                else:  # a call the backlog already handed a slot does not queue behind the backlog again
                    behind = call.backlog_key is None
                    reservation = await self.backlog.limiter.reserve(scope, release=missed, queue_behind=behind)
                    if reservation.start is None:
                        await self.park(call, previous_attempts, scope, reservation.state)
                        return None
                if reservation.start is None:
                    until = datetime.fromtimestamp(reservation.retry_at, UTC)
                    await self.defer(call, previous_attempts, until, {"reserved_at": None})
                    log.info("rate limit: no slot now; deferred", extra={"until": until.isoformat()})
                    return None
                slot = datetime.fromtimestamp(reservation.start, UTC)
                now = self.clock()
                if (slot - now).total_seconds() > LEAD_SECONDS + 1:
                    telemetry.limiter_wait((slot - now).total_seconds())
                    await self.defer(call, previous_attempts, slot, {"reserved_at": slot}, lead=LEAD_SECONDS)
                    log.info("rate limit: slot reserved; deferred until it", extra={"slot": slot.isoformat()})
                    return None
            wait = (slot - now).total_seconds()
            if wait > 0:
                await self.sleep(wait)
            if self.clock() <= slot + lateness:
                telemetry.limiter_wait(max(0.0, wait))
                return slot
        until = self.clock() + timedelta(seconds=1)
        await self.defer(call, previous_attempts, until, {"reserved_at": None})
        log.warning("rate limit: kept missing slots under load; deferred")
        return None

    async def park(self, call: CallRecord, previous_attempts: int, scope: str, state: LimiterState) -> None:
        """No slot soon: the call waits in the backlog (entry first, then the row), and its message completes."""
        assert self.backlog is not None
        now = self.clock()
        changes = {**await self.backlog.park(scope, call, state), "attempts": previous_attempts, "next_attempt_at": now}
        if await self.writer.transition(call, changes, owner=previous_attempts + 1, now=now) is not None:
            await self.backlog.parked(scope, state)
        log.info("rate limit: no slot soon; waiting in the backlog", extra={"backlogKey": changes["backlog_key"]})

    async def keep_claim(self, call: CallRecord, previous_attempts: int, ready: Ready) -> CallRecord | WorkerOutcome:
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
            if ((call.claimed_until or _NEVER) - now).total_seconds() >= self.claim_seconds / 2:
                break
            until = now + timedelta(seconds=self.claim_seconds)
            renewed = await self.writer.save(call, {"claimed_until": until}, owner=attempts)
            if renewed is None:
                log.warning("claim ran out before the call and another attempt owns it; Graph not called")
                return WorkerOutcome.SUPERSEDED
            log.info("claim ran low before the call; renewed")
            call = renewed
            if slot is None or self.clock() > slot + lateness:
                # the slot went by while renewing: give it back for a fresh one (the reservedAt of a missed slot)
                missed = transitions.apply(call, {"reserved_at": slot})
                fresh_slot = await self.take_slot(missed, previous_attempts, ready.scope)
                if fresh_slot is None:
                    return WorkerOutcome.PACED
                slot = fresh_slot
        return call
