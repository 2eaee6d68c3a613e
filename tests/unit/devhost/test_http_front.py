"""The devhost's HTTP front end hands every path to the host's own route matching, control characters included.

The host (ASP.NET Core routing) matches decoded segments, and a segment may hold any character but '/', so
``/api/provision/a%0Ab/retry`` reaches the function with ``requestId='a\\nb'`` and the app answers it. A catch-all
aiohttp pattern of ``.*`` stops at a decoded newline and answered aiohttp's own text/plain 404 instead
(schemathesis found it with ``a%0Ab%0Dc%C2%85d…``).
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from devhost.http_server import HttpFrontEnd
from devhost.indexing import FunctionSpec
from devhost.keys import KeyRing
from devhost.routes import kestrel_unescape
from tests.unit.devhost.recording import RecordingInvoker


def spec(name: str, route: str) -> FunctionSpec:
    trigger = {"route": route, "methods": ["GET", "POST"], "authLevel": "anonymous"}
    return FunctionSpec(name, "http", trigger, lambda: None, "req", wants_context=False, is_async=True)


async def test_control_characters_in_a_segment_reach_the_function_decoded() -> None:
    invoker = RecordingInvoker()
    front = HttpFrontEnd([spec("operator", "provision/{requestId?}/{action?}")], "api", invoker, KeyRing(False, "", ""))
    raw = "a%0Ab%0Dc%C2%85d%0Be%0Cf%E2%80%A8g%E2%80%A9h%0D%0Ai"
    async with TestClient(TestServer(front.make_app())) as client:
        answer = await client.post(f"/api/provision/{raw}/retry?code={raw}")
        assert answer.status == 200, await answer.text()
        assert (await client.get("/api/provision/%0A")).status == 200
        assert (await client.get("/api/elsewhere%0A")).status == 404
    invoker.close()
    first = invoker.requests[0]
    assert first.route_params == {"requestId": "a\nb\rc\x85d\x0be\x0cf\u2028g\u2029h\r\ni", "action": "retry"}
    assert invoker.requests[1].route_params == {"requestId": "\n"}


def test_an_escaped_slash_stays_escaped_as_kestrel_leaves_it() -> None:
    assert kestrel_unescape("a%2Fb%2fc%20d%0A") == "a%2Fb%2fc d\n"
    assert kestrel_unescape("%252F") == "%2F", "decoded once"
