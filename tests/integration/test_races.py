"""One answer, one record: the sweeper, workers and intake racing on the same call, against real Azurite.

ETags are the point, so the ledger, the pending index and the event index are the real adapters on a real
Azurite, and Graph is the emulator reached through the real SDK stack (ManagedIdentityCredential +
msgraph-beta-sdk), so a second call would really be answered ``Skipped RedundantExport`` after a real
``Create``. Each interleaving is forced, not hoped for: a proxy pauses one party at a named point
(:class:`Pause`) while the others run. Every test ends by draining every message left on the queue, with
the clock moved past every claim, and asserts that Graph's first answer is the one recorded and that the
emulator saw exactly one provisionOnDemand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from azure.data.tables.aio import TableClient
from azure.identity.aio import ManagedIdentityCredential

from devhost.stack import ROOT
from emulator.config import EmulatorConfig
from emulator.testing import RunningEmulator, running_emulator
from shared.adapters.graph import GraphProvisioner
from shared.adapters.idempotency import EVENTS_TABLE, TableEventIndex
from shared.adapters.ledger import TableLedger
from shared.adapters.pending import PENDING_TABLE, TablePendingIndex
from shared.contract.names import TABLE_NAME
from shared.core import pacing
from shared.core.models import ProvisioningRequest
from shared.core.pacing import RateLimit
from shared.core.ports import WorkItem
from shared.core.records import CallRecord
from shared.core.vocabulary import Source
from shared.settings import Settings
from shared.usecases import intake, sweeper
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker import Worker, WorkerPolicy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

#: In the emulator's default tenant: assigned, not yet in the target, so the first call is Create → Success
#: and any second call is Skipped RedundantExport.
FRESH_USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
TIMEOUT = 90.0


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(EmulatorConfig(identity_header="race-secret", rate_limit="1000/1s")) as emu:
        for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", emu.token_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
        yield emu


class Clock:
    """Real time plus an offset the test moves forward (past claims and backoffs) when it drains."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class Pause:
    """A named point one party stops at until the test lets it go."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reached = asyncio.Event()
        self.go = asyncio.Event()

    async def hold(self) -> None:
        self.reached.set()
        await asyncio.wait_for(self.go.wait(), TIMEOUT)

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), TIMEOUT)


class Paused:
    """A proxy that runs the first call of ``method`` on ``inner`` and pauses ``before`` or after it."""

    def __init__(self, inner: Any, method: str, pause: Pause, *, before: bool = False) -> None:
        self._inner, self._method, self._pause, self._before = inner, method, pause, before
        self._used = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method or self._used:
            return attr

        async def paused(*args: Any, **kwargs: Any) -> Any:
            self._used = True
            if self._before:
                await self._pause.hold()
            result = await attr(*args, **kwargs)
            if not self._before:
                await self._pause.hold()
            return result

        return paused


@dataclass
class RecordingQueue:
    """The work queue as a list: what was sent, with its delay, for the test to deliver."""

    sent: list[tuple[WorkItem, float]] = field(default_factory=list)

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None:
        self.sent.append((item, delay_seconds))


@dataclass
class FreeLimiter:
    """Pacing is not what these tests are about: every call gets a slot at once (on the worker's clock)."""

    clock: Clock
    limit: RateLimit = field(default_factory=lambda: RateLimit(1000, 1.0))

    async def reserve(self, key: str, release: float | None = None) -> pacing.Reservation:
        now = self.clock().timestamp()
        return pacing.Reservation(now, now)

    async def report_throttle(self, key: str, retry_after: float) -> None:
        return None


@dataclass
class Bed:
    """Real storage adapters on Azurite, the emulator behind the real SDK, and a way to make workers."""

    settings: Settings
    ledger: TableLedger
    pending: TablePendingIndex
    events: TableEventIndex
    graph: GraphProvisioner
    emulator: RunningEmulator
    queue: RecordingQueue = field(default_factory=RecordingQueue)
    clock: Clock = field(default_factory=Clock)

    def worker(self, *, graph: Any = None, ledger: Any = None, claim_seconds: float = 300) -> Worker:
        provisioner = graph or self.graph
        return Worker(
            ledger=cast(TableLedger, ledger or self.ledger),
            queue=cast(Any, self.queue),
            graph=provisioner,
            rules=RuleDiscovery(provisioner),
            logs=cast(Any, None),
            limiter=cast(Any, FreeLimiter(self.clock)),
            pending=self.pending,
            policy=WorkerPolicy(claim_seconds=claim_seconds),
            clock=self.clock,
        )

    async def submit(self, *, event_id: str | None = None, ledger: Any = None, ago: float = 0) -> intake.Accepted:
        body: dict[str, Any] = {
            "target": "seed-scim-app",
            "subjects": [{"objectId": FRESH_USER, "objectTypeName": "User"}],
        }
        if event_id is not None:
            body["eventId"] = event_id
        use_case = intake.Intake(
            settings=self.settings,
            ledger=cast(TableLedger, ledger or self.ledger),
            queue=cast(Any, self.queue),
            events=self.events,
            pending=self.pending,
        )
        now = datetime.now(UTC) - timedelta(seconds=ago)
        return await use_case.accept(intake.AcceptCommand(ProvisioningRequest.model_validate(body), Source.HTTP, now))

    async def drain(self, worker: Worker) -> list[str]:
        """Deliver every message left (and every one they send), moving the clock past each delay."""
        results: list[str] = []
        for _ in range(50):
            if not self.queue.sent:
                return results
            item, delay = self.queue.sent.pop(0)
            self.clock.offset += timedelta(seconds=delay + 1)
            results.append(await worker.process(item))
        raise AssertionError(f"the queue never drained: {results}")

    def posts(self) -> list[dict[str, Any]]:
        return self.emulator.emulator.calls.list("provisionOnDemand")

    async def assert_one_answer_one_record(self, request_id: str) -> CallRecord:
        """Exactly one provisionOnDemand reached Graph, and its answer (Create → Success) is the one recorded."""
        posts = self.posts()
        assert len(posts) == 1, f"Graph was called {len(posts)} times: {[p['requestId'] for p in posts]}"
        call = await self.ledger.get_call(request_id, "call-0001")
        assert call is not None
        assert (call.status, call.action, call.error_code) == ("succeeded", "Create", None), call
        assert call.graph_request_id == posts[0]["requestId"], "the recorded answer is the one Graph gave"
        assert call.attempts == 1
        request, _ = await self.ledger.get_request(request_id)
        assert request is not None
        assert request.status == "succeeded"
        return call


@pytest.fixture
async def bed(azurite: str, emulator: RunningEmulator) -> AsyncIterator[Bed]:
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    settings = Settings.from_environ(
        {
            "AzureWebJobsStorage": azurite,
            "GRAPH_BASE_URL": f"{emulator.base_url}/beta",
            "PROVISIONING_TARGETS": values["PROVISIONING_TARGETS"],
        }
    )
    tables = [
        TableClient.from_connection_string(azurite, table_name=n) for n in (TABLE_NAME, PENDING_TABLE, EVENTS_TABLE)
    ]
    async with tables[0], tables[1], tables[2], ManagedIdentityCredential() as credential:
        yield Bed(
            settings=settings,
            ledger=TableLedger(tables[0]),
            pending=TablePendingIndex(tables[1]),
            events=TableEventIndex(tables[2]),
            graph=GraphProvisioner(settings, credential),
            emulator=emulator,
        )


async def started(coroutine: Awaitable[Any], pause: Pause) -> asyncio.Task[Any]:
    """Run ``coroutine`` in the background until it reaches ``pause``."""
    task = asyncio.ensure_future(coroutine)
    waiting = asyncio.ensure_future(pause.wait_reached())
    done, _ = await asyncio.wait({task, waiting}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiting.cancel()
        task.result()  # raises what the party raised
        raise AssertionError(f"finished without reaching {pause.name}")
    assert waiting in done, f"never reached {pause.name}"
    return task


async def finish(task: asyncio.Task[Any], pause: Pause) -> Any:
    pause.go.set()
    return await asyncio.wait_for(task, TIMEOUT)


# --- sweeper vs worker -------------------------------------------------------------------------------------


async def test_the_sweeper_leaves_alone_a_call_a_worker_claimed_after_the_sweeper_looked(bed: Bed) -> None:
    """The reported bug, interleaved exactly: the sweeper reads a stale-looking queued call; a worker claims
    it and gets Graph's Create/Success; then the sweeper acts on what it read. Before the fix it stamped the
    claimed row, the worker's final write conflicted, the answer was dropped, the call was made again and the
    ledger said "Skipped RedundantExport".
    """
    accepted = await bed.submit(ago=600)  # queued 10 minutes ago: stranded in the sweeper's eyes
    bed.queue.sent.clear()  # its message is "lost"; the worker below stands for a late delivery of it
    item = WorkItem(accepted.request_id, "call-0001")

    swept_read = Pause("sweeper has read the partition")
    sweep = await started(
        sweeper.sweep(
            cast(TableLedger, Paused(bed.ledger, "unfinished_calls", swept_read)),
            cast(Any, bed.queue),
            bed.pending,
            now=datetime.now(UTC),
            grace_seconds=60,
        ),
        swept_read,
    )
    answered = Pause("worker holds Graph's answer")
    work = await started(bed.worker(graph=Paused(bed.graph, "provision_on_demand", answered)).process(item), answered)

    swept = await finish(sweep, swept_read)
    assert swept.redriven == 0, "the sweeper re-checked the fresh row: claimed, not stranded"
    call = await bed.ledger.get_call(accepted.request_id, "call-0001")
    assert call is not None
    assert call.redriven_at is None

    assert await finish(work, answered) == "succeeded"
    await bed.drain(bed.worker())
    await bed.assert_one_answer_one_record(accepted.request_id)


async def test_a_worker_keeps_its_answer_when_the_sweeper_stamped_the_row_meanwhile(bed: Bed) -> None:
    """The sweeper may rightly re-drive a call whose claim ran out while Graph was slow to answer. The worker
    that then gets the answer finds its final write conflicting: it re-reads, merges, and records the answer;
    the re-driven message finds the call finished and calls nobody.
    """
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    answered = Pause("worker holds Graph's answer")
    slow = bed.worker(graph=Paused(bed.graph, "provision_on_demand", answered), claim_seconds=1)
    work = await started(slow.process(item), answered)

    swept = await sweeper.sweep(
        bed.ledger, cast(Any, bed.queue), bed.pending, now=datetime.now(UTC) + timedelta(seconds=30), grace_seconds=5
    )
    assert swept.redriven == 1, "the claim ran out long enough ago: the sweeper stamps the row and re-drives it"
    stamped = await bed.ledger.get_call(accepted.request_id, "call-0001")
    assert stamped is not None
    assert stamped.status == "running"
    assert stamped.redriven_at is not None

    assert await finish(work, answered) == "succeeded", "the answer survived the conflicting write"
    assert await bed.drain(bed.worker()) == ["duplicate"]
    call = await bed.assert_one_answer_one_record(accepted.request_id)
    assert call.claimed_until is None


# --- two workers -------------------------------------------------------------------------------------------


async def test_two_workers_with_the_same_item_make_one_call(bed: Bed) -> None:
    """Both read the queued row before either claims; one wins the claim, the other backs off and later finds
    the call finished."""
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    b_read = Pause("worker B has read the queued row")
    worker_b = bed.worker(ledger=Paused(bed.ledger, "get_call", b_read))
    task_b = await started(worker_b.process(item), b_read)

    a_answered = Pause("worker A holds Graph's answer")
    worker_a = bed.worker(graph=Paused(bed.graph, "provision_on_demand", a_answered))
    task_a = await started(worker_a.process(item), a_answered)

    assert await finish(task_b, b_read) == "claimed", "B's claim met A's ETag: B leaves the call to A"
    assert await finish(task_a, a_answered) == "succeeded"
    assert await bed.drain(bed.worker()) == ["duplicate"]
    await bed.assert_one_answer_one_record(accepted.request_id)


async def test_a_worker_finding_its_call_finished_by_another_records_nothing_and_calls_nobody(bed: Bed) -> None:
    """B is delivered the same item while A holds Graph's answer (claimed) and again after A recorded it."""
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    a_answered = Pause("worker A holds Graph's answer")
    task_a = await started(
        bed.worker(graph=Paused(bed.graph, "provision_on_demand", a_answered)).process(item), a_answered
    )
    worker_b = bed.worker()
    assert await worker_b.process(item) == "claimed"
    assert await finish(task_a, a_answered) == "succeeded"
    assert await worker_b.process(item) == "duplicate"
    assert await bed.drain(worker_b) == ["duplicate"]
    await bed.assert_one_answer_one_record(accepted.request_id)


# --- worker vs intake of the same event --------------------------------------------------------------------


async def test_a_duplicate_intake_of_the_event_does_not_overwrite_what_the_worker_recorded(bed: Bed) -> None:
    """Two deliveries of one event: the first claims the eventId and writes the rows; the second saw the event
    claimed but no request row yet, so it finishes the creation itself (``tolerate_existing``) -- after a
    worker has already made the call and recorded Graph's answer. Its writes must not reset the call to
    ``queued`` (which would make the call again), and its work message must find the call finished.
    """
    a_writes = Pause("intake A is about to write the rows")
    first = await started(
        bed.submit(event_id="hr-event-1", ledger=Paused(bed.ledger, "create", a_writes, before=True)), a_writes
    )
    b_writes = Pause("intake B is about to write the rows")
    second = await started(
        bed.submit(event_id="hr-event-1", ledger=Paused(bed.ledger, "create", b_writes, before=True)), b_writes
    )

    accepted_a = await finish(first, a_writes)
    item, _ = bed.queue.sent.pop(0)
    assert await bed.worker().process(item) == "succeeded"

    accepted_b = await finish(second, b_writes)
    assert accepted_b.request_id == accepted_a.request_id, "one event, one request"
    assert await bed.drain(bed.worker()) == ["duplicate"], "the second intake's message calls nobody"
    await bed.assert_one_answer_one_record(accepted_a.request_id)


async def test_a_duplicate_intake_after_the_request_exists_answers_it_and_queues_nothing(bed: Bed) -> None:
    accepted = await bed.submit(event_id="hr-event-2")
    item, _ = bed.queue.sent.pop(0)
    answered = Pause("worker holds Graph's answer")
    work = await started(bed.worker(graph=Paused(bed.graph, "provision_on_demand", answered)).process(item), answered)
    again = await bed.submit(event_id="hr-event-2")
    assert again.duplicate is True
    assert again.request_id == accepted.request_id
    assert bed.queue.sent == []
    assert await finish(work, answered) == "succeeded"
    await bed.assert_one_answer_one_record(accepted.request_id)
