"""The ``provisioning`` CLI against the real local stack: submit and status.

On a stack of its own: it provisions cohort users the shared stack's other modules expect to create fresh (a
second Create of one user is answered Skipped, and their call logs would hold this module's calls too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.stack import Stack
from tests.integration.cli_run import fail_next_call, provisioning
from tests.integration.conftest import app_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """This module's own stack (see the module's docstring)."""
    with app_stack(tmp_path_factory, "cli") as running:
        yield running


#: Users of the emulator's default tenant (cohort.user01… in emulator/tenants/default.json).
USER = "c0ffee00-0000-4000-8000-0000000000{:02d}"


def test_submit_then_watch_to_success_exits_0(stack: Stack) -> None:
    submitted = provisioning(stack, "--json", "submit", "--object-id", USER.format(1), "--target", "seed-scim-app")
    assert submitted.code == 0, submitted.err
    accepted = submitted.json()
    assert accepted["status"] == "pending"
    assert accepted["location"] == f"{stack.base_url}/api/provision/{accepted['requestId']}"
    watched = provisioning(stack, "--json", "status", accepted["requestId"], "--watch", "--interval", "0.5")
    assert watched.code == 0, watched.err
    final = watched.json()
    assert final["status"] == "succeeded"
    assert final["calls"][0]["subject"]["objectId"] == USER.format(1)


def test_watch_of_a_failing_request_exits_1_and_shows_graphs_error(stack: Stack) -> None:
    fail_next_call(stack)
    submitted = provisioning(stack, "--json", "submit", "--object-id", USER.format(2), "--target", "seed-scim-app")
    request_id = submitted.json()["requestId"]
    done = provisioning(stack, "status", request_id, "--watch", "--interval", "0.5")
    assert done.code == 1, done.err
    assert "failed" in done.out
    assert "EntryConflict" in done.out, done.out
    again = provisioning(stack, "--json", "status", request_id)
    assert again.code == 1
    assert again.json()["calls"][0]["errorCode"] == "EntryConflict"


def test_submit_watch_shows_the_progress_for_people_and_exits_0(stack: Stack) -> None:
    done = provisioning(stack, "submit", "--object-id", USER.format(5), "--target", "seed-scim-app", "--watch")
    assert done.code == 0, done.err
    assert "succeeded" in done.out
    assert "1/1 calls finished" in done.out, done.out


def test_the_same_event_id_answers_the_same_request(stack: Stack) -> None:
    args = ("--json", "submit", "--object-id", USER.format(3), "--target", "seed-scim-app", "--event-id", "cli-e-1")
    first, second = provisioning(stack, *args), provisioning(stack, *args)
    assert first.code == second.code == 0
    assert first.json()["requestId"] == second.json()["requestId"]


def test_a_refusal_names_the_offending_field_and_exits_2(stack: Stack) -> None:
    done = provisioning(stack, "submit", "--object-id", USER.format(4), "--type", "9nope", "--target", "seed-scim-app")
    assert done.code == 2
    assert done.out == ""
    assert "400" in done.err
    assert "/subjects/0/objectTypeName" in done.err, done.err


def test_an_unknown_request_is_404_and_exit_2(stack: Stack) -> None:
    done = provisioning(stack, "--json", "status", "0" * 32)
    assert done.code == 2
    assert '"status": 404' in done.err.replace('"status":404', '"status": 404')


def test_an_app_that_is_not_there_is_exit_3(stack: Stack) -> None:
    done = provisioning(stack, "--base-url", "http://127.0.0.1:9", "status", "0" * 32)
    assert done.code == 3
    assert "cannot reach" in done.err
