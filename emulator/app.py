"""The emulator's aiohttp application: shared state plus the routes, one module per concern.

- ``emulator.token_route``: the App Service managed identity endpoint (``/msi/token``);
- ``emulator.entra``: Entra's client-credentials token endpoint for the app's own callers (``/{tenant}/…``);
- ``emulator.control``: the control API (``/_emulator/*``);
- ``emulator.graph_routes``: Graph (``/beta`` and ``/v1.0``) and its front-door pipeline;
- ``emulator.state``: the ``Emulator`` every route shares; ``emulator.replies``: how answers go on the wire.
"""

from __future__ import annotations

from aiohttp import web

from emulator.calls import CallLog
from emulator.config import EmulatorConfig
from emulator.control import add_control_routes
from emulator.directory_routes import add_directory_routes
from emulator.entra import EntraIssuer, add_entra_routes
from emulator.faults import FaultQueue
from emulator.graph_routes import add_graph_routes
from emulator.identity import TokenIssuer
from emulator.ratelimit import RateLimiter
from emulator.state import EMULATOR, Emulator
from emulator.tenant import TenantState, load_tenant
from emulator.token_route import add_token_route

__all__ = ["EMULATOR", "Emulator", "EmulatorConfig", "create_app"]


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """Build the emulator's aiohttp application (used by ``python -m emulator`` and by in-process tests)."""
    config = config or EmulatorConfig()
    tenant = load_tenant(config.tenant_path)
    emulator = Emulator(
        config=config,
        state=TenantState(tenant),
        issuer=TokenIssuer(
            tenant_id=tenant.tenant_id,
            default_client_id=tenant.default_client_id,
            lifetime_seconds=config.token_lifetime_seconds,
        ),
        limiter=RateLimiter(config.parsed_rate_limit()),
        rate_scope=config.parsed_rate_scope(),
        faults=FaultQueue(),
        calls=CallLog(),
        latency_ms=config.latency_ms,
        entra=EntraIssuer(tenant.tenant_id),
    )
    app = web.Application()
    app[EMULATOR] = emulator
    # Registration order matters: each version's catch-all 400 comes after that version's operations.
    add_token_route(app.router)
    add_control_routes(app.router)
    add_directory_routes(app)
    add_graph_routes(app.router)
    add_entra_routes(app.router)  # last: its paths start with the tenant id, never with a Graph version
    return app
