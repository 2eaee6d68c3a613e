"""Problem's named constructors give exactly the problem+json bodies the routes answered before them (the
contract callers and Logic Apps run histories read), one status and ``type`` per kind of refusal."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contract.problems import FieldError, Problem

T = "https://github.com/provision-on-demand/problems/"


@pytest.mark.parametrize(
    ("problem", "body"),
    [
        (
            Problem.invalid("Invalid path", "The path names no valid job.", FieldError("/jobId", "bad")),
            {
                "type": T + "invalid-request",
                "title": "Invalid path",
                "status": 400,
                "detail": "The path names no valid job.",
                "errors": [{"pointer": "/jobId", "detail": "bad"}],
            },
        ),
        (
            Problem.malformed_json("The body is not valid JSON: x"),
            {
                "type": T + "malformed-json",
                "title": "Malformed JSON",
                "status": 400,
                "detail": "The body is not valid JSON: x",
                "errors": [{"pointer": "", "detail": "is not valid JSON"}],
            },
        ),
        (
            Problem.not_found("Unknown request", "No request has this id.", "unknown-request"),
            {
                "type": T + "unknown-request",
                "title": "Unknown request",
                "status": 404,
                "detail": "No request has this id.",
            },
        ),
        (
            Problem.method_not_allowed("GET"),
            {
                "type": T + "method-not-allowed",
                "title": "Method not allowed",
                "status": 405,
                "detail": "This URL answers GET only.",
            },
        ),
        (
            Problem.conflict("eventId already used", "d", FieldError("/eventId", "used"), "event-conflict"),
            {
                "type": T + "event-conflict",
                "title": "eventId already used",
                "status": 409,
                "detail": "d",
                "errors": [{"pointer": "/eventId", "detail": "used"}],
            },
        ),
        (
            Problem.length_required(),
            {
                "type": T + "length-required",
                "title": "Length required",
                "status": 411,
                "detail": "Send the body with a Content-Length header. A body sent without one (chunked transfer "
                "encoding) never reaches the app: the Functions host drops it.",
                "errors": [
                    {
                        "header": "Content-Length",
                        "detail": "is required: the body arrived empty because it had no Content-Length",
                    }
                ],
            },
        ),
        (
            Problem.too_large(262144),
            {
                "type": T + "body-too-large",
                "title": "Body too large",
                "status": 413,
                "detail": "The body may be at most 262144 bytes.",
            },
        ),
        (
            Problem.unsupported_media_type(),
            {
                "type": T + "unsupported-media-type",
                "title": "Unsupported media type",
                "status": 415,
                "detail": "Send the body as application/json.",
            },
        ),
        (
            Problem.unprocessable("Unknown target", "d", FieldError("/target", "unknown"), slug="unknown-target"),
            {
                "type": T + "unknown-target",
                "title": "Unknown target",
                "status": 422,
                "detail": "d",
                "errors": [{"pointer": "/target", "detail": "unknown"}],
            },
        ),
        (
            Problem.misconfigured("PROVISIONING_TARGETS"),
            {
                "type": T + "misconfigured",
                "title": "Service misconfigured",
                "status": 500,
                "detail": "The app setting PROVISIONING_TARGETS is invalid, so no request can be accepted until an "
                "operator fixes it. Retrying will not help.",
            },
        ),
        (
            Problem.unavailable(),
            {
                "type": T + "unavailable",
                "title": "Temporarily unavailable",
                "status": 503,
                "detail": "A dependency of the service did not answer; retry later.",
            },
        ),
    ],
    ids=lambda value: str(value.status) if isinstance(value, Problem) else "",
)
def test_each_constructor_renders_the_body_the_contract_names(problem: Problem, body: dict[str, Any]) -> None:
    assert problem.to_body() == body


def test_repointed_maps_body_pointers_and_keeps_header_errors() -> None:
    problem = Problem.invalid(
        "t", "d", FieldError("/subjects/0", "bad"), FieldError.of_header("client-request-id", "bad")
    )
    moved = problem.repointed(lambda p: "/data" + p)
    assert moved.to_body()["errors"] == [
        {"pointer": "/data/subjects/0", "detail": "bad"},
        {"header": "client-request-id", "detail": "bad"},
    ]
    assert (moved.status, moved.title, moved.detail, moved.slug) == (400, "t", "d", "invalid-request")
