"""The composition root: process-wide adapters and use cases, created lazily on first use and then reused.

Lazy, not at import: Flex Consumption gives an app 30 s to start and ``msgraph_beta`` is a 600 MB package; the
async Azure clients bind to the event loop that first uses them, which exists once the worker runs a function.
One client per process, reused by every invocation (Functions' advice): what :func:`get_runtime` hands out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from shared import telemetry
from shared.adapters.ledger import TableLedger
from shared.adapters.work_queue import StorageQueue
from shared.contract.names import REQUESTS_POISON_QUEUE, REQUESTS_QUEUE, TABLE_NAME, WORK_POISON_QUEUE, WORK_QUEUE
from shared.core.errors import SettingsError
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient
    from azure.storage.queue.aio import QueueClient

    from shared.adapters.graph_directory import GraphDirectory
    from shared.adapters.idempotency import TableEventIndex
    from shared.adapters.lease import TableLease
    from shared.adapters.limiter import TableLimiter
    from shared.adapters.log_store import BlobLogStore
    from shared.adapters.poison import StoragePoisonQueue
    from shared.adapters.request_index import TableRequestIndex
    from shared.adapters.storage_clients import StorageClients
    from shared.adapters.waiting_room import TableWaitingRoom
    from shared.core.ports import HostProbe, Provisioner
    from shared.usecases.admin_keys import AdminKeyCheck
    from shared.usecases.dispatcher import Dispatcher
    from shared.usecases.health import Health
    from shared.usecases.intake import Intake
    from shared.usecases.operator.actions import RequestActions
    from shared.usecases.operator.targets import TargetHealth
    from shared.usecases.outcomes import AnnouncingPending, Outcomes
    from shared.usecases.rejections import QueueRejections
    from shared.usecases.retention import Retention
    from shared.usecases.rule_discovery import RuleDiscovery
    from shared.usecases.schedules import ScheduleRunner
    from shared.usecases.status import Status
    from shared.usecases.sweeper import Sweeper
    from shared.usecases.worker import Worker


@dataclass
class Runtime:
    """The adapters of one process, built from its settings on first use."""

    settings: Settings
    _credentials: dict[str | None, AsyncTokenCredential] = field(default_factory=dict)

    def _managed_identity(self, client_id: str | None) -> AsyncTokenCredential:
        if client_id not in self._credentials:
            from azure.identity.aio import ManagedIdentityCredential

            self._credentials[client_id] = ManagedIdentityCredential(client_id=client_id)
        return self._credentials[client_id]

    @cached_property
    def _storage(self) -> StorageClients:
        from shared.adapters.storage_clients import StorageClients

        return StorageClients(self.settings, self._managed_identity)

    def _table(self, name: str) -> TableClient:
        return self._storage.table(name)

    @cached_property
    def ledger(self) -> TableLedger:
        """The ledger on the app's storage account; it keeps the request index up to date as statuses change."""
        return TableLedger(self._table(TABLE_NAME), index=self.request_index)

    @cached_property
    def request_index(self) -> TableRequestIndex:
        """Table ``ProvisioningIndex``: requests by filter value, newest first, and each target's backlog."""
        from shared.adapters.request_index import INDEX_TABLE, TableRequestIndex

        return TableRequestIndex(self._table(INDEX_TABLE))

    @cached_property
    def request_actions(self) -> RequestActions:
        """Retry and cancel (``POST /api/provision/{id}/retry|cancel``)."""
        from shared.usecases.operator.actions import RequestActions

        return RequestActions(self.ledger, self.work_queue, self.pending)

    @cached_property
    def target_health(self) -> TargetHealth:
        """Job status (cached briefly), backlog and drain estimate of the configured targets."""
        from shared.usecases.operator.targets import TargetHealth

        return TargetHealth(self.graph, self.request_index, self.settings.rate_limit, self.settings.rate_scope)

    @cached_property
    def poison_queues(self) -> tuple[StoragePoisonQueue, ...]:
        """``provisioning-requests-poison`` and ``provisioning-work-poison``, each with its source queue."""
        from shared.adapters.poison import StoragePoisonQueue

        return tuple(
            StoragePoisonQueue(poison, self._queue_client(poison, raw=True), self._queue_client(source, raw=True))
            for poison, source in ((REQUESTS_POISON_QUEUE, REQUESTS_QUEUE), (WORK_POISON_QUEUE, WORK_QUEUE))
        )

    def queue(self, name: str) -> StorageQueue:
        """A queue on the app's storage account, base64 like the Functions trigger expects."""
        return StorageQueue(self._queue_client(name))

    def _queue_client(self, name: str, *, raw: bool = False) -> QueueClient:
        """``raw``: messages as stored, not base64-decoded (a poison queue may hold text that is not base64)."""
        return self._storage.queue(name, raw=raw)

    @cached_property
    def requests_poison_queue(self) -> StorageQueue:
        """``provisioning-requests-poison``: where intake moves messages that can never be valid."""
        return self.queue(REQUESTS_POISON_QUEUE)

    @cached_property
    def work_queue(self) -> StorageQueue:
        """``provisioning-work``."""
        return self.queue(WORK_QUEUE)

    @cached_property
    def graph(self) -> Provisioner:
        """provisionOnDemand through msgraph-beta-sdk with the app's managed identity.

        Cheap to create: the SDK is imported, and the client and its credential built, in a thread (see
        shared.adapters.graph), starting now in the background, so no invocation on this event loop waits for it.
        """
        from shared.adapters.graph import GraphProvisioner

        provisioner = GraphProvisioner(self.settings)
        provisioner.warm_in_background()
        return provisioner

    @cached_property
    def events(self) -> TableEventIndex:
        """Table ``ProvisioningEvents``: which request each eventId made."""
        from shared.adapters.idempotency import EVENTS_TABLE, TableEventIndex

        return TableEventIndex(self._table(EVENTS_TABLE))

    @cached_property
    def log_store(self) -> BlobLogStore:
        """Blob container ``provisioning-logs`` for logs too large for a Table entity."""
        from shared.adapters.log_store import CONTAINER, BlobLogStore

        service = self._storage.blobs()
        return BlobLogStore(service.get_container_client(CONTAINER))

    @cached_property
    def pending(self) -> AnnouncingPending:
        """Table ``ProvisioningPending``: the in-flight requests the sweeper looks at.

        A finished request leaves it only once its outcome is announced (events, callback), so a failed
        announcement is retried by the next sweep.
        """
        from shared.adapters.pending import PENDING_TABLE, TablePendingIndex
        from shared.usecases.outcomes import AnnouncingPending

        return AnnouncingPending(TablePendingIndex(self._table(PENDING_TABLE)), self.outcomes)

    @cached_property
    def limiter(self) -> TableLimiter:
        """The rate limiter shared by every instance (Table ``ProvisioningLimiter``)."""
        from shared.adapters.limiter import LIMITER_TABLE, TableLimiter

        return TableLimiter(self._table(LIMITER_TABLE), self.settings.rate_limit)

    @cached_property
    def waiting_room(self) -> TableWaitingRoom:
        """Table ``ProvisioningBacklog``: calls waiting for a rate-limit slot, in fair order."""
        from shared.adapters.waiting_room import BACKLOG_TABLE, TableWaitingRoom

        return TableWaitingRoom(self._table(BACKLOG_TABLE))

    @cached_property
    def lease(self) -> TableLease:
        """Short named leases (rows of ``ProvisioningLimiter``, partition ``lease``): one dispatcher per scope."""
        from shared.adapters.lease import TableLease
        from shared.adapters.limiter import LIMITER_TABLE

        return TableLease(self._table(LIMITER_TABLE))

    @cached_property
    def dispatcher(self) -> Dispatcher:
        """Hands free slots to the head of each scope's backlog (woken by delayed messages on the work queue)."""
        from shared.usecases.dispatcher import Dispatcher

        queue = self.work_queue
        return Dispatcher(self.ledger, queue, self.limiter, self.waiting_room, self.lease, alarm=queue)

    @cached_property
    def worker(self) -> Worker:
        """The work-item processor with this process's adapters."""
        from shared.core.retry import Policy
        from shared.usecases.worker import Worker, WorkerPolicy

        policy = WorkerPolicy(
            claim_seconds=self.settings.work_claim_seconds,
            job_hold_seconds=self.settings.job_hold_seconds,
            rate_scope=self.settings.rate_scope,
            retry_policy=Policy(budget_seconds=self.settings.retry_budget_minutes * 60.0),
        )
        return Worker(
            ledger=self.ledger,
            queue=self.work_queue,
            graph=self.graph,
            rules=self.rule_discovery,
            logs=self.log_store,
            limiter=self.limiter,
            pending=self.pending,
            policy=policy,
            backlog=self.dispatcher,
            directory=self.directory,
        )

    @cached_property
    def _intake(self) -> Intake:
        from shared.usecases.intake import Intake

        return Intake(settings=self.settings, ledger=self.ledger, queue=self.work_queue, events=self.events,
                      pending=self.pending, backlog=self.dispatcher)  # fmt: skip

    def intake(self) -> Intake:
        """The request intake with this process's adapters (built on first use, then reused)."""
        return self._intake

    @cached_property
    def rule_discovery(self) -> RuleDiscovery:
        """ruleId from the job schema, cached per process."""
        from shared.usecases.rule_discovery import RuleDiscovery

        return RuleDiscovery(self.graph)

    @cached_property
    def host_probe(self) -> HostProbe:
        """One bounded ``GET`` to another host (Graph's, or the Functions host's admin routes)."""
        from shared.adapters.host_probe import HttpxHostProbe

        return HttpxHostProbe()

    @cached_property
    def admin_keys(self) -> AdminKeyCheck:
        """Which function keys are the master key (asked of the host once per key, remembered per process)."""
        from shared.usecases.admin_keys import AdminKeyCheck

        return AdminKeyCheck(self.host_probe)

    @cached_property
    def status(self) -> Status:
        """Reads requests (and their large logs) into the views callers see; the ``Prefer: wait`` poll."""
        from shared.usecases.status import Status

        return Status(
            self.ledger,
            lambda: self.log_store,
            self.settings.graph_base_url,
            slots=(self.limiter, self.settings.rate_scope),
        )

    @cached_property
    def health(self) -> Health:
        """The health probe. The storage adapters are reached only when it runs (see ``Health``)."""
        from shared.usecases.health import Health

        return Health(
            [lambda: self.ledger.ping(), lambda: self.work_queue.ping()], self.host_probe, self.settings.graph_base_url
        )

    @cached_property
    def queue_rejections(self) -> QueueRejections:
        """Records a queued request that can never be valid, and poisons its message at once."""
        from shared.usecases.rejections import QueueRejections

        return QueueRejections(self.ledger, self.requests_poison_queue, self.outcomes.request_finished)

    @cached_property
    def sweeper(self) -> Sweeper:
        """Re-drives stranded calls; enqueues far-future calls that came within the queue's reach."""
        from shared.usecases.sweeper import Sweeper

        return Sweeper(self.ledger, self.work_queue, self.pending, self.waiting_room)

    @cached_property
    def retention(self) -> Retention:
        """Deletes finished requests past ``LEDGER_RETENTION_DAYS``, with their logs and event keys."""
        from shared.usecases.retention import Retention

        return Retention(self.ledger, self.log_store, self.events, self.settings.ledger_retention_days)

    # --- Outcome events and callbacks, schedules, users by name (h-events) ----------------------------------------

    @cached_property
    def outcomes(self) -> Outcomes:
        """Outcome events (``provisioning-outcomes``, Event Grid when configured) and callbacks."""
        from shared.adapters.callback_http import HttpCallbackClient
        from shared.adapters.message_queue import TextQueue
        from shared.contract.outcome_events import CALLBACKS_QUEUE, OUTCOMES_QUEUE
        from shared.usecases.outcomes import Outcomes

        event_grid = None
        if self.settings.eventgrid_topic_endpoint:
            from shared.adapters.event_grid import EventGridPublisher

            credential = self._managed_identity(self.settings.azure_client_id)
            event_grid = EventGridPublisher(self.settings.eventgrid_topic_endpoint, credential)
        return Outcomes(
            ledger=self.ledger,
            outcomes_queue=TextQueue(self._queue_client(OUTCOMES_QUEUE), keep=True),
            callbacks_queue=TextQueue(self._queue_client(CALLBACKS_QUEUE)),
            callbacks=HttpCallbackClient(self.settings.callback_policy),
            event_grid=event_grid,
            public_base_url=self.settings.public_base_url,
        )

    @cached_property
    def directory(self) -> GraphDirectory:
        """Users by UPN and group members, through the provisioning adapter's GraphServiceClient."""
        from shared.adapters.graph import GraphProvisioner
        from shared.adapters.graph_directory import GraphDirectory

        graph = self.graph
        assert isinstance(graph, GraphProvisioner)
        return GraphDirectory(graph.graph_client, self.settings.graph_base_url)

    @cached_property
    def schedule_runner(self) -> ScheduleRunner:
        """PROVISIONING_SCHEDULES: each due occurrence submitted once through intake (source ``schedule``)."""
        from datetime import UTC, datetime

        from shared.core.models import ProvisioningRequest
        from shared.core.vocabulary import Source
        from shared.usecases.intake import AcceptCommand, Accepted
        from shared.usecases.operator import bulk
        from shared.usecases.schedules import ScheduleRunner

        async def submit(request: ProvisioningRequest) -> Accepted:
            return await self.intake().accept(AcceptCommand(request, Source.SCHEDULE, datetime.now(UTC)))

        retry_failed = bulk.FailedRetry(self.request_index, self.ledger, self.request_actions)
        return ScheduleRunner(self.settings.schedules, submit, self.directory, retry_failed)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process's runtime; settings are read from the environment the first time."""
    global _runtime
    if _runtime is None:
        telemetry.quiet_sdk_logging()
        try:
            settings = Settings.from_environ(os.environ)
        except SettingsError as exc:
            telemetry.report_invalid_setting(exc, during="first use")
            raise
        _runtime = Runtime(settings)
        from shared.adapters.graph import start_sdk_import

        # Warm the Graph SDK (thousands of modules) in a thread while the instance serves its first requests.
        start_sdk_import()
    return _runtime
