"""The emulated tenant: source objects, service principals, jobs, rules, assignments and target state.

Loaded from a JSON file (format in ``emulator/README.md``) into immutable specs; everything provisioning
changes lives in :class:`TenantState`, so ``/_emulator/reset`` only has to rebuild the state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.responses import ResponseShape, new_guid

DEFAULT_TENANT_PATH = Path(__file__).parent / "tenants" / "default.json"
JOB_STATUS_CODES = ("NotConfigured", "NotRun", "Active", "Paused", "Quarantine")


def object_key(object_type_name: str, object_id: str) -> tuple[str, str]:
    """Objects are keyed by type and id; ids (GUIDs, DNs, worker ids) compare case-insensitively."""
    return object_type_name, object_id.casefold()


@dataclass(frozen=True)
class ObjectMapping:
    """Which source object type a rule provisions, and as what."""

    source_object_name: str
    target_object_name: str
    name: str
    enabled: bool = True

    def to_graph(self) -> dict[str, Any]:
        """The schema's ``objectMappings[]`` entry."""
        return {
            "enabled": self.enabled,
            "name": self.name,
            "sourceObjectName": self.source_object_name,
            "targetObjectName": self.target_object_name,
            "flowTypes": "Add,Update,Delete",
            "attributeMappings": [],
            "metadata": [],
            "scope": None,
        }


@dataclass(frozen=True)
class Rule:
    """A synchronization rule of a job's schema; its ``id`` is what provisionOnDemand's ``ruleId`` names."""

    id: str
    name: str
    source_directory_name: str
    target_directory_name: str
    metadata: tuple[tuple[str, str], ...]
    object_mappings: tuple[ObjectMapping, ...]

    def mapping_for(self, object_type_name: str) -> ObjectMapping | None:
        """The enabled mapping whose source type is exactly ``object_type_name`` (case-sensitive)."""
        for mapping in self.object_mappings:
            if mapping.enabled and mapping.source_object_name == object_type_name:
                return mapping
        return None

    def to_graph(self) -> dict[str, Any]:
        """The schema's ``synchronizationRules[]`` entry (``metadata`` is a stringKeyStringValuePair list)."""
        return {
            "id": self.id,
            "name": self.name,
            "editable": True,
            "priority": 1,
            "sourceDirectoryName": self.source_directory_name,
            "targetDirectoryName": self.target_directory_name,
            "containerFilter": {"includedContainers": []},
            "groupFilter": {"includedGroups": []},
            "metadata": [{"key": k, "value": v} for k, v in self.metadata],
            "objectMappings": [m.to_graph() for m in self.object_mappings],
        }


@dataclass(frozen=True)
class SourceObject:
    """A user, group, AD user or Workday worker in a source directory."""

    object_type_name: str
    object_id: str
    reportable_identifier: str
    display_name: str
    source_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    members: tuple[str, ...] = ()
    active: bool = True


@dataclass(frozen=True)
class RecordedResponse:
    """A response captured from the real service, served verbatim for a subject's first calls."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class JobSpec:
    """A synchronization job as the tenant file defines it."""

    service_principal_id: str
    id: str
    template_id: str
    status: dict[str, Any]
    schedule: dict[str, Any]
    response_shape: ResponseShape
    source_system: str
    target_system: str
    schema_id: str
    rules: tuple[Rule, ...]
    scope_all: bool
    assigned: frozenset[str]
    initial_target: dict[str, str]
    recorded: dict[str, tuple[RecordedResponse, ...]]
    #: ``classic``: the older log schema every public capture shows (top-level ``reportableIdentifier``,
    #: ``statusInfo``, ``action``); ``summary``: the current ``provisioningObjectSummary`` schema.
    log_schema: str = "classic"

    @property
    def key(self) -> str:
        """``spId/jobId``: the rate-limit key in job scope and the key of per-job settings."""
        return f"{self.service_principal_id}/{self.id}"

    def rule(self, rule_id: str) -> Rule | None:
        """The rule with exactly this id (``#V2`` suffix included)."""
        return next((r for r in self.rules if r.id == rule_id), None)


@dataclass(frozen=True)
class Tenant:
    """Everything loaded from the tenant file."""

    tenant_id: str
    default_client_id: str
    objects: dict[tuple[str, str], SourceObject]
    service_principals: dict[str, dict[str, JobSpec]]
    source: Path | None = None

    def find_sp(self, sp_id: str) -> dict[str, JobSpec] | None:
        """Service principal ids are GUIDs and compare case-insensitively."""
        return self.service_principals.get(sp_id.casefold())

    def find_object(self, object_type_name: str, object_id: str) -> SourceObject | None:
        """Look a subject up in its source directory."""
        return self.objects.get(object_key(object_type_name, object_id))

    def jobs(self) -> list[JobSpec]:
        """Every job of every service principal."""
        return [job for jobs in self.service_principals.values() for job in jobs.values()]


def _str(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"tenant file: {name!r} must be a string in {data!r:.200}")
    return value


def _load_object(raw: dict[str, Any]) -> SourceObject:
    type_name = _str(raw, "objectTypeName")
    object_id = _str(raw, "objectId")
    attributes = {str(k): str(v) for k, v in dict(raw.get("attributes", {})).items()}
    return SourceObject(
        object_type_name=type_name,
        object_id=object_id,
        reportable_identifier=_str(raw, "reportableIdentifier", object_id),
        display_name=_str(raw, "displayName", object_id),
        source_id=_str(raw, "sourceId", object_id),
        attributes=attributes,
        members=tuple(str(m) for m in raw.get("members", [])),
        active=bool(raw.get("active", True)),
    )


def _load_rule(raw: dict[str, Any]) -> Rule:
    metadata = [(str(e["key"]), str(e["value"])) for e in raw.get("metadata", [])]
    if raw.get("supportsProvisionOnDemand", True) and all(k != "supportsProvisionOnDemand" for k, _ in metadata):
        metadata.insert(0, ("supportsProvisionOnDemand", "true"))
    return Rule(
        id=_str(raw, "id"),
        name=_str(raw, "name", "USER_OUTBOUND_USER"),
        source_directory_name=_str(raw, "sourceDirectoryName", "Azure Active Directory"),
        target_directory_name=_str(raw, "targetDirectoryName", "customappsso"),
        metadata=tuple(metadata),
        object_mappings=tuple(
            ObjectMapping(
                source_object_name=_str(m, "sourceObjectName"),
                target_object_name=_str(m, "targetObjectName"),
                name=_str(m, "name", f"Provision {m.get('sourceObjectName')}"),
                enabled=bool(m.get("enabled", True)),
            )
            for m in raw.get("objectMappings", [])
        ),
    )


def _load_recorded(raw: dict[str, Any], base: Path) -> RecordedResponse:
    fixture = raw.get("fixture")
    body = json.loads((base / str(fixture)).read_text(encoding="utf-8")) if fixture else raw.get("body")
    if not isinstance(body, dict):
        raise ValueError("tenant file: a recorded response body must be a JSON object")
    return RecordedResponse(status=int(raw.get("status", 200)), body=body)


def _log_schema(raw: dict[str, Any]) -> str:
    schema = _str(raw, "logSchema", "classic")
    if schema not in ("classic", "summary"):
        raise ValueError(f"logSchema must be 'classic' or 'summary', not {schema!r}")
    return schema


def _load_job(sp_id: str, raw: dict[str, Any], base: Path) -> JobSpec:
    shape = ResponseShape(_str(raw, "responseShape", "graph"))
    status = dict(raw.get("status", {"code": "Active"}))
    if status.get("code") not in JOB_STATUS_CODES:
        raise ValueError(f"tenant file: job status code must be one of {JOB_STATUS_CODES}")
    target = raw.get("inTarget", {})
    initial_target = (
        {str(k).casefold(): str(v) for k, v in target.items()}
        if isinstance(target, dict)
        else {str(k).casefold(): new_guid() for k in target}
    )
    assigned = raw.get("assigned", [])
    recorded = {
        _str(entry, "objectId").casefold(): tuple(_load_recorded(r, base) for r in entry["responses"])
        for entry in raw.get("recordedResponses", [])
    }
    return JobSpec(
        service_principal_id=sp_id,
        id=_str(raw, "id"),
        template_id=_str(raw, "templateId", "customappsso"),
        status=status,
        schedule=dict(raw.get("schedule", {"expiration": None, "interval": "PT40M", "state": "Active"})),
        response_shape=shape,
        log_schema=_log_schema(raw),
        source_system=_str(raw, "sourceSystem", "Azure Active Directory"),
        target_system=_str(raw, "targetSystem", "customappsso"),
        schema_id=_str(raw, "schemaId", _str(raw, "id")),
        rules=tuple(_load_rule(r) for r in raw.get("rules", [])),
        scope_all=assigned == "*",
        assigned=frozenset() if assigned == "*" else frozenset(str(a).casefold() for a in assigned),
        initial_target=initial_target,
        recorded=recorded,
    )


def load_tenant(path: Path) -> Tenant:
    """Read and check a tenant file; fixture paths inside it are relative to the file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    base = path.parent
    objects: dict[tuple[str, str], SourceObject] = {}
    for entry in raw.get("objects", []):
        obj = _load_object(entry)
        objects[object_key(obj.object_type_name, obj.object_id)] = obj
    sps: dict[str, dict[str, JobSpec]] = {}
    for sp in raw.get("servicePrincipals", []):
        sp_id = _str(sp, "id")
        jobs = [_load_job(sp_id, j, base) for j in sp.get("jobs", [])]
        sps[sp_id.casefold()] = {job.id: job for job in jobs}
    return Tenant(
        tenant_id=_str(raw, "tenantId"),
        default_client_id=_str(raw, "managedIdentityClientId"),
        objects=objects,
        service_principals=sps,
        source=path,
    )


@dataclass
class JobState:
    """What provisioning has changed for one job: target objects and recorded responses already served."""

    in_target: dict[str, str]
    recorded_served: dict[str, int] = field(default_factory=dict)
    status_override: dict[str, Any] | None = None


class TenantState:
    """Mutable view over a :class:`Tenant`; ``reset`` brings it back to the file's initial state."""

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant
        self.jobs: dict[str, JobState] = {}
        self.reset()

    def reset(self) -> None:
        """Target state and recorded-response cursors as in the tenant file; status overrides cleared."""
        self.jobs = {job.key: JobState(in_target=dict(job.initial_target)) for job in self.tenant.jobs()}

    def job_state(self, job: JobSpec) -> JobState:
        """The state of one job."""
        return self.jobs[job.key]

    def snapshot(self) -> dict[str, Any]:
        """Debug view for ``GET /_emulator/state``."""
        out: dict[str, Any] = {}
        for job in self.tenant.jobs():
            state = self.jobs[job.key]
            out[job.key] = {
                "status": state.status_override or job.status,
                "inTarget": dict(sorted(state.in_target.items())),
                "recordedResponsesServed": dict(state.recorded_served),
            }
        return {"tenantId": self.tenant.tenant_id, "jobs": out}
