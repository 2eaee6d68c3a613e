"""User principal names: the strict format a subject's ``userPrincipalName`` must have (pure).

Entra's rules: ``local@domain``; the local part 1-64 characters of letters, digits and ``' . - _ ! # ^ ~``
(no leading, trailing or doubled ``.``; guests look like ``jane_contoso.com#EXT#@tenant.onmicrosoft.com``),
the domain 1-48 characters of DNS labels with at least one dot, 113 characters in all. Nothing that could
change the meaning of a Graph URL (``/``, ``?``, ``%``, spaces, ``$`` at the start) gets through.
"""

from __future__ import annotations

import re

MAX_LENGTH = 113
_LOCAL = re.compile(r"[A-Za-z0-9'_!#^~-]+(\.[A-Za-z0-9'_!#^~-]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})+")


def is_user_principal_name(value: str) -> bool:
    """True when ``value`` is a well-formed UPN."""
    if len(value) > MAX_LENGTH or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return (
        0 < len(local) <= 64
        and 0 < len(domain) <= 48
        and _LOCAL.fullmatch(local) is not None
        and _DOMAIN.fullmatch(domain) is not None
    )
