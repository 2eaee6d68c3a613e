"""What the real Functions host does and a naive local run hides, through the devhost that imitates it.

Chunked bodies dropped (host issue 7930) → 411; per-function keys → submit and poll with the same
function-specific key; ``Location`` from ``PUBLIC_BASE_URL``, never from a forged ``Host``, never with the
master key; a wrong method → 404; an invalid setting → an ERROR at startup, 503 health naming it, 500
``misconfigured`` for POSTs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import Stack, free_port
from tests.integration.conftest import example_values

pytestmark = pytest.mark.integration

HTTP_TIMEOUT = 60.0  # generous: a loaded 2-core machine, and the first Graph call imports the SDK
DEADLINE = 120.0
SEED_SP, SEED_JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
KEYS = {
    "DEVHOST_REQUIRE_KEYS": "true",
    "DEVHOST_HOST_KEY": "host-key-1",
    "DEVHOST_MASTER_KEY": "master-key-1",
    "DEVHOST_FUNCTION_KEYS": '{"provision": "provision-key-1", "provision_graph_compatible": "graph-key-1"}',
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    return {**env, **example_values(), "GRAPH_RATE_LIMIT": "1000/1s", **extra}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that checks keys like Azure, with PUBLIC_BASE_URL set as the Bicep sets it."""
    port = free_port()
    env = _env(**KEYS, PUBLIC_BASE_URL=f"http://127.0.0.1:{port}")
    log_path = tmp_path_factory.mktemp("keyed") / "stack.log"
    with log_path.open("w") as log, Stack(port=port, env=env, log=log) as running:
        assert running.emulator_url
        httpx.post(f"{running.emulator_url}/_emulator/config", json={"rateLimit": "1000/1s"}, timeout=HTTP_TIMEOUT)
        yield running


def _user(n: int) -> dict[str, Any]:
    """One of the emulator tenant's twelve cohort users (a first call for each is a Create)."""
    return {
        "target": "seed-scim-app",
        "subjects": [{"objectId": f"c0ffee00-0000-4000-8000-0000000000{n:02d}", "objectTypeName": "User"}],
    }


def _poll(location: str, **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE
    while (answer := httpx.get(location, timeout=HTTP_TIMEOUT, **kwargs)).status_code == 202:
        assert answer.headers["Location"] == location, "every 202 points at the same status URL"
        assert time.monotonic() < deadline, f"still pending after {DEADLINE:.0f} s"
        time.sleep(0.2)
    return answer


def test_a_chunked_post_gets_411_naming_content_length(keyed: Stack) -> None:
    url = f"{keyed.base_url}/api/provision"

    def chunks() -> Iterator[bytes]:
        yield b'{"target": "seed-scim-app", '
        yield b'"subjects": [{"objectId": "c0ffee00-0000-4000-8000-000000000006", "objectTypeName": "User"}]}'

    answer = httpx.post(
        url,
        params={"code": "provision-key-1"},
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 411, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["errors"][0]["header"] == "Content-Length"
    assert "Content-Length" in problem["detail"]
    sized = httpx.post(url, params={"code": "provision-key-1"}, json=_user(6), timeout=HTTP_TIMEOUT)
    assert sized.status_code == 202, "the same body with Content-Length is accepted"


def test_a_function_key_submits_and_polls_its_own_location(keyed: Stack) -> None:
    url = f"{keyed.base_url}/api/provision"
    assert httpx.post(url, json=_user(1), timeout=HTTP_TIMEOUT).status_code == 401
    wrong_function = httpx.post(url, params={"code": "graph-key-1"}, json=_user(1), timeout=HTTP_TIMEOUT)
    assert wrong_function.status_code == 401, "another function's key does not open this one"

    posted = httpx.post(url, params={"code": "provision-key-1"}, json=_user(1), timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    location = posted.headers["Location"]
    assert location == f"{keyed.base_url}/api/provision/{posted.json()['requestId']}?code=provision-key-1"
    done = _poll(location)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    assert httpx.get(location.split("?")[0], timeout=HTTP_TIMEOUT).status_code == 401

    by_header = httpx.post(url, json=_user(2), headers={"x-functions-key": "provision-key-1"}, timeout=HTTP_TIMEOUT)
    assert by_header.status_code == 202
    assert "code=" not in by_header.headers["Location"], "a header key is resent by its caller, never copied"
    assert _poll(by_header.headers["Location"], headers={"x-functions-key": "provision-key-1"}).status_code == 200


def test_the_graph_compatible_function_key_polls_its_location(keyed: Stack) -> None:
    url = f"{keyed.base_url}/api/servicePrincipals/{SEED_SP}/synchronization/jobs/{SEED_JOB}/provisionOnDemand"
    body = {"parameters": [{"subjects": _user(3)["subjects"]}]}
    posted = httpx.post(url, params={"code": "graph-key-1"}, json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    location = posted.headers["Location"]
    assert location.startswith(f"{url}/{posted.json()['requestId']}?code=graph-key-1")
    done = _poll(location)
    assert done.status_code == 200, done.text
    assert done.json()["source"] == "graph-compatible"


def test_location_ignores_a_forged_host_and_never_carries_the_master_key(keyed: Stack) -> None:
    url = f"{keyed.base_url}/api/provision"
    forged = httpx.post(
        url,
        params={"code": "host-key-1"},
        json=_user(4),
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        timeout=HTTP_TIMEOUT,
    )
    assert forged.status_code == 202, forged.text
    assert forged.headers["Location"].startswith(f"{keyed.base_url}/api/provision/")
    assert forged.headers["Location"].endswith("?code=host-key-1")

    master = httpx.post(url, params={"code": "master-key-1"}, json=_user(5), timeout=HTTP_TIMEOUT)
    assert master.status_code == 202, master.text
    assert "master-key-1" not in master.headers["Location"]
    assert "code=" not in master.headers["Location"]


def test_a_wrong_method_is_404_as_no_route_matched(keyed: Stack) -> None:
    for method, path in (("DELETE", "/api/provision"), ("PUT", "/api/provision/" + "0" * 32), ("POST", "/api/health")):
        answer = httpx.request(method, f"{keyed.base_url}{path}", params={"code": "master-key-1"}, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 404, (method, path)


def test_an_invalid_setting_is_loud(tmp_path: Path) -> None:
    env = _env(PROVISIONING_TARGETS='{"broken": {"servicePrincipalId": "not-a-guid", "jobId": "j"}}')
    log_path = tmp_path / "stack.log"
    with log_path.open("w") as log, Stack(port=free_port(), env=env, log=log) as broken:
        health = httpx.get(f"{broken.base_url}/api/health", timeout=HTTP_TIMEOUT)
        assert health.status_code == 503
        assert health.json() == {
            "status": "unavailable",
            "checks": {"settings": "invalid"},
            "invalidSetting": "PROVISIONING_TARGETS",
        }
        posted = httpx.post(f"{broken.base_url}/api/provision", json=_user(7), timeout=HTTP_TIMEOUT)
        assert posted.status_code == 500
        assert posted.json()["type"].endswith("/misconfigured")
        assert "PROVISIONING_TARGETS" in posted.json()["detail"]
        assert "Retry-After" not in posted.headers
    logged = log_path.read_text()
    errors = [line for line in logged.splitlines() if " ERROR " in line and "PROVISIONING_TARGETS" in line]
    assert any("app load" in line and "servicePrincipalId must be a GUID" in line for line in errors), logged[-3000:]
