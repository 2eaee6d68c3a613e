"""The app against a Graph stand-in that is not this project's emulator, and an Azurite of its own.

The stand-in below knows only what a minimal fake would: the App Service managed-identity endpoint and
provisionOnDemand, answering seed 003's documented bodies. Everything else (GET job, GET schema) is a 404,
as it might be anywhere. The app must still deliver the three seed examples end to end, with the ledger
holding Graph's documented outcome fields, and make exactly one provisionOnDemand call per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from devhost.stack import Stack, free_port
from tests.fixtures import SEED_OUTCOMES, SEED_REQUESTS, seed_response
from tests.integration.conftest import example_values
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

TARGETS = {1: "seed-scim-app", 2: "seed-cloud-sync", 3: "seed-group-app"}


class StandIn:
    """A tiny Graph stand-in running on its own event loop in a thread."""

    def __init__(self, identity_header: str) -> None:
        self.identity_header = identity_header
        self.tokens: set[str] = set()
        self.calls: list[dict[str, Any]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return web.json_response({"error": "unauthorized"}, status=401)
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        return web.json_response(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": request.query.get("resource", ""),
                "token_type": "Bearer",
            }
        )

    async def provision(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        body = await request.json()
        self.calls.append({"path": request.path, "body": body, "bearer": auth.removeprefix("Bearer ") in self.tokens})
        if auth.removeprefix("Bearer ") not in self.tokens:
            return web.json_response({"error": {"code": "InvalidAuthenticationToken", "message": "no"}}, status=401)
        subject = body["parameters"][0]["subjects"][0]["objectId"]
        for example, seed in SEED_REQUESTS.items():
            if seed["subject"]["objectId"] == subject:
                return web.json_response(seed_response(example), headers={"request-id": secrets.token_hex(8)})
        return web.json_response({"error": {"code": "Request_ResourceNotFound", "message": "?"}}, status=404)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "ResourceNotFound", "message": "not here"}}, status=404)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/identity/token", self.token)
        app.router.add_post(
            "/graph/beta/servicePrincipals/{sp}/synchronization/jobs/{job}/provisionOnDemand", self.provision
        )
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> StandIn:
        self._thread.start()
        assert self._ready.wait(DEADLINE), "the stand-in did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(secrets.token_urlsafe(16)) as running:
        yield running


def test_seed_examples_against_a_foreign_standin_and_separate_azurite(standin: StandIn, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(example_values())
    with (tmp_path / "foreign.log").open("w") as log:
        outside = Stack(env=dict(env), log=log)
        try:
            env["AzureWebJobsStorage"] = outside.start_azurite()
            env["GRAPH_BASE_URL"] = f"http://127.0.0.1:{standin.port}/graph/beta"
            env["IDENTITY_ENDPOINT"] = f"http://127.0.0.1:{standin.port}/identity/token"
            env["IDENTITY_HEADER"] = standin.identity_header
            with Stack(port=free_port(), env=env, log=log) as app:
                assert len(app.processes) == 1, "only the devhost is started"
                for example, target in TARGETS.items():
                    seed = SEED_REQUESTS[example]
                    posted = httpx.post(
                        f"{app.base_url}/api/provision",
                        json={"target": target, "subjects": [seed["subject"]]},
                        timeout=HTTP_TIMEOUT,
                    )
                    assert posted.status_code == 202, posted.text
                    deadline = time.monotonic() + DEADLINE
                    while (status := httpx.get(posted.headers["Location"], timeout=HTTP_TIMEOUT)).status_code == 202:
                        assert time.monotonic() < deadline, status.text
                        time.sleep(0.2)
                    (call,) = status.json()["calls"]
                    for field, value in SEED_OUTCOMES[example].items():
                        assert call.get(field) == value, (example, field)
                    log_view = httpx.get(
                        posted.headers["Location"], params={"include": "provisioningLog"}, timeout=HTTP_TIMEOUT
                    ).json()
                    assert log_view["calls"][0]["provisioningLog"] == seed_response(example)["value"]
        finally:
            outside.stop()
    assert [c["bearer"] for c in standin.calls] == [True, True, True]
    assert [c["body"] for c in standin.calls] == [
        {"parameters": [{"ruleId": SEED_REQUESTS[e]["ruleId"], "subjects": [SEED_REQUESTS[e]["subject"]]}]}
        for e in (1, 2, 3)
    ]
    assert json.dumps(standin.calls).count("provisionOnDemand") == 3
