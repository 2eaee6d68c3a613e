"""Host, function and master keys, checked only when asked to (``DEVHOST_REQUIRE_KEYS=true``).

Core Tools does not check keys locally, and most local work relies on that, so the default is the same.
Tests of key handling switch checking on and then get the Azure rules (the host's ``SecretManager`` and
``AuthorizationLevel``): a **function key** opens only its own function's ``function`` routes; a **host key**
opens every function's ``function`` routes; the **master key** opens everything, ``admin`` routes included;
``anonymous`` routes need nothing. The key comes from the ``x-functions-key`` header, else the ``code`` query
parameter (the header wins when both are sent).
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from devhost.settings import SettingsError, env_flag


@dataclass(frozen=True)
class KeyRing:
    """The keys in force; ``required`` False means every request is allowed (Core Tools' behaviour)."""

    required: bool
    host_key: str
    master_key: str
    function_keys: Mapping[str, str] = field(default_factory=dict)  # function name -> its own key

    def presented_key(self, query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        """The key a caller sent: header ``x-functions-key`` first, then query ``code``."""
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("x-functions-key") or query.get("code")

    def is_master(self, key: str) -> bool:
        """Whether ``key`` is the master key."""
        return bool(self.master_key) and _same(key, self.master_key)

    def allows(
        self, function_name: str | None, auth_level: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> bool:
        """Whether a request may reach a route of ``auth_level`` of ``function_name`` (None: a host API)."""
        level = auth_level.lower()
        if not self.required or level == "anonymous":
            return True
        key = self.presented_key(query, headers)
        if not key:
            return False
        if self.is_master(key):
            return True
        if level != "function":
            return False
        if self.host_key and _same(key, self.host_key):
            return True
        own = self.function_keys.get(function_name or "")
        return own is not None and _same(key, own)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def parse_function_keys(text: str) -> dict[str, str]:
    """``DEVHOST_FUNCTION_KEYS``: a JSON object of function name -> that function's own key."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"DEVHOST_FUNCTION_KEYS is not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in raw.items()):
        raise SettingsError('DEVHOST_FUNCTION_KEYS must be a JSON object like {"function_name": "its key"}')
    return dict(raw)


def load_keys(
    environ: Mapping[str, str], stderr: TextIO | None = None, functions: Collection[str] | None = None
) -> KeyRing:
    """The key ring from ``DEVHOST_REQUIRE_KEYS``, ``_HOST_KEY``, ``_FUNCTION_KEYS`` and ``_MASTER_KEY``.

    ``DEVHOST_FUNCTION_KEY`` is the old name of ``DEVHOST_HOST_KEY`` (a key every function accepts, which is
    what the host calls a host key). When keys are required but the host or master key is not given, a random
    one is generated and printed to stderr so a developer can still call the app; nothing is printed when
    checking is off. ``functions``, when given, are the indexed function names: a function key for any other
    name is a startup error, as a typo would otherwise lock a function out without a word.
    """
    required = env_flag("DEVHOST_REQUIRE_KEYS", environ)
    host_key = environ.get("DEVHOST_HOST_KEY") or environ.get("DEVHOST_FUNCTION_KEY", "")
    master_key = environ.get("DEVHOST_MASTER_KEY", "")
    function_keys = parse_function_keys(environ.get("DEVHOST_FUNCTION_KEYS", ""))
    if functions is not None:
        unknown = sorted(set(function_keys) - set(functions))
        if unknown:
            raise SettingsError(f"DEVHOST_FUNCTION_KEYS names functions that do not exist: {', '.join(unknown)}")
    out = stderr if stderr is not None else sys.stderr
    if required and not host_key:
        host_key = secrets.token_urlsafe(32)
        print(f"devhost: generated host key: {host_key}", file=out, flush=True)
    if required and not master_key:
        master_key = secrets.token_urlsafe(32)
        print(f"devhost: generated master key: {master_key}", file=out, flush=True)
    return KeyRing(required=required, host_key=host_key, master_key=master_key, function_keys=function_keys)
