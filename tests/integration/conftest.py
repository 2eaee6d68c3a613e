"""One local stack (Azurite + Graph emulator + devhost) for the integration tests, started like scripts/start."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from devhost.stack import ROOT, Stack, free_port
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT, POLL_INTERVAL


def wait_done(location: str, timeout: float = DEADLINE, **params: str) -> dict[str, Any]:
    """Poll a status URL like Logic Apps does (202 → again) until it answers 200; its JSON body."""
    deadline = time.monotonic() + timeout
    # params only when given: an empty params argument would drop the query (a ?code= key) from location
    while (status := httpx.get(location, params=params or None, timeout=HTTP_TIMEOUT)).status_code == 202:
        assert time.monotonic() < deadline, f"still pending after {timeout:.0f} s: {status.text}"
        time.sleep(POLL_INTERVAL)
    assert status.status_code == 200, status.text
    result: dict[str, Any] = status.json()
    return result


def example_values() -> dict[str, str]:
    """The Values of local.settings.example.json: what a newcomer runs with."""
    values: dict[str, str] = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    return values


@contextmanager
def app_stack(tmp_path_factory: pytest.TempPathFactory, name: str = "stack") -> Iterator[Stack]:
    """The whole app over real HTTP; every variable the stack would take from outside is cleared first."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL",
                                                           "IDENTITY_ENDPOINT", "IDENTITY_HEADER")}  # fmt: skip
    env.update(example_values())
    # Pacing is tested on its own stacks (test_pacing.py); here the app's limiter must not slow the suite.
    env["GRAPH_RATE_LIMIT"] = "1000/1s"
    log_path: Path = tmp_path_factory.mktemp(name) / "stack.log"
    with log_path.open("w") as log, Stack(port=free_port(), env=env, log=log) as running:
        # Pacing is not what these tests are about: lift the emulator's limit; throttling is injected per test.
        assert running.emulator_url
        httpx.post(
            f"{running.emulator_url}/_emulator/config", json={"rateLimit": "1000/1s"}, timeout=HTTP_TIMEOUT
        ).raise_for_status()
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack per module: modules provision the emulator tenant's few cohort users, which it remembers (a
    second provisioning of one user is Graph's ``Skipped``), so a stack shared across modules made each one's
    outcome depend on which modules ran before it (under pytest-xdist, in another order: ``Skipped`` where a
    test expected ``Create``)."""
    with app_stack(tmp_path_factory) as running:
        yield running


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[str]:
    """Azurite alone, on fresh ports, for a test of the Table adapters; its connection string."""
    with (tmp_path / "azurite.log").open("w") as log:
        alone = Stack(log=log)
        try:
            yield alone.start_azurite()
        finally:
            alone.stop()
