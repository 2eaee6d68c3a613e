"""Idle latency: from POST /api/provision to a terminal status, against one direct SDK call.

Starts the local stack (Azurite, emulator, devhost) exactly as scripts/start does, lifts the rate limit in
both the app and the emulator so pacing does not count, then for N requests measures POST → 202 → polling
→ 200 over real HTTP. The baseline, in the same run, is one direct provisionOnDemand call through the
same SDK and credential: the floor that the app's queueing, ledger writes and polling add to.

    .venv/bin/python -m bench.latency [-n 20] [--poll-interval 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import httpx

from devhost.stack import ROOT, Stack, free_port
from shared.adapters.graph import GraphProvisioner
from shared.core.ports import GraphAnswer
from shared.settings import Settings

SUBJECT = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
SP, JOB, RULE = (
    "c8c95753-f628-48e1-9fab-76c2d4cf624c",
    "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
    "ea807875-5618-4f0a-9125-0b46a05298ca",
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _direct_calls(env: dict[str, str], n: int) -> list[float]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from azure.identity.aio import ManagedIdentityCredential

        async with ManagedIdentityCredential() as credential:
            graph = GraphProvisioner(Settings.from_environ(env), credential)
            await graph.provision_on_demand(SP, JOB, RULE, SUBJECT)  # warm: token, connection
            times = []
            for _ in range(n):
                start = time.perf_counter()
                result = await graph.provision_on_demand(SP, JOB, RULE, SUBJECT)
                times.append(time.perf_counter() - start)
                assert isinstance(result, GraphAnswer), result
        return times
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "GRAPH_BASE_URL")}
    env.update(json.loads((ROOT / "local.settings.example.json").read_text())["Values"])
    env["GRAPH_RATE_LIMIT"] = "100000/1s"  # idle latency, not pacing: neither the app nor the emulator may throttle
    with open(os.devnull, "w") as quiet, Stack(port=free_port(), env=env, log=quiet) as stack:
        assert stack.emulator_url
        httpx.post(
            f"{stack.emulator_url}/_emulator/config", json={"rateLimit": "100000/1s"}, timeout=60
        ).raise_for_status()
        totals: list[float] = []
        with httpx.Client(timeout=60) as client:
            for i in range(args.n + 1):
                start = time.perf_counter()
                posted = client.post(
                    f"{stack.base_url}/api/provision", json={"target": "seed-scim-app", "subjects": [SUBJECT]}
                )
                assert posted.status_code == 202, posted.text
                location = posted.headers["Location"]
                while (status := client.get(location)).status_code == 202:
                    time.sleep(args.poll_interval)
                assert status.status_code == 200, status.text
                if i:  # the first request warms the worker (imports msgraph, gets a token)
                    totals.append(time.perf_counter() - start)
        direct = asyncio.run(_direct_calls(stack.env, args.n))
    p50, p99 = statistics.median(totals), _pct(totals, 0.99)
    d50 = statistics.median(direct)
    print(f"requests: {args.n} sequential, idle, poll interval {args.poll_interval * 1000:.0f} ms")
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'POST -> terminal (app)':28}{p50 * 1000:>10.1f}{p99 * 1000:>10.1f}")
    print(f"{'direct SDK call (floor)':28}{d50 * 1000:>10.1f}{_pct(direct, 0.99) * 1000:>10.1f}")
    print(f"ratio app/floor (p50): {p50 / d50:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
