"""The whole local stack in one process tree: Azurite, the Graph emulator and the devhost.

``scripts/start`` runs this in the foreground; the integration tests use :class:`Stack` as a fixture, so
what a newcomer runs and what CI tests is the same code. Whatever is configured from outside is used as
is and not started: ``AzureWebJobsStorage`` set → no Azurite; ``GRAPH_BASE_URL`` set → no emulator (then
``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` must point at that Graph stand-in's identity endpoint too).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.request import urlopen

from devhost.settings import env_flag

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a child may take to listen / print its ready line. Generous: on a loaded 2-core machine importing
#: the Azure SDKs alone can take tens of seconds; a healthy start never waits this long.
START_TIMEOUT_SECONDS = 120.0
#: Seconds Azurite keeps an idle connection open (its default is 5). The Azure SDKs' aiohttp pools reuse an
#: idle connection for up to 15 s, so with 5 s a request could go out on a connection Azurite was closing:
#: "Connection reset by peer", which the SDK does not retry for a write (a 503 from intake). On a loaded
#: machine the client's event loop notices the close late, and that happened. Real Azure Storage does not
#: drop a connection after 5 idle seconds.
AZURITE_KEEP_ALIVE_SECONDS = 120
#: The audience local callers ask tokens for when ``DEVHOST_EASYAUTH`` is on and no audience is configured.
LOCAL_AUDIENCE = "api://provision-on-demand-local"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


#: Ports this process handed out already: the kernel may give a closed probe's port again at once, and a
#: stack asks for four before any is bound (CI once saw Azurite exit on a port the same stack had been given).
_HANDED_OUT: set[int] = set()


AZURITE_START_TRIES = 3


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1, never one this process handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def azurite_connection_string(blob: int, queue: int, table: int) -> str:
    """The well-known Azurite development account on the given ports."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{queue}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{table}/devstoreaccount1;"
    )


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on port {port} within {timeout:.0f} s")


def _pump(stream: IO[str], sink: IO[str], prefix: str) -> None:
    for line in stream:
        sink.write(f"{prefix}{line}")
        sink.flush()


def _wait_ready(proc: subprocess.Popen[str], marker: str, timeout: float, sink: IO[str], prefix: str) -> str:
    """Read the child's stdout until its ready line; then keep forwarding its output in a thread."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(marker):
                threading.Thread(target=_pump, args=(proc.stdout, sink, prefix), daemon=True).start()
                return line[len(marker) :].strip()
            sink.write(f"{prefix}{line}")
        elif proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{prefix.strip()} did not become ready (exit code {proc.poll()})")


@dataclass
class Stack:
    """Starts what the environment does not already provide, and stops it again."""

    app_dir: Path = ROOT
    port: int = 7071
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    emulator_args: list[str] = field(default_factory=list)
    azurite_location: Path | None = None
    #: Azurite prints one access-log line per storage request to the stack's log (benches count them).
    azurite_access_log: bool = False
    log: IO[str] = sys.stderr
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    base_url: str = ""
    emulator_url: str | None = None

    def _spawn(self, args: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            args,
            cwd=self.app_dir,
            env=dict(env or self.env),
            stdout=subprocess.PIPE,
            stderr=None if self.log is sys.stderr else subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def start_azurite(self) -> str:
        """Azurite (blob, queue, table) on free ports; returns its connection string.

        Tried again on fresh ports if it exits before listening: another process may bind a port between
        :func:`free_port` and Azurite (suites run many stacks on one machine).
        """
        for attempt in range(AZURITE_START_TRIES):
            try:
                return self._start_azurite_once()
            except RuntimeError:
                if attempt == AZURITE_START_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_azurite_once(self) -> str:
        blob, queue, table = free_port(), free_port(), free_port()
        # devhost/azurite.js: Azurite as its own CLI starts it, with its queue GC's sweep (which blocks it for
        # 20-37 s once 20,000 messages went through) every 30 minutes instead of every minute
        args = [
            shutil.which("node") or "node", str(Path(__file__).with_name("azurite.js")),
            *(() if self.azurite_access_log else ("--silent",)), "--disableTelemetry", "--skipApiVersionCheck",
            "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
            "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table),
            *(f"--{service}KeepAliveTimeout={AZURITE_KEEP_ALIVE_SECONDS}" for service in ("blob", "queue", "table")),
        ]  # fmt: skip
        if self.azurite_location is None:
            args.append("--inMemoryPersistence")
        else:
            self.azurite_location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.azurite_location)]
        proc = self._spawn(args)
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, self.log, "[azurite] "), daemon=True).start()
        for port in (blob, queue, table):
            _wait_for_port(port, proc, START_TIMEOUT_SECONDS)
        return azurite_connection_string(blob, queue, table)

    def start_emulator(self, identity_header: str) -> str:
        """The Graph emulator on a free port; returns its base URL."""
        args = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0", *self.emulator_args]
        env = {**self.env, "EMULATOR_IDENTITY_HEADER": identity_header}
        proc = self._spawn(args, env)
        return _wait_ready(proc, "EMULATOR_READY", START_TIMEOUT_SECONDS, self.log, "[emulator] ")

    def start(self) -> Stack:
        """Start the stack; the devhost last, once what it needs is up."""
        try:
            if not self.env.get("AzureWebJobsStorage"):
                self.env["AzureWebJobsStorage"] = self.start_azurite()
            if not self.env.get("GRAPH_BASE_URL"):
                header = secrets.token_urlsafe(24)
                self.emulator_url = self.start_emulator(header)
                self.env["GRAPH_BASE_URL"] = f"{self.emulator_url}/beta"
                self.env["IDENTITY_ENDPOINT"] = f"{self.emulator_url}/msi/token"
                self.env["IDENTITY_HEADER"] = header
            if env_flag("DEVHOST_EASYAUTH", self.env):
                self._trust_emulator_issuer()
            args = [
                sys.executable, "-m", "devhost", "--app-dir", str(self.app_dir),
                "--host", "127.0.0.1", "--port", str(self.port),
            ]  # fmt: skip
            proc = self._spawn(args)
            self.base_url = _wait_ready(proc, "DEVHOST_READY", START_TIMEOUT_SECONDS, self.log, "[devhost] ")
        except BaseException:
            self.stop()
            raise
        return self

    def _trust_emulator_issuer(self) -> None:
        """Easy Auth locally: the devhost trusts the emulator's Entra tenant unless an issuer is configured."""
        self.env.setdefault("DEVHOST_EASYAUTH_AUDIENCES", LOCAL_AUDIENCE)
        if self.env.get("DEVHOST_EASYAUTH_ISSUER") or not self.emulator_url:
            return
        with urlopen(f"{self.emulator_url}/_emulator/config", timeout=10) as answer:  # noqa: S310 (our own http URL)
            tenant = json.load(answer)["tenantId"]
        self.env["DEVHOST_EASYAUTH_ISSUER"] = f"{self.emulator_url}/{tenant}/v2.0"

    def add_worker(self, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Another devhost instance without HTTP: a scaled-out worker sharing the same storage."""
        args = [sys.executable, "-m", "devhost", "--app-dir", str(self.app_dir), "--no-http"]
        proc = self._spawn(args, {**self.env, **(extra_env or {})})
        _wait_ready(proc, "DEVHOST_READY", START_TIMEOUT_SECONDS, self.log, f"[worker-{len(self.processes)}] ")
        return proc

    def stop(self) -> None:
        """SIGTERM every child (newest first), then SIGKILL what does not exit."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``scripts/start``: run the stack in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m devhost.stack", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_PORT") or 7071))
    parser.add_argument("--azurite-location", type=Path, default=ROOT / ".azurite")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(port=args.port, azurite_location=args.azurite_location)
    with stack:
        url = stack.base_url
        print(f"\nThe app is running at {url}/api", flush=True)
        if stack.emulator_url:
            print(f"Graph emulator: {stack.emulator_url} (calls received: {stack.emulator_url}/_emulator/calls)")
        if stack.env.get("DEVHOST_EASYAUTH_ISSUER"):
            issuer = stack.env["DEVHOST_EASYAUTH_ISSUER"]
            print(
                f"Entra imitation (DEVHOST_EASYAUTH): issuer {issuer}, audience "
                f"{stack.env['DEVHOST_EASYAUTH_AUDIENCES']}; see docs/auth.md for getting a token"
            )
        print(
            "\nTry it:\n"
            f"  curl -si -X POST {url}/api/provision -H 'Content-Type: application/json' \\\n"
            '    -d \'{"target": "seed-scim-app", "subjects": [{"objectId": '
            '"9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}]}\'\n'
            f"  curl -s {url}/api/provision/<requestId>\n\nCtrl+C stops everything.",
            flush=True,
        )
        while not stopping.wait(0.5):
            if any(p.poll() is not None for p in stack.processes):
                print("a child process exited; stopping the stack", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
