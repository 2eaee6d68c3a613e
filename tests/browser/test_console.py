"""The operator console in a real browser: a failed request is found, opened, retried and seen to succeed.

Chromium (Debian's) runs headless against a whole local stack (Azurite, the Graph emulator, the devhost). The
emulator is told to answer the first call with a Failure inside a 200, which is final: only an operator's retry
gets the call a new attempt. Screenshots of the list, the detail and the targets land in tests/artifacts/.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient
from playwright.sync_api import expect

from devhost.stack import Stack
from shared.contract.names import REQUESTS_POISON_QUEUE, REQUESTS_QUEUE
from shared.triggers import console_api
from tests.browser.conftest import Session
from tests.integration.conftest import wait_done
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Assigned to seed-scim-app in the emulator's default tenant: once the injected Failure is used up, a new attempt
# really provisions it (Create, or Skipped when already there: both end the request succeeded).
SUBJECT = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
KEY = "console-test-key"


def _fail_next_call(stack: Stack) -> None:
    key = json.dumps(
        {"result": "Failure", "details": {"errorCode": "EntryConflict", "errorMessage": "Two users match"}}
    )
    value = json.dumps(
        {
            "action": "Create",
            "changeId": "c-console",
            "statusInfo": {"status": "Failure", "errorCode": "EntryConflict", "recommendedAction": "Fix matching"},
            "provisioningSteps": [
                {"name": "EntryImport", "status": "Success", "description": "Retrieved the user"},
                {"name": "EntryExportAdd", "status": "Failure", "description": "Two users match"},
            ],
        }
    )
    httpx.post(
        f"{stack.emulator_url}/_emulator/config",
        json={"clearFaults": True, "faults": [{"kind": "answer", "key": key, "value": value}]},
        timeout=HTTP_TIMEOUT,
    ).raise_for_status()


def _failed_request(stack: Stack) -> str:
    _fail_next_call(stack)
    body: dict[str, Any] = {"target": "seed-scim-app", "subjects": [{"objectId": SUBJECT, "objectTypeName": "User"}]}
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    result = wait_done(posted.headers["Location"])
    assert result["status"] == "failed", result
    return str(result["requestId"])


def _left_localhost(session: Session) -> list[str]:
    return session.blocked + [url for url, _ in session.requested if not url.startswith(session.base_url)]


def test_the_console_is_served_with_a_strict_policy(console_stack: Stack) -> None:
    page = httpx.get(f"{console_stack.base_url}/api/console", timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text, "no inline script"
    assert "style=" not in page.text, "no inline style"
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "nothing from another origin"
    for name in console_api.ASSETS:
        asset = httpx.get(f"{console_stack.base_url}/api/console/{name}", timeout=HTTP_TIMEOUT)
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == console_api.ASSETS[name][1]
        again = httpx.get(
            f"{console_stack.base_url}/api/console/{name}",
            headers={"If-None-Match": asset.headers["etag"]},
            timeout=HTTP_TIMEOUT,
        )
        assert again.status_code == 304, name
    # Only the names in ASSETS: a file's own name, another file of the folder or a path out of it is a 404.
    for unknown in ("index.html", "nope.js", "x/app.js", "%2e%2e/%2e%2e/function_app.py", "..%2f..%2fhost.json"):
        missing = httpx.get(f"{console_stack.base_url}/api/console/{unknown}", timeout=HTTP_TIMEOUT)
        assert missing.status_code == 404, unknown
        assert missing.headers["content-security-policy"] == console_api.CONTENT_SECURITY_POLICY, unknown


def test_a_failed_request_shows_graphs_outcome_advice_and_steps(session: Session, console_stack: Stack) -> None:
    request_id = _failed_request(console_stack)
    page = session.page
    page.goto(f"/api/console#/request/{request_id}")
    expect(page.locator("#request-id")).to_have_text(request_id)
    expect(page.locator('#request-facts [data-fact="Status"]')).to_have_text("failed")
    call = page.locator("section.call").first
    expect(call.locator(".advice")).to_contain_text("Fix matching")
    expect(call.locator("dl.facts")).to_contain_text("EntryConflict")
    expect(call.locator("ol.timeline li")).to_have_count(2)
    expect(call.locator("ol.timeline li").nth(1)).to_contain_text("EntryExportAdd")
    expect(page.get_by_role("button", name="Retry failed calls")).to_be_enabled()
    expect(page.get_by_role("button", name="Cancel request")).to_be_disabled()
    session.screenshot("detail-failed")
    assert _left_localhost(session) == []
    assert session.console_errors == []


def test_the_console_finds_a_failed_request_retries_it_and_shows_it_succeed(
    session: Session, console_stack: Stack
) -> None:
    request_id = _failed_request(console_stack)
    page = session.page
    # Opened as a link with the key in it: the page keeps the key, drops it from the address bar, sends it as a header.
    page.goto(f"/api/console?code={KEY}")
    expect(page.locator("#requests-table")).to_be_visible()
    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Target").fill("seed-scim-app")
    page.get_by_role("button", name="Show requests").click()
    expect(page).to_have_url(re.compile(r"#/requests\?status=failed&target=seed-scim-app$"))
    row = page.locator(f'#requests-table tr[data-request-id="{request_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("failed")
    assert "code=" not in page.url
    session.screenshot("list")

    # Only the keyboard from here: the link, the retry button and the confirmation are reached and pressed by keys.
    row.get_by_role("link", name=request_id).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#request-id")).to_have_text(request_id)
    expect(page.locator("section.call .advice")).to_contain_text("Fix matching")
    session.screenshot("detail")
    page.get_by_role("button", name="Retry failed calls").focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Retry this request?")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("button", name="Keep as it is")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Retry")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator('#request-facts [data-fact="Status"]')).to_have_text("succeeded")
    expect(page.locator("#announce")).to_contain_text(f"Request {request_id} is now succeeded")
    expect(page.get_by_role("button", name="Retry failed calls")).to_be_disabled()
    # both attempts readable: the call as it is now, and the failed round before the retry
    call = page.locator("section.call").first
    expect(call.locator("dl.facts")).to_contain_text("Success")
    earlier = call.locator("table.attempts tbody tr")
    expect(earlier).to_have_count(1)
    expect(earlier.first).to_contain_text("EntryConflict")
    session.screenshot("detail-retried")

    page.get_by_role("link", name="Targets").click()
    target = page.locator('#targets-table tr[data-target="seed-scim-app"]')
    expect(target).to_be_visible()
    session.screenshot("targets")
    page.get_by_role("link", name="Poison messages").click()
    expect(page.get_by_role("heading", name="Poison messages")).to_be_visible()
    page.get_by_role("link", name="Activity").click()
    expect(page.locator("#activity-chart")).to_be_visible()
    expect(page.locator("#activity-chart rect.bar-calls").first).to_be_attached()  # this test's calls, drawn
    session.screenshot("activity")

    api_calls = [(url, headers) for url, headers in session.requested if "/api/console" not in url]
    assert api_calls, "the page called the API"
    assert all(headers.get("x-functions-key") == KEY for _, headers in api_calls)
    assert all("code=" not in url for url, _ in api_calls)
    assert _left_localhost(session) == []
    assert session.console_errors == []


def test_a_request_scheduled_an_hour_ahead_is_cancelled_from_the_console(
    session: Session, console_stack: Stack
) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    body = {
        "target": "seed-scim-app",
        "notBefore": later,
        "subjects": [{"objectId": SUBJECT, "objectTypeName": "User"}],
    }
    posted = httpx.post(f"{console_stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    request_id = posted.json()["requestId"]
    page = session.page
    page.goto(f"/api/console#/request/{request_id}")
    expect(page.locator('#request-facts [data-fact="Status"]')).to_have_text("pending")
    expect(page.locator("section.call .badge")).to_have_text("scheduled")
    page.get_by_role("button", name="Cancel request").click()
    dialog = page.get_by_role("dialog", name="Cancel this request?")
    dialog.get_by_role("button", name="Cancel request").click()
    expect(page.locator('#request-facts [data-fact="Status"]')).to_have_text("cancelled")
    expect(page.locator("section.call .badge")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel request")).to_be_disabled()
    expect(page.locator("#announce")).to_contain_text(f"Request {request_id} is now cancelled")
    assert wait_done(posted.headers["Location"])["status"] == "cancelled"
    assert _left_localhost(session) == []
    assert session.console_errors == []


def test_a_poison_message_is_shown_with_its_reason_and_requeued(session: Session, console_stack: Stack) -> None:
    invalid = json.dumps({"eventId": "console-poison-1", "target": "seed-scim-app", "subjects": []})
    queue = QueueClient.from_connection_string(console_stack.env["AzureWebJobsStorage"], REQUESTS_QUEUE)
    queue.send_message(base64.b64encode(invalid.encode()).decode())
    poison = QueueClient.from_connection_string(console_stack.env["AzureWebJobsStorage"], REQUESTS_POISON_QUEUE)

    def poisoned() -> bool:
        try:
            return any(base64.b64decode(m.content).decode() == invalid for m in poison.peek_messages(max_messages=32))
        except ResourceNotFoundError:  # the poison queue is created on first use
            return False

    wait_until(poisoned, "the invalid message reached the poison queue")
    page = session.page
    page.goto("/api/console#/poison")
    table = page.locator(f"#poison-{REQUESTS_POISON_QUEUE}")
    row = table.locator("tbody tr").filter(has_text="console-poison-1")
    expect(row).to_be_visible()
    expect(row).to_contain_text("not valid")  # the ledger's reason
    session.screenshot("poison")
    row.get_by_role("checkbox").check()
    page.get_by_role("group", name=f"Requeue from {REQUESTS_POISON_QUEUE}").get_by_role(
        "button", name="Requeue selected"
    ).click()
    page.get_by_role("dialog", name="Requeue poison messages?").get_by_role("button", name="Requeue").click()
    expect(page.locator("#poison-result")).to_have_text(f"1 messages requeued from {REQUESTS_POISON_QUEUE}.")
    expect(page.locator("#announce")).to_contain_text(f"1 messages requeued from {REQUESTS_POISON_QUEUE}")
    assert _left_localhost(session) == []
    assert session.console_errors == []


def test_the_list_pages_through_next_link(session: Session, console_stack: Stack) -> None:
    for _ in range(2):
        _failed_request(console_stack)
    page = session.page
    page.goto("/api/console#/requests?top=1")
    rows = page.locator("#requests-table tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(2)
    assert _left_localhost(session) == []
    assert session.console_errors == []
