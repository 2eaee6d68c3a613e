"""Runs the ``provisioning`` CLI as its own process against a running stack, the way an operator does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from devhost.stack import ROOT, Stack
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT


@dataclass(frozen=True)
class Done:
    """A finished CLI process."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def provisioning(stack: Stack, *args: str, timeout: float = DEADLINE) -> Done:
    """``provisioning ARGS`` (``python -m cli``, what the installed command runs) with the stack's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    env.update({"PROVISIONING_URL": stack.base_url, "COLUMNS": "200", "PROVISIONING_HTTP_TIMEOUT": str(HTTP_TIMEOUT)})
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    return Done(proc.returncode, proc.stdout, proc.stderr)


def fail_next_call(stack: Stack, code: str = "EntryConflict") -> None:
    """The emulator answers the next provisionOnDemand with Graph's Failure-in-a-200 (final, never retried)."""
    key = json.dumps({"result": "Failure", "details": {"errorCode": code, "errorMessage": "Two users match"}})
    value = json.dumps(
        {"action": "Create", "changeId": "c-cli", "statusInfo": {"status": "Failure", "errorCode": code}}
    )
    httpx.post(
        f"{stack.emulator_url}/_emulator/config",
        json={"clearFaults": True, "faults": [{"kind": "answer", "key": key, "value": value}]},
        timeout=HTTP_TIMEOUT,
    ).raise_for_status()
