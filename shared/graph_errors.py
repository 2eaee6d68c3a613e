"""What a person should do about a Graph error (pure).

A 403 on provisionOnDemand almost always means the managed identity lacks the app role; saying which
role, and how to grant it, turns a support ticket into a one-line fix.
"""

from __future__ import annotations

_PERMISSION = (
    "Grant the app's managed identity the Microsoft Graph application permission "
    "Synchronization.ReadWrite.All (or Application.ReadWrite.OwnedBy and make the identity an owner of the "
    "target's service principal); see scripts/grant-graph-permission and the README's Grant section."
)


def recommended_action(http_status: int | None, code: str | None, message: str | None = None) -> str | None:
    """A short instruction for an operator, or None when Graph's own message says it all."""
    if http_status == 401:
        return (
            "Graph refused the token. Check that the function app's managed identity exists, that "
            "AZURE_CLIENT_ID names it, and that GRAPH_BASE_URL/GRAPH_CLOUD match the identity's cloud."
        )
    if http_status == 403:
        return _PERMISSION
    if http_status == 404:
        return "Check the target's servicePrincipalId and jobId: Graph does not know this job."
    if http_status == 409:
        return "Graph reported a conflict with the job's current state; check the job in the portal, then resubmit."
    if http_status == 400 and code == "RequestParameterInvalid":
        return "The ruleId is not a rule of this job; read the job's schema and configure the right ruleId."
    if http_status == 429:
        return "Graph kept throttling this call; it was retried until the attempt limit. Submit it again later."
    if http_status is None or http_status >= 500:
        return "Graph or the network failed repeatedly; submit the request again, or check Graph's service health."
    return None
