"""Structured logs and counters, for Application Insights.

Logs: every line from ``shared`` carries the correlation ids of what is being processed (``invocationId``,
``requestId``, ``eventId``, ``callId``) as structured fields; with the worker's Azure Monitor integration
(``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``) they become customDimensions, so one KQL filter
follows a request from the POST through every queue hop. Queue messages carry no headers, so the ids are
bound at each boundary from the message itself. Nothing secret is ever put in a log field: tokens never
reach this code, and bodies are not logged.

Counters go through the OpenTelemetry metrics API (a no-op until a MeterProvider is configured, as the
worker does in Azure): requests accepted, Graph calls by outcome, throttles, and limiter waits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.core.errors import SettingsError

_context: ContextVar[Mapping[str, str]] = ContextVar("provisioning_log_context", default=MappingProxyType({}))
METER_NAME = "provision_on_demand"


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Add correlation ids to every log line written inside the block (and in tasks it starts)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextAdapter(logging.LoggerAdapter[logging.Logger]):
    """Merges the bound correlation ids into ``extra`` (the stdlib adapter would replace it)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**_context.get(), **(kwargs.get("extra") or {})}
        return msg, kwargs


def get_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose lines carry the bound correlation ids."""
    return _ContextAdapter(logging.getLogger(name), {})


class _Instruments:
    def __init__(self) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(METER_NAME)
        self.accepted = meter.create_counter("provisioning.requests.accepted", description="Requests accepted")
        self.calls = meter.create_counter("provisioning.graph.calls", description="provisionOnDemand attempts")
        self.throttles = meter.create_counter("provisioning.graph.throttles", description="429 answers from Graph")
        self.waits = meter.create_histogram(
            "provisioning.limiter.wait", unit="s", description="How long a call waited for a rate-limit slot"
        )


_instruments: _Instruments | None = None


def _get() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def reset_instruments() -> None:
    """Forget the instruments (tests install their own MeterProvider)."""
    global _instruments
    _instruments = None


def request_accepted(source: str, duplicate: bool) -> None:
    """A request was accepted (or answered as a duplicate of an earlier event)."""
    _get().accepted.add(1, {"source": source, "duplicate": duplicate})


def graph_call(status: str, http_status: int | None) -> None:
    """One provisionOnDemand attempt ended with this call status."""
    _get().calls.add(1, {"status": status, "httpStatus": http_status or 0})
    if http_status == 429:
        _get().throttles.add(1)


def limiter_wait(seconds: float) -> None:
    """A call waited this long for its slot."""
    _get().waits.record(max(0.0, seconds))


# --- What the app logs at all ------------------------------------------------------------------------------------

#: Libraries whose INFO lines are per-HTTP-call chatter: the Azure SDK's HttpLoggingPolicy (request and response
#: headers of every storage and token call), azure-identity's token messages, httpx's "HTTP Request: ..." line
#: under msgraph/kiota and the health check, and their transports.
SDK_LOGGERS = ("azure", "httpx", "httpcore", "urllib3", "msal")


def quiet_sdk_logging() -> list[str]:
    """Set the SDKs' loggers to WARNING, so Application Insights gets the app's lines, not every HTTP call.

    The Python worker forwards every logger at INFO (its root logger) to the host and Application Insights;
    ``azure.core.pipeline.policies.http_logging_policy`` alone writes two lines per storage call. Left alone:
    a logger someone configured (its level is not NOTSET), and everything when the root logger is at DEBUG
    (the worker's ``PYTHON_ENABLE_DEBUG_LOGGING``, the devhost's ``DEVHOST_LOG_LEVEL=DEBUG``), so the SDKs'
    own lines can still be audited, or above INFO (nothing to quieten: a plain import, a test run).
    Idempotent; returns the loggers it quietened.
    """
    if not logging.DEBUG < logging.getLogger().getEffectiveLevel() <= logging.INFO:
        return []
    quietened = []
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
            quietened.append(name)
    return quietened


_reported_settings: set[tuple[str, str]] = set()


def report_invalid_setting(exc: SettingsError, *, during: str) -> None:
    """One ERROR naming the broken setting and why, once per problem and occasion (app load, first use...)."""
    key = (during, str(exc))
    if key in _reported_settings:
        return
    _reported_settings.add(key)
    get_logger(__name__).error(
        "app setting %s is invalid (found during %s): %s", exc.setting, during, exc, extra={"setting": exc.setting}
    )


def on_app_load(environ: Mapping[str, str]) -> None:
    """What ``function_app.py`` does when the worker imports it: no I/O, only logging decisions.

    SDK loggers quietened, and the settings parsed once (pure) so a broken one is an ERROR in the log at
    startup, before any request or message finds out.
    """
    from shared.core.errors import SettingsError
    from shared.settings import Settings

    quiet_sdk_logging()
    try:
        Settings.from_environ(environ)
    except SettingsError as exc:
        report_invalid_setting(exc, during="app load")
