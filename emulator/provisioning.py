"""provisionOnDemand semantics: request validation, then Create / Skipped / Failure over the tenant state.

Validation follows what the service is documented or observed to do (docs/graph-api-facts.md): one parameter,
one subject, at most 5 group members, ``ruleId`` must be a rule of the job's schema, and
``objectTypeName`` is case-sensitive.  Outcomes are HTTP 200 with a ``stringKeyStringValuePair``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emulator import provlog
from emulator.responses import GraphError, new_guid, pair_body, retarget_context
from emulator.tenant import JobSpec, ObjectMapping, Rule, SourceObject, TenantState

MAX_GROUP_MEMBERS = 5
BAD_JSON_MESSAGE = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
)


@dataclass(frozen=True)
class Subject:
    """One ``synchronizationJobSubject`` of a valid request."""

    object_id: str
    object_type_name: str
    members: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ValidRequest:
    """A request that passed validation: the rule, the mapping for the subject's type, the subject."""

    rule: Rule
    mapping: ObjectMapping
    subject: Subject


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _subject(raw: Any) -> tuple[str, str]:
    if not isinstance(raw, dict):
        raise _bad("Each subject must be a synchronizationJobSubject object.")
    object_id, type_name = raw.get("objectId"), raw.get("objectTypeName")
    if not isinstance(object_id, str) or not object_id.strip() or not isinstance(type_name, str) or not type_name:
        raise _bad("Each subject needs a non-empty 'objectId' and 'objectTypeName'.")
    return object_id, type_name


def parse_body(raw: bytes) -> Any:
    """The JSON body, or Graph's 400 for a payload that is not JSON."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(BAD_JSON_MESSAGE) from exc


def validate(job: JobSpec, body: Any) -> ValidRequest:
    """Check a parsed body against the job's schema; raise :class:`GraphError` (400) when it is refused."""
    if not isinstance(body, dict) or not isinstance(body.get("parameters"), list) or not body["parameters"]:
        raise _bad("The request body must have 'parameters': a list with one synchronizationJobApplicationParameters.")
    parameters = body["parameters"]
    if len(parameters) > 1:
        raise _bad(
            f"provisionOnDemand takes one synchronizationJobApplicationParameters per request; "
            f"the request has {len(parameters)}."
        )
    parameter = parameters[0]
    if not isinstance(parameter, dict):
        raise _bad("'parameters[0]' must be a synchronizationJobApplicationParameters object.")
    rule_id = parameter.get("ruleId")
    rule_text = rule_id if isinstance(rule_id, str) else ""
    rule = job.rule(rule_text)
    if rule is None:
        raise GraphError(
            400,
            "RequestParameterInvalid",
            f"The request identified this synchronization job: {job.id}.  The request also identified this "
            f"synchronization rule: {rule_text}.  However, the job does not include the rule.",
        )
    subjects = parameter.get("subjects")
    if not isinstance(subjects, list) or len(subjects) != 1:
        count = len(subjects) if isinstance(subjects, list) else 0
        raise _bad(f"provisionOnDemand takes exactly one subject per request; the request has {count}.")
    object_id, type_name = _subject(subjects[0])
    mapping = rule.mapping_for(type_name)
    if mapping is None:
        known = ", ".join(m.source_object_name for m in rule.object_mappings if m.enabled)
        raise GraphError(
            400,
            "RequestParameterInvalid",
            f"The synchronization rule {rule.id} has no object mapping for objectTypeName '{type_name}' "
            f"(object type names are case-sensitive). The rule maps: {known}.",
        )
    links = subjects[0].get("links")
    members: list[tuple[str, str]] = []
    if isinstance(links, dict) and links.get("members") is not None:
        raw_members = links["members"]
        if not isinstance(raw_members, list):
            raise _bad("'links.members' must be a list of subjects.")
        if len(raw_members) > MAX_GROUP_MEMBERS:
            raise _bad(
                f"The on-demand provisioning request can only accept a single group with up to "
                f"{MAX_GROUP_MEMBERS} members at a time; the request has {len(raw_members)} members."
            )
        members = [_subject(m) for m in raw_members]
    return ValidRequest(rule, mapping, Subject(object_id, type_name, tuple(members)))


def _entitled(state: TenantState, job: JobSpec, obj: SourceObject) -> bool:
    if not obj.active:
        return False
    if job.scope_all or obj.object_id.casefold() in job.assigned:
        return True
    me = obj.object_id.casefold()
    for assigned_id in job.assigned:
        group = state.tenant.find_object("Group", assigned_id)
        if group is not None and any(m.casefold() == me for m in group.members):
            return True
    return False


def _mark_in_target(state: TenantState, job: JobSpec, request: ValidRequest) -> None:
    in_target = state.job_state(job).in_target
    for object_id in [request.subject.object_id, *(m[0] for m in request.subject.members)]:
        in_target.setdefault(object_id.casefold(), new_guid())


def provision(state: TenantState, job: JobSpec, request: ValidRequest, api_version: str) -> tuple[int, dict[str, Any]]:
    """Apply one validated request and return the HTTP status and body Graph would send."""
    subject = request.subject
    key = subject.object_id.casefold()
    job_state = state.job_state(job)
    recorded = job.recorded.get(key, ())
    served = job_state.recorded_served.get(key, 0)
    if served < len(recorded):
        job_state.recorded_served[key] = served + 1
        response = recorded[served]
        if response.status == 200:
            _mark_in_target(state, job, request)
        return response.status, retarget_context(response.body, api_version)

    shape, target_type = job.response_shape, request.mapping.target_object_name
    obj = state.tenant.find_object(subject.object_type_name, subject.object_id)
    if obj is None:
        message = f"The {subject.object_type_name} '{subject.object_id}' could not be found in {job.source_system}."
        result = {"result": "Failure", "details": {"errorCode": "EntryNotFound", "errorMessage": message}}
        log = provlog.not_found_log(job, subject.object_type_name, subject.object_id, message)
        return 200, pair_body(shape, api_version, result, log)
    if not _entitled(state, job, obj):
        message = provlog.NOT_ENTITLED_MESSAGE.format(kind=obj.object_type_name)
        result = {"result": "Skipped", "details": {"errorCode": "NotEffectivelyEntitled", "errorMessage": message}}
        return 200, pair_body(shape, api_version, result, provlog.not_entitled_log(job, obj, target_type))
    if subject.object_type_name == "Group":
        _mark_in_target(state, job, request)
        return 200, pair_body(shape, api_version, {"result": "Success", "details": {}}, {})
    existing = job_state.in_target.get(key)
    if existing is not None:
        result = {
            "result": "Skipped",
            "details": {"errorCode": "RedundantExport", "errorMessage": provlog.REDUNDANT_MESSAGE},
        }
        return 200, pair_body(shape, api_version, result, provlog.redundant_log(job, obj, target_type, existing))
    target_id = new_guid()
    job_state.in_target[key] = target_id
    result = {"result": "Success", "details": {}}
    return 200, pair_body(shape, api_version, result, provlog.create_log(job, obj, target_type, target_id))
