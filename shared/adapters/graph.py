"""The Graph adapter: provisionOnDemand (and the two reads the worker needs) through msgraph-beta-sdk.

Why the SDK's request builders and not a hand-built URL: ids reach the path only through
``by_service_principal_id`` / ``by_synchronization_job_id`` (which escape them), and the body is the SDK's
typed model, so what we send is what Graph's metadata describes. The SDK's RetryHandler is switched off for
every call (``RetryHandlerOption(max_retries=0)``): it would otherwise re-send the POST on 429/503/504 behind
our back, spending the rate budget and blocking the worker. Every attempt is ours.

Why the answer is read from the raw HTTP response (kiota's ``NativeResponseHandler``) and not from the SDK's
parsed model: the SDK silently turns a ``key`` or ``value`` that is not a JSON string into None, raises on a
200 that is HTML or plain text, and hands headers over as ``httpx.Headers`` whose values are whole strings.
Reading the response ourselves keeps the raw evidence of every odd answer and reads ``Retry-After`` and
``request-id`` whole. Nothing Graph, the network or the managed identity does escapes as an exception: every
outcome is a :class:`GraphAnswer` or a :class:`GraphFailure` with the evidence.

Why the two reads (GET job, GET schema) are read from their JSON and not from the SDK's models: the
SDK's ``SynchronizationJob`` and ``SynchronizationSchema`` derive from ``Entity``, and parsing the first one
imports about 2,500 modules (every Entity subclass), seconds of CPU and ~65 MB, for the five fields the
worker needs; and the models silently read a field of the wrong JSON type as absent.

Why nothing heavy runs on the event loop: even without those models, the SDK (httpx, kiota, msgraph-core and
the request builders) is several hundred modules. It is imported in a worker thread (once per process,
started early by :func:`start_sdk_import`) and the client is built in a thread, so HTTP requests on the same
event loop keep being answered while the first Graph call warms up.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared import telemetry
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus
from shared.core.rules import RuleInfo
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential

log = telemetry.get_logger(__name__)
_T = TypeVar("_T")

#: The most raw response text kept as evidence (characters); the rest is cut and marked.
RAW_BODY_LIMIT = 64 * 1024


# --- headers ----------------------------------------------------------------------------------------------

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds (``10``), fractional seconds (``2.128``) or an HTTP-date.

    RFC 9110 §10.2.3 allows a number of seconds or an HTTP-date; Graph's throttling guidance shows whole
    seconds and a documented sample a fractional value. A date in the past means "now" (0). Anything else,
    including non-ASCII digits, is not a Retry-After: None, so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        delta = (when - (now or datetime.now(UTC))).total_seconds()
    except OverflowError:
        return None
    return max(0.0, delta)


def header_value(headers: Any, name: str) -> str | None:
    """One header's whole value from ``httpx.Headers``, kiota's ``HeadersCollection`` or a plain mapping.

    Header names compare case-insensitively. A header sent more than once is combined with ", " (RFC 9110
    §5.3), as ``httpx.Headers.get`` does. None when absent.
    """
    if headers is None:
        return None
    lowered = name.lower()
    raw: Any
    if hasattr(headers, "get_list") or hasattr(headers, "try_get"):
        # httpx.Headers (a str per name, already combined) or kiota's HeadersCollection (a set per name)
        raw = headers.get(lowered)
    elif isinstance(headers, Mapping):
        raw = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    else:
        return None
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw.decode("latin-1")
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Iterable):
        values = sorted(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in raw)
        return ", ".join(values) if values else None
    return str(raw)


# --- loading the SDK off the event loop ---------------------------------------------------------------------

_sdk_lock = threading.Lock()
_sdk_future: Future[None] | None = None


def _import_sdk() -> None:
    """Import what a Graph call needs (runs in a thread)."""
    import httpx  # noqa: F401
    from kiota_abstractions.native_response_handler import NativeResponseHandler  # noqa: F401
    from kiota_authentication_azure.azure_identity_authentication_provider import (  # noqa: F401
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption  # noqa: F401
    from msgraph_beta.graph_request_adapter import GraphRequestAdapter  # noqa: F401
    from msgraph_beta.graph_service_client import GraphServiceClient  # noqa: F401

    _request_body("r", {"objectId": "o", "objectTypeName": "User"})
    # What the first request would otherwise import lazily on the event loop: httpx's async network backend
    # and azure-core's aiohttp response types (used for the first token).
    for module in ("anyio._backends._asyncio", "anyio.streams.tls", "azure.core.rest._aiohttp"):
        with contextlib.suppress(ImportError):  # an optional backend: the first request imports what it needs
            importlib.import_module(module)


def _run_import(future: Future[None]) -> None:
    started = time.perf_counter()
    try:
        _import_sdk()
    except BaseException as exc:  # reported to every waiter, so none waits forever
        future.set_exception(exc)
        return
    future.set_result(None)
    log.info("graph SDK loaded off the event loop", extra={"seconds": round(time.perf_counter() - started, 2)})


def start_sdk_import() -> Future[None]:
    """Start importing the Graph SDK in a background thread (once per process); the future of that import.

    Safe to call from anywhere, with or without an event loop: the app calls it when its runtime is built,
    so the import is usually done before the first work item arrives.
    """
    global _sdk_future
    with _sdk_lock:
        if _sdk_future is None:
            _sdk_future = Future()
            threading.Thread(target=_run_import, args=(_sdk_future,), name="graph-sdk-import", daemon=True).start()
        return _sdk_future


async def sdk_ready() -> None:
    """Wait, without blocking the event loop, until the Graph SDK is imported."""
    await asyncio.wrap_future(start_sdk_import())


# --- the managed identity, as the SDK sees it -------------------------------------------------------------


class _IdentityUnavailable(Exception):
    """The credential gave no token; carries the failure to record (raised through kiota to the adapter)."""

    def __init__(self, failure: GraphFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def managed_identity_credential(client_id: str | None) -> AsyncTokenCredential:
    """The app's managed identity for Graph, with bounded retries and timeouts toward the identity endpoint.

    The endpoint is local to the instance, so a few quick tries are enough; azure-core's defaults (ten retries,
    up to two minutes apart, 300 s timeouts) would hold a work item for many minutes when it fails.
    """
    from azure.identity.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(
        client_id=client_id,
        retry_total=2,
        retry_backoff_factor=0.5,
        retry_backoff_max=2,
        connection_timeout=10,
        read_timeout=30,
    )


def _newer_token_claims() -> str:
    """A claims request for a token issued from now on (the ``nbf`` claim of a CAE claims challenge)."""
    return json.dumps({"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}})


def identity_failure(exc: BaseException, client_id: str | None) -> GraphFailure:
    """What to record when the managed identity gave no token: which identity, and the endpoint's own words."""
    who = (
        f"the user-assigned managed identity with AZURE_CLIENT_ID={client_id}"
        if client_id
        else "the system-assigned managed identity (AZURE_CLIENT_ID is not set)"
    )
    detail = getattr(exc, "message", None) or str(exc) or "no detail"
    message = f"No token for Microsoft Graph from {who}: {type(exc).__name__}: {detail}"
    raw: str | None = None
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            raw = str(response.text())
        except Exception:  # the response may be gone or undecodable: the message still says what happened
            raw = None
        if raw is not None and "access_token" in raw:
            raw = None  # never keep anything that may hold a token
    return GraphFailure(None, "ManagedIdentityUnavailable", _cut(message, 4000), raw_body=_cap(raw))


class _GraphCredential:
    """The app's credential as the Graph SDK sees it.

    - A token Graph rejected as expired is never handed out again: when the wrapped credential returns it
      from its cache, a fresh one is requested with a claims request (azure-identity's managed identity
      client skips its token cache whenever claims are given; a CAE-capable credential asks for a token
      issued after now).
    - Any failure to get a token becomes :class:`_IdentityUnavailable`. No failure is remembered, so the next
      call asks the identity endpoint again and recovery needs no restart.
    """

    def __init__(
        self, inner: AsyncTokenCredential | None, factory: Callable[[], AsyncTokenCredential], client_id: str | None
    ) -> None:
        self._inner = inner
        self._factory = factory
        self._client_id = client_id
        self._rejected: deque[str] = deque(maxlen=8)

    def prepare(self) -> None:
        """Build the credential now (the client is built in a thread; azure.identity takes a while to import).

        A credential that cannot be built is left for :meth:`get_token`, which records why.
        """
        if self._inner is None:
            try:
                self._inner = self._factory()
            except Exception:
                log.warning("managed identity credential could not be built", exc_info=True)

    def reject(self, token: str) -> None:
        """Graph said this token has expired."""
        self._rejected.append(token)

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A token from the wrapped credential, never one Graph has rejected as expired."""
        try:
            if self._inner is None:
                self._inner = self._factory()
            token = await self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
            if token.token in self._rejected:
                token = await self._inner.get_token(
                    *scopes,
                    claims=claims or _newer_token_claims(),
                    tenant_id=tenant_id,
                    enable_cae=enable_cae,
                    **kwargs,
                )
        except Exception as exc:
            raise _IdentityUnavailable(identity_failure(exc, self._client_id)) from exc
        return token

    async def close(self) -> None:
        """Close the wrapped credential's transport."""
        if self._inner is not None:
            await self._inner.close()

    async def __aenter__(self) -> _GraphCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --- the adapter ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    """One raw HTTP answer from Graph (or whatever answered in its place)."""

    status: int
    headers: Any
    body: bytes
    bearer: str | None

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class GraphProvisioner:
    """Calls Graph with the managed identity's token, through the SDK's request builders and middleware.

    ``credential`` defaults to the app's managed identity (:func:`managed_identity_credential`), built off
    the event loop on first use. ``http_client`` is the ``httpx.AsyncClient`` whose transport reaches the
    network (default: the SDK's own client); the SDK's default middleware is put on it either way.
    """

    def __init__(
        self,
        settings: Settings,
        credential: AsyncTokenCredential | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        client_id = settings.azure_client_id
        self._settings = settings
        self._credential = _GraphCredential(credential, lambda: managed_identity_credential(client_id), client_id)
        self._owns_credential = credential is None
        self._http_client = http_client
        self._http: httpx.AsyncClient | None = None
        self._client: Any = None
        self._client_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def warm(self) -> None:
        """Import the SDK and build the client, off the event loop; at most once. Never raises."""
        try:
            await self._graph_client()
        except Exception:
            log.exception("graph client could not be built; the next call tries again")

    async def aclose(self) -> None:
        """Close the HTTP client, and the credential when this adapter built it (one passed in is the caller's)."""
        if self._http is not None:
            await self._http.aclose()
        if self._owns_credential:
            await self._credential.close()

    def warm_in_background(self) -> None:
        """Start :meth:`warm` as a task when an event loop is running (else the first call warms up)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            start_sdk_import()
            return
        task = loop.create_task(self.warm())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _graph_client(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    await sdk_ready()
                    self._client = await asyncio.to_thread(self._build_client)
        return self._client

    def _build_client(self) -> Any:
        """The GraphServiceClient (runs in a thread: building the SSL context and credential takes CPU)."""
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.kiota_client_factory import KiotaClientFactory
        from msgraph_beta.graph_request_adapter import GraphRequestAdapter
        from msgraph_beta.graph_request_adapter import options as graph_options
        from msgraph_beta.graph_service_client import GraphServiceClient
        from msgraph_core import APIVersion, GraphClientFactory

        self._credential.prepare()
        http_client = GraphClientFactory.create_with_default_middleware(
            api_version=APIVersion.beta,
            client=self._http_client or KiotaClientFactory.get_default_client(),
            options=graph_options,
        )
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[self._settings.graph_scope])
        self._http = http_client
        adapter = GraphRequestAdapter(auth, client=http_client)
        adapter.base_url = self._settings.graph_base_url
        client = GraphServiceClient(request_adapter=adapter)
        # Each request builder is imported on first use: walk the chain once here, off the event loop.
        job = _job_builder(client, "warm", "warm")
        job.provision_on_demand.to_post_request_information(
            _request_body("r", {"objectId": "o", "objectTypeName": "U"})
        )
        job.schema.to_get_request_information()
        return client

    async def _send(self, request: Callable[[Any, Any], Any]) -> _Response | GraphFailure:
        """Send one request and return its raw answer, or why there is none.

        ``request(client, request_configuration)`` gives the request builder's ``RequestInformation`` (its
        URL, headers and body). It is sent through the request adapter, so authentication and every
        middleware run as for the builder's own ``get``/``post``; kiota's native response handler hands back
        the ``httpx.Response`` before the SDK would import and parse a response model.
        """
        try:
            client = await self._graph_client()
        except Exception as exc:
            return GraphFailure(None, "UnexpectedError", _cut(f"The Graph SDK could not be loaded: {_describe(exc)}"))
        import httpx
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption

        try:
            info = request(client, _no_sdk_retries(ResponseHandlerOption(NativeResponseHandler())))
            response = await client.request_adapter.send_async(info, None, None)
        except _IdentityUnavailable as exc:
            return exc.failure
        except httpx.TimeoutException as exc:
            return GraphFailure(None, "Timeout", _cut(f"Graph did not answer in time: {_describe(exc)}"))
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", _cut(f"No answer from Graph: {_describe(exc)}"))
        except Exception as exc:
            log.warning("graph call raised", exc_info=True)
            return GraphFailure(None, "UnexpectedError", _cut(f"The Graph call raised {_describe(exc)}"))
        if not isinstance(response, httpx.Response):
            return GraphFailure(None, "UnexpectedError", f"The SDK returned {type(response).__name__}, not a response")
        try:
            bearer = response.request.headers.get("Authorization")
        except RuntimeError:  # a response without its request
            bearer = None
        return _Response(response.status_code, response.headers, response.content, bearer)

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure:
        """One attempt; never raises for what Graph, the network or the identity did."""

        def post(client: Any, config: Any) -> Any:
            builder = _job_builder(client, service_principal_id, job_id).provision_on_demand
            return builder.to_post_request_information(_request_body(rule_id, subject), config)

        response = await self._send(post)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return _answer(response)

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure:
        """The job schema's synchronization rules (GET …/jobs/{id}/schema); never raises."""

        def get(client: Any, config: Any) -> Any:
            return _job_builder(client, service_principal_id, job_id).schema.to_get_request_information(config)

        response = await self._send(get)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return _parsed(response, _parse_schema)

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure:
        """``status.code`` (Active, Paused, Quarantine, …) and the quarantine reason of a job; never raises."""

        def get(client: Any, config: Any) -> Any:
            return _job_builder(client, service_principal_id, job_id).to_get_request_information(config)

        response = await self._send(get)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return _parsed(response, _parse_job)

    def _error(self, response: _Response) -> GraphFailure:
        """A non-2xx answer: Graph's code and message when it sent its error JSON, else the raw text."""
        failure = _error_failure(response)
        if failure.code == "TokenExpired" and response.bearer:
            self._credential.reject(response.bearer.partition(" ")[2].strip())
        return failure


def _error_failure(response: _Response) -> GraphFailure:
    """Graph's error JSON (``{"error": {"code", "message", "innerError"}}``) or whatever came instead."""
    request_id = response.header("request-id")
    client_request_id = response.header("client-request-id")
    code: str | None = None
    message: str | None = None
    data = _json(response.body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = _str_or_none(error.get("code"))
        message = _str_or_none(error.get("message"))
        inner = error.get("innerError") or error.get("innererror")
        if isinstance(inner, dict):
            request_id = request_id or _str_or_none(inner.get("request-id"))
            client_request_id = client_request_id or _str_or_none(inner.get("client-request-id"))
    if response.status == 401 and code is None:
        code = "Unauthorized"
    if (
        response.status == 401
        and code == "InvalidAuthenticationToken"
        and message is not None
        and "expired" in message.lower()
    ):
        code = "TokenExpired"
    if message is None:
        what = "no body" if not response.body.strip() else "a body that is not Graph's error JSON"
        message = f"Graph answered HTTP {response.status} with {what}"
    return GraphFailure(
        http_status=response.status,
        code=code,
        message=_cut(message, 4000),
        request_id=request_id,
        retry_after_seconds=parse_retry_after(response.header("retry-after")),
        client_request_id=client_request_id,
        raw_body=None if isinstance(error, dict) else _cut(response.text),
    )


def _answer(response: _Response) -> GraphAnswer | GraphFailure:
    """A 2xx provisionOnDemand answer: a ``stringKeyStringValuePair`` with string (or null) key and value."""
    request_id = response.header("request-id")
    client_request_id = response.header("client-request-id")
    if not response.body.strip():
        return _unparseable(response, "with no body")
    data = _json(response.body)
    if data is _NOT_JSON:
        return _unparseable(response, f"with a body that is not JSON (Content-Type {response.header('content-type')})")
    if not isinstance(data, dict) or not {"key", "value"} & data.keys():
        return _unparseable(response, "with JSON that is not a stringKeyStringValuePair")
    for name in ("key", "value"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return _unparseable(response, f"with a {name!r} that is a JSON {_json_type(data[name])}, not a string")
    return GraphAnswer(
        key=data.get("key"),
        value=data.get("value"),
        request_id=request_id,
        http_status=response.status,
        client_request_id=client_request_id,
    )


def _unparseable(response: _Response, why: str) -> GraphFailure:
    return GraphFailure(
        http_status=response.status,
        code="UnparseableResponse",
        message=f"Graph answered HTTP {response.status} {why}; the raw answer is kept",
        request_id=response.header("request-id"),
        client_request_id=response.header("client-request-id"),
        raw_body=_cut(response.text),
    )


def _parsed(response: _Response, parse: Callable[[dict[str, Any]], _T]) -> _T | GraphFailure:
    """A 2xx read answer (a JSON object), parsed; anything else is unparseable, with its raw text."""
    if not response.body.strip():
        return _unparseable(response, "with no body")
    data = _json(response.body)
    if not isinstance(data, dict):
        return _unparseable(response, "with a body that is not a JSON object")
    try:
        return parse(data)
    except ValueError as exc:
        return _unparseable(response, f"with {exc}")


def _field(data: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    """``data[name]`` when it has the JSON type the API documents; None when absent or null.

    A field of another type is refused rather than read as absent (which is what the SDK's models do
    silently), so a wrong answer never turns into a wrong decision.
    """
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ValueError(f"{name!r} that is a JSON {_json_type(value)}")
    return value


def _parse_job(data: dict[str, Any]) -> JobStatus:
    """``status.code`` and ``status.quarantine.reason`` of a synchronizationJob."""
    status = _field(data, "status", dict) or {}
    quarantine = _field(status, "quarantine", dict) or {}
    return JobStatus(_field(status, "code", str) or None, _field(quarantine, "reason", str) or None)


def _parse_schema(data: dict[str, Any]) -> list[RuleInfo]:
    """The synchronizationRules of a synchronizationSchema: id, name, on-demand support, mapped source types."""
    rules = []
    for rule in _field(data, "synchronizationRules", list) or []:
        if not isinstance(rule, dict):
            raise ValueError(f"a synchronization rule that is a JSON {_json_type(rule)}")
        metadata = {}
        for entry in _field(rule, "metadata", list) or []:
            if not isinstance(entry, dict):
                raise ValueError(f"a rule metadata entry that is a JSON {_json_type(entry)}")
            key = _field(entry, "key", str)
            if key:
                metadata[key] = entry.get("value")
        sources = []
        for mapping in _field(rule, "objectMappings", list) or []:
            if not isinstance(mapping, dict):
                raise ValueError(f"an object mapping that is a JSON {_json_type(mapping)}")
            source = _field(mapping, "sourceObjectName", str)
            if source and mapping.get("enabled") is not False:
                sources.append(source)
        rules.append(
            RuleInfo(
                id=_field(rule, "id", str) or "",
                name=_field(rule, "name", str),
                supports_provision_on_demand=str(metadata.get("supportsProvisionOnDemand", "")).lower() == "true",
                source_object_names=tuple(sources),
            )
        )
    return [r for r in rules if r.id]


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    """The body's JSON, or ``_NOT_JSON``."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else type(value).__name__


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _cut(text: str, limit: int = RAW_BODY_LIMIT) -> str:
    """``text``, cut to ``limit`` characters with a note saying how much is missing."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [cut: {len(text) - limit} more characters]"


def _cap(text: str | None) -> str | None:
    return None if text is None else _cut(text)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _job_builder(client: Any, service_principal_id: str, job_id: str) -> Any:
    """``/servicePrincipals/{id}/synchronization/jobs/{id}``: the SDK escapes both ids into the path."""
    return client.service_principals.by_service_principal_id(
        service_principal_id
    ).synchronization.jobs.by_synchronization_job_id(job_id)


def _no_sdk_retries(*extra: Any) -> Any:
    """Request options that switch the SDK's RetryHandler off for one call: every attempt is ours."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_http.middleware.options import RetryHandlerOption

    config: RequestConfiguration[Any] = RequestConfiguration(
        options=[RetryHandlerOption(max_retries=0, should_retry=False), *extra]
    )
    return config


def _request_body(rule_id: str, subject: dict[str, Any]) -> Any:
    from msgraph_beta.generated.models.synchronization_job_application_parameters import (
        SynchronizationJobApplicationParameters,
    )
    from msgraph_beta.generated.models.synchronization_job_subject import SynchronizationJobSubject
    from msgraph_beta.generated.models.synchronization_linked_objects import SynchronizationLinkedObjects
    from msgraph_beta.generated.service_principals.item.synchronization.jobs.item.provision_on_demand.provision_on_demand_post_request_body import (  # noqa: E501
        ProvisionOnDemandPostRequestBody,
    )

    def to_subject(data: dict[str, Any]) -> SynchronizationJobSubject:
        result = SynchronizationJobSubject(object_id=data["objectId"], object_type_name=data["objectTypeName"])
        links = data.get("links")
        if links:
            result.links = SynchronizationLinkedObjects(
                members=[to_subject(m) for m in links["members"]] if "members" in links else None,
                owners=[to_subject(o) for o in links["owners"]] if "owners" in links else None,
                manager=to_subject(links["manager"]) if "manager" in links else None,
            )
        return result

    params = SynchronizationJobApplicationParameters(rule_id=rule_id, subjects=[to_subject(subject)])
    return ProvisionOnDemandPostRequestBody(parameters=[params])
