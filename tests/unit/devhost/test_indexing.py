"""Indexing fails where the worker fails, and reads the metadata the devhost needs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devhost.indexing import IndexingError, index_app

HEADER = "import azure.functions as func\n"


def write_app(tmp_path: Path, body: str) -> Path:
    (tmp_path / "function_app.py").write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def test_reads_triggers_and_context(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path,
        """
        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.route(route="a/{id}", methods=["GET"])
        def a(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            return func.HttpResponse("a")

        @app.function_name("renamed")
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="")
        async def q(msg: func.QueueMessage) -> None:
            pass

        @app.timer_trigger(arg_name="t", schedule="0 * * * * *")
        def t(t: func.TimerRequest) -> None:
            pass
    """,
    )
    specs = {s.name: s for s in index_app(app_dir)}
    assert set(specs) == {"a", "renamed", "t"}
    assert specs["a"].kind == "http"
    assert specs["a"].wants_context
    assert specs["a"].auth_level == "anonymous"
    assert specs["a"].trigger["route"] == "a/{id}"
    assert specs["renamed"].kind == "queue"
    assert specs["renamed"].is_async
    assert specs["t"].kind == "timer"
    assert not specs["t"].wants_context
    assert [s.name for s in index_app(app_dir, ["t"])] == ["t"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """
            app = func.FunctionApp()
            @app.route(route="x")
            def x(_req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("x")
        """,
            "declared in Python but not in function.json",
        ),
        (
            """
            app = func.FunctionApp()
            @app.route(route="y")
            def y() -> func.HttpResponse:
                return func.HttpResponse("y")
        """,
            "declared in function.json but not in Python",
        ),
        (
            """
            app = func.FunctionApp()
            other = func.FunctionApp()
        """,
            "More than one",
        ),
        ("x = 1\n", "Could not find top level function app"),
        (
            """
            app = func.FunctionApp()
            @app.queue_trigger(arg_name="msg", queue_name="q", connection="")
            def q(msg: func.HttpRequest) -> None:
                pass
        """,
            "does not match its Python annotation",
        ),
        (
            """
            app = func.FunctionApp()
            @app.queue_trigger(arg_name="msg", queue_name="q", connection="")
            @app.table_output(arg_name="row", table_name="t", connection="")
            def q(msg: func.QueueMessage, row: func.Out[str]) -> None:
                pass
        """,
            "table are not supported",
        ),
        (
            """
            app = func.FunctionApp()
            @app.route(route="x")
            def x(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("x")
            @app.function_name("x")
            @app.route(route="y")
            def y(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("y")
        """,
            "unique",
        ),
        ("raise RuntimeError('import-time failure')\n", "import-time failure"),
    ],
)
def test_indexing_errors(tmp_path: Path, body: str, message: str) -> None:
    app_dir = write_app(tmp_path, body)
    with pytest.raises(IndexingError, match=message):
        index_app(app_dir)


def test_unknown_function_filter_fails(tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path,
        """
        app = func.FunctionApp()
        @app.route(route="x")
        def x(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("x")
    """,
    )
    with pytest.raises(IndexingError, match="nope"):
        index_app(app_dir, ["nope"])


def test_missing_script(tmp_path: Path) -> None:
    with pytest.raises(IndexingError, match="not found"):
        index_app(tmp_path)
