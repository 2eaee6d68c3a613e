"""List requests newest first, by filter, one bounded page at a time (``GET /api/provision``).

The index (:class:`shared.core.ports.RequestIndex`) says which requests to look at; each one's request row
is then read (one point read) and checked against every filter, so an entry the index kept by mistake (a
crash between the index write and the row's) is skipped, never shown with a status the request no longer has.
"""

from __future__ import annotations

import asyncio

from shared.core import listing
from shared.core.listing import ListFilter, Page, Summary
from shared.core.ports import Ledger, RequestIndex

#: Request rows read at once while a page is assembled.
_READ_CONCURRENCY = 10


async def list_requests(query: ListFilter, *, index: RequestIndex, ledger: Ledger) -> Page:
    """One page of request summaries matching ``query``, newest first, and where the next page starts."""
    newest = listing.newest_key(query.until) if query.until is not None else None
    oldest = listing.oldest_key(query.since) if query.since is not None else None
    scan = index.entries(query.partition(), query.after, newest, oldest, page_size=query.top + 1)
    found: list[Summary] = []
    batch: list[tuple[str, tuple[str, ...]]] = []
    rows_read = 0
    scanned = 0
    last_key: str | None = None
    more = False
    async for key, object_ids in scan:
        if len(found) >= query.top:
            more = True  # one entry past a full page: there is a next one
            break
        batch.append((key, object_ids))
        scanned += 1
        if len(batch) < min(_READ_CONCURRENCY, query.top - len(found)) and scanned < listing.MAX_SCAN:
            continue
        summaries, last_key, reads = await _check(batch, query, ledger, query.top - len(found))
        rows_read += reads
        found.extend(summaries)
        batch = []
        if scanned >= listing.MAX_SCAN and len(found) < query.top:
            more = True  # a rare match: answer what was found, and let the caller go on from here
            break
    if batch:
        summaries, last_key, reads = await _check(batch, query, ledger, query.top - len(found))
        rows_read += reads
        found.extend(summaries)
    if len(found) >= query.top and found:
        last_key = listing.row_key(found[-1].request_id)
    return Page(found, last_key if more else None, rows_read + scan.rows_read)


async def _check(
    batch: list[tuple[str, tuple[str, ...]]], query: ListFilter, ledger: Ledger, room: int
) -> tuple[list[Summary], str | None, int]:
    """Read the batch's request rows; the summaries of those that still match, the last key looked at, reads."""
    rows = await asyncio.gather(*(ledger.read_request(listing.request_id_of(key)) for key, _ in batch))
    found: list[Summary] = []
    last: str | None = None
    for (key, object_ids), row in zip(batch, rows, strict=True):
        if len(found) >= room:
            break
        last = key
        if row is not None and query.matches(row, object_ids):
            found.append(Summary(listing.request_id_of(key), row, object_ids))
    return found, last, len(rows)
