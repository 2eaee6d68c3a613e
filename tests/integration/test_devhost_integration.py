"""The devhost against a real Azurite: HTTP routing and keys, queue semantics, timers, admin invoke.

Each test runs ``python -m devhost`` as a subprocess on ``tests/devhost_app`` (exactly how scripts use
it) against one Azurite per module, with its own queue names so tests cannot see each other's messages.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.stack import AZURITE_KEEP_ALIVE_SECONDS
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT
from tests.paths import ROOT

pytestmark = pytest.mark.integration

APP_DIR = ROOT / "tests" / "devhost_app"
AZURITE = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh in-memory Azurite on free ports; yields its connection string."""
    if not AZURITE.exists():
        pytest.fail("azurite is not installed: run scripts/bootstrap (scripts/test does)")
    ports = [_free_port() for _ in range(3)]
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--silent",
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(ports[0]),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(ports[1]),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(ports[2]),
            *(f"--{service}KeepAliveTimeout={AZURITE_KEEP_ALIVE_SECONDS}" for service in ("blob", "queue", "table")),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        for port in ports:
            _wait_port(port, deadline)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{ports[0]}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{ports[1]}/devstoreaccount1;"
            f"TableEndpoint=http://127.0.0.1:{ports[2]}/devstoreaccount1;"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Devhost:
    """A running ``python -m devhost`` subprocess."""

    proc: subprocess.Popen[str]
    url: str
    record: Path
    stderr_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def events(self) -> list[dict[str, Any]]:
        """Everything the fixture app recorded so far."""
        if not self.record.exists():
            return []
        lines = self.record.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stderr(self) -> str:
        """The devhost's log output so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


DevhostFactory = Callable[..., Devhost]


@pytest.fixture
def queue_name() -> str:
    """A queue name unique to the test."""
    return f"work-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def start_devhost(azurite: str, tmp_path: Path, queue_name: str) -> Iterator[DevhostFactory]:
    """Start devhost subprocesses (stopped at teardown); all share one record file per test."""
    started: list[Devhost] = []
    record = tmp_path / "record.jsonl"

    def start(*args: str, extra_env: dict[str, str] | None = None, http: bool = True) -> Devhost:
        env = {
            **os.environ,
            "AzureWebJobsStorage": azurite,  # the environment wins over local.settings.json
            "WORK_QUEUE": queue_name,
            "DEVHOST_TEST_RECORD": str(record),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        if "DEVHOST_REQUIRE_KEYS" not in (extra_env or {}):
            env.pop("DEVHOST_REQUIRE_KEYS", None)  # keys off unless the test asks, like Core Tools
        stderr_path = tmp_path / f"devhost-{len(started)}.log"
        cmd = [sys.executable, "-m", "devhost", "--app-dir", str(APP_DIR), "--port", "0", *args]
        if not http:
            cmd.append("--no-http")
        with open(stderr_path, "w", encoding="utf-8") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("DEVHOST_READY "):
            proc.kill()
            proc.wait()
            raise AssertionError(f"devhost did not start: {line!r}\n{stderr_path.read_text()}")
        host = Devhost(proc, line.split(" ", 1)[1], record, stderr_path, env)
        started.append(host)
        return host

    yield start
    for host in started:
        if host.proc.poll() is None:
            host.proc.kill()
            host.proc.wait()
        if host.proc.stdout is not None:
            host.proc.stdout.close()


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """Tiny HTTP client returning status, all header values, body (no raising on 4xx/5xx)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310 - local test URL
            hdrs: dict[str, list[str]] = {}
            for k, v in resp.headers.items():
                hdrs.setdefault(k.lower(), []).append(v)
            return resp.status, hdrs, resp.read()
    except urllib.error.HTTPError as exc:
        hdrs = {}
        for k, v in exc.headers.items():
            hdrs.setdefault(k.lower(), []).append(v)
        return exc.code, hdrs, exc.read()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def b64_client(conn: str, name: str) -> QueueClient:
    """A sender that base64-encodes, as the Functions host expects."""
    return QueueClient.from_connection_string(conn, name, message_encode_policy=TextBase64EncodePolicy())


def raw_client(conn: str, name: str) -> QueueClient:
    """A client that sends and reads message text as-is."""
    return QueueClient.from_connection_string(conn, name)


def queue_texts(conn: str, name: str) -> list[str]:
    """Peek at up to 32 visible messages' raw text (empty if the queue does not exist)."""
    client = raw_client(conn, name)
    try:
        return [str(m.content) for m in client.peek_messages(max_messages=32)]
    except Exception:
        return []


def test_http_routes_request_and_response(start_devhost: DevhostFactory) -> None:
    host = start_devhost("--functions", "items,files,boom")
    status, headers, body = http(
        "POST",
        f"{host.url}/api/items/42/bob?x=1&x=2",
        b"hello",
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    assert status == 201
    assert headers["content-type"] == ["application/json"]
    assert headers["x-test"] == ["yes"]
    assert headers["set-cookie"] == ["a=1"]
    data = json.loads(body)
    assert data["route"] == {"id": "42", "name": "bob"}
    assert data["params"] == {"x": "1,2"}
    assert data["body"] == "hello"
    assert data["method"] == "POST"
    assert data["url"].endswith("/api/items/42/bob?x=1&x=2")
    assert data["function_name"] == "items"
    assert data["trace_parent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert data["invocation_id"] in host.stderr()  # logs carry the invocation id

    status, _, body = http("GET", f"{host.url}/api/items/7")
    assert status == 201
    assert json.loads(body)["route"] == {"id": "7"}
    assert http("GET", f"{host.url}/api/items/abc")[0] == 404  # {id:int} constraint
    assert http("DELETE", f"{host.url}/api/items/7")[0] == 404  # a method the route does not take: no route
    assert http("GET", f"{host.url}/api/nowhere")[0] == 404
    assert http("GET", f"{host.url}/api/admin-only")[0] == 404  # not hosted (--functions)

    status, headers, body = http("GET", f"{host.url}/api/files/a/b%20c.txt")
    assert status == 200
    assert body == b"a/b c.txt"
    assert headers["content-type"] == ["text/plain; charset=utf-8"]
    assert headers["set-cookie"] == ["b=2", "c=3"]

    status, _, body = http("GET", f"{host.url}/api/boom")
    assert (status, body) == (500, b"")
    logs = host.stderr()
    assert "secret detail" in logs  # traceback logged…
    assert "hello" not in logs  # …but never request bodies
    assert host.stop() == 0


def test_keys_off_by_default_and_enforced_when_required(start_devhost: DevhostFactory) -> None:
    open_host = start_devhost("--functions", "items,admin_only")
    assert http("GET", f"{open_host.url}/api/items/1")[0] == 201
    assert http("GET", f"{open_host.url}/api/admin-only")[0] == 200
    open_host.stop()

    host = start_devhost(
        "--functions",
        "items,files,admin_only,tick",
        extra_env={
            "DEVHOST_REQUIRE_KEYS": "true",
            "DEVHOST_FUNCTION_KEY": "fkey",  # the old name of DEVHOST_HOST_KEY: every function takes it
            "DEVHOST_MASTER_KEY": "mkey",
            "DEVHOST_FUNCTION_KEYS": '{"items": "items-key", "admin_only": "admin-fn-key"}',
        },
    )
    assert http("GET", f"{host.url}/api/items/1")[0] == 401
    assert http("GET", f"{host.url}/api/items/1?code=wrong")[0] == 401
    assert http("GET", f"{host.url}/api/items/1?code=fkey")[0] == 201
    assert http("GET", f"{host.url}/api/items/1", headers={"x-functions-key": "mkey"})[0] == 201
    assert http("GET", f"{host.url}/api/items/1?code=items-key")[0] == 201  # its own function key
    assert http("GET", f"{host.url}/api/items/1?code=admin-fn-key")[0] == 401  # another function's key
    assert http("GET", f"{host.url}/api/admin-only?code=admin-fn-key")[0] == 401  # admin level: master only
    assert http("GET", f"{host.url}/admin/host/status?code=fkey")[0] == 401
    assert http("GET", f"{host.url}/admin/host/status?code=mkey")[0] == 200
    assert http("GET", f"{host.url}/api/files/x")[0] == 200  # anonymous
    assert http("GET", f"{host.url}/api/admin-only?code=fkey")[0] == 401
    assert http("GET", f"{host.url}/api/admin-only?code=mkey")[0] == 200
    admin = f"{host.url}/admin/functions/tick"
    assert http("POST", admin, b'{"input": ""}', {"x-functions-key": "fkey"})[0] == 401
    assert http("POST", admin, b'{"input": ""}', {"x-functions-key": "mkey"})[0] == 202
    logs = host.stderr()
    assert "fkey" not in logs  # keys (given, not generated) never reach the logs
    assert "mkey" not in logs


def test_queue_trigger_gets_decoded_body_and_dequeue_count(
    start_devhost: DevhostFactory, azurite: str, queue_name: str
) -> None:
    host = start_devhost("--functions", "work", http=False)
    assert host.url == "none"
    b64_client(azurite, queue_name).send_message('{"hello": "wörld"}')
    wait_for(lambda: any(e["event"] == "done" for e in host.events()), DEADLINE, "the queue function")
    start = host.events()[0]
    assert start["body"] == '{"hello": "wörld"}'
    assert start["dequeue_count"] == 1
    wait_for(
        lambda: raw_client(azurite, queue_name).get_queue_properties().approximate_message_count == 0,
        DEADLINE,
        "the message to be deleted",
    )
    assert host.stop() == 0


def test_failing_message_retried_then_poisoned(start_devhost: DevhostFactory, azurite: str, queue_name: str) -> None:
    host = start_devhost("--functions", "work", http=False)
    b64_client(azurite, queue_name).send_message("fail please")
    wait_for(lambda: queue_texts(azurite, f"{queue_name}-poison") != [], DEADLINE, "the poison queue")
    starts = [e for e in host.events() if e["event"] == "start"]
    assert [e["dequeue_count"] for e in starts] == [1, 2, 3]  # maxDequeueCount 3 in host.json
    assert queue_texts(azurite, f"{queue_name}-poison") == [base64.b64encode(b"fail please").decode()]
    assert queue_texts(azurite, queue_name) == []


def test_a_message_already_past_max_dequeue_count_is_poisoned_without_invocation(
    start_devhost: DevhostFactory, azurite: str, queue_name: str
) -> None:
    """The WebJobs QueueProcessor checks dequeueCount > maxDequeueCount (3 here) on receipt, before running."""
    sender = b64_client(azurite, queue_name)
    sender.create_queue()
    sender.send_message("worn out")
    reader = raw_client(azurite, queue_name)
    for expected in (1, 2, 3):  # three deliveries that never finished (e.g. instances that died)
        (message,) = list(reader.receive_messages(max_messages=1, visibility_timeout=1))
        assert message.dequeue_count == expected
        reader.update_message(message, pop_receipt=message.pop_receipt, visibility_timeout=0)
    host = start_devhost("--functions", "work", http=False)
    wait_for(lambda: queue_texts(azurite, f"{queue_name}-poison") != [], 15, "the poison queue")
    assert queue_texts(azurite, f"{queue_name}-poison") == [base64.b64encode(b"worn out").decode()]
    assert host.events() == []  # the function never ran for the fourth delivery
    assert "without running work" in host.stderr()


def test_invalid_base64_is_poisoned_without_invocation(
    start_devhost: DevhostFactory, azurite: str, queue_name: str
) -> None:
    host = start_devhost("--functions", "work", http=False)
    raw_client(azurite, queue_name).send_message("this is not base64!")
    wait_for(lambda: queue_texts(azurite, f"{queue_name}-poison") != [], DEADLINE, "the poison queue")
    assert queue_texts(azurite, f"{queue_name}-poison") == ["this is not base64!"]
    time.sleep(0.3)
    assert host.events() == []


def test_killed_mid_invocation_message_redelivered_after_lease(
    start_devhost: DevhostFactory, azurite: str, queue_name: str
) -> None:
    lease = {"DEVHOST_QUEUE_LEASE_SECONDS": "2"}
    first = start_devhost("--functions", "work", http=False, extra_env=lease)
    b64_client(azurite, queue_name).send_message("sleep-once:30")
    wait_for(lambda: len(first.events()) == 1, DEADLINE, "the first delivery")
    first.proc.kill()
    first.proc.wait()
    killed_at = time.monotonic()
    second = start_devhost("--functions", "work", http=False, extra_env=lease)
    wait_for(lambda: any(e["event"] == "done" for e in second.events()), DEADLINE, "the redelivery")
    starts = [e for e in second.events() if e["event"] == "start"]
    assert [e["dequeue_count"] for e in starts] == [1, 2]
    assert starts[1]["pid"] == second.proc.pid
    assert time.monotonic() - killed_at >= 0.5  # it waited for the lease, not redelivered at once
    assert second.stop() == 0


def test_lease_is_renewed_while_the_function_runs(start_devhost: DevhostFactory, azurite: str, queue_name: str) -> None:
    host = start_devhost("--functions", "work", http=False, extra_env={"DEVHOST_QUEUE_LEASE_SECONDS": "1"})
    b64_client(azurite, queue_name).send_message("sleep:2.5")
    wait_for(lambda: any(e["event"] == "done" for e in host.events()), DEADLINE, "the slow invocation")
    time.sleep(0.5)
    assert [e["event"] for e in host.events()] == ["start", "done"]  # never redelivered meanwhile
    assert queue_texts(azurite, queue_name) == []


def test_timer_fires_on_schedule(start_devhost: DevhostFactory) -> None:
    host = start_devhost("--functions", "tick", http=False, extra_env={"TICK_SCHEDULE": "*/1 * * * * *"})
    wait_for(lambda: len(host.events()) >= 2, DEADLINE, "two timer runs")
    runs = host.events()
    assert all(e["fn"] == "tick" and e["past_due"] is False for e in runs)
    assert runs[1]["at"] - runs[0]["at"] >= 0.5
    assert host.stop() == 0


def test_admin_invokes_queue_and_timer_functions(start_devhost: DevhostFactory, azurite: str, queue_name: str) -> None:
    host = start_devhost("--functions", "work,tick,items")
    status, _, _ = http(
        "POST",
        f"{host.url}/admin/functions/work",
        json.dumps({"input": "from admin"}).encode(),
        {"content-type": "application/json"},
    )
    assert status == 202
    status, _, _ = http("POST", f"{host.url}/admin/functions/tick", b'{"input": ""}')
    assert status == 202
    wait_for(lambda: {e["fn"] for e in host.events()} == {"work", "tick"}, DEADLINE, "admin invocations")
    work = next(e for e in host.events() if e["fn"] == "work")
    assert work["body"] == "from admin"
    assert http("POST", f"{host.url}/admin/functions/nope", b"{}")[0] == 404
    assert http("POST", f"{host.url}/admin/functions/items", b"{}")[0] == 400


def test_indexing_error_fails_startup(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.route(route='x')\n"
        "def x(_req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse('x')\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "devhost", "--app-dir", str(tmp_path), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode != 0
    assert "DEVHOST_READY" not in proc.stdout
    assert "declared in Python but not in function.json" in proc.stderr
