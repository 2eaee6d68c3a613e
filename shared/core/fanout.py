"""From one request to the Graph calls it needs.

Graph takes one subject per call, and a group with at most 5 ``links.members`` per call
(docs/graph-api-facts.md#one-subject-per-call).
So a request with N subjects is N calls, and a group with M members is ceil(M/5) calls, each repeating the
group subject with the next chunk of members. Owners and manager travel with every chunk unchanged.
"""

from __future__ import annotations

from typing import Any

from shared.core.models import LinkedSubject, Subject

MAX_MEMBERS_PER_CALL = 5


def _linked(subject: LinkedSubject) -> dict[str, str]:
    return {"objectId": subject.object_id, "objectTypeName": subject.object_type_name}


def graph_subjects(subject: Subject) -> list[dict[str, Any]]:
    """The Graph ``synchronizationJobSubject`` bodies for one requested subject (one per call)."""
    name = (
        {"objectId": subject.object_id}
        if subject.object_id is not None
        else {"userPrincipalName": subject.user_principal_name}  # resolved by the worker before the call
    )
    base: dict[str, Any] = {**name, "objectTypeName": subject.object_type_name}
    links = subject.links
    if links is None:
        return [base]
    shared_links: dict[str, Any] = {}
    if links.owners is not None:
        shared_links["owners"] = [_linked(o) for o in links.owners]
    if links.manager is not None:
        shared_links["manager"] = _linked(links.manager)
    members = links.members
    if not members:
        if members is not None:
            shared_links["members"] = []
        return [{**base, "links": shared_links}] if shared_links else [base]
    chunks = [members[i : i + MAX_MEMBERS_PER_CALL] for i in range(0, len(members), MAX_MEMBERS_PER_CALL)]
    return [{**base, "links": {"members": [_linked(m) for m in chunk], **shared_links}} for chunk in chunks]


def plan_calls(subjects: list[Subject]) -> list[dict[str, Any]]:
    """All calls of a request, in order: one Graph subject body per call."""
    return [body for subject in subjects for body in graph_subjects(subject)]


def call_id(index: int) -> str:
    """The ledger RowKey of the ``index``-th call (0-based): ``call-0001``…"""
    return f"call-{index + 1:04d}"
