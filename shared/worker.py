"""The worker: one work item is one Graph call, claimed, made, and recorded.

Delivery is at least once, so every step is safe to repeat: a finished call is never called again, a call
claimed by another worker (ETag) is left alone, and a failed attempt that deserves a retry goes back on the
queue with a visibility delay instead of a sleeping worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import aggregate, graph_errors, outcome, retry, textsplit
from shared.graph import GraphAnswer, GraphFailure, Provisioner
from shared.ledger import Ledger, StaleWrite
from shared.log_store import LogStore
from shared.rule_discovery import RuleDiscovery
from shared.rules import NoRule, normalise_types
from shared.work_queue import WorkItem, WorkQueue

log = logging.getLogger(__name__)

#: How long a claim protects a running call from a second worker; shorter than the queue lease (10 min),
#: so a redelivered message after a crash finds the claim expired and takes over.
CLAIM_SECONDS = 300
#: A work item that arrives this much before its due time is put back instead of calling early.
EARLY_TOLERANCE_SECONDS = 1.0
#: Logs up to this many UTF-16 units (600 KB) are split across call-row properties, larger ones go to a blob:
#: a Table entity holds at most 1 MiB in all.
INLINE_LOG_LIMIT_UNITS = 300_000


async def process(
    item: WorkItem,
    *,
    ledger: Ledger,
    queue: WorkQueue,
    graph: Provisioner,
    rules: RuleDiscovery,
    logs: LogStore,
    clock: Callable[[], datetime],
) -> str:
    """Make the call ``item`` points to, unless it is done, claimed or not yet due. Returns what happened."""
    ctx = {"requestId": item.request_id, "callId": item.call_id}
    call = await ledger.get_call(item.request_id, item.call_id)
    if call is None:
        log.error("work item points to no call row; dropped", extra=ctx)
        return "missing"
    status = str(call["status"])
    now = clock()
    if status in aggregate.TERMINAL_CALL_STATUSES:
        log.info("call already finished; duplicate work item ignored", extra={**ctx, "status": status})
        return "duplicate"
    if status == "running" and _as_dt(call.get("claimedUntil")) > now:
        log.info("call is claimed by another worker; duplicate work item ignored", extra=ctx)
        return "claimed"
    due = _as_dt(call.get("nextAttemptAt"))
    if status in ("scheduled", "waiting") and (due - now).total_seconds() > EARLY_TOLERANCE_SECONDS:
        await queue.send(item, (due - now).total_seconds())
        log.info("work item arrived early; put back until due", extra={**ctx, "due": due.isoformat()})
        return "early"

    attempts = int(call.get("attempts") or 0) + 1
    try:
        call = await ledger.update_call(
            call,
            {
                "status": "running",
                "attempts": attempts,
                "claimedUntil": now + timedelta(seconds=CLAIM_SECONDS),
                "lastAttemptAt": now,
            },
        )
    except StaleWrite:
        log.info("another worker claimed the call first", extra=ctx)
        return "claimed"
    await ledger.refresh_request(item.request_id, now)

    subject = json.loads(str(call["subject"]))
    sp, job = str(call["servicePrincipalId"]), str(call["jobId"])
    discovered: dict[str, Any] = {}
    result: GraphAnswer | GraphFailure
    rule_id = str(call["ruleId"]) if call.get("ruleId") else None
    if rule_id is not None:
        known = await rules.known_rule(sp, job, rule_id)
        if known is not None:
            subject, notes = normalise_types(subject, known)
            if notes:
                discovered.update(_normalised(subject, notes))
    else:
        rule = await rules.resolve(sp, job, str(subject["objectTypeName"]))
        if isinstance(rule, NoRule):
            rejected = {
                "status": "rejected",
                "errorCode": "NoMatchingRule",
                "errorMessage": rule.reason,
                "completedAt": clock(),
                "claimedUntil": None,
            }
            await ledger.update_call(call, rejected)
            await ledger.refresh_request(item.request_id, clock())
            log.warning("no rule fits the subject; call rejected", extra={**ctx, "reason": rule.reason})
            return "rejected"
        if isinstance(rule, GraphFailure):
            result = rule
        else:
            rule_id = rule.id
            discovered = {"ruleId": rule.id, "ruleSource": "schema"}
            subject, notes = normalise_types(subject, rule)
            if notes:
                discovered.update(_normalised(subject, notes))
    if rule_id is not None:
        result = await graph.provision_on_demand(sp, job, rule_id, subject)
    now = clock()
    if isinstance(result, GraphAnswer):
        changes = {**_answer_changes(result, now), **discovered}
        if result.value is not None and textsplit.utf16_units(result.value) > INLINE_LOG_LIMIT_UNITS:
            changes["provisioningLogBlob"] = await logs.put(item.request_id, item.call_id, result.value)
            changes["provisioningLogLength"] = len(result.value)
        elif result.value is not None:
            changes.update(textsplit.to_properties("provisioningLog", result.value))
        what = str(changes["status"])
    else:
        changes, delay = _failure_changes(result, attempts, now)
        what = str(changes["status"])
        if delay is not None:
            await ledger.update_call(call, changes)
            await queue.send(item, delay)
            await ledger.refresh_request(item.request_id, now)
            log.warning(
                "graph call will be retried",
                extra={
                    **ctx,
                    "httpStatus": result.http_status,
                    "errorCode": result.code,
                    "attempts": attempts,
                    "delaySeconds": round(delay, 1),
                },
            )
            return what
    await ledger.update_call(call, changes)
    await ledger.refresh_request(item.request_id, now)
    log.info(
        "graph call finished",
        extra={**ctx, "status": what, "attempts": attempts, "errorCode": changes.get("errorCode")},
    )
    return what


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
