"""The ``provisioning`` command: click commands over :class:`cli.client.ApiClient`.

Exit codes: 0 ok; 1 the request failed, was rejected or cancelled, or an
import had refused rows; 2 bad usage or the API refused the call (4xx, shown with its offending fields);
3 the API could not be reached, timed out or answered 5xx; 4 not authorised (401/403, no Entra token);
5 ``--watch`` gave up while the request was still pending.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli import render
from cli.client import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, Answer, ApiClient, Connection, JsonObject, TokenSource
from cli.client import default_credential as _default_credential
from cli.errors import CliError, ExitCode
from cli.importer import MAX_CHUNK, Importer, summarise
from cli.rows import Defaults, RowError, detect_format, parse
from cli.watch import Watcher, outcome_code
from cli.when import resolve
from shared.core.vocabulary import RequestStatus, Source

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Deps:
    """What the commands reach the outside world through; ``main(obj=Deps(...))`` replaces them."""

    transport: httpx.BaseTransport | None = None
    credential_factory: Callable[[], TokenSource] = _default_credential
    sleep: Callable[[float], None] = time.sleep


@dataclass
class State:
    """The global options, shared by every command."""

    connection: Connection
    as_json: bool
    deps: Deps = field(default_factory=Deps)
    out: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    def client(self) -> ApiClient:
        """A client for one command (closed by the caller's ``with``)."""
        deps = self.deps
        return ApiClient(self.connection, transport=deps.transport, credential_factory=deps.credential_factory)

    def emit(self, value: object, people: Callable[[], None]) -> None:
        """``--json``: ``value`` as JSON on stdout; otherwise what ``people`` prints."""
        if self.as_json:
            click.echo(render.dumps(value))
        else:
            people()


class _Cli(click.Group):
    """Turns a :class:`CliError` into a message on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            state = ctx.find_object(State)
            if state is not None and state.as_json:
                error: JsonObject = {"error": exc.message, "exitCode": int(exc.exit_code)}
                if exc.problem is not None:
                    error["problem"] = exc.problem.to_json()
                click.echo(json.dumps(error, ensure_ascii=False), err=True)
            else:
                console = state.err if state is not None else Console(stderr=True)
                render.print_error(console, exc.message, exc.problem.lines()[1:] if exc.problem else ())
            raise click.exceptions.Exit(int(exc.exit_code)) from exc


@click.group(cls=_Cli, epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None)
@click.option("--base-url", envvar="PROVISIONING_URL", default=DEFAULT_BASE_URL, show_default=True, show_envvar=True)
@click.option("--key", envvar="PROVISIONING_KEY", show_envvar=True, help="Function key, sent as x-functions-key.")
@click.option(
    "--entra-scope",
    envvar="PROVISIONING_ENTRA_SCOPE",
    show_envvar=True,
    help="Get a bearer token for this scope (e.g. api://<app id>/.default) with DefaultAzureCredential.",
)
@click.option(
    "--http-timeout",
    type=float,
    default=DEFAULT_TIMEOUT,
    show_default=True,
    envvar="PROVISIONING_HTTP_TIMEOUT",
    show_envvar=True,
    help="Seconds one HTTP exchange may take.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout for scripts (errors as JSON on stderr).")
@click.pass_context
def cli(
    ctx: click.Context, base_url: str, key: str | None, entra_scope: str | None, http_timeout: float, as_json: bool
) -> None:
    """Submit, watch and operate provisioning requests through the app's HTTP API."""
    deps = ctx.obj if isinstance(ctx.obj, Deps) else Deps()
    ctx.obj = State(Connection(base_url, key or None, entra_scope or None, http_timeout), as_json, deps)


def _accepted(answer: Answer, request_id: str | None = None) -> JsonObject:
    """A 202's body (the contract does not fix one for retry) with the request id and its ``Location``."""
    body: JsonObject = dict(answer.body) if isinstance(answer.body, dict) else {}
    if request_id:
        body.setdefault("requestId", request_id)
    if answer.location:
        body["location"] = answer.location
    return body


def _watch_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Give up after seconds.")(func)
    func = click.option(
        "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between polls."
    )(func)
    return click.option("--watch", is_flag=True, help="Follow the request until it is finished.")(func)


def _watch(state: State, client: ApiClient, request_id: str, interval: float, timeout: float | None) -> ExitCode:
    watcher = Watcher(client, interval, timeout, sleep=state.deps.sleep)
    if state.as_json:
        body, code = watcher.watch(request_id, _NoDisplay())
        click.echo(render.dumps(body))
        return code
    with Live(console=state.out, refresh_per_second=4, transient=False) as live:
        body, code = watcher.watch(request_id, _LiveDisplay(live))
    if not state.out.is_terminal:
        state.out.line()  # a terminal's cursor is already below the live display; a pipe's is not
    if code is ExitCode.PENDING:
        state.err.print(f"still pending after {timeout:g} s")
    return code


class _NoDisplay:
    def update(self, body: JsonObject) -> None:
        """Nothing: ``--json`` prints only the final state."""


@dataclass
class _LiveDisplay:
    live: Live

    def update(self, body: JsonObject) -> None:
        """Redraw the request in place."""
        self.live.update(render.request_view(body), refresh=True)


def _exit(code: ExitCode) -> None:
    if code is not ExitCode.OK:
        raise click.exceptions.Exit(int(code))


def _submit_body(
    file: Path | None, object_ids: Sequence[str], upns: Sequence[str], object_type: str
) -> dict[str, object]:
    if file is not None:
        if object_ids or upns:
            raise CliError("--file carries the subjects: leave out --object-id and --upn", ExitCode.USAGE)
        try:
            body = json.loads(click.open_file(str(file), encoding="utf-8-sig").read())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CliError(f"--file {file}: not a JSON request ({exc})", ExitCode.USAGE) from exc
        if not isinstance(body, dict):
            raise CliError(f"--file {file}: the request must be a JSON object", ExitCode.USAGE)
        return body
    if not object_ids and not upns:
        raise CliError("say who: --object-id, --upn or --file", ExitCode.USAGE)
    subjects: list[object] = [{"objectId": o, "objectTypeName": object_type} for o in object_ids]
    subjects += [{"userPrincipalName": u, "objectTypeName": object_type} for u in upns]
    return {"subjects": subjects}


@cli.command()
@click.option("--object-id", "object_ids", multiple=True, help="A subject's Entra object id (repeatable).")
@click.option("--upn", "upns", multiple=True, help="A user by userPrincipalName, resolved by the app (repeatable).")
@click.option("--type", "object_type", default="User", show_default=True, help="objectTypeName of the subjects.")
@click.option("--file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), help="A request JSON.")
@click.option("--target", help="A configured target's name.")
@click.option("--event-id", help="Idempotency key: the same id and body answer the existing request.")
@click.option("--not-before", help="Not before this time: RFC 3339, or a duration from now (2h, 1d).")
@_watch_options
@click.pass_obj
def submit(
    state: State,
    object_ids: tuple[str, ...],
    upns: tuple[str, ...],
    object_type: str,
    file: Path | None,
    target: str | None,
    event_id: str | None,
    not_before: str | None,
    watch: bool,
    interval: float,
    timeout: float | None,
) -> None:
    """Submit a provisioning request (POST /api/provision)."""
    body = _submit_body(file, object_ids, upns, object_type)
    extra = {"target": target, "eventId": event_id}
    if not_before:
        extra["notBefore"] = resolve(not_before, ago=False, option="--not-before")
    body.update({k: v for k, v in extra.items() if v})
    with state.client() as client:
        accepted = _accepted(client.submit(body))
        if watch:
            _exit(_watch(state, client, str(accepted.get("requestId")), interval, timeout))
            return
    state.emit(
        accepted,
        lambda: state.out.print(
            f"accepted request {accepted.get('requestId')} ({accepted.get('calls')} call(s)), "
            f"status {accepted.get('status')}\nfollow it: provisioning status {accepted.get('requestId')} --watch",
            markup=False,
        ),
    )


@cli.command()
@click.argument("request_id")
@_watch_options
@click.pass_obj
def status(state: State, request_id: str, watch: bool, interval: float, timeout: float | None) -> None:
    """Show a request; --watch follows it live. Exits 1 when it failed, was rejected or cancelled."""
    with state.client() as client:
        if watch:
            _exit(_watch(state, client, request_id, interval, timeout))
            return
        body = client.status(request_id).json_object()
    state.emit(body, lambda: state.out.print(render.request_view(body)))
    _exit(outcome_code(body))


@cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in RequestStatus]))
@click.option("--target")
@click.option("--source", type=click.Choice([s.value for s in Source]))
@click.option("--event-id")
@click.option("--object-id", help="Requests that have this subject.")
@click.option("--since", help="Created at or after: RFC 3339, or a duration back from now (24h, 7d).")
@click.option("--until", help="Created before: RFC 3339, or a duration back from now.")
@click.option("--top", type=click.IntRange(1, 200), help="Requests per page (the API's default is 50).")
@click.option("--all", "every_page", is_flag=True, help="Follow nextLink to the last page.")
@click.pass_obj
def list_requests(state: State, /, every_page: bool, **options: str | int | None) -> None:
    """List requests, newest first (GET /api/provision)."""
    names = {"event_id": "eventId", "object_id": "objectId"}
    filters = {names.get(k, k): str(v) for k, v in options.items() if v is not None}
    for moment in ("since", "until"):
        if moment in filters:
            filters[moment] = resolve(filters[moment], ago=True, option=f"--{moment}")
    with state.client() as client:
        page = client.list_page(filters).json_object()
        rows = _values(page)
        seen: set[str] = set()
        while every_page and isinstance(link := page.get("nextLink"), str) and link not in seen:
            seen.add(link)
            page = client.next_page(link).json_object()
            rows += _values(page)
    result: JsonObject = {"value": rows}
    if not every_page and isinstance(page.get("nextLink"), str):
        result["nextLink"] = page["nextLink"]
    state.emit(result, lambda: _print_list(state, rows, "nextLink" in result))


def _values(page: JsonObject) -> list[object]:
    value = page.get("value")
    if not isinstance(value, list):
        raise CliError("the API answered without a 'value' list", ExitCode.UNAVAILABLE)
    return value


def _print_list(state: State, rows: list[object], more: bool) -> None:
    state.out.print(render.summaries_table(rows))
    state.out.print(f"{len(rows)} request(s)" + ("; more with --all" if more else ""))


@cli.command()
@click.argument("request_id")
@_watch_options
@click.pass_obj
def retry(state: State, request_id: str, watch: bool, interval: float, timeout: float | None) -> None:
    """New attempts for a request's failed calls (POST /api/provision/{id}/retry)."""
    with state.client() as client:
        accepted = _accepted(client.retry(request_id), request_id)
        if watch:
            _exit(_watch(state, client, request_id, interval, timeout))
            return
    state.emit(
        accepted,
        lambda: state.out.print(f"retrying request {request_id}, status {accepted.get('status')}", markup=False),
    )


@cli.command()
@click.argument("request_id")
@click.pass_obj
def cancel(state: State, request_id: str) -> None:
    """Cancel what has not started yet (POST /api/provision/{id}/cancel)."""
    with state.client() as client:
        body = client.cancel(request_id).json_object()
    state.emit(body, lambda: state.out.print(render.request_view(body)))


@cli.command()
@click.pass_obj
def targets(state: State) -> None:
    """Each target's job status, backlog and drain estimate (GET /api/targets)."""
    with state.client() as client:
        body = client.targets().json_object()
    state.emit(body, lambda: state.out.print(render.targets_table(_values(body))))


@cli.command()
@click.option("--requeue", is_flag=True, help="Move messages back to their queue (POST /api/poison/requeue).")
@click.option("--queue", help="With --requeue: the poison queue to take them from.")
@click.option("--id", "message_ids", multiple=True, help="With --requeue: only this message (repeatable).")
@click.pass_obj
def poison(state: State, requeue: bool, queue: str | None, message_ids: tuple[str, ...]) -> None:
    """Poison messages with the ledger's reason (GET /api/poison), or --requeue them."""
    if not requeue:
        if queue or message_ids:
            raise CliError("--queue and --id go with --requeue", ExitCode.USAGE)
        with state.client() as client:
            body = client.poison().json_object()
        state.emit(body, lambda: state.out.print(render.poison_table(_values(body))))
        return
    if not queue:
        raise CliError("--requeue needs --queue", ExitCode.USAGE)
    with state.client() as client:
        body = client.requeue(queue, message_ids).json_object()
    state.emit(
        body,
        lambda: state.out.print(f"requeued {render.text(body.get('requeued'))} message(s) from {queue}", markup=False),
    )


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--target", help="Target of rows without a target column.")
@click.option("--type", "object_type", default="User", show_default=True, help="objectTypeName of rows without one.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the name or content.")
@click.option("--salt", default="", help="Mixed into derived event ids: a new salt sends the same rows again.")
@click.option("--chunk-size", type=click.IntRange(1, MAX_CHUNK), default=MAX_CHUNK, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the requests as JSON Lines; send nothing.")
@click.pass_obj
def import_file(
    state: State,
    file: Path,
    target: str | None,
    object_type: str,
    fmt: str | None,
    salt: str,
    chunk_size: int,
    dry_run: bool,
) -> None:
    """Submit every row of a CSV or JSON Lines file (POST /api/provision/batch); safe to run again."""
    try:
        with click.open_file(str(file), encoding="utf-8-sig") as handle:
            content = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{file}: cannot read ({exc})", ExitCode.USAGE) from exc
    chosen = "csv" if fmt == "csv" else "jsonl" if fmt == "jsonl" else detect_format(str(file), content)
    parsed = parse(content, chosen, Defaults(target=target, object_type=object_type, salt=salt))
    if dry_run:
        for row in parsed.rows:
            click.echo(json.dumps(row.request, ensure_ascii=False))
        _report_local(state, parsed.errors)
        _exit(ExitCode.FAILED if parsed.errors else ExitCode.OK)
        return
    with state.client() as client, _progress(state, len(parsed.rows)) as advance:
        importer = Importer(client, chunk_size, sleep=state.deps.sleep)
        outcomes = importer.run(parsed.rows, advance)
    summary = summarise(outcomes, parsed.errors)

    def people() -> None:
        state.out.print(f"{summary.rows} row(s): {summary.accepted} accepted, {summary.refused} refused")
        if table := render.import_summary(outcomes, parsed.errors):
            state.out.print(table)

    state.emit(summary.to_json(), people)
    _exit(ExitCode.FAILED if summary.refused else ExitCode.OK)


def _report_local(state: State, errors: Sequence[RowError]) -> None:
    for error in errors:
        where = f" {error.field}" if error.field else ""
        state.err.print(f"line {error.line}{where}: {error.detail}", markup=False)


@contextmanager
def _progress(state: State, total: int) -> Iterator[Callable[[int], None]]:
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=state.err, disable=state.as_json, transient=False) as bar:
        task = bar.add_task("import", total=total)
        yield lambda n: bar.advance(task, n)


def main() -> None:
    """Entry point of the ``provisioning`` command."""
    cli(prog_name="provisioning")
