"""Headless Chromium (Debian's package) driven by Playwright against a running stack.

The browser is the distribution's: ``scripts/bootstrap`` installs ``chromium`` with apt-get where it is missing,
and Playwright starts it by path (``playwright install`` downloads a browser build, which this project never
does). Without it these tests FAIL saying what to run: a browser test that skips would let CI go green with the
console untested.

Every request the page makes is seen by a context-wide route: anything not addressed to the stack's own host
is aborted and recorded, and the tests assert that nothing was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect, sync_playwright

from devhost.stack import Stack
from tests.integration.conftest import app_stack
from tests.paths import ROOT

CHROMIUM = Path(os.environ.get("CONSOLE_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Flags known to work on these machines as root: no sandbox, and none of Chromium's own background traffic
#: (the network is closed, and its attempts would only fail slowly).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
#: Milliseconds Playwright waits for one expectation or action: a loaded 2-core machine is slow, never this slow.
UI_TIMEOUT_MS = 60_000
expect.set_options(timeout=UI_TIMEOUT_MS)  # expect() has its own default (5 s), apart from the context's


# Module scope, not session: while Playwright's sync API is open, its event loop counts as running in this
# thread, and pytest-asyncio cannot run the async tests of later modules. It is closed after each module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run scripts/bootstrap (it installs Debian's chromium and "
            "chromium-driver with apt-get). The browser tests never skip.",
            pytrace=False,
        )
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # launch() gives Chromium a new empty --user-data-dir of its own (removed on close): no state from another run
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "console") as running:
        yield running


@dataclass
class Session:
    """One browser context on the stack, with what left (or tried to leave) it."""

    page: Page
    base_url: str
    requested: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (url, headers)
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"console-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def session(browser: Browser, console_stack: Stack) -> Iterator[Session]:
    context: BrowserContext = browser.new_context(
        viewport={"width": 1400, "height": 900}, base_url=console_stack.base_url
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    own_host = urlsplit(console_stack.base_url).netloc
    page = context.new_page()
    opened = Session(page, console_stack.base_url)

    def guard(route: Route) -> None:
        url = route.request.url
        opened.requested.append((url, route.request.headers))
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.netloc == own_host:
            route.continue_()
        else:
            opened.blocked.append(url)
            route.abort()

    context.route("**/*", guard)
    page.on("console", lambda message: opened.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
