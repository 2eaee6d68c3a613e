"""The SDKs' per-call logging stays out of Application Insights: real clients, a local HTTP server, INFO capture."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from devhost.stack import azurite_connection_string
from shared import telemetry


@pytest.fixture(autouse=True)
def restore_levels() -> Iterator[None]:
    """The worker's setup: root at INFO, SDK loggers untouched; put back whatever a test changed."""
    names = ["", *telemetry.SDK_LOGGERS]
    saved = {name: logging.getLogger(name).level for name in names}
    for name in telemetry.SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger().setLevel(logging.INFO)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


async def _one_storage_and_one_http_call(caplog: pytest.LogCaptureFixture) -> list[str]:
    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"odata.error": {"code": "ResourceNotFound"}}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    async with TestServer(app, host="127.0.0.1") as server:
        port = server.port
        assert port is not None
        conn = azurite_connection_string(port, port, port)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            async with TableClient.from_connection_string(conn, "ProvisioningRequests") as table:
                with contextlib.suppress(ResourceNotFoundError):
                    await table.get_entity("p", "r")
            async with httpx.AsyncClient() as client:
                await client.get(f"http://127.0.0.1:{port}/beta")
    # aiohttp.access is the stand-in server's own line, not the app's
    return [r.name for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith("aiohttp")]


async def test_sdk_http_lines_reach_info_until_the_app_quietens_them(
    caplog: pytest.LogCaptureFixture, loopback: None
) -> None:
    before = await _one_storage_and_one_http_call(caplog)
    assert "azure.core.pipeline.policies.http_logging_policy" in before  # request and response, every call
    assert "httpx" in before
    assert sorted(telemetry.quiet_sdk_logging()) == sorted(telemetry.SDK_LOGGERS)
    after = await _one_storage_and_one_http_call(caplog)
    assert after == []


def test_debug_and_explicit_levels_are_left_alone() -> None:
    logging.getLogger("httpx").setLevel(logging.INFO)  # someone asked for it
    assert "httpx" not in telemetry.quiet_sdk_logging()
    assert logging.getLogger("httpx").level == logging.INFO
    assert logging.getLogger("azure").level == logging.WARNING
    logging.getLogger("azure").setLevel(logging.NOTSET)
    logging.getLogger().setLevel(logging.DEBUG)  # PYTHON_ENABLE_DEBUG_LOGGING: audit everything
    assert telemetry.quiet_sdk_logging() == []
    assert logging.getLogger("azure").getEffectiveLevel() == logging.DEBUG
    logging.getLogger().setLevel(logging.WARNING)  # nothing at INFO goes anywhere: nothing to change
    assert telemetry.quiet_sdk_logging() == []
    assert logging.getLogger("azure").level == logging.NOTSET
