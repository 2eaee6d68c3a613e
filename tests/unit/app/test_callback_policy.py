"""CALLBACK_ALLOWED_HOSTS: which callback URLs intake takes, and which addresses a callback may reach.

Also the callback client itself against an in-process receiver on loopback: allowed only when the setting
names 127.0.0.1, never redirected, a small answer read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.callback_http import HttpCallbackClient
from shared.contract.problems import Problem
from shared.core.callbacks import CallbackPolicy, retry_delay
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.settings import Settings
from shared.usecases import intake

DEFAULT = CallbackPolicy.parse(None)
LOCAL = CallbackPolicy.parse("127.0.0.1, *.logic.azure.com")
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(
    prefix=st.lists(_LABEL, min_size=1, max_size=3),
    path=st.from_regex(r"(/[A-Za-z0-9_.~-]{0,12}){0,3}", fullmatch=True),
)
@settings(max_examples=150, deadline=None)
def test_https_below_logic_azure_com_is_allowed_by_default(prefix: list[str], path: str) -> None:
    host = ".".join(prefix) + ".logic.azure.com"
    assert DEFAULT.url_problem(f"https://{host}{path}?api-version=2016-06-01&sig=x") is None


@given(host=st.lists(_LABEL, min_size=1, max_size=4).map(".".join))
@settings(max_examples=150, deadline=None)
def test_any_other_host_is_refused(host: str) -> None:
    if host.endswith(".logic.azure.com"):
        return
    problem = DEFAULT.url_problem(f"https://{host}/cb")
    assert problem is not None
    assert "CALLBACK_ALLOWED_HOSTS" in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://x.logic.azure.com/cb",  # plain http
        "https://logic.azure.com/cb",  # the domain itself is not below it
        "https://x.logic.azure.com.evil.example/cb",
        "https://evil.example/x.logic.azure.com",
        "https://user:pw@x.logic.azure.com/cb",
        "https://x.logic.azure.com/cb#frag",
        "https://x.logic.azure.com:99999/cb",
        "ftp://x.logic.azure.com/cb",
        "https://127.0.0.1/cb",
        "http://localhost:8080/cb",  # localhost not named
        "https://x.logic.azure.com/c b",
        "https://x.logic.azure.com/" + "a" * 2100,
    ],
)
def test_unsafe_or_unlisted_callback_urls_are_refused(url: str) -> None:
    assert DEFAULT.url_problem(url) is not None


def test_plain_http_to_loopback_only_when_the_setting_names_it() -> None:
    assert LOCAL.url_problem("http://127.0.0.1:8080/cb") is None
    assert LOCAL.url_problem("http://localhost:8080/cb") is not None  # names 127.0.0.1, not localhost
    assert CallbackPolicy.parse("localhost").url_problem("http://localhost:9/cb") is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("20.50.2.1", True),
        ("10.0.0.4", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),  # the instance metadata endpoint
        ("100.64.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_only_public_addresses_are_reachable_for_a_named_host(address: str, allowed: bool) -> None:
    assert DEFAULT.address_allowed("x.logic.azure.com", address) is allowed


def test_loopback_is_reachable_only_for_the_loopback_name_the_setting_lists() -> None:
    assert LOCAL.address_allowed("127.0.0.1", "127.0.0.1")
    assert not LOCAL.address_allowed("127.0.0.1", "10.0.0.1")
    assert not LOCAL.address_allowed("x.logic.azure.com", "127.0.0.1")


@pytest.mark.parametrize("text", ["*", "*.com", "exa mple.com", "*.", "https://x.logic.azure.com", ", ,"])
def test_a_bad_allow_list_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(SettingsError, match=r"^CALLBACK_ALLOWED_HOSTS"):
        CallbackPolicy.parse(text)


def test_settings_read_the_allow_list_and_the_event_grid_endpoint() -> None:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "CALLBACK_ALLOWED_HOSTS": "hooks.example.com"}
    parsed = Settings.from_environ(env)
    assert parsed.callback_policy.patterns == ("hooks.example.com",)
    assert parsed.eventgrid_topic_endpoint is None
    endpoint = "https://t.westeurope-1.eventgrid.azure.net/api/events"
    assert Settings.from_environ({**env, "EVENTGRID_TOPIC_ENDPOINT": endpoint}).eventgrid_topic_endpoint == endpoint
    with pytest.raises(SettingsError, match=r"^EVENTGRID_TOPIC_ENDPOINT"):
        Settings.from_environ({**env, "EVENTGRID_TOPIC_ENDPOINT": "http://t.eventgrid.azure.net/api/events"})


def test_retry_delays_double_and_are_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [15.0, 30.0, 60.0]
    assert retry_delay(40) == 3600.0


def test_intake_refuses_a_callback_outside_the_allow_list_naming_callbackUrl() -> None:
    parsed = Settings.from_environ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    body = {"subjects": [{"objectId": "u1", "objectTypeName": "User"}], "callbackUrl": "https://evil.example/cb"}
    request = ProvisioningRequest.model_validate(body)
    with pytest.raises(Problem) as caught:
        intake.check_callback(request, parsed)
    assert caught.value.status == 400
    assert [e.pointer for e in caught.value.errors] == ["/callbackUrl"]


# --- the client, against a receiver on loopback -----------------------------------------------------------------


@pytest.fixture
async def receiver(loopback: None) -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def callback(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=202, body=b"x" * 100_000)

    async def redirect(request: web.Request) -> web.Response:
        received.append(b"redirected")
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere")

    app = web.Application()
    app.add_routes([web.post("/cb", callback), web.post("/redirect", redirect)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", received
    await runner.cleanup()


async def test_the_client_posts_json_to_an_allowed_loopback_receiver(receiver: tuple[str, list[bytes]]) -> None:
    base, received = receiver
    result = await HttpCallbackClient(LOCAL).post(f"{base}/cb", json.dumps({"a": 1}).encode())
    assert (result.delivered, result.http_status) == (True, 202)
    assert [json.loads(b) for b in received] == [{"a": 1}]


async def test_the_client_never_follows_a_redirect(receiver: tuple[str, list[bytes]]) -> None:
    base, received = receiver
    result = await HttpCallbackClient(LOCAL).post(f"{base}/redirect", b"{}")
    assert not result.delivered
    assert result.permanent
    assert result.http_status == 302
    assert received == [b"redirected"]


async def test_the_client_refuses_loopback_the_setting_does_not_name(receiver: tuple[str, list[bytes]]) -> None:
    base, received = receiver
    port = base.rsplit(":", 1)[1]
    # localhost is allowed as a name here, but resolves to loopback, which only a named loopback may reach
    policy = CallbackPolicy.parse("*.logic.azure.com")
    result = await HttpCallbackClient(policy).post(f"http://localhost:{port}/cb", b"{}")
    assert not result.delivered
    assert result.permanent
    assert received == []


async def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(
    receiver: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, received = receiver
    port = int(base.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()

    async def rebinding(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        return [(2, 1, 6, "", ("10.1.2.3", port)), (2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    result = await HttpCallbackClient(DEFAULT).post(f"https://x.logic.azure.com:{port}/cb", b"{}")
    assert not result.delivered
    assert result.permanent
    assert "10.1.2.3" in (result.error or "")
    assert received == []
