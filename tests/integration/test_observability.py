"""No token, identity secret or storage key in any log line, even at DEBUG, across a real flow."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from devhost.stack import AZURITE_ACCOUNT_KEY, Stack, free_port
from tests.integration.conftest import example_values
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration


def test_logs_hold_no_secrets_at_debug_level(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update({**example_values(), "DEVHOST_LOG_LEVEL": "DEBUG", "GRAPH_RATE_LIMIT": "1000/1s"})
    log_path = tmp_path / "debug.log"
    with log_path.open("w") as log, Stack(port=free_port(), env=env, log=log) as stack:
        header = stack.env["IDENTITY_HEADER"]
        token = httpx.get(
            f"{stack.emulator_url}/msi/token",
            params={"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"},
            headers={"X-IDENTITY-HEADER": header},
            timeout=HTTP_TIMEOUT,
        ).json()["access_token"]
        httpx.post(
            f"{stack.emulator_url}/_emulator/config",
            json={"faults": [{"operation": "provisionOnDemand", "status": 401, "times": 1}]},
            timeout=HTTP_TIMEOUT,
        ).raise_for_status()
        for user in ("c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"):
            posted = httpx.post(
                f"{stack.base_url}/api/provision",
                json={"target": "seed-scim-app", "subjects": [{"objectId": user, "objectTypeName": "User"}]},
                timeout=HTTP_TIMEOUT,
            )
            deadline = time.monotonic() + DEADLINE
            while httpx.get(posted.headers["Location"], timeout=HTTP_TIMEOUT).status_code == 202:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    text = log_path.read_text()
    assert "provisionOnDemand" in text or "graph call" in text, "the log holds the flow"
    assert token not in text
    assert "azure.core.pipeline.policies.http_logging_policy" in text, "the SDKs' own DEBUG lines were captured"
    assert "Authorization': 'REDACTED'" in text or "Authorization" not in text
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", text), "a JWT was logged"
    assert not re.search(r"Bearer\s+[A-Za-z0-9._-]{20,}", text), "a bearer token was logged"
    assert header not in text, "the managed-identity secret was logged"
    assert AZURITE_ACCOUNT_KEY not in text, "the storage key was logged"
