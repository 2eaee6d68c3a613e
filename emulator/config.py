"""Start-up settings of the emulator, shared by the CLI and by tests that run it in-process."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from emulator.ratelimit import RateLimit, RateScope
from emulator.tenant import DEFAULT_TENANT_PATH

DEFAULT_RATE_LIMIT = "5/10s"
DEFAULT_TOKEN_LIFETIME_SECONDS = 86_400


@dataclass
class EmulatorConfig:
    """What ``create_app`` needs; every field has the CLI's default."""

    tenant_path: Path = DEFAULT_TENANT_PATH
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    rate_limit: str = DEFAULT_RATE_LIMIT
    rate_scope: str = RateScope.TENANT.value
    token_lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS
    latency_ms: int = 0

    def parsed_rate_limit(self) -> RateLimit:
        """The rate limit, checked (raises ``ValueError`` on a bad spec)."""
        return RateLimit.parse(self.rate_limit)

    def parsed_rate_scope(self) -> RateScope:
        """The rate scope, checked (raises ``ValueError`` on anything but tenant/job)."""
        return RateScope(self.rate_scope)
