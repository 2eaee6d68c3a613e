"""Function and master keys, checked only when asked to (``DEVHOST_REQUIRE_KEYS=true``).

Core Tools does not check keys locally, and most local work relies on that, so the default is the same.
Tests of key handling switch checking on and then get the Azure rules: ``function`` routes take a
function key or the master key, ``admin`` routes only the master key, ``anonymous`` routes nothing; the
key comes from the ``code`` query parameter or the ``x-functions-key`` header.
"""

from __future__ import annotations

import hmac
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from devhost.settings import env_flag


@dataclass(frozen=True)
class KeyRing:
    """The keys in force; ``required`` False means every request is allowed (Core Tools' behaviour)."""

    required: bool
    function_key: str
    master_key: str

    def presented_key(self, query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        """The key a caller sent: header ``x-functions-key`` first, then query ``code``."""
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("x-functions-key") or query.get("code")

    def allows(self, auth_level: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        """Whether a request may reach a route of ``auth_level``."""
        level = auth_level.lower()
        if not self.required or level == "anonymous":
            return True
        key = self.presented_key(query, headers)
        if not key:
            return False
        if _same(key, self.master_key):
            return True
        return level == "function" and _same(key, self.function_key)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def load_keys(environ: Mapping[str, str], stderr: TextIO | None = None) -> KeyRing:
    """Build the key ring from ``DEVHOST_REQUIRE_KEYS``/``DEVHOST_FUNCTION_KEY``/``DEVHOST_MASTER_KEY``.

    When keys are required but not given, random ones are generated and printed to stderr so a developer
    can still call the app; they are never printed when checking is off.
    """
    required = env_flag("DEVHOST_REQUIRE_KEYS", environ)
    function_key = environ.get("DEVHOST_FUNCTION_KEY", "")
    master_key = environ.get("DEVHOST_MASTER_KEY", "")
    out = stderr if stderr is not None else sys.stderr
    if required and not function_key:
        function_key = secrets.token_urlsafe(32)
        print(f"devhost: generated function key: {function_key}", file=out, flush=True)
    if required and not master_key:
        master_key = secrets.token_urlsafe(32)
        print(f"devhost: generated master key: {master_key}", file=out, flush=True)
    return KeyRing(required=required, function_key=function_key, master_key=master_key)
