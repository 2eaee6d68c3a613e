"""The operator routes' HTTP boundary over in-memory ports: dispatch on the provision function, links, problems."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import httpx

from shared.contract.principal import OPERATE, SUBMIT
from shared.core.ports import JobStatus, PoisonMessage
from shared.core.request_ids import new_request_id
from shared.runtime import Runtime
from shared.settings import Settings
from shared.triggers import operator_api
from shared.usecases.operator.actions import RequestActions
from shared.usecases.operator.targets import TargetHealth
from shared.usecases.status import Status
from tests.unit.app.fakes import (
    FakePoisonQueue,
    InMemoryLedger,
    InMemoryLogStore,
    InMemoryPending,
    InMemoryQueue,
    JobsOnly,
    request_records,
)
from tests.unit.app.test_principal import platform_headers

TARGETS = json.dumps({"scim": {"servicePrincipalId": "c8c95753-f628-48e1-9fab-76c2d4cf624c", "jobId": "job-1"}})
BASE = "https://app.example.net"
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def runtime(**env: str) -> tuple[Runtime, InMemoryLedger, FakePoisonQueue]:
    settings = Settings.from_environ(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PROVISIONING_TARGETS": TARGETS,
            "PUBLIC_BASE_URL": BASE,
            **env,
        }
    )
    rt = Runtime(settings)
    ledger, queue, pending = InMemoryLedger(), InMemoryQueue(), InMemoryPending()
    poison = FakePoisonQueue("provisioning-work-poison", [PoisonMessage("m1", "not a work item", NOW, 5)])
    rt.__dict__.update(
        ledger=ledger,
        work_queue=queue,
        pending=pending,
        request_index=ledger.index,
        request_actions=RequestActions(ledger, queue, pending),
        status=Status(ledger, InMemoryLogStore, settings.graph_base_url),
        target_health=TargetHealth(JobsOnly({"job-1": JobStatus("Active")}), ledger.index, settings.rate_limit),
        poison_queues=(poison,),
    )
    return rt, ledger, poison


def request(
    method: str, url: str, body: Any = None, extra: dict[str, str] | None = None, **route: str
) -> func.HttpRequest:
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(raw))} if body is not None else {}
    headers.update(extra or {})
    params = dict(httpx.URL(url).params)
    return func.HttpRequest(method, url, headers=headers, params=params, route_params=route, body=raw)


async def _seed(ledger: InMemoryLedger, statuses: list[str], seconds: int = 0) -> str:
    request_id = new_request_id(NOW + timedelta(seconds=seconds))
    row, calls = request_records(request_id, NOW + timedelta(seconds=seconds), statuses, target="scim")
    await ledger.create(row, calls)
    return request_id


async def test_get_without_an_id_lists_with_an_absolute_next_link() -> None:
    rt, ledger, _ = runtime()
    ids = [await _seed(ledger, ["failed"], i) for i in range(3)]
    answer = await operator_api.provision(request("GET", f"{BASE}/api/provision?status=failed&top=2"), rt)
    assert answer.status_code == 200
    body = json.loads(answer.get_body())
    assert [s["requestId"] for s in body["value"]] == [ids[2], ids[1]]
    assert body["value"][0]["objectIds"] == ["user-1"]
    next_link = body["nextLink"]
    assert next_link.startswith(f"{BASE}/api/provision?status=failed&top=2&continuation=")
    following = await operator_api.provision(request("GET", next_link), rt)
    assert [s["requestId"] for s in json.loads(following.get_body())["value"]] == [ids[0]]


async def test_a_bad_filter_is_a_problem_naming_the_parameter() -> None:
    rt, _, _ = runtime()
    answer = await operator_api.provision(request("GET", f"{BASE}/api/provision?top=1000"), rt)
    assert (answer.status_code, answer.headers["Content-Type"]) == (400, "application/problem+json")
    assert json.loads(answer.get_body())["errors"] == [
        {"pointer": "/top", "detail": "must be a whole number from 1 to 200"}
    ]


async def test_retry_answers_202_with_the_status_url_and_cancel_200_with_the_request() -> None:
    rt, ledger, _ = runtime()
    failed = await _seed(ledger, ["failed"])
    answer = await operator_api.provision(
        request("POST", f"{BASE}/api/provision/{failed}/retry", requestId=failed, action="retry"), rt
    )
    assert answer.status_code == 202
    assert answer.headers["Location"] == f"{BASE}/api/provision/{failed}"
    assert json.loads(answer.get_body()) == {"requestId": failed, "status": "pending", "retriedCalls": ["call-0001"]}
    again = await operator_api.provision(
        request("POST", f"{BASE}/api/provision/{failed}/retry", requestId=failed, action="retry"), rt
    )
    assert again.status_code == 409

    cancelled = await operator_api.provision(
        request("POST", f"{BASE}/api/provision/{failed}/cancel", requestId=failed, action="cancel"), rt
    )
    assert cancelled.status_code == 200
    assert json.loads(cancelled.get_body())["status"] == "cancelled"


async def test_actions_refuse_other_methods_unknown_actions_and_malformed_ids() -> None:
    rt, ledger, _ = runtime()
    request_id = await _seed(ledger, ["queued"])
    wrong = await operator_api.provision(
        request("GET", f"{BASE}/api/provision/{request_id}/retry", requestId=request_id, action="retry"), rt
    )
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "POST")
    unknown = await operator_api.provision(
        request("POST", f"{BASE}/api/provision/{request_id}/delete", requestId=request_id, action="delete"), rt
    )
    assert unknown.status_code == 404
    malformed = await operator_api.provision(
        request("POST", f"{BASE}/api/provision/x/cancel", requestId="x", action="cancel"), rt
    )
    assert malformed.status_code == 404


async def test_submit_and_status_still_reach_the_request_routes() -> None:
    rt, ledger, _ = runtime()
    request_id = await _seed(ledger, ["succeeded"])
    status = await operator_api.provision(
        request("GET", f"{BASE}/api/provision/{request_id}?include=attempts", requestId=request_id), rt
    )
    assert status.status_code == 200
    assert json.loads(status.get_body())["calls"][0]["attemptHistory"] == []
    refused = await operator_api.provision(request("POST", f"{BASE}/api/provision", {"subjects": []}), rt)
    assert refused.status_code == 400


async def test_targets_and_poison() -> None:
    rt, ledger, poison = runtime()
    await _seed(ledger, ["queued", "queued"])
    targets = await operator_api.list_targets(request("GET", f"{BASE}/api/targets"), rt)
    (scim,) = json.loads(targets.get_body())["value"]
    assert (scim["name"], scim["jobStatus"], scim["backlog"]["queued"]) == ("scim", {"code": "Active"}, 2)
    assert scim["estimatedDrainSeconds"] == 4

    listed = await operator_api.poison_route(request("GET", f"{BASE}/api/poison"), rt)
    (message,) = json.loads(listed.get_body())["value"]
    assert (message["queue"], message["messageId"]) == ("provisioning-work-poison", "m1")
    assert "Not a work item" in message["reason"]

    body = {"queue": "provisioning-work-poison", "messageIds": ["m1"]}
    moved = await operator_api.poison_route(request("POST", f"{BASE}/api/poison/requeue", body, action="requeue"), rt)
    assert json.loads(moved.get_body()) == {"queue": "provisioning-work-poison", "requeued": 1}
    assert poison.source == ["not a work item"]
    wrong = await operator_api.poison_route(request("POST", f"{BASE}/api/poison"), rt)
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET")
    bad = await operator_api.poison_route(
        request("POST", f"{BASE}/api/poison/requeue", {"queue": "provisioning-work"}, action="requeue"), rt
    )
    assert bad.status_code == 400


async def test_under_entra_every_operator_route_needs_the_operate_role_and_records_who_acted() -> None:
    rt, ledger, _ = runtime(AUTH_MODE="entra")
    request_id = await _seed(ledger, ["queued"])

    async def each(headers: dict[str, str] | None) -> list[int]:
        answers = [
            await operator_api.provision(request("GET", f"{BASE}/api/provision", extra=headers), rt),
            await operator_api.provision(
                request(
                    "POST",
                    f"{BASE}/api/provision/{request_id}/retry",
                    {},
                    headers,
                    requestId=request_id,
                    action="retry",
                ),
                rt,
            ),
            await operator_api.list_targets(request("GET", f"{BASE}/api/targets", extra=headers), rt),
            await operator_api.poison_route(request("GET", f"{BASE}/api/poison", extra=headers), rt),
            await operator_api.poison_route(
                request(
                    "POST",
                    f"{BASE}/api/poison/requeue",
                    {"queue": "provisioning-work-poison"},
                    headers,
                    action="requeue",
                ),
                rt,
            ),
            await operator_api.provision(
                request(
                    "POST",
                    f"{BASE}/api/provision/{request_id}/cancel",
                    {},
                    headers,
                    requestId=request_id,
                    action="cancel",
                ),
                rt,
            ),
        ]
        return [a.status_code for a in answers]

    assert await each(None) == [401] * 6
    assert await each(platform_headers(SUBMIT)) == [403] * 6
    assert (await ledger.read_request(request_id)).status == "pending"  # type: ignore[union-attr]
    assert await each(platform_headers(OPERATE, name="ada@contoso.example")) == [200, 409, 200, 200, 200, 200]
    cancelled = await ledger.read_request(request_id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.cancelled_by) == ("cancelled", "ada@contoso.example")
