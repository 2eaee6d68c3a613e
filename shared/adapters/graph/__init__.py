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

from shared.adapters.graph.answers import RAW_BODY_LIMIT
from shared.adapters.graph.headers import header_value, parse_retry_after
from shared.adapters.graph.identity import identity_failure, managed_identity_credential
from shared.adapters.graph.provisioner import GraphProvisioner
from shared.adapters.graph.sdk import sdk_ready, start_sdk_import

__all__ = [
    "RAW_BODY_LIMIT",
    "GraphProvisioner",
    "header_value",
    "identity_failure",
    "managed_identity_credential",
    "parse_retry_after",
    "sdk_ready",
    "start_sdk_import",
]
