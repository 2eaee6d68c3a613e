"""How the emulator answers on the wire: Graph's JSON responses, byte-for-byte replies and dropped connections.

Shared by the Graph routes and the managed identity route.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator.faults import FRONT_DOOR_HTML, Fault

__all__ = [
    "GRAPH_CONTENT_TYPE",
    "RawReply",
    "drop",
    "front_door_page",
    "json_response",
    "raw_answer",
    "raw_response",
]

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with Graph's content type."""
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": GRAPH_CONTENT_TYPE, **(headers or {})},
    )


@dataclass(frozen=True)
class RawReply:
    """A reply sent byte for byte (a replayed capture, a front door's page, a bare status)."""

    status: int
    body: bytes
    headers: dict[str, str]


def raw_response(reply: RawReply, headers: dict[str, str]) -> web.Response:
    """The reply with the request ids added unless it carries its own."""
    merged = {**headers, **reply.headers}
    response = web.Response(status=reply.status, body=reply.body)
    # aiohttp would add a Content-Type of its own; a replay sends exactly the headers it was given.
    response.headers.popall("Content-Type", None)
    response.headers.update(merged)
    return response


def raw_answer(fault: Fault) -> RawReply:
    """A raw ``answer`` fault as the reply it replays."""
    assert fault.body is not None
    headers = dict(fault.headers)
    if fault.retry_after_header is not None:
        headers.setdefault("Retry-After", fault.retry_after_header)
    return RawReply(fault.status, fault.body, headers)


def front_door_page(fault: Fault) -> RawReply:
    """The HTML page a front door or proxy sends in the service's place."""
    return RawReply(fault.status, FRONT_DOOR_HTML.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering, like a load balancer dropping it mid-request."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError
