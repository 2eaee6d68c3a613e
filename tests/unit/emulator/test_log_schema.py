"""The emulator's two provisioning-log schemas, and the app's parser reading both to the same outcome.

Every public capture of a provisionOnDemand 200 uses the older schema (top-level ``reportableIdentifier``,
``statusInfo``, ``action``); the current ``provisioningObjectSummary`` schema moves the identifier into a step's
``details`` and renames the status and action. A job with ``"logSchema": "summary"`` answers in the latter.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from emulator import provlog
from emulator.tenant import DEFAULT_TENANT_PATH, JobSpec, SourceObject, load_tenant
from shared.core import outcome


def _job_and_user() -> tuple[JobSpec, SourceObject]:
    tenant = load_tenant(DEFAULT_TENANT_PATH)
    job = next(j for jobs in tenant.service_principals.values() for j in jobs.values())
    user = next(o for o in tenant.objects.values() if o.object_type_name == "User")
    return job, user


@pytest.mark.parametrize("schema", ["classic", "summary"])
def test_both_schemas_parse_to_the_same_outcome(schema: str) -> None:
    job, user = _job_and_user()
    log = provlog.create_log(dataclasses.replace(job, log_schema=schema), user, "User", "target-1")
    parsed = outcome.parse(json.dumps({"result": "Success", "details": {}}), json.dumps(log))
    assert parsed.status == "succeeded"
    assert parsed.reportable_identifier == user.reportable_identifier
    assert parsed.target_object_id == "target-1"
    assert parsed.action is not None
    assert parsed.action.lower() == "create"


def test_the_summary_schema_has_no_top_level_identifier() -> None:
    job, user = _job_and_user()
    log = provlog.create_log(dataclasses.replace(job, log_schema="summary"), user, "User", "target-1")
    assert "reportableIdentifier" not in log
    assert "statusInfo" not in log
    assert "action" not in log
    assert log["provisioningStatusInfo"]["status"] == "success"
    assert log["provisioningSteps"][-1]["details"]["ReportableIdentifier"] == user.reportable_identifier
    assert log["sourceIdentity"]["identityType"] == "User"


def test_a_failure_in_the_summary_schema_keeps_its_error_code_and_step() -> None:
    job, _ = _job_and_user()
    log = provlog.not_found_log(dataclasses.replace(job, log_schema="summary"), "User", "nobody", "not found")
    key = json.dumps({"result": "Failure", "details": {"errorCode": "EntryNotFound", "errorMessage": "not found"}})
    parsed = outcome.parse(key, json.dumps(log))
    assert parsed.status == "failed"
    assert parsed.error_code == "EntryNotFound"
    assert parsed.failed_step == "EntryImport"
    assert parsed.reportable_identifier == "nobody"
