"""``import FILE``: the row parser (hypothesis), derived event ids, chunks, the summary and resuming."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.errors import CliError, ExitCode
from cli.importer import column
from cli.rows import COLUMNS, DERIVED_PREFIX, Defaults, detect_format, parse
from tests.unit.cli.harness import answer, problem, run

# Values a CSV cell can carry and come back the same: no edge spaces (cells are stripped), no NUL.
_cell = (
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)
_row = st.fixed_dictionaries(
    {"objectId": _cell},
    optional={"objectTypeName": _cell, "notBefore": _cell, "target": _cell, "eventId": _cell},
)


def _csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    # Quoted as spreadsheets write it: a cell with a bare CR is quoted (QUOTE_MINIMAL looks at "\n" only).
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


@settings(max_examples=150, deadline=None)
@given(st.lists(_row, max_size=12), st.sampled_from(["csv", "jsonl"]))
def test_every_row_becomes_the_request_it_says(rows: list[dict[str, str]], fmt: str) -> None:
    text = _csv(rows) if fmt == "csv" else _jsonl(rows)
    parsed = parse(text, "csv" if fmt == "csv" else "jsonl", Defaults(target="default-target", object_type="User"))
    assert parsed.errors == ()
    assert len(parsed.rows) == len(rows)
    for row, given_row in zip(parsed.rows, rows, strict=True):
        subjects = row.request["subjects"]
        assert isinstance(subjects, list)
        (subject,) = subjects
        assert subject == {"objectId": given_row["objectId"], "objectTypeName": given_row.get("objectTypeName", "User")}
        assert row.request["target"] == given_row.get("target", "default-target")
        assert row.request.get("notBefore") == given_row.get("notBefore")
        assert row.request["eventId"] == row.event_id
        assert row.derived == ("eventId" not in given_row)
        if not row.derived:
            assert row.event_id == given_row["eventId"]
        else:
            assert row.event_id.startswith(DERIVED_PREFIX)
            assert len(row.event_id) <= 200


_plain = st.lists(st.fixed_dictionaries({"objectId": _cell}, optional={"notBefore": _cell}), min_size=1, max_size=15)


@settings(max_examples=150, deadline=None)
@given(_plain, _plain, st.randoms(use_true_random=False))
def test_derived_event_ids_survive_reordering_and_appending(
    rows: list[dict[str, str]], more: list[dict[str, str]], rnd: random.Random
) -> None:
    """A re-run after rows were appended or the file re-sorted sends the same ids for the rows it had."""
    defaults = Defaults(target="t")
    first = parse(_csv(rows), "csv", defaults).rows
    shuffled = rows + more
    rnd.shuffle(shuffled)
    again = parse(_csv(shuffled), "csv", defaults).rows
    ids_before = sorted(r.event_id for r in first)
    ids_after = [r.event_id for r in again]
    assert set(ids_before) <= set(ids_after)
    assert len(set(ids_after)) == len(ids_after), "every row has its own id, identical rows included"
    # The id is a function of the request's content and how many identical rows came before it.
    salted = parse(_csv(rows), "csv", Defaults(target="t", salt="2027-01")).rows
    assert not {r.event_id for r in salted} & set(ids_before), "a new --salt makes new requests"


def test_identical_rows_are_distinct_requests_and_distinct_rows_differ() -> None:
    rows = parse("objectId\nu1\nu1\nu2\n", "csv", Defaults(target="t")).rows
    assert [r.line for r in rows] == [2, 3, 4]
    assert len({r.event_id for r in rows}) == 3


def test_rows_that_cannot_become_a_request_are_refused_with_their_line() -> None:
    text = 'objectId,userPrincipalName,notBefore\nu1,,\n,,2026-12-03T00:00:00Z\n"multi\nline",,\nu4,,,extra\n'
    parsed = parse(text, "csv", Defaults(target="t"))
    assert [(r.line, r.request["subjects"]) for r in parsed.rows] == [
        (2, [{"objectId": "u1", "objectTypeName": "User"}]),
        (4, [{"objectId": "multi\nline", "objectTypeName": "User"}]),
    ]
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "objectId"), (6, None)]
    lines = (
        '{"objectId": "u1"}\n\nnot json\n[1]\n{"objectID": "u5", "colour": "red"}\n{"upn": 1}\n'
        '{"objectId": "u", "eventId": 7}\n'
    )
    jsonl = parse(lines, "jsonl", Defaults(target="t"))
    assert [r.line for r in jsonl.rows] == [1]
    assert [(e.line, e.field) for e in jsonl.errors] == [
        (3, None),
        (4, None),
        (5, "colour"),
        (6, "upn"),
        (7, "eventId"),
    ]


def test_without_a_target_a_row_is_refused() -> None:
    parsed = parse("objectId\nu1\n", "csv", Defaults())
    assert [(e.line, e.field) for e in parsed.errors] == [(2, "target")]


def test_an_unknown_csv_column_refuses_the_file() -> None:
    with pytest.raises(CliError, match="unknown column") as raised:
        parse("objectId,colour\nu1,red\n", "csv", Defaults(target="t"))
    assert raised.value.exit_code is ExitCode.USAGE


def test_header_names_are_case_insensitive_and_a_bom_is_ignored() -> None:
    rows = parse("\ufeffOBJECTID,UserPrincipalName\nu1,\n,ada@contoso.com\n", "csv", Defaults(target="t")).rows
    assert [r.request["subjects"] for r in rows] == [
        [{"objectId": "u1", "objectTypeName": "User"}],
        [{"userPrincipalName": "ada@contoso.com", "objectTypeName": "User"}],
    ]


def test_the_format_comes_from_the_name_or_the_content() -> None:
    assert detect_format("starters.CSV", "{") == "csv"
    assert detect_format("starters.jsonl", "objectId") == "jsonl"
    assert detect_format("-", '\n {"objectId": "u"}') == "jsonl"
    assert detect_format("-", "objectId\nu") == "csv"


def test_a_pointer_into_the_batch_becomes_the_rows_column() -> None:
    assert column("/requests/17/subjects/0/objectId") == "objectId"
    assert column("/subjects/0/userPrincipalName") == "userPrincipalName"
    assert column("/requests/3/notBefore") == "notBefore"
    assert column("/requests/3/subjects/0/links") == "/subjects/0/links"


# The command ----------------------------------------------------------------------------------------------------


class Batch:
    """A fake batch route: refuses objectIds starting with 'bad', remembers every event id it accepted."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}
        self.failures: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/provision/batch")
        if self.failures:
            return self.failures.pop(0)
        items = json.loads(request.content)["requests"]
        value = []
        for index, item in enumerate(items):
            if str(item["subjects"][0].get("objectId", "")).startswith("bad"):
                refusal = problem(
                    400, "The request body is not valid", [(f"/requests/{index}/subjects/0/objectId", "must be a GUID")]
                )
                value.append({"index": index, "status": 400, "problem": refusal})
            else:
                request_id = self.known.setdefault(item["eventId"], f"{len(self.known):032x}")
                value.append({"index": index, "status": 202, "requestId": request_id})
        return answer(200, {"value": value})


def _file(tmp_path: Path, rows: int, bad: set[int] = frozenset()) -> Path:  # type: ignore[assignment]
    path = tmp_path / "starters.csv"
    lines = ["objectId,objectTypeName"] + [f"{'bad' if i in bad else 'user'}-{i},User" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_sends_chunks_and_summarises_what_was_refused(tmp_path: Path) -> None:
    app = Batch()
    done = run(["import", str(_file(tmp_path, 5, {3})), "--target", "t", "--chunk-size", "2"], app)
    assert done.code == ExitCode.FAILED
    assert [len(b["requests"]) for b in done.bodies()] == [2, 2, 1]
    assert "5 row(s): 4 accepted, 1 refused" in done.out
    (refused,) = (line for line in done.out.splitlines() if "bad" in line or "GUID" in line)
    assert re.search(r"│ 5 +│ import-[0-9a-f]{40} │ 400 +│ objectId +│ must be a GUID", refused), done.out


def test_import_json_summary_has_one_item_per_row(tmp_path: Path) -> None:
    path = _file(tmp_path, 3, {1})
    path.write_text(path.read_text() + "not,enough,fields,here\n")
    done = run(["--json", "import", str(path), "--target", "t"], Batch())
    summary = done.json()
    assert (summary["rows"], summary["accepted"], summary["refused"]) == (4, 2, 2)
    assert [i["line"] for i in summary["items"]] == [2, 3, 4, 5]
    assert summary["items"][1]["fields"] == [{"field": "objectId", "detail": "must be a GUID"}]
    assert summary["items"][3] == {
        "line": 5,
        "sent": False,
        "field": None,
        "detail": "4 fields, but the header names 2",
    }
    assert all(i["derivedEventId"] for i in summary["items"][:3])


def test_running_an_import_again_sends_the_same_event_ids(tmp_path: Path) -> None:
    app = Batch()
    path = _file(tmp_path, 4)
    first = run(["--json", "import", str(path), "--target", "t"], app)
    again = run(["--json", "import", str(path), "--target", "t"], app)
    assert first.bodies() == again.bodies()
    assert len(app.known) == 4, "the app saw four event ids, not eight"
    assert [i["requestId"] for i in first.json()["items"]] == [i["requestId"] for i in again.json()["items"]]


def test_a_transient_failure_sends_the_chunk_again(tmp_path: Path) -> None:
    app = Batch()
    app.failures = [answer(503, problem(503, "Storage unavailable"))]
    sleeps: list[float] = []
    done = run(["import", str(_file(tmp_path, 2)), "--target", "t"], app, sleeps=sleeps)
    assert done.code == 0, done.err
    assert len(done.requests) == 2
    assert done.bodies()[0] == done.bodies()[1]
    assert sleeps == [2.0]


def test_an_import_that_cannot_finish_says_how_to_resume(tmp_path: Path) -> None:
    app = Batch()
    app.failures = [
        answer(
            200,
            {"value": [{"index": 0, "status": 202, "requestId": "r"}, {"index": 1, "status": 202, "requestId": "s"}]},
        )
    ]
    app.failures += [answer(503, problem(503, "Storage unavailable"))] * 3
    done = run(["import", str(_file(tmp_path, 4)), "--target", "t", "--chunk-size", "2"], app)
    assert done.code == ExitCode.UNAVAILABLE
    assert "stopped after 2 of 4 rows (line 4 onwards not sent)" in done.err
    assert "run the same command again to resume" in done.err
    assert len(done.requests) == 4


def test_a_refused_batch_stops_at_once(tmp_path: Path) -> None:
    app = Batch()
    app.failures = [answer(413, problem(413, "Too large"))]
    done = run(["import", str(_file(tmp_path, 2)), "--target", "t"], app)
    assert done.code == ExitCode.USAGE
    assert len(done.requests) == 1


def test_dry_run_prints_the_requests_and_sends_nothing(tmp_path: Path) -> None:
    done = run(["import", str(_file(tmp_path, 2)), "--target", "t", "--dry-run"])
    assert done.requests == []
    lines = [json.loads(line) for line in done.out.splitlines()]
    assert [line["subjects"][0]["objectId"] for line in lines] == ["user-0", "user-1"]
    assert all(line["eventId"].startswith(DERIVED_PREFIX) for line in lines)


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"objectId\n\xff\xfe\n")
    assert run(["import", str(tmp_path / "b.csv"), "--target", "t"]).code == ExitCode.USAGE
