"""RFC 9457 problem details: what every refused request gets back.

Pure: builds the JSON body. One ``errors`` entry per offending field, each with a JSON pointer
(RFC 6901) into the request body, so a caller (or a Logic App run history) shows exactly what to fix.

Every refusal is made by one of :class:`Problem`'s named constructors (``Problem.invalid``,
``Problem.not_found``, ``Problem.conflict``, …), so a status code and its ``type`` slug are chosen in one
place, and a new kind of refusal is a new constructor here, not a hand-built ``Problem(...)`` at a call site.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

    @classmethod
    def of_header(cls, header: str, detail: str) -> FieldError:
        """A request header at fault (not a field of the body)."""
        return cls("", detail, header)


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

    def repointed(self, pointer: Callable[[str], str]) -> Problem:
        """The same problem with each body pointer mapped by ``pointer`` (header errors are kept as they are)."""
        errors = tuple(e if e.header is not None else FieldError(pointer(e.pointer), e.detail) for e in self.errors)
        return Problem(self.status, self.title, self.detail, self.slug, errors)

    # --- the named refusals: one constructor per status, so each status keeps one slug ------------------------

    @classmethod
    def invalid(cls, title: str, detail: str, *errors: FieldError, slug: str = "invalid-request") -> Problem:
        """``400``: what was sent is not valid; ``errors`` name each offending field."""
        return cls(400, title, detail, slug, errors)

    @classmethod
    def malformed_json(cls, detail: str) -> Problem:
        """``400`` type ``malformed-json``: the body (or message) is not JSON at all."""
        return cls(400, "Malformed JSON", detail, "malformed-json", (FieldError("", "is not valid JSON"),))

    @classmethod
    def not_found(cls, title: str, detail: str, slug: str) -> Problem:
        """``404``: nothing with this id (or nothing the caller may read under this path)."""
        return cls(404, title, detail, slug)

    @classmethod
    def method_not_allowed(cls, allowed: str) -> Problem:
        """``405``: the URL answers other methods (the response also sends ``Allow``)."""
        return cls(405, "Method not allowed", f"This URL answers {allowed} only.", "method-not-allowed")

    @classmethod
    def conflict(cls, title: str, detail: str, error: FieldError, slug: str) -> Problem:
        """``409``: the request contradicts one already made (``error`` names the caller's own field only)."""
        return cls(409, title, detail, slug, (error,))

    @classmethod
    def state_conflict(cls, title: str, detail: str, slug: str) -> Problem:
        """``409``: the action does not fit the resource's state now (a finished request cannot be cancelled)."""
        return cls(409, title, detail, slug)

    @classmethod
    def unknown_request(cls) -> Problem:
        """``404``: no request has this id."""
        return cls(404, "Unknown request", "No request has this id.", "unknown-request")

    @classmethod
    def length_required(cls) -> Problem:
        """``411``: a body sent without ``Content-Length`` never reaches the app (the Functions host drops it)."""
        return cls(
            411,
            "Length required",
            "Send the body with a Content-Length header. A body sent without one (chunked transfer encoding) "
            "never reaches the app: the Functions host drops it.",
            "length-required",
            (
                FieldError.of_header(
                    "Content-Length", "is required: the body arrived empty because it had no Content-Length"
                ),
            ),
        )

    @classmethod
    def too_large(cls, limit_bytes: int) -> Problem:
        """``413``: the body passes ``limit_bytes``."""
        return cls(413, "Body too large", f"The body may be at most {limit_bytes} bytes.", "body-too-large")

    @classmethod
    def unsupported_media_type(cls) -> Problem:
        """``415``: the body is not sent as JSON."""
        return cls(415, "Unsupported media type", "Send the body as application/json.", "unsupported-media-type")

    @classmethod
    def unprocessable(cls, title: str, detail: str, *errors: FieldError, slug: str) -> Problem:
        """``422``: well-formed, but names something this app does not have (e.g. an unknown target)."""
        return cls(422, title, detail, slug, errors)

    @classmethod
    def misconfigured(cls, setting: str) -> Problem:
        """``500`` type ``misconfigured``: names the setting (never its value); retrying cannot help."""
        return cls(
            500,
            "Service misconfigured",
            f"The app setting {setting} is invalid, so no request can be accepted until an operator fixes it. "
            "Retrying will not help.",
            "misconfigured",
        )

    @classmethod
    def unauthenticated(cls, detail: str) -> Problem:
        """``401`` type ``unauthenticated``: no caller identity, or one that could not be read."""
        return cls(401, "Authentication required", detail, "unauthenticated")

    @classmethod
    def forbidden(cls, role: str) -> Problem:
        """``403`` type ``forbidden``: the caller is known but lacks the route's app role (named)."""
        return cls(
            403,
            "Role required",
            f"This route needs the app role {role}, which the caller does not hold. Ask an administrator to assign "
            "it to the calling identity (an app role assignment on the app's enterprise application).",
            "forbidden",
        )

    @classmethod
    def unavailable(cls) -> Problem:
        """``503``: a dependency of ours did not answer (the response also sends ``Retry-After``)."""
        return cls(
            503, "Temporarily unavailable", "A dependency of the service did not answer; retry later.", "unavailable"
        )


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
    return Problem.invalid("The request body is not valid", f"{len(errors)} field(s) need fixing; see errors.", *errors)
