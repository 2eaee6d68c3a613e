"""``python -m emulator`` keeps its contract: one ready line on stdout, a free port, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from emulator.ratelimit import RateLimit
from tests.paths import ROOT


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        return resp.status, json.loads(resp.read())


def test_cli_ready_line_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "EMULATOR_IDENTITY_HEADER": "from-env"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--rate-limit",
            "2/200ms",
            "--rate-scope",
            "job",
            "--identity-header",
            "from-flag",
            "--token-lifetime",
            "600",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("EMULATOR_READY http://127.0.0.1:")
        base = line.split(" ", 1)[1]
        assert int(base.rsplit(":", 1)[1]) > 0
        assert _get(f"{base}/_emulator/health") == (200, {"status": "ok"})
        _, config = _get(f"{base}/_emulator/config")
        assert config["rateLimit"] == "2/200ms"
        assert config["rateScope"] == "job"
        assert config["tokenLifetimeSeconds"] == 600
        status, token = _get(
            f"{base}/msi/token?api-version=2019-08-01&resource=https://graph.microsoft.com",
            {"X-IDENTITY-HEADER": "from-env"},
        )
        assert status == 200
        assert token["token_type"] == "Bearer"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(
    ("spec", "calls", "seconds", "text"),
    [("5/10s", 5, 10.0, "5/10s"), ("2/200ms", 2, 0.2, "2/200ms"), ("3/1.5s", 3, 1.5, "3/1500ms")],
)
def test_rate_limit_specs(spec: str, calls: int, seconds: float, text: str) -> None:
    limit = RateLimit.parse(spec)
    assert (limit.calls, limit.window_seconds, str(limit)) == (calls, seconds, text)


@pytest.mark.parametrize("spec", ["5", "5/s", "0/10s", "5/0s", "5/10m", "x/10s"])
def test_bad_rate_limit_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit.parse(spec)
