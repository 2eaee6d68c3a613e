"""Subjects named by ``userPrincipalName``: resolved to their object id through Graph right before the call.

Graph's provisionOnDemand takes object ids only. HR systems know people by UPN, so a subject may carry
``userPrincipalName`` instead; the worker asks the directory (``GET /users/{upn}?$select=id``) at each
attempt (a rename or a new hire between intake and the call is then seen), records both names on the call
row, and a name nobody has ends the call ``failed`` with ``SubjectNotFound``. A directory that fails
(429, 5xx, no answer) is a failure like any Graph failure: retried by the worker's policy.
"""

from __future__ import annotations

from typing import Any

from shared.core.ports import Directory, GraphFailure

__all__ = ["SUBJECT_NOT_FOUND", "Directory", "needs_resolving", "prepare", "resolve"]

SUBJECT_NOT_FOUND = "SubjectNotFound"


def needs_resolving(subject: dict[str, Any]) -> bool:
    """True for a subject named by UPN only."""
    return "userPrincipalName" in subject and "objectId" not in subject


async def resolve(
    directory: Directory | None, subject: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | GraphFailure:
    """The subject as Graph takes it (``objectId``), and what to record on the call row; or why not."""
    name = str(subject["userPrincipalName"])
    if directory is None:
        return GraphFailure(400, SUBJECT_NOT_FOUND, "Subjects named by userPrincipalName need the directory.")
    found = await directory.user_id(name)
    if isinstance(found, GraphFailure):
        if found.http_status in (400, 404):
            return GraphFailure(404, SUBJECT_NOT_FOUND, f"No user has the userPrincipalName {name}.", found.request_id)
        return found
    if found is None:
        return GraphFailure(404, SUBJECT_NOT_FOUND, f"No user has the userPrincipalName {name}.")
    resolved = {k: v for k, v in subject.items() if k != "userPrincipalName"}
    return {"objectId": found, **resolved}, {"user_principal_name": name, "object_id": found}


async def prepare(
    directory: Directory | None, subject: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], GraphFailure | None]:
    """For the worker: the subject to send, the call's fields to record, and why it cannot be sent (or None)."""
    if not needs_resolving(subject):
        return subject, {}, None
    resolved = await resolve(directory, subject)
    if isinstance(resolved, GraphFailure):
        return subject, {}, resolved
    return resolved[0], resolved[1], None
