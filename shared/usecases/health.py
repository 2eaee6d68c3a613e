"""The health probe: is our storage reachable, and does Graph's host answer at all."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from shared import telemetry
from shared.core.ports import HostProbe

log = telemetry.get_logger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HealthReport:
    """Each dependency by name (``storage``, ``graph``) and whether it answered."""

    checks: dict[str, str]

    @property
    def healthy(self) -> bool:
        return all(v == OK for v in self.checks.values())


class Health:
    """Pings storage and asks Graph's host for any answer (no token is spent: a 401 still proves reachability).

    ``storage_pings`` are called, not held: each builds its client on first use, so a storage client that
    cannot even be built is reported ``unreachable`` like one that does not answer.
    """

    def __init__(
        self, storage_pings: Sequence[Callable[[], Awaitable[None]]], probe: HostProbe, graph_base_url: str
    ) -> None:
        self._storage_pings = storage_pings
        self._probe = probe
        self._graph_base_url = graph_base_url

    async def check(self) -> HealthReport:
        checks = {"storage": OK, "graph": OK}
        try:
            for ping in self._storage_pings:
                await ping()
        except Exception:
            log.warning("health: storage unreachable", exc_info=True)
            checks["storage"] = UNREACHABLE
        if (await self._probe.get(self._graph_base_url)).status is None:
            checks["graph"] = UNREACHABLE
        return HealthReport(checks)
