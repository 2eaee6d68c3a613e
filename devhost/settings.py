"""Reading ``local.settings.json`` and ``host.json`` the way Core Tools and the host do.

Core Tools copies ``local.settings.json`` ``Values`` into the worker's environment, but an environment
variable that is already set wins, so scripts and tests can override a single setting without editing
the file.  ``host.json`` carries the trigger tuning (queue polling, poison threshold, route prefix) that
the devhost must honour for its behaviour to match Azure.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(Exception):
    """A settings file is malformed; startup must fail rather than run with guessed values."""


_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+(?:\.\d+)?))?$")


def parse_timespan(value: object, *, what: str) -> float:
    """Parse a .NET TimeSpan string (``[d.]hh:mm[:ss[.fff]]``) into seconds.

    host.json uses TimeSpan strings; older files use plain integers (milliseconds for
    ``maxPollingInterval``), which callers handle before calling this.
    """
    if not isinstance(value, str):
        raise SettingsError(f"host.json {what}: expected a TimeSpan string like '00:00:02', got {value!r}")
    match = _TIMESPAN.match(value.strip())
    if match is None:
        raise SettingsError(f"host.json {what}: {value!r} is not a TimeSpan ([d.]hh:mm:ss)")
    days = int(match.group("days") or 0)
    seconds = float(match.group("s") or 0)
    return days * 86400 + int(match.group("h")) * 3600 + int(match.group("m")) * 60 + seconds


def load_local_settings(app_dir: Path, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Copy ``Values`` from ``local.settings.json`` into ``environ`` without overriding existing keys.

    Returns the values that were read (before precedence), so callers can report them.  A missing file
    is fine (Core Tools warns and carries on); a malformed one is an error.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    path = app_dir / "local.settings.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    if data.get("IsEncrypted") is True:
        raise SettingsError(f"{path}: encrypted settings are not supported by the devhost")
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    result: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(value, str):
            # Core Tools refuses non-string values too; App Service settings are strings.
            raise SettingsError(f"{path}: Values.{key} must be a string, got {type(value).__name__}")
        result[key] = value
        if key not in env:
            env[key] = value
    return result


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` from host.json, with the host's local defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json that change how triggers behave."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    function_timeout: float | None = None


def _int_option(section: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SettingsError(f"host.json extensions.queues.{key}: expected an integer in [{lo}, {hi}]")
    return value


def parse_queue_options(section: dict[str, Any]) -> QueueOptions:
    """Apply the host's defaults and limits (batchSize ≤ 32, polling ≥ 100 ms)."""
    batch_size = _int_option(section, "batchSize", 16, 1, 32)
    threshold = _int_option(section, "newBatchThreshold", batch_size // 2, 0, 10_000)
    raw_poll = section.get("maxPollingInterval", "00:00:02")
    if isinstance(raw_poll, int) and not isinstance(raw_poll, bool):
        max_poll = raw_poll / 1000.0  # legacy milliseconds form
    else:
        max_poll = parse_timespan(raw_poll, what="extensions.queues.maxPollingInterval")
    max_poll = max(0.1, max_poll)
    visibility = parse_timespan(
        section.get("visibilityTimeout", "00:00:00"), what="extensions.queues.visibilityTimeout"
    )
    max_dequeue = _int_option(section, "maxDequeueCount", 5, 1, 10_000)
    encoding = str(section.get("messageEncoding", "base64")).lower()
    if encoding not in {"base64", "none"}:
        raise SettingsError("host.json extensions.queues.messageEncoding: expected 'base64' or 'none'")
    return QueueOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_polling_interval=max_poll,
        visibility_timeout=visibility,
        max_dequeue_count=max_dequeue,
        message_encoding=encoding,
    )


def load_host_config(app_dir: Path) -> HostConfig:
    """Read ``host.json``; a missing file means all host defaults, like the real host."""
    path = app_dir / "host.json"
    if not path.exists():
        return HostConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object")
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise SettingsError("host.json extensions.http.routePrefix must be a string")
    queues = parse_queue_options(extensions.get("queues") or {})
    timeout_raw = data.get("functionTimeout")
    timeout = None
    if timeout_raw is not None and timeout_raw != "-1":
        timeout = parse_timespan(timeout_raw, what="functionTimeout")
        if not math.isfinite(timeout):
            timeout = None
    return HostConfig(route_prefix=prefix.strip("/"), queues=queues, function_timeout=timeout)


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Interpret a boolean knob the way app settings usually are (``true``/``1``)."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in {"1", "true", "yes"}
