"""The intake contract end to end: idempotency, CloudEvents, the Graph-compatible route, queue intake,
function keys in Location, and objectTypeName normalisation."""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost.stack import Stack, free_port
from tests.fixtures import SEED_REQUESTS, seed_response
from tests.integration.conftest import example_values, wait_done
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

FRESH = "c0ffee00-0000-4000-8000-0000000000{:02d}"


def _graph_calls(stack: Stack, needle: str) -> list[dict[str, Any]]:
    calls = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()
    return [c for c in calls["calls"] if needle in json.dumps(c["body"])]


def test_a_repeated_event_is_one_request_and_one_graph_call(stack: Stack) -> None:
    user = FRESH.format(6)
    body = {"eventId": "hr-7001", "target": "seed-scim-app", "subjects": [{"objectId": user, "objectTypeName": "User"}]}
    url = f"{stack.base_url}/api/provision"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json=body, timeout=HTTP_TIMEOUT), range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["requestId"] for a in answers}) == 1, "concurrent duplicates share one request"
    result = wait_done(answers[0].headers["Location"])
    again = httpx.post(url, json=body, timeout=HTTP_TIMEOUT)
    assert again.status_code == 202
    assert again.json() == {"requestId": result["requestId"], "status": "succeeded", "calls": 1}
    assert len(_graph_calls(stack, user)) == 1

    conflict = httpx.post(
        url, json={**body, "subjects": [{"objectId": FRESH.format(7), "objectTypeName": "User"}]}, timeout=HTTP_TIMEOUT
    )
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"].startswith("application/problem+json")
    assert conflict.json()["errors"] == [{"pointer": "/eventId", "detail": "was already used with a different body"}]


def test_cloudevents_structured_and_binary(stack: Stack) -> None:
    url = f"{stack.base_url}/api/provision"
    data = {"target": "seed-scim-app", "subjects": [{"objectId": FRESH.format(8), "objectTypeName": "User"}]}
    event = {"specversion": "1.0", "id": "evt-1", "source": "/hr/workday", "type": "hr.hire", "data": data}
    structured = httpx.post(
        url, content=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}, timeout=HTTP_TIMEOUT
    )
    assert structured.status_code == 202, structured.text
    result = wait_done(structured.headers["Location"])
    assert result["eventId"] == "/hr/workday#evt-1"
    assert result["status"] == "succeeded"
    assert "eventId taken from the CloudEvent's source and id" in result["normalisations"]

    binary = httpx.post(
        url,
        json={**data, "subjects": [{"objectId": FRESH.format(9), "objectTypeName": "User"}]},
        headers={"ce-specversion": "1.0", "ce-id": "evt-2", "ce-source": "/hr/workday", "ce-type": "hr.hire"},
        timeout=HTTP_TIMEOUT,
    )
    assert binary.status_code == 202, binary.text
    assert wait_done(binary.headers["Location"])["eventId"] == "/hr/workday#evt-2"

    bad = httpx.post(url, content=json.dumps({**event, "specversion": "0.3"}),
                     headers={"Content-Type": "application/cloudevents+json"}, timeout=HTTP_TIMEOUT)  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["errors"] == [{"pointer": "/specversion", "detail": "must be 1.0"}]
    bad_data = httpx.post(url, content=json.dumps({**event, "id": "evt-3", "data": {"subjects": []}}),
                          headers={"Content-Type": "application/cloudevents+json"}, timeout=HTTP_TIMEOUT)  # fmt: skip
    assert bad_data.status_code == 400
    assert bad_data.json()["errors"][0]["pointer"] == "/data/subjects"


def test_graph_compatible_route_answers_like_graph_with_prefer_wait(stack: Stack) -> None:
    httpx.post(f"{stack.emulator_url}/_emulator/reset", timeout=HTTP_TIMEOUT).raise_for_status()
    seed = SEED_REQUESTS[1]
    documented = seed_response(1)
    url = (
        f"{stack.base_url}/api/servicePrincipals/{seed['servicePrincipalId']}/synchronization/jobs/"
        f"{seed['jobId']}/provisionOnDemand"
    )
    body = {"parameters": [{"subjects": [seed["subject"]], "ruleId": seed["ruleId"]}]}
    answer = httpx.post(url, json=body, headers={"Prefer": "wait=20"}, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Preference-Applied"] == "wait=20"
    assert answer.json()["key"] == documented["key"]
    assert answer.json()["value"] == documented["value"]
    assert answer.json()["@odata.context"].endswith("/beta/$metadata#microsoft.graph.stringKeyStringValuePair")

    without_wait = httpx.post(url, json=body, timeout=HTTP_TIMEOUT)
    assert without_wait.status_code == 202
    assert wait_done(without_wait.headers["Location"])["source"] == "graph-compatible"

    two_params = httpx.post(url, json={"parameters": [body["parameters"][0]] * 2}, timeout=HTTP_TIMEOUT)
    assert two_params.status_code == 400
    assert two_params.json()["errors"][0]["pointer"] == "/parameters"
    bad_subject = httpx.post(
        url, json={"parameters": [{"subjects": [{"objectId": "x"}], "ruleId": seed["ruleId"]}]}, timeout=HTTP_TIMEOUT
    )
    assert bad_subject.status_code == 400
    assert bad_subject.json()["errors"][0]["pointer"] == "/parameters/0/subjects/0/objectTypeName"
    bad_path = httpx.post(url.replace(seed["servicePrincipalId"], "not-a-guid"), json=body, timeout=HTTP_TIMEOUT)
    assert bad_path.status_code == 400
    unlisted = httpx.post(
        url.replace(seed["servicePrincipalId"], "00000000-0000-0000-0000-000000000001"), json=body, timeout=HTTP_TIMEOUT
    )
    assert unlisted.status_code == 422


def test_seed_001_spelling_and_type_casing_are_normalised_and_recorded(stack: Stack) -> None:
    url = f"{stack.base_url}/api/provision"
    posted = httpx.post(
        url,
        json={"target": "seed-scim-app", "subjects": [{"objectId": FRESH.format(10), "objectType": "user"}]},
        timeout=HTTP_TIMEOUT,
    )
    assert posted.status_code == 202, posted.text
    result = wait_done(posted.headers["Location"])
    (call,) = result["calls"]
    assert call["status"] == "succeeded"
    assert call["subject"] == {"objectId": FRESH.format(10), "objectTypeName": "User"}
    assert result["normalisations"] == ["/subjects/0/objectType renamed to objectTypeName"]
    assert call["normalisations"] == [
        "/objectTypeName 'user' -> 'User' (as rule ea807875-5618-4f0a-9125-0b46a05298ca spells it)"
    ]
    (sent,) = _graph_calls(stack, FRESH.format(10))
    assert sent["body"]["parameters"][0]["subjects"][0]["objectTypeName"] == "User"


def _queue(stack: Stack, name: str) -> QueueClient:
    return QueueClient.from_connection_string(stack.env["AzureWebJobsStorage"], name)


def test_queue_intake_provisions_a_valid_message_and_poisons_an_invalid_one(stack: Stack) -> None:
    body = {"eventId": "queue-ok-1", "target": "seed-scim-app",
            "subjects": [{"objectId": FRESH.format(11), "objectTypeName": "User"}]}  # fmt: skip
    requests_queue = _queue(stack, "provisioning-requests")
    requests_queue.send_message(base64.b64encode(json.dumps(body).encode()).decode())
    deadline = time.monotonic() + DEADLINE
    while not _graph_calls(stack, FRESH.format(11)):
        assert time.monotonic() < deadline, "the queued request was not provisioned"
        time.sleep(0.2)
    # the same event over HTTP: the same request
    same = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    result = wait_done(same.headers["Location"])
    assert result["source"] == "queue"
    assert result["status"] == "succeeded"

    invalid = {"eventId": "queue-bad-1", "target": "seed-scim-app", "subjects": []}
    text = json.dumps(invalid)
    requests_queue.send_message(base64.b64encode(text.encode()).decode())
    poison = _queue(stack, "provisioning-requests-poison")
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            messages = [base64.b64decode(m.content).decode() for m in poison.peek_messages(max_messages=32)]
        except Exception:  # the poison queue is created on first use
            messages = []
        if text in messages:
            break
        assert time.monotonic() < deadline, "the invalid message did not reach the poison queue"
        time.sleep(0.2)
    ledger = TableClient.from_connection_string(stack.env["AzureWebJobsStorage"], "ProvisioningRequests")
    (row,) = list(ledger.query_entities("eventId eq @e", parameters={"e": "queue-bad-1"}))
    assert row["status"] == "rejected"
    assert row["source"] == "queue"
    assert "/subjects" in row["errors"]
    assert row["poisonQueue"] == "provisioning-requests-poison"
    status = httpx.get(f"{stack.base_url}/api/provision/{row['PartitionKey']}", timeout=HTTP_TIMEOUT)
    assert status.status_code == 200
    assert status.json()["status"] == "rejected"


def test_the_location_url_keeps_the_function_key_for_pollers(tmp_path: Path) -> None:
    env = {**example_values(), "DEVHOST_REQUIRE_KEYS": "true", "DEVHOST_FUNCTION_KEY": "fn-key-123"}
    env = {**{k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}, **env}
    with (tmp_path / "keys.log").open("w") as log, Stack(port=free_port(), env=env, log=log) as keyed:
        url = f"{keyed.base_url}/api/provision"
        body = {"target": "seed-scim-app", "subjects": [{"objectId": FRESH.format(12), "objectTypeName": "User"}]}
        assert httpx.post(url, json=body, timeout=HTTP_TIMEOUT).status_code == 401
        posted = httpx.post(url, params={"code": "fn-key-123"}, json=body, timeout=HTTP_TIMEOUT)
        assert posted.status_code == 202
        location = posted.headers["Location"]
        assert location.endswith("?code=fn-key-123")
        assert wait_done(location)["status"] == "succeeded"
        assert httpx.get(location.split("?")[0], timeout=HTTP_TIMEOUT).status_code == 401
        assert httpx.get(f"{keyed.base_url}/api/health", timeout=HTTP_TIMEOUT).status_code == 200
