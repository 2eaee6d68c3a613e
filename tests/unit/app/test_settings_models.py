"""Settings parsing, id formats and request validation (with the problem details they produce)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.contract.problems import from_validation_error, json_pointer
from shared.core import ids
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.core.pacing import RateLimit
from shared.settings import Settings, graph_scope_for, parse_targets

CONN = "UseDevelopmentStorage=true"


def test_defaults_are_the_conservative_reading() -> None:
    settings = Settings.from_environ({"AzureWebJobsStorage": CONN})
    assert settings.graph_base_url == "https://graph.microsoft.com/beta"
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    assert settings.rate_limit == RateLimit(5, 10.0)
    assert settings.rate_scope == "tenant"
    assert settings.allow_unlisted_targets is False
    assert settings.retry_budget_minutes == 60, "an outage of most of an hour is waited out"


def test_the_retry_budget_reaches_the_worker() -> None:
    from shared.runtime import Runtime

    runtime = Runtime(Settings.from_environ({"AzureWebJobsStorage": CONN, "GRAPH_RETRY_BUDGET_MINUTES": "90"}))
    assert runtime.settings.retry_budget_minutes == 90
    assert runtime.worker.policy.retry_policy.budget_seconds == 90 * 60


def test_national_cloud_scope_follows_the_host() -> None:
    settings = Settings.from_environ({"AzureWebJobsStorage": CONN, "GRAPH_CLOUD": "USGov"})
    assert settings.graph_base_url == "https://graph.microsoft.us/beta"
    assert settings.graph_scope == "https://graph.microsoft.us/.default"
    assert graph_scope_for("http://127.0.0.1:8080/beta") == "http://127.0.0.1:8080/.default"


def test_identity_based_storage() -> None:
    settings = Settings.from_environ(
        {"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__clientId": "cid"}
    )
    assert settings.storage.table_service_uri == "https://acct.table.core.windows.net"
    assert settings.storage.queue_service_uri == "https://acct.queue.core.windows.net"
    assert settings.storage.credential_client_id == "cid"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_CLOUD": "Mars"}, "GRAPH_CLOUD"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_BASE_URL": "ftp://x"}, "GRAPH_BASE_URL"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_RATE_LIMIT": "lots"}, "GRAPH_RATE_LIMIT"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_RATE_SCOPE": "app"}, "GRAPH_RATE_SCOPE"),
        ({"AzureWebJobsStorage": CONN, "PROVISIONING_TARGETS": "{"}, "PROVISIONING_TARGETS"),
        ({"AzureWebJobsStorage": CONN, "ALLOW_UNLISTED_TARGETS": "maybe"}, "ALLOW_UNLISTED_TARGETS"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_RETRY_BUDGET_MINUTES": "0"}, "GRAPH_RETRY_BUDGET_MINUTES"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_RETRY_BUDGET_MINUTES": "1h"}, "GRAPH_RETRY_BUDGET_MINUTES"),
        ({"AzureWebJobsStorage": CONN, "GRAPH_RETRY_BUDGET_MINUTES": "241"}, "GRAPH_RETRY_BUDGET_MINUTES"),
    ],
)
def test_bad_settings_name_themselves(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_environ(env)


def test_targets() -> None:
    sp = "c8c95753-f628-48e1-9fab-76c2d4cf624c"
    targets = parse_targets(json.dumps({"app": {"servicePrincipalId": sp, "jobId": "AD2AAD.fc96", "ruleId": "r#V2"}}))
    assert targets["app"].rule_id == "r#V2"
    with pytest.raises(SettingsError, match="jobId"):
        parse_targets(json.dumps({"app": {"servicePrincipalId": sp, "jobId": "../x"}}))
    with pytest.raises(SettingsError, match="servicePrincipalId"):
        parse_targets(json.dumps({"app": {"servicePrincipalId": "nope", "jobId": "j"}}))
    settings = Settings.from_environ({"AzureWebJobsStorage": CONN, "PROVISIONING_TARGETS": json.dumps(
        {"app": {"servicePrincipalId": sp, "jobId": "J1"}})})  # fmt: skip
    assert settings.target_for_ids(sp.upper(), "j1") == targets["app"].__class__("app", sp, "J1", None)


def test_rate_limit_forms() -> None:
    assert RateLimit.parse("5/1500ms") == RateLimit(5, 1.5)
    assert RateLimit.parse("10/1m") == RateLimit(10, 60.0)


@given(st.text())
def test_ids_never_admit_path_or_control_characters(text: str) -> None:
    for check in (ids.is_guid, ids.is_job_id, ids.is_rule_id, ids.is_request_id, ids.is_target_name):
        if check(text):
            assert "/" not in text
            assert "?" not in text
            assert "%" not in text
            assert all(ch.isprintable() for ch in text)
    if ids.is_object_id(text):
        assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in text)


def _validate(body: dict[str, Any]) -> ProvisioningRequest:
    return ProvisioningRequest.model_validate_json(json.dumps(body))


def test_valid_request() -> None:
    request = _validate(
        {"target": "app", "eventId": "e-1", "notBefore": "2026-11-24T08:00:00Z",
         "subjects": [{"objectId": "CN=A,DC=x", "objectTypeName": "user"}]}
    )  # fmt: skip
    assert request.subjects[0].object_id == "CN=A,DC=x"
    assert request.not_before is not None


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"subjects": []}, "/subjects"),
        ({"subjects": [{"objectId": "u"}]}, "/subjects/0/objectTypeName"),
        ({"subjects": [{"objectId": "u\n", "objectTypeName": "User"}]}, "/subjects/0/objectId"),
        ({"subjects": [{"objectId": "u", "objectTypeName": "User"}], "servicePrincipalId": "x/../y"},
         "/servicePrincipalId"),
        ({"subjects": [{"objectId": "u", "objectTypeName": "User"}], "jobId": "a/b"}, "/jobId"),
        ({"subjects": [{"objectId": "u", "objectTypeName": "User"}], "notBefore": "tomorrow"}, "/notBefore"),
        ({"subjects": [{"objectId": "u", "objectTypeName": "User"}], "notBefore": "2026-11-24T08:00:00"},
         "/notBefore"),
        ({"subjects": [{"objectId": "u", "objectTypeName": "User", "colour": "red"}]}, "/subjects/0/colour"),
    ],
)  # fmt: skip
def test_each_bad_field_gets_a_json_pointer(body: dict[str, Any], pointer: str) -> None:
    with pytest.raises(ValidationError) as info:
        _validate(body)
    problem = from_validation_error(info.value)
    assert problem.status == 400
    assert pointer in [e.pointer for e in problem.errors]
    assert problem.to_body()["errors"]


def test_json_pointer_escapes() -> None:
    assert json_pointer(["a/b", "c~d", 0]) == "/a~1b/c~0d/0"


def test_a_queue_message_is_read_like_an_http_body() -> None:
    from shared.contract.problems import Problem
    from shared.triggers.queue_api import parse_request_message

    request, notes = parse_request_message(b'{"target": "t", "subjects": [{"objectId": "u", "objectType": "User"}]}')
    assert request.subjects[0].object_type_name == "User"
    assert notes == ["/subjects/0/objectType renamed to objectTypeName"]
    for body, pointer in ((b"[" * 200_000, ""), (b"\xff", ""), (b'{"subjects": []}', "/subjects")):
        with pytest.raises(Problem) as raised:
            parse_request_message(body)
        assert raised.value.status == 400
        assert pointer in [e.pointer for e in raised.value.errors]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("https://func-api-abc.azurewebsites.net", "https://func-api-abc.azurewebsites.net"),
        ("https://api.contoso.com/provisioning/", "https://api.contoso.com/provisioning"),
        ("http://127.0.0.1:7071", "http://127.0.0.1:7071"),
        ("http://localhost:7071/", "http://localhost:7071"),
        ("http://[::1]:7071", "http://[::1]:7071"),
    ],
)
def test_public_base_url_accepts_https_and_local_http(value: str, expected: str | None) -> None:
    assert Settings.from_environ({"AzureWebJobsStorage": CONN, "PUBLIC_BASE_URL": value}).public_base_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "http://func-api.azurewebsites.net",  # plain http off this machine
        "func-api.azurewebsites.net",
        "ftp://example.com",
        "https://",
        "https://example.com/?code=secret",
        "https://example.com/#x",
        "https://user:pass@example.com",
        "https://example.com:notaport",
    ],
)
def test_public_base_url_refuses_what_links_cannot_build_on(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"AzureWebJobsStorage": CONN, "PUBLIC_BASE_URL": value})
    assert raised.value.setting == "PUBLIC_BASE_URL"
    assert "secret" not in str(raised.value)
    assert "pass" not in str(raised.value)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"PROVISIONING_TARGETS": "{bad"}, "PROVISIONING_TARGETS"),
        ({"PROVISIONING_TARGETS": '{"t": {"servicePrincipalId": "x", "jobId": "j"}}'}, "PROVISIONING_TARGETS"),
        ({"GRAPH_RATE_LIMIT": "lots"}, "GRAPH_RATE_LIMIT"),
        ({"GRAPH_CLOUD": "Mars"}, "GRAPH_CLOUD"),
        ({"LEDGER_RETENTION_DAYS": "0"}, "LEDGER_RETENTION_DAYS"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
    ],
)
def test_a_settings_error_names_its_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({"AzureWebJobsStorage": CONN, **env})
    assert raised.value.setting == setting
