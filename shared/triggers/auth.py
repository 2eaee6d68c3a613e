"""Who may call a route: the role check every HTTP handler but ``/api/health`` makes first.

``AUTH_MODE=entra``: App Service Authentication has validated the caller's Entra token and passed the caller
on in ``X-MS-CLIENT-PRINCIPAL*`` headers (which the platform strips from what callers send, so they cannot be
forged); the route's app role must be among the caller's roles. The function key is still checked by the
host before the app runs: a second factor. ``AUTH_MODE=keys`` (the default): function keys are the only check
and principal headers are never read, since without App Service Authentication nothing strips them.

Usage at the top of a handler::

    caller = auth.authorize(req, auth.SUBMIT, runtime)
    if isinstance(caller, func.HttpResponse):
        return caller  # 401 / 403 / 500 misconfigured
    ...  # caller is a Principal, or None under AUTH_MODE=keys; auth.requested_by(caller) for the ledger
"""

from __future__ import annotations

import json

import azure.functions as func

from shared import telemetry
from shared.contract.principal import OPERATE, SUBMIT, Principal, PrincipalError, parse_principal
from shared.contract.problems import PROBLEM_CONTENT_TYPE, Problem
from shared.core.errors import SettingsError
from shared.runtime import Runtime, get_runtime

__all__ = ["OPERATE", "SUBMIT", "Principal", "authorize", "requested_by"]

log = telemetry.get_logger(__name__)


def _problem(problem: Problem, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(problem.to_body()),
        status_code=problem.status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )


def _unauthenticated(detail: str) -> func.HttpResponse:
    return _problem(Problem.unauthenticated(detail), {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _forbidden(role: str) -> func.HttpResponse:
    return _problem(Problem.forbidden(role))


def _misconfigured(exc: SettingsError) -> func.HttpResponse:
    telemetry.report_invalid_setting(exc, during="a request")
    return _problem(Problem.misconfigured(exc.setting))


def authorize(req: func.HttpRequest, role: str, runtime: Runtime | None = None) -> Principal | func.HttpResponse | None:
    """The caller when it may use a route needing ``role``; None under ``AUTH_MODE=keys``; else the refusal.

    The refusal is a problem+json ``401`` (no principal, or malformed principal headers; with
    ``WWW-Authenticate: Bearer``), ``403`` naming the missing role, or ``500 misconfigured`` when the
    settings are invalid.
    """
    try:
        mode = (runtime or get_runtime()).settings.auth_mode
    except SettingsError as exc:
        return _misconfigured(exc)
    if mode != "entra":
        return None
    try:
        principal = parse_principal(req.headers)
    except PrincipalError as exc:
        log.warning("refused malformed principal headers: %s", exc)
        return _unauthenticated(f"The caller's identity could not be read ({exc}). Call with an Entra token.")
    if principal is None:
        return _unauthenticated("Call with an Entra access token for this app (Authorization: Bearer).")
    if not principal.has_role(role):
        log.info("refused: caller lacks the role", extra={"principalId": principal.id, "role": role})
        return _forbidden(role)
    return principal


def requested_by(caller: Principal | None) -> str | None:
    """What the ledger records as who asked (``requestedBy``): a name, else the object id; None with keys."""
    return caller.display_id if caller is not None else None
