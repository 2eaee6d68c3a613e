"""Absolute links the app hands out (``Location``), and whether the caller's function key may travel in them.

Where a link points: ``PUBLIC_BASE_URL`` when it is set (the Bicep sets it to the app's https host name), so
a forged ``Host`` or ``X-Forwarded-Host`` can never send pollers (and the key they carry) elsewhere; only
when it is unset (local runs) the scheme and host of the request's own URL.

Which key travels: Logic Apps polls ``Location`` exactly as given and does not resend the ``code`` of the
first request's URI, so a key the caller sent as ``?code=`` is copied into ``Location``, pointing only at
the same app. A key sent in ``x-functions-key`` never is (that caller resends its header). The master key
never travels: ``shared.usecases.admin_keys`` asks the host (through the ``HostProbe`` port) whether the key
is admin-level, once per key and process, and a key that is (or that the host would not say) stays out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

from shared.usecases.admin_keys import AdminKeyCheck

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix


def base_url(request_url: str, public_base_url: str | None) -> str:
    """Where links point: ``PUBLIC_BASE_URL``, else the request's own scheme and host (local runs)."""
    if public_base_url:
        return public_base_url.rstrip("/")
    parts = urlsplit(request_url)
    return f"{parts.scheme}://{parts.netloc}"


def api_url(base: str, *segments: str, key: str | None = None) -> str:
    """``{base}/api/{segments}``, each segment percent-encoded, with ``?code=`` when a key travels."""
    path = "/".join(quote(segment, safe="") for segment in segments)
    url = f"{base}/{ROUTE_PREFIX}/{path}"
    return f"{url}?{urlencode({'code': key})}" if key else url


_KEY = re.compile(r"[\x21-\x7e]{1,512}")  # host keys are base64url-like; anything else is no key of ours


def query_key(params: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The key the host read from the query (``code``), or None when it read a header (that one wins).

    A value that cannot be a key (empty, spaces, control or non-ASCII characters) is None too: the host would
    have refused it in Azure, and it could not travel in a URL or a header as it is.
    """
    if headers.get("x-functions-key"):
        return None
    code = params.get("code") or ""
    return code if _KEY.fullmatch(code) else None


async def travelling_key(
    params: Mapping[str, str], headers: Mapping[str, str], base: str, admin_keys: AdminKeyCheck
) -> str | None:
    """The key to copy into links for this request: from ``?code=`` only, and never the master key."""
    key = query_key(params, headers)
    if key is None:
        return None
    authorization = headers.get("authorization") or None
    return key if await admin_keys.may_travel(base, key, authorization) else None
