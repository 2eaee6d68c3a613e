"""The app's managed identity as the Graph SDK sees it: bounded retries, no expired token handed out twice,
and every failure to get a token turned into a recorded :class:`~shared.core.ports.GraphFailure`."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.adapters.graph.answers import cap, cut
from shared.core.ports import GraphFailure

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.credentials_async import AsyncTokenCredential

log = telemetry.get_logger(__name__)


class IdentityUnavailable(Exception):
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
    return GraphFailure(None, "ManagedIdentityUnavailable", cut(message, 4000), raw_body=cap(raw))


class GraphCredential:
    """The app's credential as the Graph SDK sees it.

    - A token Graph rejected as expired is never handed out again: when the wrapped credential returns it
      from its cache, a fresh one is requested with a claims request (azure-identity's managed identity
      client skips its token cache whenever claims are given; a CAE-capable credential asks for a token
      issued after now).
    - Any failure to get a token becomes :class:`IdentityUnavailable`. No failure is remembered, so the next
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
            raise IdentityUnavailable(identity_failure(exc, self._client_id)) from exc
        return token

    async def close(self) -> None:
        """Close the wrapped credential's transport."""
        if self._inner is not None:
            await self._inner.close()

    async def __aenter__(self) -> GraphCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
