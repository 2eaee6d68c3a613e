"""Listing requests through the index: newest first, bounded pages, stale entries skipped, filters checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract import operator_views
from shared.contract.problems import Problem
from shared.core import listing
from shared.core.listing import ListFilter
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallStatus, RequestStatus, Source
from shared.usecases.operator.listing import list_requests
from tests.unit.app.fakes import InMemoryLedger, request_records

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def _ledger_with(n: int, statuses: list[str] | None = None) -> tuple[InMemoryLedger, list[str]]:
    """``n`` requests a second apart; request i has call status ``statuses[i % len]``."""
    ledger = InMemoryLedger()
    ids = []
    for i in range(n):
        now = T0 + timedelta(seconds=i)
        request_id = new_request_id(now)
        status = (statuses or ["failed"])[i % len(statuses or ["failed"])]
        request, calls = request_records(request_id, now, [status], target="t1" if i % 2 else "t2", event_id=f"e-{i}")
        await ledger.create(request, calls)
        ids.append(request_id)
    return ledger, ids


async def test_newest_first_and_pages_follow_on_without_gaps_or_repeats() -> None:
    ledger, ids = await _ledger_with(7)
    seen: list[str] = []
    after = None
    while True:
        page = await list_requests(ListFilter(top=3, after=after), index=ledger.index, ledger=ledger)
        seen += [s.request_id for s in page.summaries]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ids[::-1]


async def test_a_status_filter_reads_one_partition_and_a_bounded_number_of_rows() -> None:
    ledger, ids = await _ledger_with(300, ["failed", "succeeded", "succeeded", "succeeded"])
    page = await list_requests(ListFilter(status=RequestStatus.FAILED, top=50), index=ledger.index, ledger=ledger)
    failed = [i for n, i in enumerate(ids) if n % 4 == 0][::-1]
    assert [s.request_id for s in page.summaries] == failed[:50]
    assert page.next_after is not None
    assert page.rows_read == 50 + 51, "50 request rows and 51 index entries (one to know there is more)"


async def test_an_entry_left_under_an_old_status_is_skipped() -> None:
    ledger, ids = await _ledger_with(3, ["queued"])
    ledger.rows[(ids[1], "request")]["status"] = "failed"  # as if the process died before moving the entry
    page = await list_requests(ListFilter(status=RequestStatus.PENDING), index=ledger.index, ledger=ledger)
    assert [s.request_id for s in page.summaries] == [ids[2], ids[0]]


async def test_a_status_change_moves_the_entry() -> None:
    ledger, ids = await _ledger_with(1, ["queued"])
    call = await ledger.get_call(ids[0], "call-0001")
    assert call is not None
    await ledger.update_call(replace(call, status=CallStatus.FAILED))
    await ledger.refresh_request(ids[0], T0)
    pending = await list_requests(ListFilter(status=RequestStatus.PENDING), index=ledger.index, ledger=ledger)
    failed = await list_requests(ListFilter(status=RequestStatus.FAILED), index=ledger.index, ledger=ledger)
    assert (pending.summaries, [s.request_id for s in failed.summaries]) == ([], ids)
    assert listing.status_partition("pending") not in {p for p, e in ledger.index.partitions.items() if e}


async def test_filters_by_event_object_target_source_and_time() -> None:
    ledger, ids = await _ledger_with(6)

    async def found(query: ListFilter) -> list[str]:
        return [s.request_id for s in (await list_requests(query, index=ledger.index, ledger=ledger)).summaries]

    assert await found(ListFilter(event_id="e-3")) == [ids[3]]
    assert await found(ListFilter(object_id="USER-1")) == ids[::-1], "objectIds compare case-insensitively"
    assert await found(ListFilter(target="t1")) == [ids[5], ids[3], ids[1]]
    assert await found(ListFilter(source=Source.QUEUE)) == []
    assert await found(ListFilter(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=3))) == ids[2:4][::-1]
    assert await found(ListFilter(status=RequestStatus.FAILED, target="t2")) == [ids[4], ids[2], ids[0]]


async def test_a_rare_match_answers_a_short_page_after_the_scan_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "MAX_SCAN", 20)
    ledger, ids = await _ledger_with(50)
    page = await list_requests(ListFilter(event_id=None, object_id="nobody"), index=ledger.index, ledger=ledger)
    assert page.summaries == []
    page = await list_requests(ListFilter(target="t1", event_id="e-1"), index=ledger.index, ledger=ledger)
    assert [s.request_id for s in page.summaries] == [ids[1]]
    page = await list_requests(ListFilter(status=RequestStatus.FAILED, target="zz"), index=ledger.index, ledger=ledger)
    assert page.summaries == []
    assert page.next_after is not None, "20 entries read, none matched: the caller may go on"
    assert page.rows_read <= 2 * 20 + 1


@given(st.lists(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)), min_size=2, max_size=8))
def test_row_keys_sort_newest_first(moments: list[datetime]) -> None:
    ids = [new_request_id(m.replace(tzinfo=UTC)) for m in moments]
    by_key = sorted(ids, key=listing.row_key)
    assert by_key == sorted(ids, reverse=True)
    assert all(listing.request_id_of(listing.row_key(i)) == i for i in ids)
    for moment, request_id in zip(moments, ids, strict=True):
        at = moment.replace(tzinfo=UTC)
        assert listing.newest_key(at) <= listing.row_key(request_id) <= listing.oldest_key(at)


@given(st.binary(min_size=16, max_size=16))
def test_continuation_tokens_round_trip(raw: bytes) -> None:
    key = raw.hex()
    token = operator_views.encode_continuation(key)
    assert operator_views.list_filter({"continuation": token}, {}).after == key


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({"status": "done"}, "/status"),
        ({"source": "fax"}, "/source"),
        ({"target": "unknown"}, "/target"),
        ({"top": "0"}, "/top"),
        ({"top": "201"}, "/top"),
        ({"top": "ten"}, "/top"),
        ({"since": "yesterday"}, "/since"),
        ({"until": "2026-12-02T09:00:00"}, "/until"),
        ({"since": "2026-12-02T10:00:00Z", "until": "2026-12-02T09:00:00Z"}, "/until"),
        ({"eventId": "a\nb"}, "/eventId"),
        ({"objectId": "x" * 1025}, "/objectId"),
        ({"continuation": "not-a-token"}, "/continuation"),
        ({"sort": "asc"}, "/sort"),
    ],
)
def test_a_bad_filter_is_400_naming_the_parameter(params: dict[str, str], pointer: str) -> None:
    with pytest.raises(Problem) as refused:
        operator_views.list_filter(params, {"t1": object()})
    assert refused.value.status == 400
    assert [e.pointer for e in refused.value.errors] == [pointer]


def test_a_good_query_is_understood_and_the_next_page_keeps_the_filters() -> None:
    params = {"status": "failed", "target": "t1", "top": "200", "since": "2026-12-02T09:00:00Z", "code": "k"}
    query = operator_views.list_filter(params, {"t1": object()})
    assert (query.status, query.target, query.top, query.since) == ("failed", "t1", 200, T0)
    next_query = operator_views.next_query(params, "0" * 32)
    assert set(next_query) == {"status", "target", "top", "since", "continuation"}, "the key travels separately"
