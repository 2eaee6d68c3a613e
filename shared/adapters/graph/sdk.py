"""The Graph SDK: imported off the event loop (once per process), and the request pieces built with it.

Ids reach a URL only through the SDK's request builders (``by_service_principal_id`` /
``by_synchronization_job_id``, which escape them), and the body is the SDK's typed model.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
from concurrent.futures import Future
from typing import Any

from shared import telemetry

log = telemetry.get_logger(__name__)

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

    request_body("r", {"objectId": "o", "objectTypeName": "User"})
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


def job_builder(client: Any, service_principal_id: str, job_id: str) -> Any:
    """``/servicePrincipals/{id}/synchronization/jobs/{id}``: the SDK escapes both ids into the path."""
    return client.service_principals.by_service_principal_id(
        service_principal_id
    ).synchronization.jobs.by_synchronization_job_id(job_id)


def no_sdk_retries(*extra: Any) -> Any:
    """Request options that switch the SDK's RetryHandler off for one call: every attempt is ours."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_http.middleware.options import RetryHandlerOption

    config: RequestConfiguration[Any] = RequestConfiguration(
        options=[RetryHandlerOption(max_retries=0, should_retry=False), *extra]
    )
    return config


def request_body(rule_id: str, subject: dict[str, Any]) -> Any:
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
