"""Loading ``function_app.py`` and reading its function metadata, like the Python worker's indexer.

The worker (``loader.index_function_app`` + ``functions.Registry.add_indexed_function``) imports the
script, requires exactly one top-level ``FunctionRegister``, calls ``app.get_functions()`` and then checks
each function's parameters against its bindings.  An app that fails any of these checks registers no
functions in Azure, so the devhost must fail the same way instead of quietly serving what it can.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from azure.functions import meta
from azure.functions.decorators.function_app import FunctionRegister

TriggerKind = Literal["http", "queue", "timer"]

_TRIGGER_KINDS: dict[str, TriggerKind] = {
    "httpTrigger": "http",
    "queueTrigger": "queue",
    "timerTrigger": "timer",
}
# Output binding types the devhost knows how to honour.  Only the HTTP response (``$return``) is
# supported; anything else must fail at startup rather than be silently dropped.
_SUPPORTED_OUTPUTS = {"http"}


class IndexingError(Exception):
    """The app cannot be indexed; the real host would register no functions at all."""


@dataclass(frozen=True)
class FunctionSpec:
    """Everything the devhost needs to know about one indexed function."""

    name: str
    kind: TriggerKind
    trigger: dict[str, Any]
    func: Callable[..., Any] = field(repr=False)
    trigger_param: str
    wants_context: bool
    is_async: bool
    trigger_annotation: Any = None
    directory: str = ""

    @property
    def auth_level(self) -> str:
        """HTTP auth level, lower-case (``anonymous``/``function``/``admin``)."""
        return str(self.trigger.get("authLevel", "function")).lower()


def _find_app(module: Any, script: Path) -> FunctionRegister:
    found: FunctionRegister | None = None
    for attr in dir(module):
        value = getattr(module, attr, None)
        if isinstance(value, FunctionRegister):
            if found is not None and value is not found:
                raise IndexingError(
                    f"More than one {type(found).__name__} or other top level function app instances "
                    f"are defined in {script}."
                )
            found = value
    if found is None:
        raise IndexingError(f"Could not find top level function app instances in {script}.")
    return found


def import_app_module(app_dir: Path, script_name: str = "function_app.py") -> Any:
    """Import the app script as module ``function_app`` with ``app_dir`` first on ``sys.path``.

    The worker imports the script by module name from the script root, so relative imports of sibling
    packages (``shared/``) resolve against the app directory, which is what we reproduce here.
    """
    script = app_dir / script_name
    if not script.is_file():
        raise IndexingError(f"{script} not found")
    app_root = str(app_dir.resolve())
    if app_root not in sys.path:
        sys.path.insert(0, app_root)
    module_name = Path(script_name).stem
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise IndexingError(f"importing {script} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _check_annotation(name: str, param: str, binding_type: str, annotation: Any) -> None:
    """Mirror the worker's annotation check via the library's own converter registry."""
    if annotation in (str, bytes):
        return  # the worker maps str/bytes to its 'generic' converter, which accepts them
    if not isinstance(annotation, type):
        raise IndexingError(
            f"cannot load the {name} function: binding {param} has invalid non-type annotation {annotation!r}"
        )
    converter = meta.get_binding_registry().get(binding_type)  # type: ignore[no-untyped-call]
    if converter is not None and not converter.check_input_type_annotation(annotation):
        raise IndexingError(
            f'cannot load the {name} function: type of {param} binding in function.json "{binding_type}" '
            f'does not match its Python annotation "{annotation.__name__}"'
        )


def _bound_by_name(name: str, bindings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The bindings a parameter receives, by parameter name (``$return`` is the function's result, not one)."""
    bound: dict[str, dict[str, Any]] = {}
    for b in bindings:
        bname = str(b.get("name"))
        if str(b.get("direction", "")).upper() == "INOUT":
            raise IndexingError(f'cannot load the {name} function: "inout" bindings are not supported')
        if bname == "$return":
            if str(b.get("direction", "")).upper() != "OUT":
                raise IndexingError(
                    f'cannot load the {name} function: "$return" binding must have direction set to "out"'
                )
            continue
        bound[bname] = b
    return bound


def _check_context(name: str, hints: dict[str, Any]) -> None:
    """A ``context`` parameter the host fills in must be unannotated or an ``azure.functions.Context``."""
    ctx_anno = hints.get("context")
    if "context" in hints and (not isinstance(ctx_anno, type) or ctx_anno.__name__ != "Context"):
        raise IndexingError(
            f'cannot load the {name} function: the "context" parameter is expected to be of type '
            f"azure.functions.Context, got {ctx_anno!r}"
        )


def _spec_for(function: Any, directory: str) -> FunctionSpec:
    name: str = function.get_function_name()
    func: Callable[..., Any] = function.get_user_function()
    bindings: list[dict[str, Any]] = json.loads(function.get_function_json())["bindings"]

    unsupported = sorted(
        {
            str(b.get("type"))
            for b in bindings
            if str(b.get("type")) not in _TRIGGER_KINDS and str(b.get("type")) not in _SUPPORTED_OUTPUTS
        }
    )
    if unsupported:
        raise IndexingError(
            f"function {name}: binding type(s) {', '.join(unsupported)} are not supported by the devhost "
            f"(supported: {', '.join(sorted([*_TRIGGER_KINDS, *_SUPPORTED_OUTPUTS]))})"
        )
    triggers = [b for b in bindings if str(b.get("type")) in _TRIGGER_KINDS]
    if len(triggers) != 1:
        raise IndexingError(f"function {name}: expected exactly one trigger, found {len(triggers)}")
    trigger = triggers[0]

    try:
        params = dict(inspect.signature(func).parameters)
        hints = typing.get_type_hints(func)
    except (TypeError, ValueError, NameError) as exc:
        raise IndexingError(f"cannot load the {name} function: {exc}") from exc

    bound = _bound_by_name(name, bindings)
    wants_context = "context" in params and "context" not in bound
    if wants_context:
        params.pop("context")
        _check_context(name, hints)
    extra_py = set(params) - set(bound)
    if extra_py:
        raise IndexingError(
            f"cannot load the {name} function: the following parameters are declared in Python but not "
            f"in function.json: {sorted(extra_py)!r}"
        )
    extra_json = set(bound) - set(params)
    if extra_json:
        raise IndexingError(
            f"cannot load the {name} function: the following parameters are declared in function.json "
            f"but not in Python: {sorted(extra_json)!r}"
        )
    trigger_param = str(trigger["name"])
    if trigger_param in hints:
        _check_annotation(name, trigger_param, str(trigger["type"]), hints[trigger_param])

    return FunctionSpec(
        name=name,
        kind=_TRIGGER_KINDS[str(trigger["type"])],
        trigger=trigger,
        func=func,
        trigger_param=trigger_param,
        wants_context=wants_context,
        is_async=inspect.iscoroutinefunction(func),
        trigger_annotation=hints.get(trigger_param),
        directory=directory,
    )


def index_app(app_dir: Path, only: Sequence[str] | None = None) -> list[FunctionSpec]:
    """Import the app and return the specs of the functions to host.

    ``only`` restricts hosting like ``func start --functions``; naming an unknown function is an error
    so a typo in a script does not silently host nothing.
    """
    module = import_app_module(app_dir)
    app = _find_app(module, app_dir / "function_app.py")
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise IndexingError(f"app.get_functions() failed: {type(exc).__name__}: {exc}") from exc
    directory = str(app_dir.resolve())
    specs = [_spec_for(f, directory) for f in functions]
    if only:
        known = {s.name for s in specs}
        missing = [n for n in only if n not in known]
        if missing:
            raise IndexingError(f"--functions names unknown function(s): {', '.join(missing)}")
        wanted = set(only)
        specs = [s for s in specs if s.name in wanted]
    return specs
