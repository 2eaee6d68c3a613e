"""The devhost stack's ports: never the same one twice, and Azurite started again when a port was taken."""

from __future__ import annotations

import socket
import subprocess
import time
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


def test_the_stacks_azurite_sweeps_its_queue_every_30_minutes(tmp_path: Path) -> None:
    """devhost/azurite.js: Azurite's queue GC blocks it for 20-37 s once 20,000 messages went through, every
    minute by default; the stack's Azurite sleeps 30 minutes between sweeps (read from Azurite's own debug log)."""
    debug = tmp_path / "debug.log"
    wrapper = Path(stack_module.__file__).with_name("azurite.js")
    ports = [str(free_port()) for _ in range(3)]
    args = ["node", str(wrapper), "--silent", "--disableTelemetry", "--inMemoryPersistence", "--debug", str(debug)]
    args += ["--blobPort", ports[0], "--queuePort", ports[1], "--tablePort", ports[2]]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "QueueGCManager:markSweepLoop() Sleep for" not in (debug.read_text() if debug.exists() else ""):
            assert proc.poll() is None, "Azurite exited"
            assert time.monotonic() < deadline, "Azurite's queue GC never went to sleep"
            time.sleep(0.2)
        text = debug.read_text()
        assert "QueueGCManager:markSweepLoop() Sleep for 1800000" in text
        assert "Sleep for 1800000ms" in text, "the blob GC too"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
