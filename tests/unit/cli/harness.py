"""Runs the CLI in-process (click's CliRunner) against a fake app behind ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from click.testing import CliRunner, Result

from cli.client import AccessTokenLike, TokenSource
from cli.main import Deps, cli

REQUEST_ID = "0192f1a0c0de7abc8def0123456789ab"
BASE = "http://127.0.0.1:7071"
Handler = Callable[[httpx.Request], httpx.Response]


def answer(status: int, body: object = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """A JSON answer (problem+json for 4xx/5xx)."""
    content_type = "application/problem+json" if status >= 400 else "application/json"
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": content_type, **(headers or {})})


def request_body(status: str, counts: Mapping[str, int], calls: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A status body as ``GET /api/provision/{id}`` answers it."""
    return {
        "requestId": REQUEST_ID,
        "source": "http",
        "target": "seed-scim-app",
        "status": status,
        "counts": {"queued": 0, "running": 0, "succeeded": 0, "skipped": 0, "failed": 0, **counts},
        "calls": list(calls),
    }


def problem(status: int, title: str, errors: Iterable[tuple[str, str]] = (), detail: str = "") -> dict[str, Any]:
    """A problem+json body as the app sends it."""
    body: dict[str, Any] = {"type": "https://x/problems/p", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = [{"pointer": p, "detail": d} for p, d in errors]
    return body


@dataclass
class Token:
    """An ``AccessToken`` stand-in."""

    token: str
    expires_on: int


@dataclass
class FakeCredential:
    """Hands out numbered tokens; records the scopes asked for."""

    expires_on: int = 2**40
    scopes: list[tuple[str, ...]] = field(default_factory=list)
    fail: bool = False

    def get_token(self, *scopes: str) -> AccessTokenLike:
        if self.fail:
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token")
        self.scopes.append(scopes)
        return Token(f"token-{len(self.scopes)}", self.expires_on)


@dataclass
class Run:
    """One CLI run: its result and every request the fake app received."""

    result: Result
    requests: list[httpx.Request]

    @property
    def code(self) -> int:
        return self.result.exit_code

    @property
    def out(self) -> str:
        return self.result.stdout

    @property
    def err(self) -> str:
        return self.result.stderr

    def json(self) -> Any:
        return json.loads(self.result.stdout)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


def run(
    args: list[str],
    handler: Handler | Iterable[httpx.Response] = (),
    *,
    env: Mapping[str, str] | None = None,
    credential: TokenSource | None = None,
    sleeps: list[float] | None = None,
) -> Run:
    """``provisioning ARGS`` with the fake app; ``handler`` a function or the answers in order."""
    seen: list[httpx.Request] = []
    if callable(handler):
        respond = handler
    else:
        queue = list(handler)

        def respond(request: httpx.Request) -> httpx.Response:
            assert queue, f"unexpected request {request.method} {request.url}"
            return queue.pop(0)

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return respond(request)

    deps = Deps(
        transport=httpx.MockTransport(handle),
        credential_factory=(lambda: credential) if credential is not None else FakeCredential,
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )
    clean = {"PROVISIONING_URL": None, "PROVISIONING_KEY": None, "PROVISIONING_ENTRA_SCOPE": None, "COLUMNS": "220"}
    result = CliRunner().invoke(cli, args, obj=deps, env={**clean, **(env or {})}, catch_exceptions=False)
    return Run(result, seen)
