"""Callback POSTs that can only reach what ``CALLBACK_ALLOWED_HOSTS`` names.

Server-side request forgery is the risk of any "call me back" feature, so every POST: resolves the host
itself and refuses it when *any* address it resolves to is not allowed (private, loopback, link-local,
reserved: only public addresses, loopback only when the list names localhost / 127.0.0.1), connects only
to the addresses it checked (the resolver hands aiohttp exactly those, so a second DNS answer cannot swap
them), never follows a redirect, ignores proxy settings, uses explicit timeouts, and reads at most a few
KiB of the answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from shared.core.ports import CallbackResult

if TYPE_CHECKING:
    from shared.core.callbacks import CallbackPolicy

CONNECT_TIMEOUT_SECONDS = 5.0
TOTAL_TIMEOUT_SECONDS = 20.0
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "provision-on-demand-callback/1"


class AddressRefused(OSError):
    """The host resolves to an address the allow-list does not name."""


class _CheckedResolver(AbstractResolver):
    """Resolves like the system does, then refuses the host unless every address is allowed."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[Any] = []
        for fam, _type, proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if not self._policy.address_allowed(host.lower(), address):
                raise AddressRefused(f"{host} resolves to {address}, which callbacks may not reach")
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            results.append(
                {"hostname": host, "host": address, "port": sockaddr[1], "family": fam, "proto": proto, "flags": flags}
            )
        if not results:
            raise AddressRefused(f"{host} did not resolve")
        return results

    async def close(self) -> None:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpCallbackClient:
    """POSTs JSON callbacks under the allow-list."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy

    async def post(self, url: str, body: bytes) -> CallbackResult:
        """One attempt; never raises for what the receiver or the network did."""
        problem = self._policy.url_problem(url)
        host = (urlsplit(url).hostname or "").lower()
        if problem is None and _is_ip(host) and not self._policy.address_allowed(host, host):
            problem = f"{host} is not an address callbacks may reach"
        if problem is not None:
            return CallbackResult(False, None, f"callbackUrl {problem}", permanent=True)
        connector = aiohttp.TCPConnector(resolver=_CheckedResolver(self._policy), use_dns_cache=False, limit=1)
        timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
                session.post(url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                await response.content.read(MAX_RESPONSE_BYTES)
                status = response.status
        except AddressRefused as exc:
            return CallbackResult(False, None, str(exc), permanent=True)
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, AddressRefused):
                return CallbackResult(False, None, str(cause), permanent=True)
            return CallbackResult(False, None, f"could not connect: {type(cause).__name__}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # the type only: an exception's text may quote the URL, whose query is the caller's secret
            return CallbackResult(False, None, f"request failed: {type(exc).__name__}")
        if 200 <= status < 300:
            return CallbackResult(True, status)
        if 300 <= status < 400:
            return CallbackResult(False, status, f"answered {status}; redirects are not followed", permanent=True)
        permanent = 400 <= status < 500 and status not in (408, 425, 429)
        return CallbackResult(False, status, f"answered {status}", permanent=permanent)
