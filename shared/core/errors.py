"""The app's own exceptions: one family under :class:`ProvisioningError` (pure).

Raised on purpose and documented where raised. Anything else that escapes (an ``AzureError``, an ``OSError``)
is a dependency failing, which the triggers turn into ``503``.
"""

from __future__ import annotations

import re


class ProvisioningError(Exception):
    """Root of every exception the app raises on purpose."""


class SettingsError(ProvisioningError, ValueError):
    """A setting is missing or malformed; the message starts with the setting's name and says why."""

    @property
    def setting(self) -> str:
        """The name of the broken setting (what the message starts with), safe to show: never its value."""
        match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", str(self))
        return match.group(0) if match else "settings"


class StaleWrite(ProvisioningError):
    """The entity changed since it was read (ETag mismatch): re-read and decide again."""


class StoreUnavailable(ProvisioningError):
    """Our own storage did not answer, or answered a server error: worth trying again shortly."""
