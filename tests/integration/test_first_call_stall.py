"""A cold process's first Graph call must not block its event loop (the SDK is thousands of modules).

Measured in a fresh subprocess (tests/integration/first_call_probe.py): while the first call runs through the
app's own ``Runtime.graph``, an HTTP GET served on the same event loop must answer in under 200 ms. Before
the fix, the call imported about 2,900 modules on the event loop and the GET waited 6 to 12 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from devhost.stack import ROOT

pytestmark = pytest.mark.integration

#: Modules the event loop's thread may import during the first call (the adapter's own small modules).
MAX_MODULES_ON_LOOP = 40


def probe() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.first_call_probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_get_answers_in_under_200_ms_during_a_cold_first_graph_call() -> None:
    runs = []
    # A loaded machine can delay any one GET by itself; a stall caused by the call shows in every run,
    # so up to three runs are made and the best one must be under 200 ms.
    for _ in range(3):
        run = probe()
        runs.append(run)
        assert run["result"] == "JobStatus(code='Active', reason=None)", run
        assert run["modulesImportedOnLoop"] <= MAX_MODULES_ON_LOOP, run
        assert run["gets"] >= 3, run
        if run["maxGetMs"] < 200 and run["maxGapMs"] < 200:
            break
    assert min(r["maxGetMs"] for r in runs) < 200, runs
    assert min(r["maxGapMs"] for r in runs) < 200, runs
