"""Callback URLs: which ones a request may carry, which addresses a callback may reach, and when to retry (pure).

``CALLBACK_ALLOWED_HOSTS`` is a comma-separated list of host patterns (``*.logic.azure.com`` by default): an
exact host, or ``*.`` followed by a domain, which matches any host *below* that domain (not the domain
itself). A callback goes over https; plain http, loopback and private addresses only when the list names
``localhost`` or ``127.0.0.1`` explicitly (local runs, tests). The host is checked at intake, and every
address it resolves to is checked again right before each POST (a name that resolves to an internal address
is refused then), so a callback never reaches an address the list does not name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.core.errors import SettingsError
from shared.core.vocabulary import CallbackStatus

__all__ = ["CallbackStatus"]

DEFAULT_ALLOWED_HOSTS = "*.logic.azure.com"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1"})
MAX_URL_LENGTH = 2048
#: How long a callback is retried after the request finished.
WINDOW_SECONDS = 24 * 3600
#: Backoff between attempts: doubling from the first, capped.
FIRST_RETRY_SECONDS = 15.0
MAX_RETRY_SECONDS = 3600.0


_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


@dataclass(frozen=True)
class CallbackPolicy:
    """The parsed ``CALLBACK_ALLOWED_HOSTS``."""

    patterns: tuple[str, ...] = (DEFAULT_ALLOWED_HOSTS,)

    @classmethod
    def parse(cls, text: str | None) -> CallbackPolicy:
        """Parse the setting; raises :class:`SettingsError` naming it and the bad pattern."""
        raw = DEFAULT_ALLOWED_HOSTS if text is None or not text.strip() else text
        patterns: list[str] = []
        for part in raw.split(","):
            pattern = part.strip().lower()
            if not pattern:
                continue
            bare = pattern[2:] if pattern.startswith("*.") else pattern
            if not (_HOST.match(bare) and "." in bare) and pattern not in LOCAL_NAMES:
                raise SettingsError(
                    f"CALLBACK_ALLOWED_HOSTS: {pattern!r} is not a host name or '*.' followed by a domain "
                    "with at least two labels (or localhost / 127.0.0.1)"
                )
            patterns.append(pattern)
        if not patterns:
            raise SettingsError("CALLBACK_ALLOWED_HOSTS names no host")
        return cls(tuple(patterns))

    @property
    def allows_local(self) -> bool:
        """True when the list names localhost or 127.0.0.1: plain http and loopback are then allowed for them."""
        return any(p in LOCAL_NAMES for p in self.patterns)

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` (lower case) matches a pattern."""
        for pattern in self.patterns:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not be a callback, or None when it may (checked at intake)."""
        if len(url) > MAX_URL_LENGTH:
            return f"must be at most {MAX_URL_LENGTH} characters"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "is not a valid URL"
        host = (parts.hostname or "").lower()
        if not host or parts.username is not None or parts.password is not None or parts.fragment:
            return "must be an absolute URL with a host, without credentials or fragment"
        if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
            return "must not contain spaces or control characters"
        if not self.host_allowed(host):
            return f"host {host!r} is not allowed by CALLBACK_ALLOWED_HOSTS"
        if parts.scheme == "https":
            return None
        if parts.scheme == "http" and host in LOCAL_NAMES and port is not None:
            return None
        return "must be https (plain http only to localhost or 127.0.0.1 named in CALLBACK_ALLOWED_HOSTS)"

    def address_allowed(self, host: str, address: str) -> bool:
        """Whether a callback to ``host`` may connect to ``address`` (checked on every resolved address)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if host in LOCAL_NAMES and self.host_allowed(host):
            return ip.is_loopback
        return ip.is_global and not ip.is_multicast


def retry_delay(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1`` after ``attempts`` failed ones: 15 s doubling, capped at 1 h."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2.0 ** max(0, attempts - 1))
