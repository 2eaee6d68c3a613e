"""Typed records and the one place that knows the Table schema.

The ledger's properties are a contract (docs: DESIGN "Ledger"): the codec must write exactly the names and
values the app wrote before records existed, read back what it wrote, and be the only code in ``shared/``
outside the adapters that could spell a Table key. The call's shown fields are defined once
(:class:`CallRecord`); the status view, the API model and the OpenAPI document follow them.
"""

from __future__ import annotations

import ast
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters import ledger_codec as codec
from shared.contract import api_models, openapi, views
from shared.core import outcome, textsplit, transitions
from shared.core.ports import GraphAnswer
from shared.core.records import CallRecord, OutboxMarks, RequestRecord, camel, shown_call_fields
from shared.core.vocabulary import CallbackStatus, CallStatus, Priority, RequestStatus, RuleSource, Source, WaitingFor

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
RID = "0" * 32


_ENUM_VALUES: dict[str, Any] = {
    "status": CallStatus.FAILED,
    "rule_source": RuleSource.SCHEMA,
    "waiting_for": WaitingFor.SLOT,
    "priority": Priority.HIGH,
}


def full_call(**changes: Any) -> CallRecord:
    """A call with every field set."""
    values: dict[str, Any] = {}
    for f in fields(CallRecord):
        if f.name in ("request_id", "call_id", "version"):
            continue
        kind = str(f.type)
        if "datetime" in kind:
            values[f.name] = T0 + timedelta(minutes=len(values))
        elif f.name in _ENUM_VALUES:
            values[f.name] = _ENUM_VALUES[f.name]
        elif f.name == "subject":
            values[f.name] = {"objectId": "u1", "objectTypeName": "User"}
        elif "tuple" in kind:
            values[f.name] = ("objectTypeName 'user' sent as 'User'",)
        elif "bool" in kind:
            values[f.name] = False
        elif "int" in kind:
            values[f.name] = len(values)
        else:
            values[f.name] = f"{f.name}-value"
    return CallRecord(RID, "call-0001", **{**values, **changes})


def test_a_call_row_as_intake_wrote_it_before_records() -> None:
    """The exact entity the dict-building intake wrote (None properties were dropped)."""
    call = CallRecord(
        RID,
        "call-0002",
        subject={"objectId": "u1", "objectTypeName": "User"},
        service_principal_id="sp",
        job_id="job",
        rule_id="rule-1",
        rule_source=RuleSource.TARGET,
        status=CallStatus.QUEUED,
        attempts=0,
        not_before=T0,
        next_attempt_at=T0,
        created_at=T0,
    )
    assert codec.call_to_entity(call) == {
        "PartitionKey": RID,
        "RowKey": "call-0002",
        "subject": '{"objectId":"u1","objectTypeName":"User"}',
        "servicePrincipalId": "sp",
        "jobId": "job",
        "ruleId": "rule-1",
        "ruleSource": "target",
        "status": "queued",
        "attempts": 0,
        "notBefore": T0,
        "nextAttemptAt": T0,
        "createdAt": T0,
    }
    assert all(type(v) in (str, int, bool, datetime) for v in codec.call_to_entity(full_call()).values())


def test_a_request_row_as_intake_and_the_queue_rejection_wrote_it_before_records() -> None:
    request = RequestRecord(
        RID,
        RequestStatus.REJECTED,
        source=Source.QUEUE,
        created_at=T0,
        updated_at=T0,
        event_id="evt-1",
        reason="Invalid: no subjects",
        errors=({"pointer": "/subjects", "detail": "is required"},),
        queue_message_id="m-1",
        poison_queue="provisioning-requests-poison",
        normalisations=("a note",),
    )
    assert codec.request_to_entity(request) == {
        "PartitionKey": RID,
        "RowKey": "request",
        "requestId": RID,
        "status": "rejected",
        "source": "queue",
        "createdAt": T0,
        "updatedAt": T0,
        "eventId": "evt-1",
        "callCount": 0,
        "normalisations": '["a note"]',
        "reason": "Invalid: no subjects",
        "errors": '[{"pointer": "/subjects", "detail": "is required"}]',
        "queueMessageId": "m-1",
        "poisonQueue": "provisioning-requests-poison",
        **{f"{s}Count": 0 for s in ("queued", "scheduled", "waiting", "running", "succeeded", "skipped")},
        **{f"{s}Count": 0 for s in ("failed", "rejected", "cancelled")},
    }


def test_every_call_field_survives_the_round_trip() -> None:
    call = full_call(version="etag-1")
    entity = codec.call_to_entity(call)
    back = codec.call_from_entity(entity, "etag-1")
    assert back == call
    assert back.version == "etag-1"
    assert not {"version", "_etag", "etag"} & set(entity), "the concurrency token is metadata, not a property"


def test_a_request_survives_the_round_trip_and_old_rows_without_a_cancelled_count_read_as_zero() -> None:
    request = RequestRecord(RID, RequestStatus.PENDING, source=Source.HTTP, created_at=T0, call_count=2)
    entity = codec.request_to_entity(replace(request, counts={CallStatus.QUEUED: 2}))
    assert codec.request_from_entity(entity).counts[CallStatus.QUEUED] == 2
    del entity["cancelledCount"]
    assert codec.request_from_entity(entity).counts[CallStatus.CANCELLED] == 0


def test_outbox_marks_are_flat_properties_named_as_the_outbox_wrote_them_and_survive_the_round_trip() -> None:
    marks = OutboxMarks(
        notified_for="succeeded@2026-12-02T09:00:05Z",
        notified_at=T0,
        callback_for="succeeded@2026-12-02T09:00:05Z",
        callback_status=CallbackStatus.RETRYING,
        callback_attempts=2,
        callback_last_error="answered 500",
        callback_next_at=T0 + timedelta(seconds=30),
        callback_http_status=500,
    )
    request = RequestRecord(RID, RequestStatus.SUCCEEDED, callback_url="https://a.logic.azure.com/cb", marks=marks)
    entity = codec.request_to_entity(request)
    assert entity["notifiedFor"] == marks.notified_for
    assert entity["callbackStatus"] == "retrying"
    assert entity["callbackUrl"] == "https://a.logic.azure.com/cb"
    assert "notifyClaimFor" not in entity
    assert "marks" not in entity
    assert set(codec.marks_properties(marks)) <= codec.MARK_PROPERTIES
    assert codec.request_from_entity(entity) == replace(request, counts=dict.fromkeys(CallStatus, 0))


@given(st.text(min_size=0, max_size=200), st.integers(min_value=1, max_value=40))
def test_long_text_is_split_and_a_shorter_replacement_leaves_no_stale_part(text: str, chunk: int) -> None:
    long_log = "x" * (textsplit.CHUNK_UNITS * 2 + 5)
    entity = codec.call_to_entity(full_call(provisioning_log=long_log, raw_response=None))
    assert entity["provisioningLogParts"] == 3
    assert "provisioningLog_2" in entity
    assert "rawResponse" not in entity
    assert codec.call_from_entity(entity).provisioning_log == long_log
    shorter = codec.call_to_entity(full_call(provisioning_log=text))
    assert not any(name.startswith("provisioningLog_") for name in shorter)
    assert codec.call_from_entity(shorter).provisioning_log == text


def test_unreadable_json_properties_read_as_the_view_showed_them() -> None:
    entity = {"PartitionKey": RID, "RowKey": "call-0001", "status": "queued", "subject": "{", "normalisations": "x"}
    call = codec.call_from_entity(entity)
    assert call.subject is None
    assert call.normalisations == ("x",)
    assert call.attempts == 0


def test_times_written_as_text_by_an_older_writer_read_as_times() -> None:
    entity = {"PartitionKey": RID, "RowKey": "call-0001", "status": "waiting", "nextAttemptAt": T0.isoformat()}
    assert codec.call_from_entity(entity).next_attempt_at == T0


# --- one definition of the call's fields ------------------------------------------------------------------------


def test_the_view_shows_every_shown_field_in_order_and_nothing_else_but_ids_and_the_log() -> None:
    call = full_call(provisioning_log="the log", provisioning_log_blob=None)
    view = views.call_view(call, include_log=True)
    assert list(view) == ["callId", "subject", *(camel(n) for n in shown_call_fields()), "provisioningLog"]
    assert view["completedAt"].endswith("Z")
    assert view["status"] == "failed"
    assert view["normalisations"] == ["objectTypeName 'user' sent as 'User'"]
    json.dumps(view)  # plain JSON, no enum or datetime left


def test_the_api_model_and_the_openapi_document_follow_the_record() -> None:
    model_fields = list(api_models.CallOutcome.model_fields)
    derived = [*(camel(n) for n in shown_call_fields())]
    assert model_fields == ["callId", "subject", *derived, "provisioningLog", "attemptHistory"]
    schema = openapi.document()["components"]["schemas"]["CallOutcome"]
    assert list(schema["properties"]) == model_fields
    assert set(schema["required"]) == {"callId", "subject", "status", "attempts"}
    assert schema["properties"]["status"]["enum"] == [s.value for s in CallStatus]
    api_models.CallOutcome.model_validate(views.call_view(full_call(), include_log=False))


def test_every_outcome_field_graph_answers_lands_on_the_record_by_name() -> None:
    names = {f.name for f in fields(CallRecord)}
    assert {f.name for f in fields(outcome.Outcome)} <= names
    answer = GraphAnswer('{"result":"Success","details":{}}', '{"action":"Create","changeId":"c-1"}', "g-1")
    call = transitions.apply(CallRecord(RID, "call-0001"), transitions.answered(answer, T0))
    assert (call.status, call.result, call.action, call.change_id) == ("succeeded", "Success", "Create", "c-1")
    assert (call.graph_request_id, call.http_status, call.completed_at) == ("g-1", 200, T0)


def test_an_unknown_change_is_refused() -> None:
    with pytest.raises(TypeError):
        transitions.apply(CallRecord(RID, "call-0001"), {"errorCode": "x"})


# --- the Table schema stays in the adapters ---------------------------------------------------------------------

_TABLE_WORDS = ("PartitionKey", "RowKey", "_etag")


def _code_strings_and_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant that is not a docstring, and every identifier, with its line."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
    return found


def test_only_the_adapters_spell_the_table_schema() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "shared").rglob("*.py"))
        if "adapters" not in path.relative_to(ROOT / "shared").parts
        for line, text in _code_strings_and_names(ast.parse(path.read_text()))
        if any(word in text for word in _TABLE_WORDS)
    ]
    assert not offenders, "the Table schema belongs to shared/adapters (ledger_codec):\n" + "\n".join(offenders)


def test_the_schema_check_sees_a_key_in_code() -> None:
    tree = ast.parse('"""PartitionKey in a docstring is fine."""\nrow = {"PartitionKey": 1}\n')
    assert [text for _, text in _code_strings_and_names(tree) if "PartitionKey" in text] == ["PartitionKey"]
