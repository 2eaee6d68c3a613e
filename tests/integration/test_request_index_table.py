"""The request index on the real Table adapter and Azurite: a request's entries by subject are one write."""

from __future__ import annotations

from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.request_index import INDEX_TABLE, OBJECTS_PARTITION, TableRequestIndex
from shared.core import listing
from shared.core.listing import Indexed
from shared.core.vocabulary import RequestStatus

pytestmark = pytest.mark.integration

TARGET = "sp-0001/job-0001"


def _user(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def _indexed(i: int, subjects: tuple[str, ...]) -> Indexed:
    return Indexed(_request_id(i), RequestStatus.PENDING, TARGET, "http", f"event-{i}", subjects)


def _request_id(i: int) -> str:
    return f"{0x19000000000 + i:012x}" + "0" * 20  # ids sort by creation: a larger i is newer


async def _keys(index: TableRequestIndex, partition: str, **bounds: Any) -> list[str]:
    scan = index.entries(partition, bounds.get("after"), bounds.get("newest"), bounds.get("oldest"), 50)
    return [listing.request_id_of(key) async for key, _ in scan]


async def test_a_hundred_subjects_are_filed_in_one_transaction_and_found_by_each(azurite: str) -> None:
    sent: list[str] = []

    def hook(request: Any) -> None:
        sent.append(f"{request.http_request.method} {request.http_request.url.split('?')[0]}")

    async with TableClient.from_connection_string(azurite, INDEX_TABLE, raw_request_hook=hook) as table:
        index = TableRequestIndex(table)
        await index.file_new(_indexed(1, tuple(map(_user, range(100)))))  # creates the table first
        sent.clear()
        await index.file_new(_indexed(2, tuple(map(_user, range(100)))))
        # all, source, target, event, status, backlog: one each; the 100 subjects: one transaction ($batch)
        assert len(sent) == 7, sent
        assert sum(s.endswith("/$batch") for s in sent) == 1
        sent.clear()
        await index.file_new(_indexed(2, tuple(map(_user, range(100)))))  # a retried intake: the same entries
        assert sum(s.endswith("/$batch") for s in sent) == 2, "created, then (one was there) the same as upserts"
        await index.file_new(_indexed(3, (_user(5).upper(), _user(500))))

        newest_first = [_request_id(3), _request_id(2), _request_id(1)]
        assert await _keys(index, listing.object_partition(_user(5))) == newest_first
        assert await _keys(index, listing.object_partition(_user(99))) == [_request_id(2), _request_id(1)]
        assert await _keys(index, listing.object_partition(_user(500))) == [_request_id(3)]
        assert await _keys(index, listing.object_partition(_user(100))) == []
        # the bounds of a page and of a time range apply within the subject's entries
        after = listing.row_key(_request_id(3))
        assert await _keys(index, listing.object_partition(_user(5)), after=after) == [_request_id(2), _request_id(1)]
        oldest = listing.row_key(_request_id(2))
        assert await _keys(index, listing.object_partition(_user(5)), oldest=oldest) == [_request_id(3), _request_id(2)]
        newest = listing.row_key(_request_id(2))
        assert await _keys(index, listing.object_partition(_user(5)), newest=newest) == [_request_id(2), _request_id(1)]
        scan = index.entries(listing.object_partition(_user(500)), None, None, None, 10)
        assert [ids async for _, ids in scan] == [(_user(5).upper(), _user(500))]

        # retention forgets every entry of a request, the subjects' included
        await index.forget(_request_id(1))
        assert await _keys(index, listing.object_partition(_user(5))) == [_request_id(3), _request_id(2)]
        assert await _keys(index, listing.ALL_PARTITION) == [_request_id(3), _request_id(2)]
        left = [e async for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": OBJECTS_PARTITION})]
        assert len(left) == 102
