"""The worker against in-memory adapters: every log line carries the correlation ids, and counters count."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import telemetry
from shared.core import pacing
from shared.core.pacing import RateLimit
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus, WorkItem
from shared.core.records import RequestRecord
from shared.core.rules import RuleInfo
from shared.core.vocabulary import RequestStatus
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker import Worker
from tests.fixtures import seed_response
from tests.unit.app.fakes import InMemoryLedger, InMemoryLogStore, InMemoryPending, InMemoryQueue, queued_call_row

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


class FakeLedger(InMemoryLedger):
    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord:
        statuses = [r["status"] for (pk, _), r in self.rows.items() if pk == request_id]
        done = all(s in ("succeeded", "skipped", "failed", "rejected") for s in statuses)
        return RequestRecord(request_id, RequestStatus.SUCCEEDED if done else RequestStatus.PENDING)


FakeQueue = InMemoryQueue


class FakeGraph:
    def __init__(self, answers: list[GraphAnswer | GraphFailure]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []

    async def provision_on_demand(self, sp: str, job: str, rule: str, subject: dict[str, Any]) -> Any:
        logging.getLogger("azure.identity").info("token acquired")  # the SDK side never sees our context
        self.calls.append((sp, job, rule, subject))
        return self.answers.pop(0)

    async def schema_rules(self, sp: str, job: str) -> list[RuleInfo]:
        return [RuleInfo("rule-1", "USER", True, ("User",))]

    async def job_status(self, sp: str, job: str) -> JobStatus:
        return JobStatus("Active")


class FakeLimiter:
    limit = RateLimit(5, 10.0)

    async def reserve(self, key: str, release: float | None = None) -> pacing.Reservation:
        return pacing.Reservation(NOW.timestamp(), NOW.timestamp())

    async def report_throttle(self, key: str, retry_after: float) -> None:
        self.throttled = retry_after


FakePending = InMemoryPending


def _worker(answers: list[GraphAnswer | GraphFailure]) -> tuple[Worker, FakeLedger, FakeQueue, FakePending]:
    ledger, queue, pending, graph = FakeLedger(), FakeQueue(), FakePending(), FakeGraph(answers)
    ledger.rows[("r" * 32, "call-0001")] = queued_call_row("r" * 32, NOW, object_type_name="user")

    async def no_sleep(_: float) -> None:
        return None

    worker = Worker(
        ledger=ledger,
        queue=queue,
        graph=graph,
        rules=RuleDiscovery(graph),
        logs=InMemoryLogStore(),
        limiter=FakeLimiter(),
        pending=pending,
        clock=lambda: NOW,
        sleep=no_sleep,
    )
    return worker, ledger, queue, pending


@pytest.fixture
def metrics() -> InMemoryMetricReader:
    from opentelemetry import metrics as otel_metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    otel_metrics._internal._METER_PROVIDER = None
    otel_metrics._internal._METER_PROVIDER_SET_ONCE._done = False
    otel_metrics.set_meter_provider(provider)
    telemetry.reset_instruments()
    return reader


def _counts(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    out: dict[str, float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    amount = float(value if value is not None else getattr(point, "count", 0))
                    out[metric.name] = out.get(metric.name, 0.0) + amount
    return out


async def test_a_success_is_logged_with_ids_counted_and_normalised(
    caplog: pytest.LogCaptureFixture, metrics: InMemoryMetricReader
) -> None:
    body = seed_response(1)
    worker, ledger, _, pending = _worker([GraphAnswer(body["key"], body["value"], "graph-req-1")])
    caplog.set_level(logging.DEBUG)
    with telemetry.bound(invocationId="inv-1"):
        assert await worker.process(WorkItem("r" * 32, "call-0001")) == "skipped"
    row = ledger.rows[("r" * 32, "call-0001")]
    assert row["errorCode"] == "RedundantExport"
    assert json.loads(row["subject"])["objectTypeName"] == "User"
    assert pending.removed == ["r" * 32]
    ours = [r for r in caplog.records if r.name.startswith("shared.")]
    assert ours
    for record in ours:
        assert record.__dict__.get("invocationId") == "inv-1", record.getMessage()
        assert record.__dict__.get("requestId") == "r" * 32
        assert record.__dict__.get("callId") == "call-0001"
    counts = _counts(metrics)
    assert counts["provisioning.graph.calls"] == 1
    assert counts["provisioning.limiter.wait"] == 1


async def test_a_429_is_counted_as_a_throttle_and_retried(
    metrics: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    worker, ledger, queue, _ = _worker([GraphFailure(429, "TooManyRequests", "slow down", "id", 7.0)])
    with caplog.at_level(logging.WARNING):
        assert await worker.process(WorkItem("r" * 32, "call-0001")) == "waiting"
    [on_slot] = [r for r in caplog.records if r.getMessage().startswith("Graph answered 429 to a call sent")]
    assert isinstance(on_slot.__dict__["slotLagSeconds"], float), "how late the call went on its slot"
    assert queue.sent[-1][1] == 7.0
    assert ledger.rows[("r" * 32, "call-0001")]["status"] == "waiting"
    assert cast(Any, worker.limiter).throttled == 7.0
    assert _counts(metrics)["provisioning.graph.throttles"] == 1


async def test_a_duplicate_for_a_finished_call_brings_the_request_up_to_date() -> None:
    """The worker that finished the call may have died before updating the request row."""
    worker, ledger, queue, pending = _worker([])
    ledger.rows[("r" * 32, "call-0001")]["status"] = "succeeded"
    assert await worker.process(WorkItem("r" * 32, "call-0001")) == "duplicate"
    assert pending.removed == ["r" * 32], "the request was refreshed, found final, and left the sweeper's index"
    assert queue.sent == []


async def test_a_slot_missed_under_load_is_given_back_for_a_fresh_one() -> None:
    worker, _, _, _ = _worker([GraphAnswer('{"result":"Success","details":{}}', "{}", "id")])
    current = [NOW]
    worker.clock = lambda: current[0]
    released: list[float | None] = []

    async def reserve(key: str, release: float | None = None) -> pacing.Reservation:
        released.append(release)
        slot = current[0].timestamp()
        if len(released) == 1:
            current[0] += timedelta(seconds=2)  # the limiter's write was slow: the slot is stale on return
        return pacing.Reservation(slot, slot)

    cast(Any, worker.limiter).reserve = reserve
    assert await worker.process(WorkItem("r" * 32, "call-0001")) == "succeeded"
    assert released == [None, NOW.timestamp()], "the missed slot went back with the second reservation"
