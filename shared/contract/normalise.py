"""What callers really write, turned into the request model's shape before validation (pure).

Each rewrite is recorded as a short note and stored on the request row, so an operator can see that the
app, not the caller, spelled something differently. Only unambiguous rewrites are made here; casing of
``objectTypeName`` depends on the target's rule and is settled by the worker against the job schema.
"""

from __future__ import annotations

from typing import Any

from shared.contract.problems import FieldError, Problem, json_pointer

_SUBJECT_KEYS = ("objectId", "objectTypeName", "objectType", "links")


def _rename_object_type(subject: Any, pointer: str, notes: list[str]) -> Any:
    """An early documentation example's ``objectType`` means ``objectTypeName`` (graph-api-facts.md#request-body)."""
    if not isinstance(subject, dict):
        return subject
    result = dict(subject)
    if "objectType" in result and "objectTypeName" not in result:
        result["objectTypeName"] = result.pop("objectType")
        notes.append(f"{pointer}/objectType renamed to objectTypeName")
    links = result.get("links")
    if isinstance(links, dict):
        new_links = dict(links)
        for name in ("members", "owners"):
            if isinstance(links.get(name), list):
                new_links[name] = [
                    _rename_object_type(s, f"{pointer}/links/{name}/{i}", notes) for i, s in enumerate(links[name])
                ]
        if "manager" in links:
            new_links["manager"] = _rename_object_type(links["manager"], f"{pointer}/links/manager", notes)
        result["links"] = new_links
    return result


def _is_bare_subject(data: Any) -> bool:
    return isinstance(data, dict) and "subjects" not in data and "objectId" in data and set(data) <= set(_SUBJECT_KEYS)


def provisioning_request(data: Any) -> tuple[Any, list[str]]:
    """``POST /api/provision`` body → request model input (an early docs example's ``objectType`` accepted)."""
    notes: list[str] = []
    if isinstance(data, dict) and isinstance(data.get("subjects"), list):
        data = dict(data)
        data["subjects"] = [_rename_object_type(s, f"/subjects/{i}", notes) for i, s in enumerate(data["subjects"])]
    return data, notes


def graph_body(data: Any, service_principal_id: str, job_id: str) -> tuple[Any, list[str]]:
    """Graph's own provisionOnDemand body (``{"parameters": [{"ruleId", "subjects"}]}``) → request model input.

    A body without the ``parameters`` wrapper (``{"ruleId", "subjects"}``), and a bare subject as the whole
    body (the path names the job; the rule comes from the target or the schema), are accepted too and noted.
    Graph takes one ``parameters`` entry; more is refused here rather than silently dropped.
    """
    notes: list[str] = []
    bare = _is_bare_subject(data)
    if bare:
        data = {"subjects": [data]}
        notes.append("a bare subject was wrapped as parameters[0].subjects[0]")
    if not isinstance(data, dict):
        raise Problem.invalid(
            "The request body is not valid",
            "Send Graph's provisionOnDemand body.",
            FieldError("", "must be a JSON object"),
        )
    if "parameters" in data:
        unknown = sorted(set(data) - {"parameters"})
        if unknown:
            raise Problem.invalid(
                "The request body is not valid",
                "Unknown fields.",
                *(FieldError(json_pointer([k]), "is not a known field") for k in unknown),
            )
        params = data["parameters"]
        if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], dict):
            raise Problem.invalid(
                "The request body is not valid",
                "Graph takes exactly one parameters entry.",
                FieldError("/parameters", "must be a list with exactly one object"),
            )
        inner = params[0]
        prefix = "/parameters/0"
    else:
        inner = data
        prefix = ""
        if not bare:
            notes.append("a body without the parameters wrapper was accepted")
    unknown = sorted(set(inner) - {"ruleId", "subjects", "@odata.type"})
    if unknown:
        raise Problem.invalid(
            "The request body is not valid",
            "Unknown fields.",
            *(FieldError(prefix + json_pointer([k]), "is not a known field") for k in unknown),
        )
    request: dict[str, Any] = {"servicePrincipalId": service_principal_id, "jobId": job_id}
    if "ruleId" in inner:
        request["ruleId"] = inner["ruleId"]
    if "subjects" in inner:
        request["subjects"] = inner["subjects"]
    request, more = provisioning_request(request)
    return request, notes + more


def graph_pointer(pointer: str, wrapped: bool) -> str:
    """Map a pointer into the request model back into the Graph body the caller sent."""
    if wrapped and (pointer.startswith("/subjects") or pointer.startswith("/ruleId")):
        return "/parameters/0" + pointer
    return pointer


def caller_pointer(sent: Any, pointer: str) -> str:
    """Map a pointer into the normalised request back to the field as the caller wrote it in ``sent``.

    Undoes :func:`provisioning_request`'s rewrites: a bare subject's fields are at the top of the body, and
    an ``objectTypeName`` the caller spelled ``objectType`` is named the caller's way.
    """
    if _is_bare_subject(sent) and (pointer == "/subjects/0" or pointer.startswith("/subjects/0/")):
        pointer = pointer.removeprefix("/subjects/0")
    head, _, last = pointer.rpartition("/")
    if last == "objectTypeName":
        parent = sent
        for token in head.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(parent, dict) and token in parent:
                parent = parent[token]
            elif isinstance(parent, list) and token.isdigit() and int(token) < len(parent):
                parent = parent[int(token)]
            else:
                return pointer
        if isinstance(parent, dict) and "objectTypeName" not in parent and "objectType" in parent:
            return f"{head}/objectType"
    return pointer
