"""The devhost stack's ports: never the same one twice, and Azurite started again when a port was taken."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import stack as stack_module
from devhost.stack import Stack, free_port

pytestmark = pytest.mark.integration


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_azurite_is_started_again_on_fresh_ports_when_one_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        real = stack_module.free_port

        def ports() -> Iterator[int]:
            yield busy  # blob: someone else listens there, so Azurite exits
            while True:
                yield real()

        handed = ports()
        monkeypatch.setattr(stack_module, "free_port", lambda: next(handed))
        with (tmp_path / "azurite.log").open("w") as log:
            running = Stack(log=log)
            try:
                connection = running.start_azurite()
            finally:
                running.stop()
        assert f":{busy}/" not in connection
        assert "BlobEndpoint=http://127.0.0.1:" in connection
