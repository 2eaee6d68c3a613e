"""What the Functions worker checks when it indexes function_app.py, and what it must not pay for at import."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys

import azure.functions as func
import pytest

import function_app
from shared.contract.names import WORK_QUEUE
from shared.triggers import http_api
from tests.paths import ROOT

# get_functions() validates names against what it indexed before, so it may run once per process (as in the worker).
FUNCTIONS = function_app.app.get_functions()


def test_exactly_one_app_and_bindings_match_parameters() -> None:
    registers = [v for v in vars(function_app).values() if isinstance(v, func.FunctionRegister)]
    assert len(registers) == 1
    for fn in FUNCTIONS:
        params = set(inspect.signature(fn.get_user_function()).parameters) - {"context"}
        names = {b.name for b in fn.get_bindings() if b.name != "$return"}
        assert names == params, fn.get_function_name()


def test_routes_and_auth_levels() -> None:
    routes = {}
    for fn in FUNCTIONS:
        trigger = json.loads(fn.get_function_json())["bindings"][0]
        routes[fn.get_function_name()] = (trigger.get("route"), trigger.get("authLevel"), trigger.get("queueName"))
    # One function per way in serves submit and status: a function key opens only its own function, so the
    # key a caller submits with must also open the Location it gets back. The URLs are the contract's.
    assert routes == {
        # the operator's list and retry/cancel ride on provision too: a retry's Location opens with its key
        "provision": ("provision/{requestId?}/{action?}", "FUNCTION", None),
        "targets": ("targets", "FUNCTION", None),
        "poison": ("poison/{action?}", "FUNCTION", None),
        "health": ("health", "ANONYMOUS", None),
        "provision_batch": ("provision/batch", "FUNCTION", None),
        # static files only (the data comes from the keyed API): a browser loads its modules without the key
        "console": ("console/{*asset}", "ANONYMOUS", None),
        "provision_graph_compatible": (
            "servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand/{requestId?}",
            "FUNCTION",
            None,
        ),
        "openapi": ("openapi.json", "FUNCTION", None),
        "provision_requests_queue": (None, None, "provisioning-requests"),
        "provision_work": (None, None, WORK_QUEUE),
        "provision_callbacks": (None, None, "provisioning-callbacks"),
        "ledger_retention": (None, None, None),
        "sweeper": (None, None, None),
        "backlog_dispatch": (None, None, None),
        "provision_schedules": (None, None, None),
    }


def test_route_prefix_matches_host_json() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == http_api.ROUTE_PREFIX
    assert host["extensions"]["queues"]["messageEncoding"] == "base64"


def test_import_is_cheap() -> None:
    """Flex Consumption allows 30 s to start: the Graph SDK and storage clients load on first use, not at import."""
    code = (
        "import sys, function_app; "
        "print(sorted(m for m in ('msgraph_beta', 'azure.data.tables', 'azure.storage.queue', 'azure.identity') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_methods_of_the_http_functions() -> None:
    methods = {
        fn.get_function_name(): sorted(json.loads(fn.get_function_json())["bindings"][0].get("methods") or [])
        for fn in FUNCTIONS
        if fn.get_function_name() in ("provision", "provision_graph_compatible", "health")
    }
    assert methods == {"provision": ["GET", "POST"], "provision_graph_compatible": ["GET", "POST"], "health": ["GET"]}


async def test_health_names_the_invalid_setting_never_its_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from shared import runtime

    monkeypatch.setattr(runtime, "_runtime", None)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("PROVISIONING_TARGETS", '{"t": {"servicePrincipalId": "secret-looking-value"}}')
    req = func.HttpRequest("GET", "http://127.0.0.1/api/health", body=b"")
    with caplog.at_level(logging.ERROR):
        response = await http_api.health(req)
    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body == {
        "status": "unavailable",
        "checks": {"settings": "invalid"},
        "invalidSetting": "PROVISIONING_TARGETS",
    }
    assert "secret-looking-value" not in response.get_body().decode()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert "PROVISIONING_TARGETS" in errors[0].getMessage()
    assert "servicePrincipalId must be a GUID" in errors[0].getMessage()  # the log says why
    monkeypatch.setattr(runtime, "_runtime", None)


def test_loading_the_app_logs_an_invalid_setting_and_quietens_the_sdks() -> None:
    """What the worker sees when it imports function_app.py: an ERROR naming the setting, SDK logs at WARNING."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s %(name)s %(message)s')\n"
        "import function_app\n"
        "for name in ('azure.core.pipeline.policies.http_logging_policy', 'azure.identity', 'httpx'):\n"
        "    print(name, logging.getLogger(name).isEnabledFor(logging.INFO))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "GRAPH_RATE_LIMIT": "five per ten",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    }
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    lines = out.stdout.splitlines()
    assert any(line.startswith("ERROR") and "GRAPH_RATE_LIMIT" in line and "5/10s" in line for line in lines), lines
    assert "azure.core.pipeline.policies.http_logging_policy False" in lines
    assert "azure.identity False" in lines
    assert "httpx False" in lines
