"""HTTP route templates (``items/{id:int}``, ``{name?}``, ``{*rest}``) matched the way the host does.

The host uses ASP.NET Core routing: literals match case-insensitively, a parameter takes one path
segment unless it is a catch-all, constraints filter matches, and more specific templates win over less
specific ones whatever the registration order.  Apps rely on all of this, so a simple prefix match
would make the devhost accept or reject different URLs than Azure.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote


class RouteError(ValueError):
    """A route template the devhost (and the host) cannot parse."""


def _is_int(v: str, lo: int, hi: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", v):
        return False
    return lo <= int(v) <= hi


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return v.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}


def _is_guid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": lambda v: _is_int(v, -(2**31), 2**31 - 1),
    "long": lambda v: _is_int(v, -(2**63), 2**63 - 1),
    "bool": lambda v: v.lower() in {"true", "false"},
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": lambda v: re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", v) is not None,
    "datetime": _is_datetime,
    "required": lambda v: v != "",
}


# Constraints with numbers, by (name, how many numbers): min(3), range(1,9), length(2,4)…
_WITH_NUMBERS: dict[tuple[str, int], Callable[[list[int]], Callable[[str], bool]]] = {
    ("min", 1): lambda n: lambda v: _is_int(v, n[0], 2**63),
    ("max", 1): lambda n: lambda v: _is_int(v, -(2**63), n[0]),
    ("range", 2): lambda n: lambda v: _is_int(v, n[0], n[1]),
    ("minlength", 1): lambda n: lambda v: len(v) >= n[0],
    ("maxlength", 1): lambda n: lambda v: len(v) <= n[0],
    ("length", 1): lambda n: lambda v: len(v) == n[0],
    ("length", 2): lambda n: lambda v: n[0] <= len(v) <= n[1],
}


def _constraint(text: str) -> Callable[[str], bool]:
    """Build one ASP.NET route constraint checker (``int``, ``min(3)``, ``regex(^a+$)``…)."""
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, re.DOTALL)
    if match is None:
        raise RouteError(f"bad route constraint {text!r}")
    kind, arg = match.group(1).lower(), match.group(2)
    if arg is None:
        if kind not in _SIMPLE:
            raise RouteError(f"unknown route constraint {text!r}")
        return _SIMPLE[kind]
    if kind == "regex":
        pattern = re.compile(arg, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    try:
        nums = [int(x) for x in arg.split(",")]
    except ValueError as exc:
        raise RouteError(f"bad route constraint {text!r}") from exc
    build = _WITH_NUMBERS.get((kind, len(nums)))
    if build is None:
        raise RouteError(f"unknown route constraint {text!r}")
    return build(nums)


@dataclass(frozen=True)
class _Param:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    checks: tuple[Callable[[str], bool], ...]


_PARAM = re.compile(r"\{([^{}]*)\}")
_ESCAPED_SLASH = re.compile("(%2F)", re.IGNORECASE)


def kestrel_unescape(raw: str) -> str:
    """A path segment as the host's routing sees it: percent-decoded, except ``%2F``, which stays as sent.

    Kestrel decodes every escape of the path but ``/`` (decoding it would change the route), so ``a%0Ab``
    reaches a function as ``a\\nb`` and ``a%2Fb`` as ``a%2Fb`` (dotnet/aspnetcore#28965, #53480).
    """
    parts = _ESCAPED_SLASH.split(raw)  # with the escapes kept, at the odd places
    return "".join(part if i % 2 else unquote(part) for i, part in enumerate(parts))


def _parse_param(body: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    default: str | None = None
    optional = False
    # name[:constraint[:constraint…]][?|=default]; constraints may contain ':' only inside regex(...)
    if "=" in body:
        body, default = body.split("=", 1)
    if body.endswith("?"):
        optional = True
        body = body[:-1]
    parts = re.split(r":(?![^(]*\))", body)
    name = parts[0]
    if not re.fullmatch(r"\w+", name):
        raise RouteError(f"bad route parameter name {name!r}")
    checks = tuple(_constraint(p) for p in parts[1:] if p)
    return _Param(name, optional or default is not None or catch_all, catch_all, default, checks)


@dataclass
class RouteTemplate:
    """A compiled route template with its precedence (lower sorts first, as ASP.NET orders them)."""

    template: str
    regex: re.Pattern[str]
    params: dict[str, _Param]
    precedence: tuple[float, ...] = field(default=())

    def match(self, path: str) -> dict[str, str] | None:
        """Return the route params for ``path`` (without the route prefix), or None."""
        m = self.regex.fullmatch(path.strip("/"))
        if m is None:
            return None
        values: dict[str, str] = {}
        for name, param in self.params.items():
            raw = m.group(name)
            if raw is None or raw == "":
                if not param.optional:
                    return None
                if param.default is not None:
                    values[name] = param.default
                continue
            value = kestrel_unescape(raw)
            if not all(check(value) for check in param.checks):
                return None
            values[name] = value
        return values


def _precedence(pieces: list[str], seg_params: list[_Param]) -> float:
    """One segment's rank, lower tried first: literal 1, complex 2, constrained 3, plain 4, catch-all 5."""
    if not seg_params:
        return 1
    if seg_params[0].catch_all:
        return 5
    if len(pieces) > 3 or pieces[0] or pieces[2]:
        return 2  # complex segment, e.g. {a}.{b}
    if seg_params[0].checks:
        return 3
    return 4


def compile_route(template: str) -> RouteTemplate:
    """Compile a host route template into a regex over the path after the route prefix."""
    segments = [s for s in template.strip().strip("/").split("/")] if template.strip("/") else []
    pattern = ""
    params: dict[str, _Param] = {}
    precedence: list[float] = []
    for index, segment in enumerate(segments):
        pieces = _PARAM.split(segment)
        seg_regex = ""
        seg_params: list[_Param] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                seg_regex += re.escape(piece)
                continue
            param = _parse_param(piece)
            if param.name in params:
                raise RouteError(f"route {template!r}: parameter {param.name!r} appears twice")
            if param.catch_all and index != len(segments) - 1:
                raise RouteError(f"route {template!r}: a catch-all parameter must be the last segment")
            params[param.name] = param
            seg_params.append(param)
            body = ".*" if param.catch_all else "[^/]+"
            seg_regex += f"(?P<{param.name}>{body})"
        whole_optional = len(pieces) == 3 and pieces[0] == pieces[2] == "" and seg_params[0].optional
        sep = "/" if pattern else ""
        if whole_optional:
            pattern += f"(?:{sep}{seg_regex})?"
        else:
            pattern += sep + seg_regex
        precedence.append(_precedence(pieces, seg_params))
    return RouteTemplate(
        template=template,
        regex=re.compile(pattern, re.IGNORECASE | re.DOTALL),
        params=params,
        precedence=(*precedence, 0),
    )


@dataclass(frozen=True)
class RouteMatch:
    """The outcome of routing a request."""

    target: str | None
    route_params: dict[str, str]
    method_not_allowed: bool = False


class Router:
    """Routes ``(method, path)`` to a target name, honouring precedence and allowed methods."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self._routes: list[tuple[RouteTemplate, frozenset[str] | None, str]] = []

    def add(self, template: str, methods: Iterable[str] | None, target: str) -> None:
        """Register ``target`` for ``template``; ``methods`` None means every method."""
        compiled = compile_route(template)
        allowed = frozenset(m.upper() for m in methods) if methods else None
        self._routes.append((compiled, allowed, target))
        self._routes.sort(key=lambda r: r[0].precedence)

    def strip_prefix(self, path: str) -> str | None:
        """Return the path below the route prefix, or None if outside it."""
        path = path.strip("/")
        if not self.prefix:
            return path
        if path.lower() == self.prefix.lower():
            return ""
        if path.lower().startswith(self.prefix.lower() + "/"):
            return path[len(self.prefix) + 1 :]
        return None

    def route(self, method: str, path: str) -> RouteMatch:
        """Find the first route (by precedence) that matches ``path`` and allows ``method``."""
        rest = self.strip_prefix(path)
        if rest is None:
            return RouteMatch(None, {})
        path_matched = False
        for template, allowed, target in self._routes:
            params = template.match(rest)
            if params is None:
                continue
            if allowed is not None and method.upper() not in allowed:
                path_matched = True
                continue
            return RouteMatch(target, params)
        return RouteMatch(None, {}, method_not_allowed=path_matched)


def query_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Flatten a query string like the host: repeated keys are joined with commas."""
    result: dict[str, str] = {}
    for key, value in pairs:
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def header_dict(pairs: Iterable[tuple[str, str]]) -> Mapping[str, str]:
    """Flatten request headers like the host: repeated headers are joined with ``, ``."""
    result: dict[str, str] = {}
    for key, value in pairs:
        k = key.lower()
        result[k] = f"{result[k]}, {value}" if k in result else value
    return result
