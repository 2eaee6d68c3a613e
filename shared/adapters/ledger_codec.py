"""Records <-> Table entities: the only place that knows the ledger's row shape (besides ``ledger`` itself).

PartitionKey is the request id, RowKey ``request`` or the call id; every other property is named after its
record field (:func:`shared.core.records.camel`). ``None`` is no property at all (rows are written whole, in
replace mode, so a field set to None removes its property). Long text (the provisioning log, a raw response)
is split across properties by :mod:`shared.core.textsplit`; the subject, normalisations and errors are JSON
text; the request's counts are ``<status>Count`` for every call status. The ETag travels as the record's
opaque ``version``.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, Union

from shared.contract.names import REQUEST_ROW
from shared.core import textsplit
from shared.core.records import CallRecord, OutboxMarks, RequestRecord, camel
from shared.core.vocabulary import CallStatus

Entity = dict[str, Any]

#: Fields stored with :mod:`shared.core.textsplit` (``name``, ``name_1``…, ``nameParts``).
_SPLIT_TEXTS = frozenset({"provisioning_log", "raw_response"})
#: Fields that are the row's keys, not properties of their own (the request row also keeps ``requestId``).
_CALL_KEYS = frozenset({"request_id", "call_id", "version"})
_REQUEST_KEYS = frozenset({"version", "counts", "marks"})


@cache
def _types(cls: type) -> dict[str, Any]:
    """Each field's type with ``None`` taken out of a union."""
    hints = typing.get_type_hints(cls)
    resolved: dict[str, Any] = {}
    for name, hint in hints.items():
        if typing.get_origin(hint) in (Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else hint
        resolved[name] = hint
    return resolved


def _encode(name: str, value: Any) -> dict[str, Any]:
    prop = camel(name)
    if value is None:
        return {}
    if name in _SPLIT_TEXTS:
        return dict(textsplit.to_properties(prop, value))
    if isinstance(value, Enum):
        return {prop: value.value}
    if name == "subject":
        return {prop: json.dumps(dict(value), separators=(",", ":"))}
    if isinstance(value, tuple):
        return {prop: json.dumps([dict(v) if isinstance(v, Mapping) else v for v in value])}
    return {prop: value}


def _decode(cls: type, name: str, entity: Mapping[str, Any]) -> Any:
    prop = camel(name)
    if name in _SPLIT_TEXTS:
        return textsplit.from_properties(prop, entity)
    value = entity.get(prop)
    if value is None:
        return None
    kind = _types(cls)[name]
    if name == "subject" or typing.get_origin(kind) is tuple:
        return _decode_json(name, str(value))
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(str(value))
    if kind is datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if kind is int and not isinstance(value, bool):
        return int(value)
    if kind is str:
        return str(value)
    return value


def _decode_json(name: str, text: str) -> Any:
    """The subject (None if unreadable), or a tuple (unreadable text kept as its one item)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if name == "subject":
        return value if isinstance(value, dict) else None
    if not isinstance(value, list):
        return ({"detail": text},) if name == "errors" else (text,)
    return tuple(value)


def call_to_entity(call: CallRecord) -> Entity:
    """The call row (without its ETag)."""
    entity: Entity = {"PartitionKey": call.request_id, "RowKey": call.call_id}
    for f in fields(CallRecord):
        if f.name not in _CALL_KEYS:
            entity.update(_encode(f.name, getattr(call, f.name)))
    return entity


def call_from_entity(entity: Mapping[str, Any], version: str | None = None) -> CallRecord:
    """A call row as a record; ``version`` is the row's ETag."""
    values = {f.name: _decode(CallRecord, f.name, entity) for f in fields(CallRecord) if f.name not in _CALL_KEYS}
    values = {k: v for k, v in values.items() if v is not None}
    return CallRecord(request_id=str(entity["PartitionKey"]), call_id=str(entity["RowKey"]), version=version, **values)


def request_to_entity(request: RequestRecord) -> Entity:
    """The request row (without its ETag): every field, and ``<status>Count`` for every call status."""
    entity: Entity = {"PartitionKey": request.request_id, "RowKey": REQUEST_ROW}
    for f in fields(RequestRecord):
        if f.name not in _REQUEST_KEYS:
            entity.update(_encode(f.name, getattr(request, f.name)))
    entity.update(count_properties(request.counts))
    entity.update(marks_properties(request.marks))
    return entity


def marks_properties(marks: OutboxMarks) -> Entity:
    """The outbox marks as properties (a mark that is None has none)."""
    entity: Entity = {}
    for f in fields(OutboxMarks):
        entity.update(_encode(f.name, getattr(marks, f.name)))
    return entity


def marks_from_entity(entity: Mapping[str, Any]) -> OutboxMarks:
    """The outbox marks of a request row."""
    values = {f.name: _decode(OutboxMarks, f.name, entity) for f in fields(OutboxMarks)}
    return OutboxMarks(**{k: v for k, v in values.items() if v is not None})


#: The properties :func:`marks_properties` may write.
MARK_PROPERTIES = frozenset(camel(f.name) for f in fields(OutboxMarks))


def count_properties(counts: Mapping[CallStatus, int]) -> dict[str, int]:
    """``<status>Count`` for every call status."""
    return {f"{status.value}Count": int(counts.get(status, 0)) for status in CallStatus}


def request_from_entity(entity: Mapping[str, Any], version: str | None = None) -> RequestRecord:
    """A request row as a record; ``version`` is the row's ETag."""
    names = [f.name for f in fields(RequestRecord) if f.name not in _REQUEST_KEYS and f.name != "request_id"]
    values = {name: _decode(RequestRecord, name, entity) for name in names}
    values = {k: v for k, v in values.items() if v is not None}
    counts = {status: int(entity.get(f"{status.value}Count") or 0) for status in CallStatus}
    return RequestRecord(
        request_id=str(entity["PartitionKey"]),
        counts=counts,
        marks=marks_from_entity(entity),
        version=version,
        **values,
    )
