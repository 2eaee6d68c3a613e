"""RFC 9457 problem details: what every refused request gets back.

Pure: builds the JSON body. One ``errors`` entry per offending field, each with a JSON pointer
(RFC 6901) into the request body, so a caller (or a Logic App run history) shows exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://github.com/provision-on-demand/problems/"


@dataclass(frozen=True)
class FieldError:
    """One offending field: where (JSON pointer, or the request header) and what is wrong with it."""

    pointer: str
    detail: str
    header: str | None = None  # a request header at fault (CloudEvents binary mode); ``pointer`` is then ""

    def to_body(self) -> dict[str, str]:
        """``{"pointer", "detail"}``, or ``{"header", "detail"}``: a pointer only ever points into the body."""
        if self.header is not None:
            return {"header": self.header, "detail": self.detail}
        return {"pointer": self.pointer, "detail": self.detail}


@dataclass(eq=False)  # not frozen: Python itself sets __traceback__, __context__ and __notes__ on exceptions
class Problem(Exception):
    """A refusal of what the caller sent; rendered as ``application/problem+json``."""

    status: int
    title: str
    detail: str
    slug: str = "invalid-request"
    errors: Sequence[FieldError] = field(default_factory=tuple)

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        """The JSON body (RFC 9457 members plus ``errors``)."""
        body: dict[str, Any] = {
            "type": _TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.to_body() for e in self.errors]
        return body


def json_pointer(path: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indexes (``~`` and ``/`` escaped)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def from_validation_error(exc: ValidationError, *, prefix: Sequence[str | int] = ()) -> Problem:
    """One field error per pydantic error, pointing at the caller's field names (aliases)."""
    errors = []
    for err in exc.errors(include_url=False):
        loc = [part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        message = str(err["msg"])
        if err["type"] == "extra_forbidden":
            message = "is not a known field"
        elif err["type"] == "missing":
            message = "is required"
        errors.append(FieldError(json_pointer([*prefix, *loc]), message))
    return Problem(
        status=400,
        title="The request body is not valid",
        detail=f"{len(errors)} field(s) need fixing; see errors.",
        errors=tuple(errors),
    )
