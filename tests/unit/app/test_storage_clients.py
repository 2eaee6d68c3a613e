"""The storage clients honour proxy variables only when some are set (aiohttp re-reads them on every request)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.storage_clients import StorageClients
from shared.settings import Settings

STORAGE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def transport_of(client: Any) -> Any:
    transport = client._client._client._pipeline._transport
    while hasattr(transport, "_transport"):  # the SDKs wrap the shared transport
        transport = transport._transport
    return transport


def no_identity(_client_id: str | None) -> Any:
    raise AssertionError("a connection string needs no identity")


CASES = [({}, False), ({"HTTPS_PROXY": "http://proxy:3128"}, True), ({"all_proxy": "http://p:1"}, True),
         ({"HTTPS_PROXY": ""}, False)]  # fmt: skip


@pytest.mark.parametrize(("env", "honoured"), CASES)
def test_proxy_variables_are_read_only_when_set(env: dict[str, str], honoured: bool) -> None:
    settings = Settings.from_environ({**STORAGE, **env})
    assert settings.env_proxies is honoured
    clients = StorageClients(settings, no_identity)
    for client in (clients.table("t"), clients.queue("q"), clients.queue("q", raw=True), clients.blobs()):
        assert transport_of(client)._use_env_settings is honoured
