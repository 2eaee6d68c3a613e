"""Every command's request shape, rendering, ``--json`` and exit codes, against a fake app."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cli.client import EntraAuth
from cli.errors import ExitCode
from tests.paths import ROOT
from tests.unit.cli.harness import BASE, REQUEST_ID, FakeCredential, answer, problem, request_body, run

ACCEPTED = answer(
    202, {"requestId": REQUEST_ID, "status": "pending", "calls": 1}, {"Location": f"{BASE}/api/provision/{REQUEST_ID}"}
)
USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"


# submit ---------------------------------------------------------------------------------------------------------


def test_submit_posts_the_subject_and_prints_where_to_follow_it() -> None:
    done = run(["submit", "--object-id", USER, "--target", "seed-scim-app", "--event-id", "hr-1"], [ACCEPTED])
    assert done.code == 0, done.err
    (request,) = done.requests
    assert (request.method, request.url.path) == ("POST", "/api/provision")
    assert request.headers["Content-Type"] == "application/json"
    assert done.bodies() == [
        {"subjects": [{"objectId": USER, "objectTypeName": "User"}], "target": "seed-scim-app", "eventId": "hr-1"}
    ]
    assert REQUEST_ID in done.out
    assert f"provisioning status {REQUEST_ID} --watch" in done.out


def test_submit_json_is_the_answer_with_its_location() -> None:
    done = run(["--json", "submit", "--object-id", USER, "--target", "t"], [ACCEPTED])
    assert done.json() == {
        "requestId": REQUEST_ID,
        "status": "pending",
        "calls": 1,
        "location": f"{BASE}/api/provision/{REQUEST_ID}",
    }


def test_submit_by_upn_sends_user_principal_name_instead_of_object_id() -> None:
    done = run(["submit", "--upn", "ada@contoso.com", "--upn", "bob@contoso.com", "--target", "t"], [ACCEPTED])
    assert done.bodies()[0]["subjects"] == [
        {"userPrincipalName": "ada@contoso.com", "objectTypeName": "User"},
        {"userPrincipalName": "bob@contoso.com", "objectTypeName": "User"},
    ]


def test_submit_from_a_file_with_options_over_it(tmp_path: Path) -> None:
    request = {"target": "from-file", "subjects": [{"objectId": "g1", "objectTypeName": "Group"}]}
    (tmp_path / "r.json").write_text(json.dumps(request))
    done = run(
        ["submit", "--file", str(tmp_path / "r.json"), "--target", "seed-group-app", "--not-before", "2h"], [ACCEPTED]
    )
    body = done.bodies()[0]
    assert body["subjects"] == request["subjects"]
    assert body["target"] == "seed-group-app"
    not_before = datetime.fromisoformat(body["notBefore"])
    assert body["notBefore"].endswith("Z")
    assert timedelta(hours=1, minutes=59) < not_before - datetime.now(UTC) <= timedelta(hours=2)


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--target", "t"],
        ["submit", "--file", "r.json", "--object-id", USER],
        ["submit", "--object-id", USER, "--not-before", "tomorrow"],
        ["submit", "--object-id", USER, "--not-before", "2026-12-02T06:00:00"],
    ],
)
def test_submit_usage_errors_send_nothing_and_exit_2(args: list[str]) -> None:
    done = run(args)
    assert done.code == ExitCode.USAGE
    assert done.requests == []
    assert "error:" in done.err


def test_a_refusal_shows_each_offending_field_and_exits_2() -> None:
    refusal = problem(400, "The request body is not valid", [("/subjects/0/objectId", "is required")], "1 field(s)")
    done = run(["submit", "--upn", "x", "--target", "t"], [answer(400, refusal)])
    assert done.code == ExitCode.USAGE
    assert "400 The request body is not valid: 1 field(s)" in done.err
    assert "/subjects/0/objectId: is required" in done.err
    assert done.out == ""


def test_a_refusal_with_json_is_json_on_stderr() -> None:
    refusal = problem(422, "Unknown target", [("/target", "is not configured")])
    done = run(["--json", "submit", "--object-id", USER, "--target", "nope"], [answer(422, refusal)])
    assert done.code == ExitCode.USAGE
    assert done.out == ""
    error = json.loads(done.err)
    assert error["exitCode"] == 2
    assert error["problem"]["errors"] == [{"pointer": "/target", "detail": "is not configured"}]


# connection, auth, transport errors -------------------------------------------------------------------------------


def test_the_key_goes_in_a_header_and_is_never_printed() -> None:
    key = "s3cr3t-function-key"
    done = run(["--key", key, "status", REQUEST_ID], [answer(401, problem(401, "Unauthorized"))])
    assert done.requests[0].headers["x-functions-key"] == key
    assert "code=" not in str(done.requests[0].url)
    assert done.code == ExitCode.UNAUTHORISED
    assert key not in done.out + done.err


def test_the_key_comes_from_the_environment_too() -> None:
    done = run(["status", REQUEST_ID], [answer(200, request_body("succeeded", {"succeeded": 1}))],
               env={"PROVISIONING_KEY": "k-env", "PROVISIONING_URL": "https://prov.example.net"})  # fmt: skip
    assert done.requests[0].headers["x-functions-key"] == "k-env"
    assert str(done.requests[0].url).startswith("https://prov.example.net/api/provision/")


def test_no_key_or_token_over_plain_http_to_another_host() -> None:
    done = run(["--base-url", "http://prov.example.net", "--key", "k", "targets"])
    assert done.code == ExitCode.USAGE
    assert done.requests == []
    assert "plain http" in done.err


def test_an_entra_token_is_sent_as_bearer_and_never_printed() -> None:
    credential = FakeCredential()
    done = run(["--entra-scope", "api://prov/.default", "targets"], [answer(403, problem(403, "Forbidden"))],
               credential=credential)  # fmt: skip
    assert done.requests[0].headers["Authorization"] == "Bearer token-1"
    assert credential.scopes == [("api://prov/.default",)]
    assert done.code == ExitCode.UNAUTHORISED
    assert "token-1" not in done.out + done.err


def test_no_entra_token_exits_4_without_calling() -> None:
    done = run(["--entra-scope", "api://prov/.default", "targets"], credential=FakeCredential(fail=True))
    assert done.code == ExitCode.UNAUTHORISED
    assert done.requests == []
    assert "no Entra token" in done.err


def test_the_default_credential_is_azure_identitys_chain() -> None:
    from azure.identity import DefaultAzureCredential

    from cli.client import default_credential

    assert isinstance(default_credential(), DefaultAzureCredential)


def test_an_entra_token_is_fetched_again_before_it_expires() -> None:
    now = [1_000.0]
    credential = FakeCredential(expires_on=1_000 + 3600)
    auth = EntraAuth(credential, "s", clock=lambda: now[0])
    first = next(auth.auth_flow(httpx.Request("GET", "http://127.0.0.1/")))
    again = next(auth.auth_flow(httpx.Request("GET", "http://127.0.0.1/")))
    now[0] += 3600 - 299
    later = next(auth.auth_flow(httpx.Request("GET", "http://127.0.0.1/")))
    assert [r.headers["Authorization"] for r in (first, again, later)] == ["Bearer token-1"] * 2 + ["Bearer token-2"]


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ReadTimeout("slow"), ExitCode.UNAVAILABLE),
        (httpx.ConnectError("refused"), ExitCode.UNAVAILABLE),
        (answer(503, problem(503, "Storage unavailable"), {"Retry-After": "10"}), ExitCode.UNAVAILABLE),
        (answer(404, problem(404, "Unknown request")), ExitCode.USAGE),
    ],
)
def test_transport_failures_and_refusals_have_their_exit_codes(failure: object, code: ExitCode) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, Exception):
            raise failure
        assert isinstance(failure, httpx.Response)
        return failure

    done = run(["status", REQUEST_ID], handler)
    assert done.code == code
    assert done.err.startswith("error: GET http://127.0.0.1:7071/api/provision/")


def test_an_answer_without_a_problem_body_is_named_by_its_reason() -> None:
    done = run(["targets"], [httpx.Response(404)])
    assert done.code == ExitCode.USAGE
    assert "GET http://127.0.0.1:7071/api/targets: 404 Not Found" in done.err


def test_a_request_id_is_checked_before_it_goes_into_a_path() -> None:
    done = run(["status", "../../admin/host/status"])
    assert done.code == ExitCode.USAGE
    assert done.requests == []


# status -----------------------------------------------------------------------------------------------------------


CALL = {"callId": "call-0001", "subject": {"objectId": USER, "objectTypeName": "User"}, "status": "failed",
        "attempts": 1, "errorCode": "EntryConflict", "recommendedAction": "Fix matching"}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "code"),
    [("succeeded", 0), ("pending", 0), ("failed", 1), ("rejected", 1), ("cancelled", 1)],
)
def test_status_exits_by_the_requests_outcome(status: str, code: int) -> None:
    done = run(
        ["status", REQUEST_ID],
        [answer(202 if status == "pending" else 200, request_body(status, {"failed": 1}, [CALL]))],
    )
    assert done.code == code
    assert done.requests[0].url.path == f"/api/provision/{REQUEST_ID}"
    assert status in done.out
    assert "EntryConflict" in done.out
    assert "Fix matching" in done.out


def test_what_the_api_says_is_shown_as_text_never_as_markup() -> None:
    call = {**CALL, "recommendedAction": "Grant [bold]Directory.Read[/bold] to the app"}
    done = run(["status", REQUEST_ID], [answer(200, request_body("failed", {"failed": 1}, [call]))])
    assert "[bold]Directory.Read[/bold]" in done.out.replace("\n", "").replace("│", "").replace(" ", "")


def test_status_json_is_the_apis_body() -> None:
    body = request_body("succeeded", {"succeeded": 1})
    done = run(["--json", "status", REQUEST_ID], [answer(200, body)])
    assert done.json() == body


def _pending(n: int) -> httpx.Response:
    return answer(202, request_body("pending", {"queued": 3 - n, "succeeded": n}), {"Retry-After": "2"})


def test_watch_polls_until_finished_and_exits_0_on_success() -> None:
    sleeps: list[float] = []
    answers = [_pending(0), _pending(1), answer(200, request_body("succeeded", {"succeeded": 3}))]
    done = run(["status", REQUEST_ID, "--watch", "--interval", "5"], answers, sleeps=sleeps)
    assert done.code == 0, done.err
    assert len(done.requests) == 3
    assert sleeps == [2.0, 2.0], "Retry-After (2 s) is shorter than --interval (5 s)"
    assert "3/3 calls finished" in done.out


def test_watch_exits_1_when_the_request_fails() -> None:
    done = run(
        ["--json", "status", REQUEST_ID, "--watch"], [_pending(0), answer(200, request_body("failed", {"failed": 3}))]
    )
    assert done.code == ExitCode.FAILED
    assert done.json()["status"] == "failed", "--json prints only the final state"


def test_watch_gives_up_with_exit_5_at_its_timeout() -> None:
    done = run(["status", REQUEST_ID, "--watch", "--interval", "1", "--timeout", "0.5"], [_pending(0)])
    assert done.code == ExitCode.PENDING
    assert "still pending" in done.err


def test_submit_watch_follows_the_new_request() -> None:
    done = run(["submit", "--object-id", USER, "--target", "t", "--watch"],
               [ACCEPTED, answer(200, request_body("succeeded", {"succeeded": 1}))])  # fmt: skip
    assert done.code == 0
    assert [r.method for r in done.requests] == ["POST", "GET"]


# list -------------------------------------------------------------------------------------------------------------


def _summary(request_id: str, status: str = "failed") -> dict[str, object]:
    return {"requestId": request_id, "eventId": "e", "source": "http", "target": "t", "status": status,
            "createdAt": "2026-12-02T09:00:00Z", "updatedAt": "2026-12-02T09:00:01Z", "counts": {"failed": 1},
            "callCount": 1, "objectIds": [USER]}  # fmt: skip


def test_list_sends_the_filters_by_their_api_names() -> None:
    done = run(
        ["list", "--status", "failed", "--target", "t", "--source", "queue", "--event-id", "hr-1",
         "--object-id", USER, "--since", "2026-12-01T00:00:00+01:00", "--until", "1h", "--top", "10"],
        [answer(200, {"value": [_summary("a" * 32)]})],
    )  # fmt: skip
    assert done.code == 0, done.err
    params = dict(done.requests[0].url.params)
    assert params.pop("until").endswith("Z")
    assert params == {"status": "failed", "target": "t", "source": "queue", "eventId": "hr-1",
                      "objectId": USER, "since": "2026-11-30T23:00:00Z", "top": "10"}  # fmt: skip
    assert "a" * 32 in done.out


@pytest.mark.parametrize("args", [["list", "--top", "201"], ["list", "--status", "done"], ["list", "--since", "x"]])
def test_list_refuses_bad_filters_before_calling(args: list[str]) -> None:
    done = run(args)
    assert done.code == ExitCode.USAGE
    assert done.requests == []


def test_list_all_follows_next_link_on_the_same_origin() -> None:
    pages = [
        answer(200, {"value": [_summary("a" * 32)], "nextLink": f"{BASE}/api/provision?status=failed&skip=tok1"}),
        answer(200, {"value": [_summary("b" * 32)], "nextLink": f"{BASE}/api/provision?status=failed&skip=tok2"}),
        answer(200, {"value": [_summary("c" * 32)]}),
    ]
    done = run(["--json", "list", "--status", "failed", "--all"], pages)
    assert [r["requestId"] for r in done.json()["value"]] == ["a" * 32, "b" * 32, "c" * 32]
    assert "nextLink" not in done.json()
    assert [r.url.params.get("skip") for r in done.requests] == [None, "tok1", "tok2"]


def test_list_without_all_hands_the_next_link_on() -> None:
    link = f"{BASE}/api/provision?skip=tok1"
    done = run(["--json", "list"], [answer(200, {"value": [], "nextLink": link})])
    assert done.json() == {"value": [], "nextLink": link}
    assert len(done.requests) == 1


def test_list_all_never_sends_the_key_to_another_origin() -> None:
    pages = [answer(200, {"value": [], "nextLink": "https://elsewhere.example/api/provision?skip=1"})]
    done = run(["--key", "k", "list", "--all"], pages)
    assert done.code == ExitCode.UNAVAILABLE
    assert len(done.requests) == 1
    assert "not followed" in done.err


# retry, cancel, targets, poison --------------------------------------------------------------------------------


def test_retry_posts_to_the_retry_route() -> None:
    done = run(["--json", "retry", REQUEST_ID], [ACCEPTED])
    assert (done.requests[0].method, done.requests[0].url.path) == ("POST", f"/api/provision/{REQUEST_ID}/retry")
    assert done.json()["location"].endswith(REQUEST_ID)


def test_retry_answered_without_a_body_still_says_where_to_look() -> None:
    location = f"{BASE}/api/provision/{REQUEST_ID}"
    done = run(["--json", "retry", REQUEST_ID], [httpx.Response(202, headers={"Location": location})])
    assert done.code == 0, done.err
    assert done.json() == {"requestId": REQUEST_ID, "location": location}


def test_retry_with_nothing_to_retry_shows_why_and_exits_2() -> None:
    refusal = problem(409, "Nothing to retry", detail="No call of this request failed.")
    done = run(["retry", REQUEST_ID], [answer(409, refusal)])
    assert done.code == ExitCode.USAGE
    assert "409 Nothing to retry: No call of this request failed." in done.err


def test_cancel_posts_and_shows_the_request() -> None:
    body = request_body("cancelled", {"cancelled": 2})
    done = run(["cancel", REQUEST_ID], [answer(200, body)])
    assert (done.requests[0].method, done.requests[0].url.path) == ("POST", f"/api/provision/{REQUEST_ID}/cancel")
    assert done.code == 0
    assert "cancelled" in done.out


TARGETS = {"value": [{"name": "seed-scim-app", "servicePrincipalId": "sp", "jobId": "scim.1", "ruleId": "r",
                      "jobStatus": {"code": "Quarantine", "quarantine": {"reason": "EncounteredQuarantineException"}},
                      "backlog": {"queued": 7, "scheduled": 2, "waiting": 1, "running": 0},
                      "estimatedDrainSeconds": 14}]}  # fmt: skip


def test_targets_table_and_json() -> None:
    people = run(["targets"], [answer(200, TARGETS)])
    assert people.requests[0].url.path == "/api/targets"
    row = next(line for line in people.out.splitlines() if "seed-scim-app" in line)
    assert re.search(r"Quarantine.*EncounteredQuarantineException.*7.*2.*1.*0.*14 s", row), people.out
    assert run(["--json", "targets"], [answer(200, TARGETS)]).json() == TARGETS


def test_poison_lists_messages_with_their_reason() -> None:
    body = {"value": [{"queue": "provisioning-requests-poison", "messageId": "m1", "requestId": "r1",
                       "reason": "subjects: is required"}]}  # fmt: skip
    done = run(["poison"], [answer(200, body)])
    assert done.requests[0].url.path == "/api/poison"
    assert "subjects: is required" in done.out


def test_poison_requeue_sends_the_queue_and_ids() -> None:
    done = run(["poison", "--requeue", "--queue", "provisioning-work-poison", "--id", "m1", "--id", "m2"],
               [answer(200, {"requeued": 2})])  # fmt: skip
    assert done.requests[0].url.path == "/api/poison/requeue"
    assert done.bodies() == [{"queue": "provisioning-work-poison", "messageIds": ["m1", "m2"]}]
    assert "requeued 2 message(s)" in done.out
    everything = run(["poison", "--requeue", "--queue", "q"], [answer(200, {"requeued": 5})])
    assert everything.bodies() == [{"queue": "q"}]


@pytest.mark.parametrize("args", [["poison", "--queue", "q"], ["poison", "--id", "m"], ["poison", "--requeue"]])
def test_poison_option_mistakes_exit_2(args: list[str]) -> None:
    done = run(args)
    assert done.code == ExitCode.USAGE
    assert done.requests == []


def test_the_command_is_installed_as_provisioning() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"provisioning": "cli.main:main"}
    from cli.main import main

    assert callable(main)
