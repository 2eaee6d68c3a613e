"""Route templates match like the host's ASP.NET routing: constraints, optional, catch-all, precedence."""

from __future__ import annotations

import pytest

from devhost.routes import RouteError, Router, compile_route, header_dict, query_params


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("items/{id}", "items/5", {"id": "5"}),
        ("items/{id:int}", "items/5", {"id": "5"}),
        ("items/{id:int}", "items/x", None),
        ("items/{id:int}", "items/99999999999", None),
        ("items/{id:long}", "items/99999999999", {"id": "99999999999"}),
        ("p/{name:alpha}", "p/abc", {"name": "abc"}),
        ("p/{name:alpha}", "p/ab1", None),
        ("g/{id:guid}", "g/6f1e3b52-0c39-4d8e-9d9e-0a1b2c3d4e5f", {"id": "6f1e3b52-0c39-4d8e-9d9e-0a1b2c3d4e5f"}),
        ("g/{id:guid}", "g/nope", None),
        ("b/{flag:bool}", "b/True", {"flag": "True"}),
        ("r/{n:range(1,3)}", "r/3", {"n": "3"}),
        ("r/{n:range(1,3)}", "r/4", None),
        ("l/{s:minlength(2):maxlength(3)}", "l/abcd", None),
        ("l/{s:minlength(2):maxlength(3)}", "l/abc", {"s": "abc"}),
        ("x/{v:regex(^a+$)}", "x/aaa", {"v": "aaa"}),
        ("x/{v:regex(^a+$)}", "x/ab", None),
        ("opt/{name?}", "opt", {}),
        ("opt/{name?}", "opt/z", {"name": "z"}),
        ("def/{name=zed}", "def", {"name": "zed"}),
        ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "files", {}),
        ("Items/{id}", "ITEMS/1", {"id": "1"}),  # literals are case-insensitive
        ("items/{id}", "items/a%2Fb", {"id": "a%2Fb"}),  # an encoded slash stays in one segment, and escaped (Kestrel)
        ("items/{id}", "items/a/b", None),
        ("f/{name}.{ext}", "f/report.pdf", {"name": "report", "ext": "pdf"}),
        ("", "", {}),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == expected


@pytest.mark.parametrize("template", ["a/{*rest}/b", "a/{x:nosuch}", "a/{x}/{x}", "a/{bad-name}"])
def test_bad_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteError):
        compile_route(template)


def test_router_prefers_literals_over_parameters_regardless_of_order() -> None:
    router = Router("api")
    router.add("items/{id}", None, "param")
    router.add("items/{id:int}", None, "int")
    router.add("items/new", None, "literal")
    router.add("{*all}", None, "catch")
    assert router.route("GET", "/api/items/new").target == "literal"
    assert router.route("GET", "/api/items/5").target == "int"
    assert router.route("GET", "/api/items/x").target == "param"
    assert router.route("GET", "/api/other/thing").target == "catch"
    assert router.route("GET", "/elsewhere").target is None


def test_router_methods_and_405() -> None:
    router = Router("api")
    router.add("things", ["get"], "get-things")
    router.add("things", ["POST"], "post-things")
    assert router.route("GET", "/api/things").target == "get-things"
    assert router.route("POST", "/api/things").target == "post-things"
    miss = router.route("DELETE", "/api/things")
    assert miss.target is None
    assert miss.method_not_allowed
    assert not router.route("DELETE", "/api/nothing").method_not_allowed


def test_empty_route_prefix_serves_at_root() -> None:
    router = Router("")
    router.add("hello", None, "h")
    assert router.route("GET", "/hello").target == "h"


def test_query_and_header_flattening() -> None:
    assert query_params([("a", "1"), ("b", "2"), ("a", "3")]) == {"a": "1,3", "b": "2"}
    assert header_dict([("X-A", "1"), ("x-a", "2"), ("Host", "h")]) == {"x-a": "1, 2", "host": "h"}
