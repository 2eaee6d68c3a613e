"""local.settings.json precedence, host.json parsing, connection and lease knobs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from devhost.keys import load_keys
from devhost.queue_listener import (
    ConnectionSettingError,
    decode_body,
    lease_seconds,
    next_backoff,
    resolve_connection,
    resolve_setting_refs,
)
from devhost.settings import (
    HostConfig,
    QueueOptions,
    SettingsError,
    load_host_config,
    load_local_settings,
    parse_timespan,
)


def test_environment_wins_over_local_settings(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file"}}), encoding="utf-8"
    )
    env = {"A": "env"}
    values = load_local_settings(tmp_path, env)
    assert values == {"A": "file", "B": "file"}
    assert env == {"A": "env", "B": "file"}


def test_missing_local_settings_is_fine(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert load_local_settings(tmp_path, env) == {}
    assert env == {}


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"Values": []}', '{"Values": {"X": true}}', '{"IsEncrypted": true}']
)
def test_bad_local_settings_fail(tmp_path: Path, content: str) -> None:
    (tmp_path / "local.settings.json").write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError):
        load_local_settings(tmp_path, {})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:00:02", 2.0), ("00:01:00", 60.0), ("1.02:00:00", 93600.0), ("00:00:00.250", 0.25), ("00:05", 300.0)],
)
def test_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text, what="x") == seconds


@pytest.mark.parametrize("value", ["2s", "abc", 5, None])
def test_bad_timespan(value: object) -> None:
    with pytest.raises(SettingsError):
        parse_timespan(value, what="x")


def test_host_json_defaults_when_missing(tmp_path: Path) -> None:
    assert load_host_config(tmp_path) == HostConfig()
    assert QueueOptions().new_batch_threshold == 8


def test_host_json_queue_options(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": "/v1/"},
                    "queues": {
                        "batchSize": 10,
                        "maxPollingInterval": "00:00:05",
                        "visibilityTimeout": "00:00:30",
                        "maxDequeueCount": 2,
                        "messageEncoding": "none",
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    config = load_host_config(tmp_path)
    assert config.route_prefix == "v1"
    assert config.queues == QueueOptions(
        batch_size=10,
        new_batch_threshold=5,
        max_polling_interval=5.0,
        visibility_timeout=30.0,
        max_dequeue_count=2,
        message_encoding="none",
    )


@pytest.mark.parametrize(
    "queues", [{"batchSize": 33}, {"batchSize": 0}, {"messageEncoding": "utf8"}, {"maxDequeueCount": "5"}]
)
def test_host_json_rejects_values_the_host_rejects(tmp_path: Path, queues: dict[str, object]) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": queues}}), encoding="utf-8")
    with pytest.raises(SettingsError):
        load_host_config(tmp_path)


def test_polling_interval_has_a_100ms_floor(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(
        json.dumps({"extensions": {"queues": {"maxPollingInterval": "00:00:00.010"}}}), encoding="utf-8"
    )
    assert load_host_config(tmp_path).queues.max_polling_interval == 0.1


def test_connection_resolution() -> None:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "Other": "conn-other",
        "AzureWebJobsThird": "conn-third",
        "Ident__queueServiceUri": "https://x",
    }
    assert resolve_connection("", env) == "UseDevelopmentStorage=true"
    assert resolve_connection("AzureWebJobsStorage", env) == "UseDevelopmentStorage=true"
    assert resolve_connection("Other", env) == "conn-other"
    assert resolve_connection("Third", env) == "conn-third"
    with pytest.raises(ConnectionSettingError, match="identity-based"):
        resolve_connection("Ident", env)
    with pytest.raises(ConnectionSettingError, match="not set"):
        resolve_connection("Missing", env)


def test_setting_references() -> None:
    assert resolve_setting_refs("%Q%-x", {"Q": "jobs"}, what="t") == "jobs-x"
    with pytest.raises(ConnectionSettingError):
        resolve_setting_refs("%NOPE%", {}, what="t")


def test_lease_seconds_knob() -> None:
    assert lease_seconds({}) == 600
    assert lease_seconds({"DEVHOST_QUEUE_LEASE_SECONDS": "2"}) == 2
    with pytest.raises(ConnectionSettingError):
        lease_seconds({"DEVHOST_QUEUE_LEASE_SECONDS": "soon"})


def test_message_decoding() -> None:
    assert decode_body("aGVsbG8=", "base64") == b"hello"
    assert decode_body("not base64!", "base64") is None
    assert decode_body("plain", "none") == b"plain"


def test_backoff_grows_to_the_cap_and_never_below_100ms() -> None:
    rng = random.Random(1)
    delay = 0.1
    seen = []
    for _ in range(20):
        delay = next_backoff(delay, 2.0, rng)
        seen.append(delay)
    assert min(seen) >= 0.1
    assert max(seen) == 2.0
    assert seen[0] < seen[3]


def test_keys_default_off_and_generated_when_required(capsys: pytest.CaptureFixture[str]) -> None:
    keys = load_keys({})
    assert not keys.required
    assert keys.allows(None, "admin", {}, {})
    generated = load_keys({"DEVHOST_REQUIRE_KEYS": "true"})
    err = capsys.readouterr().err
    assert generated.required
    assert generated.host_key in err
    assert generated.master_key in err
    assert generated.host_key != generated.master_key


def test_function_keys_are_read_and_checked_against_the_functions() -> None:
    env = {"DEVHOST_REQUIRE_KEYS": "1", "DEVHOST_FUNCTION_KEYS": '{"provision": "p"}', "DEVHOST_FUNCTION_KEY": "h"}
    keys = load_keys(env, functions=["provision", "health"])
    assert keys.function_keys == {"provision": "p"}
    assert keys.host_key == "h"  # the old name of DEVHOST_HOST_KEY still works
    with pytest.raises(SettingsError, match="provisoin"):
        load_keys({**env, "DEVHOST_FUNCTION_KEYS": '{"provisoin": "p"}'}, functions=["provision"])
    with pytest.raises(SettingsError, match="DEVHOST_FUNCTION_KEYS"):
        load_keys({**env, "DEVHOST_FUNCTION_KEYS": '["p"]'})


@pytest.mark.parametrize(
    ("function", "level", "query", "headers", "allowed"),
    [
        ("fn", "anonymous", {}, {}, True),
        ("fn", "function", {}, {}, False),
        ("fn", "function", {"code": "h"}, {}, True),  # a host key: every function
        ("other", "function", {"code": "h"}, {}, True),
        ("fn", "function", {"code": "f"}, {}, True),  # fn's own key
        ("other", "function", {"code": "f"}, {}, False),  # ...is not other's
        ("fn", "function", {"code": "m"}, {}, True),
        ("fn", "function", {}, {"X-Functions-Key": "f"}, True),
        ("fn", "function", {"code": "f"}, {"x-functions-key": "wrong"}, False),  # the header wins
        ("fn", "function", {"code": "nope"}, {}, False),
        (None, "admin", {"code": "h"}, {}, False),
        (None, "admin", {"code": "f"}, {}, False),
        (None, "admin", {}, {"x-functions-key": "m"}, True),
    ],
)
def test_key_checks(
    function: str | None, level: str, query: dict[str, str], headers: dict[str, str], allowed: bool
) -> None:
    env = {"DEVHOST_REQUIRE_KEYS": "1", "DEVHOST_HOST_KEY": "h", "DEVHOST_MASTER_KEY": "m"}
    keys = load_keys({**env, "DEVHOST_FUNCTION_KEYS": '{"fn": "f"}'})
    assert keys.allows(function, level, query, headers) is allowed
