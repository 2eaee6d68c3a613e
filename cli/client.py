"""The provisioning API over HTTP: one ``httpx.Client`` per command, explicit timeouts, problems as errors.

Every call goes through :meth:`ApiClient.send`, which turns what can go wrong into a :class:`CliError` with
its exit code: no answer or a timeout (``UNAVAILABLE``), 401/403 (``UNAUTHORISED``), 5xx (``UNAVAILABLE``),
any other 4xx (``USAGE``, with the API's problem+json and its offending fields). Credentials travel only in
headers (``x-functions-key`` or ``Authorization: Bearer``), never in a URL, and never to another origin
than ``--base-url``: a ``nextLink`` elsewhere is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from cli.errors import CliError, ExitCode, ProblemDetails
from shared.core import ids

JsonObject = dict[str, object]

DEFAULT_BASE_URL = "http://127.0.0.1:7071"
#: Seconds one HTTP exchange may take (connect, send, wait, read): the app answers in milliseconds; a batch
#: of 1,000 takes a few seconds; a cold Flex Consumption instance can take tens.
DEFAULT_TIMEOUT = 60.0
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Refresh an Entra token this many seconds before it expires (a ``--watch`` can outlive one).
_TOKEN_MARGIN_SECONDS = 300


class AccessTokenLike(Protocol):
    """What ``azure.core.credentials.AccessToken`` carries."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenSource(Protocol):
    """``azure.core.credentials.TokenCredential``'s one method that the CLI needs."""

    def get_token(self, *scopes: str) -> AccessTokenLike: ...


class EntraAuth(httpx.Auth):
    """``Authorization: Bearer`` from a credential for one scope, fetched once and refreshed before expiry."""

    def __init__(self, credential: TokenSource, scope: str, clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._token: AccessTokenLike | None = None

    def _current(self) -> str:
        if self._token is None or self._token.expires_on - _TOKEN_MARGIN_SECONDS <= self._clock():
            try:
                self._token = self._credential.get_token(self._scope)
            except Exception as exc:  # azure-identity raises ClientAuthenticationError and others; never the token
                raise CliError(
                    f"no Entra token for scope {self._scope}: {type(exc).__name__} (see `az login` or the "
                    "DefaultAzureCredential environment variables)",
                    ExitCode.UNAUTHORISED,
                ) from exc
        return self._token.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the bearer token to every request."""
        request.headers["Authorization"] = f"Bearer {self._current()}"
        yield request


def default_credential() -> TokenSource:
    """azure-identity's ``DefaultAzureCredential``: environment, workload or managed identity, Azure CLI…"""
    from azure.identity import DefaultAzureCredential

    credential: TokenSource = DefaultAzureCredential()
    return credential


@dataclass(frozen=True)
class Connection:
    """Where the API is and how to authenticate (the global options ``--base-url``, ``--key``, ``--entra-scope``)."""

    base_url: str = DEFAULT_BASE_URL
    key: str | None = field(default=None, repr=False)
    entra_scope: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def origin(self) -> tuple[str, str]:
        """``(scheme, host:port)`` of the base URL."""
        parts = urlsplit(self.base_url)
        return parts.scheme.lower(), parts.netloc.lower()

    def checked(self) -> Connection:
        """The connection if its base URL is usable and safe for its credentials, else a usage error."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CliError(f"--base-url must be an http(s) URL, not {redact(self.base_url)!r}", ExitCode.USAGE)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise CliError("--base-url takes no query, fragment or credentials: use --key", ExitCode.USAGE)
        if self.key and self.entra_scope:
            raise CliError("use either --key or --entra-scope, not both", ExitCode.USAGE)
        sends_secret = bool(self.key or self.entra_scope)
        if sends_secret and parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
            raise CliError(
                "refusing to send a key or token over plain http to a host other than localhost: use https",
                ExitCode.USAGE,
            )
        if not self.timeout > 0:
            raise CliError("--timeout must be more than 0 seconds", ExitCode.USAGE)
        return Connection(self.base_url.rstrip("/"), self.key, self.entra_scope, self.timeout)


def redact(url: str) -> str:
    """A URL fit to print: no query (where a ``code=`` key could travel) and no user information."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Answer:
    """A successful answer: status, headers that matter, and the JSON body (``None`` when there is none)."""

    status: int
    body: object
    location: str | None = None
    retry_after: float | None = None

    def json_object(self) -> JsonObject:
        """The body as a JSON object, or an error saying the API answered something else."""
        if not isinstance(self.body, dict):
            raise CliError(f"the API answered {self.status} without a JSON object", ExitCode.UNAVAILABLE)
        return self.body


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _body(response: httpx.Response) -> object:
    if not response.content:
        return None
    try:
        parsed: object = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return parsed


def _refusal(response: httpx.Response) -> CliError:
    problem = ProblemDetails.from_json(_body(response), response.status_code, response.reason_phrase)
    where = f"{response.request.method} {redact(str(response.request.url))}"
    if response.status_code in (401, 403):
        code = ExitCode.UNAUTHORISED
    elif response.status_code >= 500:
        code = ExitCode.UNAVAILABLE
    else:
        code = ExitCode.USAGE
    return CliError(f"{where}: {problem.lines()[0]}", code, problem)


class ApiClient:
    """The routes of the contract; one instance per command (it owns an ``httpx.Client``)."""

    def __init__(
        self,
        connection: Connection,
        *,
        transport: httpx.BaseTransport | None = None,
        credential_factory: Callable[[], TokenSource] = default_credential,
    ) -> None:
        self.connection = connection.checked()
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": "provisioning-cli/1"}
        if self.connection.key:
            headers["x-functions-key"] = self.connection.key
        auth = EntraAuth(credential_factory(), self.connection.entra_scope) if self.connection.entra_scope else None
        self._http = httpx.Client(
            base_url=self.connection.base_url,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(self.connection.timeout),
            transport=transport,
            follow_redirects=False,  # a redirect could carry the key elsewhere
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        expect: Sequence[int] = (200,),
    ) -> Answer:
        """One exchange; the answer when its status is one of ``expect``, else a :class:`CliError`."""
        content = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        where = f"{method} {redact(str(self._http.base_url.join(url)))}"
        try:
            response = self._http.request(method, url, params=params, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise CliError(
                f"{where}: no answer within {self.connection.timeout:g} s (--http-timeout)", ExitCode.UNAVAILABLE
            ) from exc
        except httpx.TransportError as exc:
            raise CliError(f"{where}: cannot reach the API ({type(exc).__name__})", ExitCode.UNAVAILABLE) from exc
        if response.status_code not in expect:
            if response.status_code < 400:
                raise CliError(f"{where}: unexpected answer {response.status_code}", ExitCode.UNAVAILABLE)
            raise _refusal(response)
        return Answer(
            status=response.status_code,
            body=_body(response),
            location=response.headers.get("Location"),
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    # The routes of the contract --------------------------------------------------------------------------------

    def submit(self, request: object) -> Answer:
        """``POST /api/provision``: ``202`` + ``Location`` + ``{"requestId", "status", "calls"}``."""
        return self.send("POST", "/api/provision", body=request, expect=(202,))

    def status(self, request_id: str) -> Answer:
        """``GET /api/provision/{id}``: ``202`` while pending, ``200`` when every call is finished."""
        return self.send("GET", f"/api/provision/{request_path(request_id)}", expect=(200, 202))

    def list_page(self, filters: Mapping[str, str]) -> Answer:
        """``GET /api/provision?…``: one page, ``{"value": [summary…], "nextLink"?}``."""
        return self.send("GET", "/api/provision", params=filters)

    def next_page(self, next_link: str) -> Answer:
        """Follow a ``nextLink``: only on the base URL's own origin, so the key never goes elsewhere."""
        parts = urlsplit(next_link)
        if (parts.scheme.lower(), parts.netloc.lower()) != self.connection.origin():
            raise CliError(
                f"nextLink points at {redact(next_link)}, not at --base-url's origin: not followed (set "
                "--base-url to the app's public URL, the one its links are built on)",
                ExitCode.UNAVAILABLE,
            )
        return self.send("GET", next_link)

    def retry(self, request_id: str) -> Answer:
        """``POST /api/provision/{id}/retry``: ``202`` + ``Location``; ``409`` when nothing failed."""
        return self.send("POST", f"/api/provision/{request_path(request_id)}/retry", expect=(202,))

    def cancel(self, request_id: str) -> Answer:
        """``POST /api/provision/{id}/cancel``: ``200`` with the request; ``409`` when already finished."""
        return self.send("POST", f"/api/provision/{request_path(request_id)}/cancel")

    def targets(self) -> Answer:
        """``GET /api/targets``: every configured target with its job status, backlog and drain estimate."""
        return self.send("GET", "/api/targets")

    def poison(self) -> Answer:
        """``GET /api/poison``: the messages of both poison queues with the ledger's reason for each."""
        return self.send("GET", "/api/poison")

    def requeue(self, queue: str, message_ids: Sequence[str]) -> Answer:
        """``POST /api/poison/requeue`` ``{"queue", "messageIds"?}``: moves them back, answers how many."""
        body: JsonObject = {"queue": queue}
        if message_ids:
            body["messageIds"] = list(message_ids)
        return self.send("POST", "/api/poison/requeue", body=body)

    def batch(self, requests: Sequence[object]) -> Answer:
        """``POST /api/provision/batch`` ``{"requests": […]}`` (≤ 1,000): one answer per item."""
        return self.send("POST", "/api/provision/batch", body={"requests": list(requests)})


def request_path(request_id: str) -> str:
    """A request id checked against the app's format before it goes into a URL path."""
    if not ids.is_request_id(request_id):
        raise CliError(f"{request_id!r} is not a request id (32 lowercase hex digits)", ExitCode.USAGE)
    return quote(request_id, safe="")
