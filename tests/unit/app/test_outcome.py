"""The outcome parser: the reference page's bodies verbatim, each known variant, and arbitrary input."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import outcome
from tests.fixtures import seed_response


def test_seed_example_1_is_skipped_redundant_export() -> None:
    body = seed_response(1)
    parsed = outcome.parse(body["key"], body["value"])
    assert parsed.status == "skipped"
    assert parsed.result == "Skipped"
    assert parsed.error_code == "RedundantExport"
    assert parsed.error_message == "The state of the user in both the source and target systems already match."
    assert parsed.action == "Other"
    assert parsed.change_id == "g8ba3be8-1d7f-4a60-ae31-a8980da0a389"
    assert parsed.reportable_identifier == "BillBob@contoso.com"
    assert parsed.target_object_id == "52507a19-96ec-4e73-9250-3e65ffd2d926"
    assert parsed.raw_key is None


def test_seed_example_2_is_an_update_success() -> None:
    body = seed_response(2)
    parsed = outcome.parse(body["key"], body["value"])
    assert parsed.status == "succeeded"
    assert parsed.result == "Success"
    assert parsed.error_code is None
    assert parsed.action == "Update"
    assert parsed.change_id == "582595f3-53be-4843-bf0c-f57dbf8fae96"
    assert parsed.reportable_identifier == "adelev@chicago.com"
    assert parsed.target_object_id == "87cb2512-8e7f-4543-a9c9-e7cf8756a3ad"


def test_seed_example_3_group_with_empty_value() -> None:
    body = seed_response(3)
    assert body["value"] == "{}"
    parsed = outcome.parse(body["key"], body["value"])
    assert parsed.status == "succeeded"
    assert parsed.result == "Success"
    assert parsed.action is None
    assert parsed.change_id is None


def test_type_name_key_with_array_value_reads_the_status_from_the_log() -> None:
    log = [{"action": "Create", "changeId": "c1", "reportableIdentifier": "a@b.c", "statusInfo": {"status": "Success"},
            "targetIdentity": {"id": "t1"}}]  # fmt: skip
    parsed = outcome.parse("Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo", json.dumps(log))
    assert parsed.status == "succeeded"
    assert parsed.action == "Create"
    assert parsed.target_object_id == "t1"
    assert parsed.raw_key == "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo"


def test_failure_inside_a_200_is_failed_with_the_failing_step() -> None:
    key = json.dumps({"result": "Failure", "details": {"errorCode": "EntryConflict", "errorMessage": "conflict"}})
    value = json.dumps(
        {
            "statusInfo": {"status": "Failure", "errorCode": "EntryConflict", "recommendedAction": "Fix the match"},
            "provisioningSteps": [
                {"name": "EntryImport", "status": "Success"},
                {"name": "EntryExportAdd", "status": "Failure"},
            ],
        }
    )
    parsed = outcome.parse(key, value)
    assert parsed.status == "failed"
    assert parsed.error_code == "EntryConflict"
    assert parsed.recommended_action == "Fix the match"
    assert parsed.failed_step == "EntryExportAdd"


def test_skip_reason_from_the_log_when_key_has_no_details() -> None:
    value = json.dumps(
        {"provisioningSteps": [{"name": "EntrySynchronizationSkip", "status": "Skipped",
                                "details": {"SkipReason": "NotEffectivelyEntitled"}}]}
    )  # fmt: skip
    parsed = outcome.parse('{"result":"Skipped","details":{}}', value)
    assert parsed.status == "skipped"
    assert parsed.error_code == "NotEffectivelyEntitled"


def test_unparseable_answers_are_failed_and_keep_the_raw_key() -> None:
    for key, value in [("not json", "not json"), (None, None), ('{"result":"Exploded"}', "{}"), ("[]", "[]")]:
        parsed = outcome.parse(key, value)
        assert parsed.status == "failed"
        assert parsed.error_code == "UnparseableResponse"
        assert parsed.raw_key == key


PROPERTY_CASES = 1000  # per property; the closing note quotes this count


@settings(max_examples=PROPERTY_CASES)
@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()))
def test_never_raises_on_arbitrary_text(key: str | None, value: str | None) -> None:
    parsed = outcome.parse(key, value)
    assert parsed.status in ("succeeded", "skipped", "failed")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=PROPERTY_CASES)
@given(json_values, json_values)
def test_never_raises_on_arbitrary_json(key: object, value: object) -> None:
    parsed = outcome.parse(json.dumps(key), json.dumps(value))
    assert parsed.status in ("succeeded", "skipped", "failed")


log_shapes = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(st.none(), st.text(max_size=10), st.integers()),
        "changeId": st.one_of(st.none(), st.text(max_size=10), st.lists(st.integers())),
        "statusInfo": st.one_of(
            st.none(),
            st.text(),
            st.dictionaries(
                st.sampled_from(["status", "errorCode", "reason"]), st.one_of(st.none(), st.text(max_size=10))
            ),
        ),
        "provisioningSteps": st.one_of(
            st.none(),
            st.lists(
                st.one_of(
                    st.none(),
                    st.dictionaries(
                        st.sampled_from(["name", "status", "details"]),
                        st.one_of(st.text(max_size=8), st.dictionaries(st.text(max_size=8), st.text(max_size=8))),
                    ),
                )
            ),
        ),
        "targetIdentity": st.one_of(st.none(), st.text(), st.dictionaries(st.just("id"), st.text(max_size=8))),
    },
)
keys = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda r, d: json.dumps({"result": r, "details": d}),
        st.one_of(st.sampled_from(["Success", "Skipped", "Failure", "success"]), st.text(max_size=8), st.none()),
        st.one_of(
            st.none(),
            st.text(max_size=5),
            st.dictionaries(st.sampled_from(["errorCode", "errorMessage"]), st.one_of(st.none(), st.text(max_size=8))),
        ),
    ),
)


@settings(max_examples=PROPERTY_CASES)
@given(keys, st.one_of(log_shapes, st.lists(log_shapes, max_size=3)))
def test_never_raises_on_near_miss_shapes(key: str, log: object) -> None:
    """Shapes close to Graph's, with wrong types in every field: a status always, a crash never."""
    parsed = outcome.parse(key, json.dumps(log))
    assert parsed.status in ("succeeded", "skipped", "failed")
    if parsed.error_code == "UnparseableResponse":
        assert parsed.raw_key == key


def test_a_warning_is_not_reported_as_success_and_keeps_its_code() -> None:
    key = json.dumps({"result": "Warning", "details": {"errorCode": "PartialExport", "errorMessage": "half done"}})
    parsed = outcome.parse(key, "{}")
    assert parsed.status == "failed"
    assert parsed.result == "Warning"
    assert parsed.error_code == "PartialExport"


def test_current_summary_schema_reads_the_reportable_identifier_from_the_steps() -> None:
    """provisioningObjectSummary: no top-level reportableIdentifier; a step's details carry it."""
    log = {"provisioningAction": "create", "changeId": "c2", "provisioningStatusInfo": {"status": "success"},
           "provisioningSteps": [{"name": "EntryImport", "details": {}},
                                 {"name": "EntryExportAdd", "details": {"ReportableIdentifier": "Self-service Pilot"}}],
           "sourceIdentity": {"id": "s1", "displayName": "Pilot group", "details": {}},
           "targetIdentity": {"id": "t2"}}  # fmt: skip
    parsed = outcome.parse(json.dumps({"result": "Success", "details": {}}), json.dumps(log))
    assert parsed.status == "succeeded"
    assert parsed.action == "create"
    assert parsed.reportable_identifier == "Self-service Pilot"


def test_summary_schema_without_step_details_falls_back_to_the_source_identity() -> None:
    log = {"provisioningStatusInfo": {"status": "success"}, "provisioningSteps": [{"name": "x", "details": None}],
           "sourceIdentity": {"id": "s1", "displayName": "Adele Vance", "details": {}}}  # fmt: skip
    parsed = outcome.parse(json.dumps({"result": "Success", "details": {}}), json.dumps(log))
    assert parsed.reportable_identifier == "Adele Vance"
    with_details = {**log, "sourceIdentity": {"displayName": "Adele", "details": {"ReportableIdentifier": "adelev@x"}}}
    assert (
        outcome.parse(json.dumps({"result": "Success"}), json.dumps(with_details)).reportable_identifier == "adelev@x"
    )


def test_the_top_level_field_wins_when_both_schemas_are_present() -> None:
    log = {"reportableIdentifier": "top@x", "statusInfo": {"status": "Success"},
           "provisioningSteps": [{"details": {"ReportableIdentifier": "step@x"}}]}  # fmt: skip
    assert outcome.parse(json.dumps({"result": "Success"}), json.dumps(log)).reportable_identifier == "top@x"
