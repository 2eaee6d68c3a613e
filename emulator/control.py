"""The control API under ``/_emulator``: health, the call log, reset, state and runtime settings.

``POST /_emulator/config`` validates the whole patch before applying any of it, so a bad request changes
nothing; ``GET`` returns the settings in force.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from emulator.entra import parse_callers
from emulator.faults import Fault, retry_after_value
from emulator.ratelimit import RateLimit, RateScope
from emulator.responses import GraphError
from emulator.state import EMULATOR, Emulator
from emulator.tenant import JOB_STATUS_CODES, JobSpec

__all__ = ["add_control_routes"]

log = logging.getLogger("emulator")


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _calls(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    after = request.query.get("after", "0")
    if not (after.isascii() and after.isdigit()):
        return web.json_response({"error": "after must be a call's seq, a whole number"}, status=400)
    return web.json_response({"calls": emu.calls.list(request.query.get("operation"), int(after))})


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[EMULATOR].reset()
    log.info("reset")
    return web.json_response({"status": "reset"})


async def _state(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[EMULATOR].state.snapshot())


def _config_view(emu: Emulator) -> dict[str, Any]:
    return {
        "rateLimit": str(emu.limiter.limit),
        "rateScope": emu.rate_scope.value,
        "latencyMs": emu.latency_ms,
        "faults": emu.faults.to_json(),
        "jobStatus": {
            job.key: emu.state.job_state(job).status_override
            for job in emu.state.tenant.jobs()
            if emu.state.job_state(job).status_override is not None
        },
        "tokenLifetimeSeconds": emu.issuer.lifetime_seconds,
        "retryAfter": (
            None if emu.throttle_retry_after is None else ["none" if v is None else v for v in emu.throttle_retry_after]
        ),
        "tenantId": emu.entra.tenant_id,
        "callers": {c.client_id: {"roles": list(c.roles), "objectId": c.object_id} for c in emu.entra.callers.values()},
    }


def _apply_config(emu: Emulator, patch: Any) -> None:
    """Validate the whole patch first, then apply it, so a bad request changes nothing."""
    if not isinstance(patch, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(patch) - {
        "rateLimit",
        "rateScope",
        "faults",
        "clearFaults",
        "latencyMs",
        "jobStatus",
        "tokenLifetimeSeconds",
        "retryAfter",
        "callers",
    }
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    limit = RateLimit.parse(str(patch["rateLimit"])) if "rateLimit" in patch else None
    scope = RateScope(patch["rateScope"]) if "rateScope" in patch else None
    faults = [Fault.parse(f) for f in patch.get("faults", [])]
    latency = int(patch["latencyMs"]) if "latencyMs" in patch else None
    if latency is not None and latency < 0:
        raise ValueError("latencyMs must be >= 0")
    lifetime = int(patch["tokenLifetimeSeconds"]) if "tokenLifetimeSeconds" in patch else None
    throttle = _throttle_retry_after(patch["retryAfter"]) if "retryAfter" in patch else None
    callers = parse_callers(patch["callers"]) if "callers" in patch else None
    statuses: list[tuple[JobSpec, dict[str, Any] | None]] = []
    for key, value in dict(patch.get("jobStatus", {})).items():
        sp_id, _, job_id = str(key).partition("/")
        try:
            job = emu.find_job(sp_id, job_id)
        except GraphError as exc:
            raise ValueError(f"jobStatus: no job {key!r}") from exc
        status = {"code": value} if isinstance(value, str) else value
        if status is not None and (not isinstance(status, dict) or status.get("code") not in JOB_STATUS_CODES):
            raise ValueError(f"jobStatus[{key!r}]: code must be one of {JOB_STATUS_CODES}")
        statuses.append((job, status))
    if limit is not None:
        emu.limiter.configure(limit)
    if scope is not None:
        emu.rate_scope = scope
        emu.limiter.reset()
    if patch.get("clearFaults"):
        emu.faults.clear()
    emu.faults.add(faults)
    if latency is not None:
        emu.latency_ms = latency
    if lifetime is not None:
        emu.issuer.lifetime_seconds = lifetime
    if "retryAfter" in patch:
        emu.throttle_retry_after = throttle
        emu.throttle_turn = 0
    for job, status in statuses:
        emu.state.job_state(job).status_override = status
    if callers is not None:
        emu.entra.callers = callers  # the whole set: a caller left out can no longer get tokens


def _throttle_retry_after(raw: Any) -> list[float | str | None] | None:
    """``retryAfter``: null (the real wait), one value, or a list of values sent in turn by throttled calls."""
    if raw is None:
        return None
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ValueError("'retryAfter' must not be an empty list")
    return [retry_after_value(v) for v in values]


async def _get_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(_config_view(request.app[EMULATOR]))


async def _post_config(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    try:
        _apply_config(emu, json.loads(await request.read() or b"{}"))
    except (ValueError, TypeError, KeyError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(_config_view(emu))


def add_control_routes(router: web.UrlDispatcher) -> None:
    """The ``/_emulator/*`` routes tests and benches drive the emulator with."""
    router.add_get("/_emulator/health", _health)
    router.add_get("/_emulator/calls", _calls)
    router.add_post("/_emulator/reset", _reset)
    router.add_get("/_emulator/state", _state)
    router.add_get("/_emulator/config", _get_config)
    router.add_post("/_emulator/config", _post_config)
