"""The Graph adapter: one provisionOnDemand call through msgraph-beta-sdk, and nothing else.

Why the SDK's request builders and not a hand-built URL: ids reach the path only through
``by_service_principal_id`` / ``by_synchronization_job_id`` (which escape them), and the body is the SDK's
typed model, so what we send is what Graph's metadata describes. The SDK's RetryHandler is switched off for
this call (``RetryHandlerOption(max_retries=0)``): it would otherwise re-send the POST on 429/503/504 behind
our back, spending the rate budget and blocking the worker (facts file §1). Every attempt is ours.

``msgraph_beta`` is a very large package, so it is imported on first use, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared import telemetry
from shared.rules import RuleInfo
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

log = telemetry.get_logger(__name__)


@dataclass(frozen=True)
class GraphAnswer:
    """Graph answered 200 with a ``stringKeyStringValuePair``."""

    key: str | None
    value: str | None
    request_id: str | None
    http_status: int = 200
    client_request_id: str | None = None


@dataclass(frozen=True)
class GraphFailure:
    """Graph answered an error, or did not answer at all (``http_status`` None)."""

    http_status: int | None
    code: str | None
    message: str
    request_id: str | None = None
    retry_after_seconds: float | None = None
    client_request_id: str | None = None
    raw_body: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """The part of ``GET …/jobs/{id}`` that decides whether calls can go through now."""

    code: str | None
    reason: str | None = None


class Provisioner(Protocol):
    """What the worker needs from Graph (tests may pass any object with this method)."""

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure: ...

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure: ...

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure: ...


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds form; an HTTP date is not sent by Graph)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _header(headers: Any, name: str) -> str | None:
    """A header from either a plain dict (``APIError.response_headers``) or a kiota HeadersCollection."""
    if headers is None:
        return None
    if isinstance(headers, dict):
        for key, val in headers.items():
            if key.lower() == name:
                return str(val)
        return None
    values = headers.get(name)
    return next(iter(values), None) if values else None


class GraphProvisioner:
    """Calls provisionOnDemand with a managed identity token, through the SDK's request builders."""

    def __init__(self, settings: Settings, credential: AsyncTokenCredential) -> None:
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph_beta.graph_request_adapter import GraphRequestAdapter
        from msgraph_beta.graph_service_client import GraphServiceClient

        auth = AzureIdentityAuthenticationProvider(credential, scopes=[settings.graph_scope])
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = settings.graph_base_url
        self._client = GraphServiceClient(request_adapter=adapter)

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure:
        """One attempt; never raises for what Graph or the network did."""
        import httpx
        from kiota_abstractions.api_error import APIError
        from kiota_http.middleware.options import HeadersInspectionHandlerOption

        body = _request_body(rule_id, subject)
        headers = HeadersInspectionHandlerOption(inspect_request_headers=False, inspect_response_headers=True)
        config = _no_sdk_retries(headers)
        builder = (
            self._client.service_principals.by_service_principal_id(service_principal_id)
            .synchronization.jobs.by_synchronization_job_id(job_id)
            .provision_on_demand
        )
        try:
            answer = await builder.post(body, request_configuration=config)
        except APIError as exc:
            return _failure_from_api_error(exc)
        except httpx.TimeoutException as exc:
            return GraphFailure(None, "Timeout", f"Graph did not answer in time ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", f"No answer from Graph ({type(exc).__name__})")
        request_id = _header(headers.response_headers, "request-id")
        if answer is None:
            return GraphFailure(200, "EmptyResponse", "Graph answered 200 with no body", request_id)
        return GraphAnswer(key=answer.key, value=answer.value, request_id=request_id)

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure:
        """The job schema's synchronization rules (GET …/jobs/{id}/schema); never raises for Graph's answers."""
        import httpx
        from kiota_abstractions.api_error import APIError

        config = _no_sdk_retries()
        builder = (
            self._client.service_principals.by_service_principal_id(service_principal_id)
            .synchronization.jobs.by_synchronization_job_id(job_id)
            .schema
        )
        try:
            schema = await builder.get(request_configuration=config)
        except APIError as exc:
            return _failure_from_api_error(exc)
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", f"No answer from Graph ({type(exc).__name__})")
        rules = []
        for rule in (schema.synchronization_rules if schema else None) or []:
            metadata = {m.key: m.value for m in rule.metadata or [] if m.key}
            sources = tuple(
                m.source_object_name
                for m in rule.object_mappings or []
                if m.source_object_name and m.enabled is not False
            )
            rules.append(
                RuleInfo(
                    id=rule.id or "",
                    name=rule.name,
                    supports_provision_on_demand=str(metadata.get("supportsProvisionOnDemand", "")).lower() == "true",
                    source_object_names=sources,
                )
            )
        return [r for r in rules if r.id]

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure:
        """``status.code`` (Active, Paused, Quarantine, …) and the quarantine reason of a job."""
        import httpx
        from kiota_abstractions.api_error import APIError

        config = _no_sdk_retries()
        builder = self._client.service_principals.by_service_principal_id(
            service_principal_id
        ).synchronization.jobs.by_synchronization_job_id(job_id)
        try:
            job = await builder.get(request_configuration=config)
        except APIError as exc:
            return _failure_from_api_error(exc)
        except httpx.TransportError as exc:
            return GraphFailure(None, "ConnectionError", f"No answer from Graph ({type(exc).__name__})")
        status = job.status if job else None
        code = getattr(status.code, "value", status.code) if status and status.code else None
        quarantine = status.quarantine if status else None
        reason = getattr(quarantine.reason, "value", quarantine.reason) if quarantine and quarantine.reason else None
        return JobStatus(str(code) if code else None, str(reason) if reason else None)


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


def _failure_from_api_error(exc: Any) -> GraphFailure:
    status = getattr(exc, "response_status_code", None)
    headers = getattr(exc, "response_headers", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) if error is not None else None
    message = getattr(error, "message", None) if error is not None else None
    inner = getattr(error, "inner_error", None) if error is not None else None
    request_id = getattr(inner, "request_id", None) if inner is not None else None
    return GraphFailure(
        http_status=status,
        code=code,
        message=message or getattr(exc, "message", None) or f"Graph answered HTTP {status}",
        request_id=request_id or _header(headers, "request-id"),
        retry_after_seconds=parse_retry_after(_header(headers, "retry-after")),
    )
