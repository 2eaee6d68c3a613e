"""App unit tests do no network I/O: opening a connection fails the test.

The few Graph-adapter tests that need azure-identity's real managed-identity client talk to the emulator's
identity endpoint on loopback; they ask for the ``loopback`` fixture, which lets connections to 127.0.0.1 and
::1 through and still refuses every other address.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def loopback() -> None:
    """Allow connections to loopback addresses in this test (an in-process stand-in)."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    allow_loopback = "loopback" in request.fixturenames
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def refuse(address: Any) -> None:
        if allow_loopback and isinstance(address, tuple) and address and address[0] in _LOOPBACK:
            return
        raise AssertionError(
            "app unit tests open no network connection: use a fake of the port, or an integration test"
        )

    def connect(self: socket.socket, address: Any) -> None:
        refuse(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse(address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        refuse(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
