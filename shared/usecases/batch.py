"""Bulk intake: many provisioning requests in one call, each validated and accepted or refused on its own.

Every item goes through exactly what ``POST /api/provision`` does (normalisation, validation, target,
callback allow-list, idempotency by its ``eventId``, ledger rows, work items), so an item's answer is the
status it would have got alone: ``202`` with its ``requestId``, or the ``4xx`` with its problem. Items are
accepted concurrently (bounded), and one item's failure never stops the others: a dependency failing for one
item is a ``503`` for that item, which the caller resends (idempotent when it carries an ``eventId``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.contract.problems import FieldError, Problem, json_pointer
from shared.core.models import ProvisioningRequest
from shared.usecases import intake

log = telemetry.get_logger(__name__)

MAX_REQUESTS = 1000
CONCURRENCY = 16

AcceptOne = Callable[[ProvisioningRequest, list[str]], Awaitable[intake.Accepted]]


@dataclass(frozen=True)
class ItemResult:
    """One item's answer: ``202`` and its request, or the 4xx/503 it got and why."""

    index: int
    status: int
    request_id: str | None = None
    problem: dict[str, Any] | None = None

    def to_body(self) -> dict[str, Any]:
        """``{"index", "status", "requestId"?, "problem"?}``."""
        body: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.request_id is not None:
            body["requestId"] = self.request_id
        if self.problem is not None:
            body["problem"] = self.problem
        return body


def requests_of(data: Any) -> list[Any]:
    """The ``requests`` array of a batch body, or a 400 Problem naming what is wrong with the envelope."""
    if not isinstance(data, dict):
        raise Problem.invalid("Not a batch", 'Send {"requests": [request, …]}.', FieldError("", "must be an object"))
    unknown = sorted(set(data) - {"requests"})
    if unknown:
        errors = tuple(FieldError(json_pointer([name]), "is not a known field") for name in unknown)
        raise Problem.invalid("Not a batch", "A batch body has only a requests array.", *errors)
    requests = data.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise Problem.invalid(
            "Not a batch",
            f"requests must be an array of 1 to {MAX_REQUESTS} provisioning requests.",
            FieldError("/requests", f"must be an array of 1 to {MAX_REQUESTS} requests"),
        )
    return requests


def _refused(index: int, problem: Problem) -> ItemResult:
    prefix = f"/requests/{index}"
    return ItemResult(index, problem.status, problem=problem.repointed(lambda pointer: prefix + pointer).to_body())


async def accept_all(
    items: Sequence[Any], accept_one: AcceptOne, *, refused: Mapping[int, Problem] | None = None
) -> list[ItemResult]:
    """Validate and accept every item (but those already ``refused``); the answers in item order."""
    semaphore = asyncio.Semaphore(CONCURRENCY)
    refused = refused or {}

    async def one(index: int, item: Any) -> ItemResult:
        if index in refused:
            return _refused(index, refused[index])
        try:
            request, notes = intake.provision_request("application/json", {}, item)
            async with semaphore:
                accepted = await accept_one(request, notes)
        except Problem as problem:
            return _refused(index, problem)
        except Exception as exc:  # a dependency failed for this item: the caller resends it
            log.warning("batch item not accepted: %s", type(exc).__name__, extra={"index": index})
            return ItemResult(index, 503, problem=Problem.unavailable().to_body())
        return ItemResult(index, 202, request_id=accepted.request_id)

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    accepted = sum(1 for r in results if r.status == 202)
    log.info("batch accepted", extra={"items": len(results), "accepted": accepted})
    return list(results)
