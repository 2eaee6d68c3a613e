"""The use cases the triggers call besides intake and the worker, over the in-memory ports: reading a request
(with its large logs) and the ``Prefer: wait`` poll, the health probe, recording a rejected queue message, and
whether a function key may travel in links."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.contract.problems import FieldError, Problem
from shared.core.ports import HostAnswer
from shared.usecases.admin_keys import AdminKeyCheck
from shared.usecases.health import Health
from shared.usecases.rejections import QueueRejections
from shared.usecases.status import Status
from tests.unit.app.fakes import InMemoryLedger, InMemoryLogStore, InMemoryQueue, queued_call_row

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
RID = "0193f0a0b1c27d3e8f4a5b6c7d8e9f00"
SP, JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
GRAPH = "https://graph.microsoft.com/beta"


class ScriptedProbe:
    """A HostProbe that answers from a table and records every question."""

    def __init__(self, answers: Mapping[str, int | None]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HostAnswer:
        self.asked.append(url)
        status = self.answers.get(url)
        return HostAnswer(status, None if status is not None else "ConnectError")


async def _ledger_with(request_status: str, **call: Any) -> InMemoryLedger:
    ledger = InMemoryLedger()
    request = {
        "PartitionKey": RID,
        "RowKey": "request",
        "_v": 1,
        "status": request_status,
        "servicePrincipalId": SP,
        "jobId": JOB,
        "callCount": 1,
        "succeededCount": 1 if request_status == "succeeded" else 0,
    }
    ledger.rows[(RID, "request")] = request
    ledger.rows[(RID, "call-0001")] = queued_call_row(RID, NOW, servicePrincipalId=SP, jobId=JOB, **call)
    return ledger


async def test_a_read_finds_the_request_only_under_its_own_job_and_reads_large_logs_from_the_blob_store() -> None:
    logs = InMemoryLogStore()
    blob = await logs.put(RID, "call-0001", "the whole log")
    ledger = await _ledger_with("succeeded", status="succeeded", graphKey="k", provisioningLogBlob=blob)
    status = Status(ledger, lambda: logs, GRAPH)

    read = await status.read(RID, job=(SP.upper(), JOB), include_logs=True)
    assert read is not None
    assert not read.pending
    assert read.body["requestId"] == RID
    assert read.body["calls"][0]["provisioningLog"] == "the whole log"
    assert await status.read(RID, job=(SP, "Workday2AD.2f3e4d5c6b7a48999a0b1c2d3e4f5061")) is None
    assert await status.read("0" * 32) is None


async def test_a_read_without_logs_never_builds_the_blob_store() -> None:
    def no_blob_store() -> InMemoryLogStore:
        raise AssertionError("the blob store was built for a read that needs no log")

    ledger = await _ledger_with("pending")
    read = await Status(ledger, no_blob_store, GRAPH).read(RID)
    assert read is not None
    assert read.pending


async def test_the_wait_poll_answers_graphs_shape_once_done_and_none_when_time_runs_out() -> None:
    logs = InMemoryLogStore()
    done = await _ledger_with(
        "succeeded", status="succeeded", graphKey="k", provisioningLogBlob=await logs.put(RID, "call-0001", "log")
    )
    answer = await Status(done, lambda: logs, GRAPH, poll_seconds=0.01).wait_for_graph_answer(RID, 5)
    assert answer == (
        200,
        {"@odata.context": f"{GRAPH}/$metadata#microsoft.graph.stringKeyStringValuePair", "key": "k", "value": "log"},
    )
    pending = await _ledger_with("pending")
    assert await Status(pending, lambda: logs, GRAPH, poll_seconds=0.01).wait_for_graph_answer(RID, 0) is None


async def test_health_reports_each_dependency_and_a_storage_client_that_cannot_be_built_is_unreachable() -> None:
    async def fine() -> None:
        return None

    async def cannot_build() -> None:
        raise ValueError("Connection string is either blank or malformed")

    reachable = ScriptedProbe({GRAPH: 401})  # any HTTP answer proves reachability; no token is spent
    healthy = await Health([fine, fine], reachable, GRAPH).check()
    assert (healthy.healthy, healthy.checks) == (True, {"storage": "ok", "graph": "ok"})

    broken = await Health([fine, cannot_build], ScriptedProbe({}), GRAPH).check()
    assert (broken.healthy, broken.checks) == (False, {"storage": "unreachable", "graph": "unreachable"})


async def test_a_rejected_message_is_recorded_with_its_reasons_and_poisoned() -> None:
    ledger, poison = InMemoryLedger(), InMemoryQueue()
    body = json.dumps({"eventId": "evt-1", "target": "scim", "subjects": "nope"}).encode()
    problem = Problem.invalid(
        "The request body is not valid", "1 field(s) need fixing; see errors.", FieldError("/subjects", "bad")
    )
    request_id = await QueueRejections(ledger, poison).reject("msg-1", body, problem, NOW)

    assert (await ledger.get_request(request_id))[1] == []
    request = ledger.rows[(request_id, "request")]  # as the ledger's contract names the properties
    assert request["status"] == "rejected"
    assert request["source"] == "queue"
    assert request["eventId"] == "evt-1"
    assert request["target"] == "scim"
    assert request["queueMessageId"] == "msg-1"
    assert request["reason"] == "The request body is not valid: 1 field(s) need fixing; see errors."
    assert json.loads(request["errors"]) == [{"pointer": "/subjects", "detail": "bad"}]
    assert poison.texts == [body.decode()]


async def test_a_key_travels_unless_it_opens_admin_routes_or_the_host_does_not_say() -> None:
    base = "https://app.example"
    probe = ScriptedProbe({f"{base}/admin/host/status": 401})
    keys = AdminKeyCheck(probe)
    assert await keys.may_travel(base, "fn-key")
    assert await keys.may_travel(base, "fn-key")
    assert probe.asked == [f"{base}/admin/host/status"]  # remembered per process

    probe.answers[f"{base}/admin/host/status"] = 200
    assert not await keys.may_travel(base, "master")
    assert not await AdminKeyCheck(ScriptedProbe({})).may_travel(base, "fn-key")  # no answer: stays out


class ChallengingProbe:
    """App Service Authentication in front of the host: 401 with a Bearer challenge unless a token comes along."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HostAnswer:
        self.headers.append(dict(headers or {}))
        if "authorization" not in (headers or {}):
            return HostAnswer(401, bearer_challenge=True)
        return HostAnswer(200 if (headers or {}).get("x-functions-key") == "master" else 401)


async def test_an_easy_auth_401_says_nothing_about_the_key_so_it_stays_out() -> None:
    """Without this, App Service Authentication's 401 would read as "not the master key" and the master key
    would travel in every Location link of an AUTH_MODE=entra deployment."""
    probe = ChallengingProbe()
    assert not await AdminKeyCheck(probe).may_travel("https://app.example", "master")
    assert not await AdminKeyCheck(probe).may_travel("https://app.example", "fn-key")


async def test_the_callers_token_goes_along_so_the_host_itself_answers() -> None:
    probe = ChallengingProbe()
    keys = AdminKeyCheck(probe)
    assert await keys.may_travel("https://app.example", "fn-key", "Bearer abc")
    assert not await keys.may_travel("https://app.example", "master", "Bearer abc")
    assert probe.headers[0] == {"x-functions-key": "fn-key", "authorization": "Bearer abc"}


async def test_the_probe_adapter_reports_a_bearer_challenge() -> None:
    import httpx

    from shared.adapters.host_probe import HttpxHostProbe

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization"):
            return httpx.Response(401)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="app.example"'})

    probe = HttpxHostProbe(transport=httpx.MockTransport(handler))
    assert (await probe.get("https://app.example/admin/host/status")).bearer_challenge
    assert not (
        await probe.get("https://app.example/admin/host/status", {"authorization": "Bearer x"})
    ).bearer_challenge
