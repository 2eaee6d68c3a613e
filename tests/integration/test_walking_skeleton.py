"""End to end over real HTTP: POST → 202 → poll → 200, through Azurite, the devhost, the real SDKs and the emulator."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import Stack, free_port
from tests.fixtures import SEED_OUTCOMES, SEED_REQUESTS, seed_response
from tests.integration.conftest import example_values
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

TARGETS = {1: "seed-scim-app", 2: "seed-cloud-sync", 3: "seed-group-app"}


def _poll(client: httpx.Client, location: str, timeout: float = DEADLINE) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(location)
        if response.status_code != 202:
            return response
        assert response.headers["Retry-After"].isdigit()
        assert response.headers["Location"] == location
        if time.monotonic() > deadline:
            pytest.fail(f"still pending after {timeout:.0f} s: {response.text}")
        time.sleep(0.2)


def _emulator_calls(stack: Stack) -> list[dict[str, Any]]:
    assert stack.emulator_url
    calls: list[dict[str, Any]] = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()["calls"]
    return calls


def test_health_answers_200_without_revealing_internals(stack: Stack) -> None:
    response = httpx.get(f"{stack.base_url}/api/health", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"storage": "ok", "graph": "ok"}}
    assert "127.0.0.1" not in response.text


@pytest.mark.parametrize("example", [1, 2, 3])
def test_seed_example_end_to_end(stack: Stack, example: int) -> None:
    # A reset serves each seed subject's documented answer again, whatever ran before in this session.
    httpx.post(f"{stack.emulator_url}/_emulator/reset", timeout=HTTP_TIMEOUT).raise_for_status()
    seed = SEED_REQUESTS[example]
    documented = seed_response(example)
    expected = SEED_OUTCOMES[example]
    before = len(_emulator_calls(stack))
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        posted = client.post(
            f"{stack.base_url}/api/provision",
            json={"target": TARGETS[example], "subjects": [seed["subject"]]},
        )
        assert posted.status_code == 202, posted.text
        body = posted.json()
        assert body["status"] == "pending"
        location = posted.headers["Location"]
        assert location == f"{stack.base_url}/api/provision/{body['requestId']}"
        assert posted.headers["Retry-After"].isdigit()

        done = _poll(client, location)
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["status"] == "succeeded"
    assert result["source"] == "http"
    assert result["ruleId"] == seed["ruleId"]
    (call,) = result["calls"]
    assert call["callId"] == "call-0001"
    assert call["subject"] == seed["subject"]
    assert call["httpStatus"] == 200
    assert call["attempts"] == 1
    for field, value in expected.items():
        assert call.get(field) == value, field
    assert call["graphRequestId"]

    with_log = httpx.get(location, params={"include": "provisioningLog"}, timeout=HTTP_TIMEOUT).json()
    assert with_log["calls"][0]["provisioningLog"] == documented["value"]

    calls = _emulator_calls(stack)[before:]
    assert len(calls) == 1, calls
    (graph_call,) = calls
    assert graph_call["authorization"] == "Bearer"
    assert graph_call["apiVersion"] == "beta"
    assert graph_call["path"].endswith(
        f"/servicePrincipals/{seed['servicePrincipalId']}/synchronization/jobs/{seed['jobId']}/provisionOnDemand"
    )
    assert graph_call["body"] == {"parameters": [{"ruleId": seed["ruleId"], "subjects": [seed["subject"]]}]}


def test_bad_input_is_a_problem_naming_the_field(stack: Stack) -> None:
    url = f"{stack.base_url}/api/provision"

    def post(**kwargs: Any) -> httpx.Response:
        return httpx.post(url, timeout=HTTP_TIMEOUT, **kwargs)

    response = post(json={"target": "seed-scim-app", "subjects": [{"objectId": "x"}]})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert {"pointer": "/subjects/0/objectTypeName", "detail": "is required"} in problem["errors"]

    assert post(content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    assert post(content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    big = json.dumps({"subjects": [], "pad": "x" * 300_000}).encode()
    assert post(content=big, headers={"Content-Type": "application/json"}).status_code == 413
    unknown = post(json={"target": "nope", "subjects": [{"objectId": "u", "objectTypeName": "User"}]})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["pointer"] == "/target"


def test_unknown_request_is_404(stack: Stack) -> None:
    assert httpx.get(f"{stack.base_url}/api/provision/{'0' * 32}", timeout=HTTP_TIMEOUT).status_code == 404
    assert httpx.get(f"{stack.base_url}/api/provision/..%2F..%2Fetc", timeout=HTTP_TIMEOUT).status_code == 404


def test_configured_storage_and_graph_are_used_not_started(tmp_path: Path) -> None:
    """With AzureWebJobsStorage and GRAPH_BASE_URL/IDENTITY_* given, only the devhost starts and uses them."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    header = secrets.token_urlsafe(16)
    with (tmp_path / "outside.log").open("w") as log:
        outside = Stack(env=dict(env), log=log)
        try:
            storage = outside.start_azurite()
            graph = outside.start_emulator(header)
            env.update(
                AzureWebJobsStorage=storage,
                GRAPH_BASE_URL=f"{graph}/beta",
                IDENTITY_ENDPOINT=f"{graph}/msi/token",
                IDENTITY_HEADER=header,
            )
            with Stack(port=free_port(), env=env, log=log) as app:
                assert len(app.processes) == 1, "only the devhost may be started"
                assert app.emulator_url is None
                posted = httpx.post(
                    f"{app.base_url}/api/provision",
                    json={"target": "seed-cloud-sync", "subjects": [SEED_REQUESTS[2]["subject"]]},
                    timeout=HTTP_TIMEOUT,
                )
                assert posted.status_code == 202, posted.text
                with httpx.Client(timeout=HTTP_TIMEOUT) as client:
                    done = _poll(client, posted.headers["Location"])
                assert done.json()["calls"][0]["changeId"] == "582595f3-53be-4843-bf0c-f57dbf8fae96"
            calls = httpx.get(
                f"{graph}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
            ).json()["calls"]
            assert [c["authorization"] for c in calls] == ["Bearer"]
        finally:
            outside.stop()
