"""Rows read per list page: the newest 50 ``failed`` among 1k, 10k and 100k requests, against Azurite.

The claim under test: ``GET /api/provision?status=failed`` reads a bounded number of rows however large the
ledger is, because it reads one partition of ``ProvisioningIndex`` (newest first) plus one point read of
each request row it shows, never the ledger. For each size the bench files N requests, one in ten
``failed``, spread over the last N seconds, in the index: the entities the adapter writes for a new request
(``TableRequestIndex.new_entities``, what ``file_new`` writes when the ledger creates a request), sent in
batch transactions per partition so that 100k requests file in minutes on a loaded machine instead of an
hour of single upserts; and it writes the request rows of the failed ones to ``ProvisioningRequests``
(the reader point-reads each request it lists, and skips an entry whose row says otherwise), then lists the
first two pages through the use case and counts the entities read: index entities the Table service
returned, and request rows read. The index is filed with the ``all`` and ``status`` partitions only
(target, source and objectIds left out): the page reads one partition, so the others only add write time.

    .venv/bin/python -m bench.list_index [--sizes 1000,10000,100000] [--failed-every 10] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableClient

from devhost.stack import Stack
from shared.adapters import ledger_codec
from shared.adapters.ledger import TableLedger
from shared.adapters.request_index import INDEX_TABLE, TableRequestIndex
from shared.contract.names import TABLE_NAME
from shared.core import aggregate
from shared.core.listing import Indexed, ListFilter
from shared.core.records import RequestRecord
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallStatus, RequestStatus, Source
from shared.usecases.operator.listing import list_requests


async def _again(write: Callable[[], Awaitable[object]]) -> None:
    """A write, repeated a few times: a loaded Azurite fails one at times (a 500, a reset); upserts repeat safely."""
    for attempt in range(5):
        try:
            await write()
            return
        except AzureError:
            if attempt == 4:
                raise
            await asyncio.sleep(2**attempt)


async def _populate(index_table: TableClient, ledger_table: TableClient, start: int, n: int, args: Any) -> None:
    """File requests ``start``…``n-1`` (the entities ``file_new`` writes, in batches) and the failed ones' rows."""
    base = datetime.now(UTC) - timedelta(seconds=n)
    by_partition: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for i in range(start, n):
        failed = i % args.failed_every == 0
        now = base + timedelta(seconds=i)
        request_id = new_request_id(now)
        status = RequestStatus.FAILED if failed else RequestStatus.SUCCEEDED
        for entity in TableRequestIndex.new_entities(Indexed(request_id, status, None, None, None, ())):
            by_partition.setdefault(entity["PartitionKey"], []).append(entity)
        if failed:
            summary = aggregate.summarize([CallStatus.FAILED])
            record = RequestRecord(
                request_id, summary.status, Source.HTTP, now, now, call_count=1, counts=summary.counts
            )
            rows.append(ledger_codec.request_to_entity(record))
    semaphore = asyncio.Semaphore(args.concurrency)

    async def batch(entities: list[dict[str, Any]]) -> None:
        async with semaphore:
            await _again(lambda: index_table.submit_transaction([("upsert", e) for e in entities]))

    async def row(entity: dict[str, Any]) -> None:
        async with semaphore:
            await _again(lambda: ledger_table.upsert_entity(entity))

    batches = [e[k : k + 100] for e in by_partition.values() for k in range(0, len(e), 100)]
    await asyncio.gather(*(batch(b) for b in batches), *(row(r) for r in rows))


async def _measure(index: TableRequestIndex, ledger: TableLedger, pages: int) -> list[tuple[int, int]]:
    """(summaries, rows read) for the first ``pages`` pages of the newest 50 failed."""
    found: list[tuple[int, int]] = []
    after = None
    for _ in range(pages):
        page = await list_requests(
            ListFilter(status=RequestStatus.FAILED, top=50, after=after), index=index, ledger=ledger
        )
        assert all(s.request.status == RequestStatus.FAILED for s in page.summaries)
        found.append((len(page.summaries), page.rows_read))
        after = page.next_after
        if after is None:
            break
    return found


async def main(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "azurite.log").open("w") as log:
        stack = Stack(log=log)
        try:
            connection = stack.start_azurite()
            async with (
                TableClient.from_connection_string(connection, INDEX_TABLE) as index_table,
                TableClient.from_connection_string(connection, TABLE_NAME) as ledger_table,
            ):
                await ledger_table.create_table()
                await index_table.create_table()
                index = TableRequestIndex(index_table)
                ledger = TableLedger(ledger_table, index=index)
                print("requests  failed  filing (s)  page  shown  rows read (index entities + request rows)")
                done = 0
                for n in sizes:
                    started = time.monotonic()
                    await _populate(index_table, ledger_table, done, n, args)
                    done = n
                    took = time.monotonic() - started
                    for number, (shown, rows) in enumerate(await _measure(index, ledger, args.pages), 1):
                        print(f"{n:>8}  {n // args.failed_every:>6}  {took:>10.1f}  {number:>4}  {shown:>5}  {rows:>9}")
        finally:
            stack.stop()
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000", help="ledger sizes, filled up in turn")
    parser.add_argument("--failed-every", type=int, default=10, help="one request in this many is failed")
    parser.add_argument("--concurrency", type=int, default=16, help="writes in flight while filing")
    parser.add_argument("--pages", type=int, default=2, help="pages listed per size")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parse(sys.argv[1:]))))
