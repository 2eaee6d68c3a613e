"""The console where the app checks function keys (as in Azure): the page itself opens without one, the API
does not; the key typed into the page is sent as ``x-functions-key`` and kept for the tab, never in a URL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from devhost.stack import Stack
from tests.browser.conftest import Session
from tests.integration.conftest import app_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

HOST_KEY = "console-host-key-for-tests"


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose devhost checks keys like Azure: a host key opens every function's routes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(os.environ, "DEVHOST_REQUIRE_KEYS", "true")
        patch.setitem(os.environ, "DEVHOST_HOST_KEY", HOST_KEY)
        with app_stack(tmp_path_factory, "console-keys") as running:
            yield running


def test_the_page_asks_for_a_key_and_uses_it(session: Session) -> None:
    page = session.page
    page.goto("/api/console#/targets")
    key_field = page.get_by_label("Function key")
    expect(key_field).to_be_visible()
    expect(key_field).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("needs a key")
    key_field.fill(HOST_KEY)
    page.keyboard.press("Enter")
    expect(page.locator('#targets-table tr[data-target="seed-scim-app"]')).to_be_visible()
    expect(key_field).to_be_hidden()

    page.reload()  # kept for this tab
    expect(page.locator('#targets-table tr[data-target="seed-scim-app"]')).to_be_visible()
    api_calls = [(url, headers) for url, headers in session.requested if "/api/console" not in url]
    assert [h.get("x-functions-key") for _, h in api_calls] == [None, HOST_KEY, HOST_KEY]
    assert all("code=" not in url for url, _ in session.requested)
    assert session.blocked == []
