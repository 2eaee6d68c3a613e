"""The ``provisioning`` CLI's operator commands against the real stack, written against the contract of
issues 12 and 14 (``GET /api/provision`` list, ``…/retry``, ``…/cancel``, ``GET /api/targets``,
``GET /api/poison`` + ``POST /api/poison/requeue``, ``POST /api/provision/batch``, subjects by
``userPrincipalName``). These routes are built by other changes; until they are merged these tests fail.

The module brings its own stack: an import leaves hundreds of requests behind, which would slow the shared one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from devhost.stack import Stack
from tests.integration.cli_run import fail_next_call, provisioning
from tests.integration.conftest import app_stack
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = pytest.mark.integration

USER = "c0ffee00-0000-4000-8000-0000000000{:02d}"
TARGETS = {"seed-scim-app", "seed-cloud-sync", "seed-group-app", "workday-to-ad"}


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "cli-operator") as running:
        yield running


def _failed_request(stack: Stack, user: str, event_id: str) -> str:
    fail_next_call(stack)
    submitted = provisioning(stack, "--json", "submit", "--object-id", user, "--target", "seed-scim-app",
                             "--event-id", event_id, "--watch", "--interval", "0.5")  # fmt: skip
    assert submitted.code == 1, submitted.err
    request_id: str = submitted.json()["requestId"]
    return request_id


def _graph_calls_for(stack: Stack, object_id: str) -> list[Any]:
    calls = httpx.get(f"{stack.emulator_url}/_emulator/calls", timeout=HTTP_TIMEOUT).json()["calls"]
    return [c for c in calls if object_id in json.dumps(c.get("body"))]


def test_list_finds_a_failed_request_by_status_event_id_and_user(ops: Stack) -> None:
    request_id = _failed_request(ops, USER.format(1), "cli-op-list-1")
    by_status = provisioning(ops, "--json", "list", "--status", "failed", "--since", "1h")
    assert by_status.code == 0, by_status.err
    assert request_id in [s["requestId"] for s in by_status.json()["value"]]
    (summary,) = provisioning(ops, "--json", "list", "--event-id", "cli-op-list-1").json()["value"]
    assert summary["requestId"] == request_id
    assert summary["status"] == "failed"
    assert summary["counts"]["failed"] == 1
    assert summary["callCount"] == 1
    assert USER.format(1) in json.dumps(summary)
    people = provisioning(ops, "list", "--status", "failed")
    assert request_id in people.out


def test_list_all_follows_next_link_newest_first(ops: Stack) -> None:
    made = []
    for n in range(3):
        submitted = provisioning(ops, "--json", "submit", "--object-id", USER.format(2), "--target", "seed-scim-app",
                                 "--event-id", f"cli-op-page-{n}")  # fmt: skip
        made.append(submitted.json()["requestId"])
    one_page = provisioning(ops, "--json", "list", "--object-id", USER.format(2), "--top", "1").json()
    assert len(one_page["value"]) == 1
    assert one_page["nextLink"].startswith(ops.base_url)
    every = provisioning(ops, "--json", "list", "--object-id", USER.format(2), "--top", "1", "--all").json()
    assert [s["requestId"] for s in every["value"]] == list(reversed(made))


def test_retry_of_a_failed_request_ends_succeeded(ops: Stack) -> None:
    request_id = _failed_request(ops, USER.format(3), "cli-op-retry-1")
    retried = provisioning(ops, "--json", "retry", request_id, "--watch", "--interval", "0.5")
    assert retried.code == 0, retried.err
    assert retried.json()["status"] == "succeeded"
    nothing = provisioning(ops, "retry", request_id)
    assert nothing.code == 2
    assert "409" in nothing.err


def test_cancel_of_a_scheduled_request_and_graph_never_sees_it(ops: Stack) -> None:
    submitted = provisioning(ops, "--json", "submit", "--object-id", USER.format(4), "--target", "seed-scim-app",
                             "--not-before", "1h")  # fmt: skip
    request_id = submitted.json()["requestId"]
    cancelled = provisioning(ops, "--json", "cancel", request_id)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.json()["status"] == "cancelled"
    status = provisioning(ops, "status", request_id)
    assert status.code == 1, "a cancelled request is not a success"
    again = provisioning(ops, "cancel", request_id)
    assert again.code == 2
    assert "409" in again.err
    assert _graph_calls_for(ops, USER.format(4)) == []


def test_targets_show_job_status_backlog_and_drain(ops: Stack) -> None:
    done = provisioning(ops, "--json", "targets")
    assert done.code == 0, done.err
    targets = {t["name"]: t for t in done.json()["value"]}
    assert set(targets) == TARGETS
    for target in targets.values():
        assert target["jobStatus"]["code"]
        assert set(target["backlog"]) == {"queued", "scheduled", "waiting", "running"}
        assert "estimatedDrainSeconds" in target
    people = provisioning(ops, "targets")
    assert all(name in people.out for name in TARGETS)


def test_poison_lists_a_rejected_message_and_requeues_it(ops: Stack) -> None:
    text = json.dumps({"eventId": "cli-op-poison-1", "target": "seed-scim-app", "subjects": []})
    queue = QueueClient.from_connection_string(ops.env["AzureWebJobsStorage"], "provisioning-requests")
    queue.send_message(base64.b64encode(text.encode()).decode())

    def listed() -> dict[str, Any] | None:
        messages = provisioning(ops, "--json", "poison").json()["value"]
        return next((m for m in messages if "cli-op-poison-1" in json.dumps(m)), None)

    message = wait_until(listed, "the rejected message in GET /api/poison")
    assert message["queue"] == "provisioning-requests-poison"
    assert "subjects" in json.dumps(message), "the ledger's reason names the field"
    people = provisioning(ops, "poison")
    assert message["messageId"] in people.out
    requeued = provisioning(ops, "--json", "poison", "--requeue", "--queue", "provisioning-requests-poison",
                            "--id", message["messageId"])  # fmt: skip
    assert requeued.code == 0, requeued.err
    assert requeued.json()["requeued"] == 1


def test_import_of_300_rows_with_3_invalid_and_again_without_duplicates(ops: Stack, tmp_path: Path) -> None:
    path = tmp_path / "starters.csv"
    bad = {17, 150, 299}
    rows = [
        f"c0ffee00-0000-4000-8000-{i:012d},{'9bad' if i in bad else 'User'},2027-01-04T06:00:00Z" for i in range(300)
    ]
    path.write_text("objectId,objectTypeName,notBefore\n" + "\n".join(rows) + "\n")
    first = provisioning(ops, "--json", "import", str(path), "--target", "seed-scim-app")
    assert first.code == 1, first.err
    summary = first.json()
    assert (summary["rows"], summary["accepted"], summary["refused"]) == (300, 297, 3)
    refused = [item for item in summary["items"] if item["status"] != 202]
    assert [item["line"] for item in refused] == [i + 2 for i in sorted(bad)]
    assert all(item["fields"][0]["field"] == "objectTypeName" for item in refused)
    again = provisioning(ops, "--json", "import", str(path), "--target", "seed-scim-app").json()
    assert [i.get("requestId") for i in again["items"]] == [i.get("requestId") for i in summary["items"]]
    people = provisioning(ops, "import", str(path), "--target", "seed-scim-app")
    assert "300 row(s): 297 accepted, 3 refused" in people.out
    assert "objectTypeName" in people.out


def test_submit_by_user_principal_name(ops: Stack) -> None:
    done = provisioning(ops, "--json", "submit", "--upn", "cohort.user08@contoso.com", "--target", "seed-scim-app",
                        "--watch", "--interval", "0.5")  # fmt: skip
    assert done.code == 0, done.err
    (call,) = done.json()["calls"]
    assert call["userPrincipalName"] == "cohort.user08@contoso.com"
    assert call["objectId"] == USER.format(8)  # the id the name resolved to, the one Graph was called with
