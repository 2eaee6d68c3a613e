"""What the Functions worker checks when it indexes function_app.py, and what it must not pay for at import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from shared import http_api
from shared.work_queue import WORK_QUEUE

ROOT = Path(__file__).resolve().parents[2]
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
    assert routes == {
        "provision": ("provision", "FUNCTION", None),
        "provision_status": ("provision/{requestId}", "FUNCTION", None),
        "health": ("health", "ANONYMOUS", None),
        "provision_graph_compatible": (
            "servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand",
            "FUNCTION",
            None,
        ),
        "openapi": ("openapi.json", "FUNCTION", None),
        "provision_requests_queue": (None, None, "provisioning-requests"),
        "provision_work": (None, None, WORK_QUEUE),
        "ledger_retention": (None, None, None),
        "sweeper": (None, None, None),
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


async def test_health_is_503_not_500_when_the_settings_are_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime

    monkeypatch.setattr(runtime, "_runtime", None)
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("PROVISIONING_TARGETS", "{bad")
    req = func.HttpRequest("GET", "http://127.0.0.1/api/health", body=b"")
    response = await http_api.health(req)
    assert response.status_code == 503
    assert json.loads(response.get_body()) == {"status": "unavailable", "checks": {"settings": "invalid"}}
    assert "PROVISIONING_TARGETS" not in response.get_body().decode()
    monkeypatch.setattr(runtime, "_runtime", None)
