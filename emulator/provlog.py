"""Provisioning logs like the ones provisionOnDemand returns in ``value`` (docs/graph-api-facts.md#answer-shapes).

They follow the documented examples: PascalCase ``action``, ``provisioningSteps`` with Import, Matching,
Scoping and Export steps, ``statusInfo``, source and target identities and systems.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.responses import new_guid
from emulator.tenant import JobSpec, SourceObject

NOT_ENTITLED_MESSAGE = (
    "The {kind} is not effectively entitled for provisioning: it is not assigned to the application "
    "(directly or through a group) or is out of the provisioning scope."
)
REDUNDANT_MESSAGE = "The state of the user in both the source and target systems already match."


def timestamp(moment: datetime) -> str:
    """Seven fractional digits and ``Z``, as in the service's logs."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class _Clock:
    """Hands out strictly increasing step timestamps for one log."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC)
        self._now = self.start

    def tick(self) -> str:
        self._now += timedelta(microseconds=15_625)
        return timestamp(self._now)


def _step(
    clock: _Clock, name: str, kind: str, status: str, description: str, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "status": status,
        "description": description,
        "timestamp": clock.tick(),
        "details": details,
    }


def _kind(obj: SourceObject) -> str:
    return obj.object_type_name


def _import_step(clock: _Clock, job: JobSpec, obj: SourceObject) -> dict[str, Any]:
    details = {"objectId": obj.source_id, "displayName": obj.display_name, **obj.attributes}
    return _step(
        clock,
        "EntryImport",
        "Import",
        "Success",
        f"Retrieved {_kind(obj)} '{obj.reportable_identifier}' from {job.source_system}",
        details,
    )


def _scoping_step(clock: _Clock, obj: SourceObject, entitled: bool) -> dict[str, Any]:
    flag = "True" if entitled else "False"
    return _step(
        clock,
        "EntrySynchronizationScoping",
        "Scoping",
        "Success" if entitled else "Skipped",
        f"Determine if {_kind(obj)} in scope by evaluating against each scoping filter",
        {
            "IsActive": "True" if obj.active else "False",
            "Assigned": flag,
            "IsEffectivelyEntitledForProvisioning": flag,
            "IsInProvisioningScopeDisplayName": flag,
            "ScopeEvaluationResult": "{}",
        },
    )


def _modified(obj: SourceObject) -> list[dict[str, Any]]:
    props = {"objectId": obj.source_id, "displayName": obj.display_name, **obj.attributes}
    return [{"displayName": k, "oldValue": None, "newValue": v} for k, v in props.items()]


def _envelope(
    clock: _Clock,
    job: JobSpec,
    obj: SourceObject,
    action: str,
    steps: list[dict[str, Any]],
    status_info: dict[str, Any],
    target_type: str,
    target_id: str | None,
    modified: list[dict[str, Any]],
) -> dict[str, Any]:
    log = {
        "action": action,
        "changeId": new_guid(),
        "endTime": clock.tick(),
        "modifiedProperties": modified,
        "provisioningSteps": steps,
        "reportableIdentifier": obj.reportable_identifier,
        "startTime": timestamp(clock.start),
        "statusInfo": status_info,
        "sourceIdentity": {
            "id": obj.source_id,
            "type": obj.object_type_name,
            "displayName": obj.display_name,
            "details": None,
        },
        "sourceSystem": {"id": None, "name": job.source_system, "details": None},
        "targetIdentity": {"id": target_id, "type": target_type, "displayName": None, "details": None},
        "targetSystem": {"id": None, "name": job.target_system, "details": None},
    }
    return _as_summary(log, obj) if job.log_schema == "summary" else log


def _as_summary(log: dict[str, Any], obj: SourceObject) -> dict[str, Any]:
    """The same log in the current ``provisioningObjectSummary`` schema: no top-level ``reportableIdentifier``
    (it moves into the export/skip step's ``details``), ``provisioningAction`` and ``provisioningStatusInfo``
    with ``errorInformation`` instead of ``action`` and ``statusInfo``, ``identityType`` for ``type``."""
    info = log.pop("statusInfo")
    log.pop("reportableIdentifier")
    log["provisioningAction"] = str(log.pop("action")).lower()
    error = {k: v for k, v in info.items() if k != "status"}
    log["provisioningStatusInfo"] = {"status": str(info.get("status", "")).lower(), "errorInformation": error or None}
    steps = log["provisioningSteps"]
    if steps:
        last = steps[-1]
        last["details"] = {**(last.get("details") or {}), "ReportableIdentifier": obj.reportable_identifier}
    for name in ("sourceIdentity", "targetIdentity"):
        identity = log[name]
        identity["identityType"] = identity.pop("type")
        identity["details"] = {}
    return log


def create_log(job: JobSpec, obj: SourceObject, target_type: str, target_id: str) -> dict[str, Any]:
    """The subject was not in the target and has just been created there."""
    clock = _Clock()
    steps = [
        _import_step(clock, job, obj),
        _scoping_step(clock, obj, entitled=True),
        _step(
            clock,
            "EntryImportByMatch",
            "Matching",
            "Success",
            f"No matching {target_type} for '{obj.reportable_identifier}' was found in {job.target_system}",
            {},
        ),
        _step(
            clock,
            "EntryExportAdd",
            "Export",
            "Success",
            f"{_kind(obj)} '{obj.reportable_identifier}' was created in {job.target_system}",
            {"id": target_id},
        ),
    ]
    return _envelope(clock, job, obj, "Create", steps, {"status": "Success"}, target_type, target_id, _modified(obj))


def redundant_log(job: JobSpec, obj: SourceObject, target_type: str, target_id: str) -> dict[str, Any]:
    """The subject is already in the target with the same state: nothing exported."""
    clock = _Clock()
    steps = [
        _import_step(clock, job, obj),
        _step(
            clock,
            "EntryImport",
            "Matching",
            "Success",
            f"Retrieved  '{obj.reportable_identifier}' from {job.target_system}",
            {"id": target_id},
        ),
        _scoping_step(clock, obj, entitled=True),
        _step(
            clock,
            "EntrySynchronizationSkip",
            "Export",
            "Skipped",
            f"{REDUNDANT_MESSAGE} No change to the {_kind(obj)} '{obj.reportable_identifier}' currently "
            "needs to be made.",
            {"SkipReason": "RedundantExport"},
        ),
    ]
    status = {
        "status": "Skipped",
        "errorCode": None,
        "reason": None,
        "additionalDetails": None,
        "errorCategory": None,
        "recommendedAction": None,
    }
    return _envelope(clock, job, obj, "Other", steps, status, target_type, target_id, _modified(obj))


def not_entitled_log(job: JobSpec, obj: SourceObject, target_type: str) -> dict[str, Any]:
    """The subject exists but is not assigned / in scope, so the engine skips it."""
    clock = _Clock()
    message = NOT_ENTITLED_MESSAGE.format(kind=_kind(obj))
    steps = [
        _import_step(clock, job, obj),
        _scoping_step(clock, obj, entitled=False),
        _step(
            clock, "EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": "NotEffectivelyEntitled"}
        ),
    ]
    status = {
        "status": "Skipped",
        "errorCode": None,
        "reason": message,
        "additionalDetails": None,
        "errorCategory": None,
        "recommendedAction": None,
    }
    return _envelope(clock, job, obj, "Other", steps, status, target_type, None, [])


def not_found_log(job: JobSpec, object_type_name: str, object_id: str, message: str) -> dict[str, Any]:
    """The subject does not exist in the source directory."""
    clock = _Clock()
    missing = SourceObject(
        object_type_name=object_type_name,
        object_id=object_id,
        reportable_identifier=object_id,
        display_name=object_id,
        source_id=object_id,
    )
    steps = [
        _step(clock, "EntryImport", "Import", "Failure", message, {"objectId": object_id}),
    ]
    status = {
        "status": "Failure",
        "errorCode": "EntryNotFound",
        "reason": message,
        "additionalDetails": None,
        "errorCategory": "NonServiceFailure",
        "recommendedAction": f"Check that the {object_type_name} exists in {job.source_system} and that "
        "the objectId is the one the job's source directory uses.",
    }
    log = _envelope(clock, job, missing, "Other", steps, status, "", None, [])
    log["sourceIdentity"]["displayName"] = None
    log["targetIdentity"] = {"id": None, "type": None, "displayName": None, "details": None}
    return log
