"""Exit codes and the one error type every command turns into a message on stderr and an exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from shared.core.errors import ProvisioningError


class ExitCode(IntEnum):
    """What the process's exit status means (documented in the README and ``provisioning --help``)."""

    OK = 0
    #: The request failed, was rejected or cancelled (``status``/``--watch``), or ``import`` had refused rows.
    FAILED = 1
    #: Bad usage, a file that cannot be read, or the API refused the call (a 4xx other than 401/403).
    USAGE = 2
    #: The API could not be reached, timed out, or answered 5xx: trying again later may help.
    UNAVAILABLE = 3
    #: Not authorised: 401/403, or no Entra token could be had.
    UNAUTHORISED = 4
    #: ``--watch`` gave up (``--timeout``) while the request was still pending.
    PENDING = 5


@dataclass(frozen=True)
class FieldProblem:
    """One offending field of a problem+json answer: a JSON pointer into the body (or a header) and why."""

    detail: str
    pointer: str | None = None
    header: str | None = None

    @property
    def where(self) -> str:
        """The field as a person reads it: the pointer, the header, or ``(body)``."""
        return self.pointer or (f"header {self.header}" if self.header else "(body)")


@dataclass(frozen=True)
class ProblemDetails:
    """An RFC 9457 answer as the app sends it (``type``, ``title``, ``status``, ``detail``, ``errors``)."""

    status: int
    title: str
    detail: str = ""
    type: str = ""
    errors: tuple[FieldProblem, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, body: object, status: int, reason: str = "") -> ProblemDetails:
        """Read a problem body leniently: whatever is missing or of the wrong type is left empty."""
        fallback = reason or f"HTTP {status}"
        if not isinstance(body, dict):
            return cls(status=status, title=fallback)
        errors = tuple(
            FieldProblem(
                detail=str(entry.get("detail", "")),
                pointer=_text(entry.get("pointer")),
                header=_text(entry.get("header")),
            )
            for entry in body.get("errors") or []
            if isinstance(entry, dict)
        )
        raw_status = body.get("status")
        return cls(
            status=raw_status if isinstance(raw_status, int) and not isinstance(raw_status, bool) else status,
            title=str(body.get("title") or fallback),
            detail=str(body.get("detail") or ""),
            type=str(body.get("type") or ""),
            errors=errors,
        )

    def to_json(self) -> dict[str, object]:
        """The problem again as JSON (for ``--json`` output and the import summary)."""
        body: dict[str, object] = {"status": self.status, "title": self.title, "detail": self.detail}
        if self.type:
            body["type"] = self.type
        if self.errors:
            body["errors"] = [
                {k: v for k, v in (("pointer", e.pointer), ("header", e.header), ("detail", e.detail)) if v}
                for e in self.errors
            ]
        return body

    def lines(self) -> list[str]:
        """The problem as a person reads it: the title and detail, then one line per offending field."""
        head = f"{self.status} {self.title}" + (f": {self.detail}" if self.detail else "")
        return [head, *(f"  {e.where}: {e.detail}" for e in self.errors)]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class CliError(ProvisioningError):
    """A command could not do what was asked: a message for stderr, maybe the API's problem, an exit code."""

    def __init__(self, message: str, exit_code: ExitCode, problem: ProblemDetails | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.problem = problem
