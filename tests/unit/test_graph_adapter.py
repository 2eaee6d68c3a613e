"""The Graph adapter's pure edges: SDK errors to recorded failures, request bodies, rule choice, error advice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import graph, graph_errors, retry
from shared.rules import NoRule, RuleInfo, TtlCache, choose_rule


def _odata_error(status: int, code: str, message: str, headers: dict[str, str]) -> Any:
    from msgraph_beta.generated.models.o_data_errors.inner_error import InnerError
    from msgraph_beta.generated.models.o_data_errors.main_error import MainError
    from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

    error = ODataError(error=MainError(code=code, message=message, inner_error=InnerError(request_id="rid-1")))
    error.response_status_code = status
    error.response_headers = headers
    return error


def test_odata_error_becomes_a_recorded_failure() -> None:
    failure = graph._failure_from_api_error(_odata_error(429, "TooManyRequests", "slow down", {"Retry-After": "7"}))
    assert failure == graph.GraphFailure(429, "TooManyRequests", "slow down", "rid-1", 7.0)


def test_request_id_falls_back_to_the_header() -> None:
    from kiota_abstractions.api_error import APIError

    error = APIError("boom")
    error.response_status_code = 502
    error.response_headers = {"request-id": "hdr-1"}
    failure = graph._failure_from_api_error(error)
    assert failure.http_status == 502
    assert failure.request_id == "hdr-1"
    assert failure.message == "boom"


@pytest.mark.parametrize(("status", "kind"), [(400, "permanent"), (401, "permanent"), (403, "permanent"),
                                              (404, "permanent"), (409, "permanent"), (429, "throttled"),
                                              (500, "transient"), (503, "transient"), (None, "transient")])  # fmt: skip
def test_each_error_class_has_a_final_decision_and_advice(status: int | None, kind: str) -> None:
    assert retry.classify(status) == kind
    advice = graph_errors.recommended_action(status, None)
    if status in (401, 403, 404, 409, 429, 500, 503, None):
        assert advice
    if status == 403:
        assert advice is not None
        assert "Synchronization.ReadWrite.All" in advice
        assert "Application.ReadWrite.OwnedBy" in advice


def test_request_body_uses_the_sdk_models_and_passes_links_through() -> None:
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter

    subject = {
        "objectId": "g1",
        "objectTypeName": "Group",
        "links": {"members": [{"objectId": "u1", "objectTypeName": "User"}],
                  "manager": {"objectId": "m1", "objectTypeName": "User"}},
    }  # fmt: skip
    body = graph._request_body("r#V2", subject)
    writer = JsonSerializationWriter()
    writer.write_object_value(None, body)

    sent = json.loads(writer.get_serialized_content())
    assert sent == {"parameters": [{"ruleId": "r#V2", "subjects": [subject]}]}


RULES = [
    RuleInfo("r-user", "USER_TO_USER", True, ("User",)),
    RuleInfo("r-group#V2", "GROUP", True, ("Group",)),
    RuleInfo("r-off", "NO_OD", False, ("Worker",)),
]


def test_choose_rule() -> None:
    assert choose_rule(RULES, "User") == RULES[0]
    assert choose_rule(RULES, "user") == RULES[0]
    assert choose_rule(RULES, "Group") == RULES[1]
    worker = choose_rule(RULES, "Worker")
    assert isinstance(worker, NoRule)
    assert "Worker" in worker.reason
    assert isinstance(choose_rule([RULES[2]], "Worker"), NoRule)
    ambiguous = choose_rule([*RULES, RuleInfo("r-user-2", "OTHER", True, ("User",))], "User")
    assert isinstance(ambiguous, NoRule)
    assert "More than one" in ambiguous.reason


def test_ttl_cache_expires() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, clock=lambda: now[0])
    cache.put("k", 1)
    assert cache.get("k") == 1
    now[0] = 10.0
    assert cache.get("k") is None
