"""What a person should do about a failed Graph call (pure).

Advice follows what Graph actually said, its HTTP status, ``error.code`` and message, and the codes the
adapter gives to failures Graph never answered (``ManagedIdentityUnavailable``, ``Timeout`` …). Known
shapes: the synchronization API answers a missing application permission with 401, often with no body (so
a 401 that is not about the token itself names the permission); an unknown or empty ``ruleId`` gives 400
``RequestParameterInvalid`` with a message about the rule; an unknown job gives 404 (``UnknownError`` "No
HTTP resource…" or ``ResourceNotFound``); an unknown service principal gives 404
``Request_ResourceNotFound``.
"""

from __future__ import annotations

PERMISSION = (
    "Grant the app's managed identity the Microsoft Graph application permission "
    "Synchronization.ReadWrite.All (or Application.ReadWrite.OwnedBy and make the identity an owner of the "
    "target's service principal); see scripts/grant-graph-permission and the README's Grant section."
)
IDENTITY = (
    "The function app could not get a token from its managed identity. If AZURE_CLIENT_ID is set, it must be "
    "the client ID of a user-assigned managed identity that is assigned to this function app (Identity, "
    "User assigned); if it is not set, the app's system-assigned identity must be turned on. Fix the identity "
    "or AZURE_CLIENT_ID, then submit the request again; errorMessage holds the identity endpoint's answer."
)


#: Failures of our own making, named by the code the adapter gives them: the same advice whatever the status.
_BY_CODE = {
    "ManagedIdentityUnavailable": IDENTITY,
    "UnparseableResponse": (
        "Something answered in Graph's place with a body that is not Graph's JSON (a proxy, a front door "
        "or a wrong GRAPH_BASE_URL); the raw answer is kept with the call. Check GRAPH_BASE_URL and the "
        "network path to Graph, then submit the request again."
    ),
    "TokenExpired": (
        "Graph refused the managed identity's token as expired, again after a fresh token was requested. "
        "Check the instance's clock and the identity, then submit the request again."
    ),
}
#: Advice by HTTP status where Graph's code and message do not change it.
_BY_STATUS = {
    403: PERMISSION,
    409: "Graph reported a conflict with the job's current state; check the job in the portal, then resubmit.",
    429: "Graph kept throttling this call; it was retried until the attempt limit. Submit it again later.",
}
_SERVER_OR_NETWORK = (
    "Graph or the network failed repeatedly; submit the request again, or check Graph's service health."
)


def recommended_action(http_status: int | None, code: str | None, message: str | None = None) -> str | None:
    """A short instruction for an operator, or None when Graph's own message says it all."""
    text = (message or "").lower()
    if code in _BY_CODE:
        return _BY_CODE[code]
    if http_status is None or http_status >= 500:
        return _SERVER_OR_NETWORK
    by_message = {401: _unauthorized, 400: _bad_request, 404: _not_found}.get(http_status)
    if by_message is not None:
        return by_message(code, text)
    return _BY_STATUS.get(http_status)


def _unauthorized(code: str | None, text: str) -> str:
    if code == "InvalidAuthenticationToken" and any(w in text for w in ("audience", "signature", "malformed", "empty")):
        return (
            "Graph refused the token itself. Check that AZURE_CLIENT_ID names the function app's managed "
            "identity and that GRAPH_BASE_URL/GRAPH_CLOUD match the identity's cloud (the token's audience)."
        )
    # A bare 401 (or any other 401) from the synchronization API: the identity lacks the app role.
    return "Graph answered 401: the synchronization API says so when the identity lacks the permission. " + PERMISSION


def _bad_request(code: str | None, text: str) -> str:
    if "objecttypename" in text or "object type" in text:
        return (
            "The subject's objectTypeName is not one the rule maps (names are case-sensitive, e.g. User, "
            "Group, user for AD); correct the subject, or use the rule for that object type."
        )
    if "members" in text and ("up to" in text or "at most" in text):
        return "A group can be provisioned on demand with at most 5 members per call; send the members in batches."
    if "rule" in text and (code == "RequestParameterInvalid" or "ruleid" in text or "synchronization rule" in text):
        return "The ruleId is not a rule of this job; read the job's schema and configure the right ruleId."
    if "json" in text or "payload" in text:
        return "Graph could not read the request body; this is a bug in the app: report it with the request id."
    named = f" ({code})" if code else ""
    return f"Graph refused the request as invalid{named}; errorMessage says what to change, then submit it again."


def _not_found(code: str | None, text: str) -> str:
    if code == "Request_ResourceNotFound" or "serviceprincipal" in text or "does not exist" in text:
        return (
            "Graph does not know this servicePrincipalId: use the object id of the enterprise application "
            "(service principal) that owns the provisioning job, not its application (client) id."
        )
    return "Check the target's servicePrincipalId and jobId: Graph does not know this job."
