"""The Graph adapter itself: one attempt per call through the SDK's request adapter, every outcome recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.adapters.graph.answers import (
    cut,
    describe,
    error_failure,
    parse_job,
    parse_schema,
    read_answer,
    read_parsed,
)
from shared.adapters.graph.headers import RawResponse
from shared.adapters.graph.identity import GraphCredential, IdentityUnavailable, managed_identity_credential
from shared.adapters.graph.sdk import job_builder, no_sdk_retries, request_body, sdk_ready, start_sdk_import
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus
from shared.core.rules import RuleInfo
from shared.core.send_deadline import SLOT_MISSED, SlotMissed
from shared.settings import Settings

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential

log = telemetry.get_logger(__name__)


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
        self._credential = GraphCredential(credential, lambda: managed_identity_credential(client_id), client_id)
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

    async def graph_client(self) -> Any:
        """The GraphServiceClient (built once, off the event loop), for other reads through the same identity
        and middleware (``shared.adapters.graph_directory``)."""
        return await self._graph_client()

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

        from shared.adapters.graph.deadline_transport import SendDeadline

        self._credential.prepare()
        base = self._http_client or KiotaClientFactory.get_default_client()
        # under the SDK's middleware, right above the network: a paced call is not sent past its deadline
        base._transport = SendDeadline(base._transport)
        http_client = GraphClientFactory.create_with_default_middleware(
            api_version=APIVersion.beta, client=base, options=graph_options
        )
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[self._settings.graph_scope])
        self._http = http_client
        adapter = GraphRequestAdapter(auth, client=http_client)
        adapter.base_url = self._settings.graph_base_url
        client = GraphServiceClient(request_adapter=adapter)
        # Each request builder is imported on first use: walk the chain once here, off the event loop.
        job = job_builder(client, "warm", "warm")
        job.provision_on_demand.to_post_request_information(request_body("r", {"objectId": "o", "objectTypeName": "U"}))
        job.schema.to_get_request_information()
        return client

    async def _send(self, request: Callable[[Any, Any], Any]) -> RawResponse | GraphFailure:
        """Send one request and return its raw answer, or why there is none.

        ``request(client, request_configuration)`` gives the request builder's ``RequestInformation`` (its
        URL, headers and body). It is sent through the request adapter, so authentication and every
        middleware run as for the builder's own ``get``/``post``; kiota's native response handler hands back
        the ``httpx.Response`` before the SDK would import and parse a response model.
        """
        try:
            client = await self._graph_client()
        except Exception as exc:
            return GraphFailure(None, "UnexpectedError", cut(f"The Graph SDK could not be loaded: {describe(exc)}"))
        import httpx
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption

        try:
            info = request(client, no_sdk_retries(ResponseHandlerOption(NativeResponseHandler())))
            response = await client.request_adapter.send_async(info, None, None)
        except IdentityUnavailable as exc:
            return exc.failure
        except SlotMissed as exc:
            return GraphFailure(None, SLOT_MISSED, str(exc))
        except httpx.TimeoutException as exc:
            return GraphFailure(None, "Timeout", cut(f"Graph did not answer in time: {describe(exc)}"))
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", cut(f"No answer from Graph: {describe(exc)}"))
        except Exception as exc:
            log.warning("graph call raised", exc_info=True)
            return GraphFailure(None, "UnexpectedError", cut(f"The Graph call raised {describe(exc)}"))
        if not isinstance(response, httpx.Response):
            return GraphFailure(None, "UnexpectedError", f"The SDK returned {type(response).__name__}, not a response")
        try:
            bearer = response.request.headers.get("Authorization")
        except RuntimeError:  # a response without its request
            bearer = None
        return RawResponse(response.status_code, response.headers, response.content, bearer)

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure:
        """One attempt; never raises for what Graph, the network or the identity did."""

        def post(client: Any, config: Any) -> Any:
            builder = job_builder(client, service_principal_id, job_id).provision_on_demand
            return builder.to_post_request_information(request_body(rule_id, subject), config)

        response = await self._send(post)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return read_answer(response)

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure:
        """The job schema's synchronization rules (GET …/jobs/{id}/schema); never raises."""

        def get(client: Any, config: Any) -> Any:
            return job_builder(client, service_principal_id, job_id).schema.to_get_request_information(config)

        response = await self._send(get)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return read_parsed(response, parse_schema)

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure:
        """``status.code`` (Active, Paused, Quarantine, …) and the quarantine reason of a job; never raises."""

        def get(client: Any, config: Any) -> Any:
            return job_builder(client, service_principal_id, job_id).to_get_request_information(config)

        response = await self._send(get)
        if isinstance(response, GraphFailure):
            return response
        if not response.ok:
            return self._error(response)
        return read_parsed(response, parse_job)

    def _error(self, response: RawResponse) -> GraphFailure:
        """A non-2xx answer: Graph's code and message when it sent its error JSON, else the raw text."""
        failure = error_failure(response)
        if failure.code == "TokenExpired" and response.bearer:
            self._credential.reject(response.bearer.partition(" ")[2].strip())
        return failure
