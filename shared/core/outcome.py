"""What a provisionOnDemand ``200`` actually says.

Graph answers ``200`` even when nothing happened, and puts the result in a ``stringKeyStringValuePair``
whose strings hold JSON in more than one shape (docs/graph-api-facts.md#answer-shapes): ``key`` is usually
``{"result", "details": {"errorCode", "errorMessage"}}`` and ``value`` the provisioning log; but ``value``
can be ``{}`` or a JSON array, and ``key`` can be a .NET type name with the status inside ``value``.
This parser is pure, never raises, and keeps the raw text when it cannot make sense of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["succeeded", "skipped", "failed"]

# Warning is a documented provisioningResult: something happened but not cleanly. It is not reported as
# success; Graph's result and codes are kept so an operator can judge.
_RESULT_STATUS: dict[str, Status] = {
    "success": "succeeded",
    "skipped": "skipped",
    "failure": "failed",
    "warning": "failed",
}


@dataclass(frozen=True)
class Outcome:
    """The outcome of one call, as recorded in the ledger."""

    status: Status
    result: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    recommended_action: str | None = None
    action: str | None = None
    change_id: str | None = None
    reportable_identifier: str | None = None
    target_object_id: str | None = None
    failed_step: str | None = None
    raw_key: str | None = None


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _log_object(value: Any) -> dict[str, Any] | None:
    """The provisioning log: the object itself, or the first object of an array (variant D)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                return item
    return None


def _status_info(log: dict[str, Any]) -> dict[str, Any]:
    info = log.get("statusInfo")
    if isinstance(info, dict):
        return info
    newer = log.get("provisioningStatusInfo")
    if isinstance(newer, dict):
        merged = dict(newer.get("errorInformation") or {}) if isinstance(newer.get("errorInformation"), dict) else {}
        merged["status"] = newer.get("status")
        return merged
    return {}


def _failed_step(log: dict[str, Any]) -> str | None:
    steps = log.get("provisioningSteps")
    if not isinstance(steps, list):
        return None
    for step in steps:
        if isinstance(step, dict) and str(step.get("status", "")).lower() in ("failure", "failed", "warning"):
            return _str(step.get("name"))
    return None


def _skip_reason(log: dict[str, Any]) -> str | None:
    steps = log.get("provisioningSteps")
    if not isinstance(steps, list):
        return None
    for step in steps:
        details = step.get("details") if isinstance(step, dict) else None
        if isinstance(details, dict) and _str(details.get("SkipReason")):
            return _str(details.get("SkipReason"))
    return None


def _reportable_identifier(log: dict[str, Any]) -> str | None:
    """The name people know the subject by: top-level in the older log schema (every real capture so far); in the
    current ``provisioningObjectSummary`` schema it lives in a step's ``details`` (``ReportableIdentifier``), and
    failing that the source identity's display name says the same."""
    top = _str(log.get("reportableIdentifier"))
    if top:
        return top
    steps = log.get("provisioningSteps")
    for step in steps if isinstance(steps, list) else []:
        details = step.get("details") if isinstance(step, dict) else None
        if isinstance(details, dict):
            for name, value in details.items():
                if isinstance(name, str) and name.lower() == "reportableidentifier" and _str(value):
                    return _str(value)
    source = log.get("sourceIdentity")
    if isinstance(source, dict):
        details = source.get("details")
        if isinstance(details, dict) and _str(details.get("ReportableIdentifier")):
            return _str(details.get("ReportableIdentifier"))
        return _str(source.get("displayName"))
    return None


def parse(key: str | None, value: str | None) -> Outcome:
    """Parse the ``key``/``value`` pair of a provisionOnDemand ``200`` into an :class:`Outcome`."""
    try:
        return _parse(key, value)
    except Exception:  # the parser must never take a worker down; keep the raw text instead
        return _unparseable(key)


def _unparseable(key: str | None) -> Outcome:
    return Outcome(
        status="failed",
        error_code="UnparseableResponse",
        error_message="Graph answered 200 but the result could not be read; the raw answer is kept.",
        raw_key=key,
    )


def _parse(key: str | None, value: str | None) -> Outcome:
    key_json = _loads(key)
    log = _log_object(_loads(value)) or {}
    info = _status_info(log)
    result: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    if isinstance(key_json, dict) and _str(key_json.get("result")):
        result = _str(key_json.get("result"))
        details = key_json.get("details")
        if isinstance(details, dict):
            error_code = _str(details.get("errorCode"))
            error_message = _str(details.get("errorMessage"))
    elif _str(info.get("status")):
        result = _str(info.get("status"))  # key is a type name (variant D): the status is in the log
    if result is None:
        return _unparseable(key)
    status = _RESULT_STATUS.get(result.lower())
    if status is None:
        return _unparseable(key)
    error_code = error_code or _str(info.get("errorCode")) or (_skip_reason(log) if status == "skipped" else None)
    error_message = error_message or _str(info.get("reason"))
    target = log.get("targetIdentity")
    return Outcome(
        status=status,
        result=result,
        error_code=error_code,
        error_message=error_message,
        recommended_action=_str(info.get("recommendedAction")),
        action=_str(log.get("action")) or _str(log.get("provisioningAction")),
        change_id=_str(log.get("changeId")),
        reportable_identifier=_reportable_identifier(log),
        target_object_id=_str(target.get("id")) if isinstance(target, dict) else None,
        failed_step=_failed_step(log) if status == "failed" else None,
        raw_key=None if isinstance(key_json, dict) else key,
    )
