"""Choosing the synchronization rule for a subject from the job's schema (pure).

provisionOnDemand needs a ``ruleId`` that only the job schema reveals (docs/graph-api-facts.md#finding-the-ruleid).
The documented selection hints: the rule's metadata has ``supportsProvisionOnDemand`` = ``true``, and one of its
object mappings takes the subject's type as ``sourceObjectName``. The id is passed verbatim (``#V2`` included).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class RuleInfo:
    """What the chooser needs from one ``synchronizationRule``."""

    id: str
    name: str | None
    supports_provision_on_demand: bool
    source_object_names: tuple[str, ...]


@dataclass(frozen=True)
class NoRule:
    """Why no rule fits: recorded as the call's ``rejected`` reason."""

    reason: str


def choose_rule(rules: Sequence[RuleInfo], object_type_name: str) -> RuleInfo | NoRule:
    """The one rule that supports on-demand provisioning for this type; a clear reason otherwise.

    The type compares exactly first (``objectTypeName`` is case-sensitive in Graph), then ignoring case
    (callers write ``user`` for ``User``) only when that is unambiguous.
    """
    on_demand = [r for r in rules if r.supports_provision_on_demand]
    if not on_demand:
        names = ", ".join(r.name or r.id for r in rules) or "none"
        return NoRule(f"No rule of the job's schema supports provisionOnDemand (rules: {names}).")
    exact = [r for r in on_demand if object_type_name in r.source_object_names]
    if not exact:
        folded = object_type_name.casefold()
        exact = [r for r in on_demand if folded in (n.casefold() for n in r.source_object_names)]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        types = sorted({n for r in on_demand for n in r.source_object_names})
        return NoRule(
            f"No on-demand rule of the job's schema takes objectTypeName {object_type_name!r} "
            f"(it takes: {', '.join(types) or 'nothing'}). Send ruleId, or configure it on the target."
        )
    ids = ", ".join(r.id for r in exact)
    return NoRule(
        f"More than one on-demand rule takes {object_type_name!r} ({ids}); configure the ruleId on the target."
    )


@dataclass
class TtlCache(Generic[K, V]):
    """A small time-bounded cache: schemas change rarely, and one GET per job per TTL is plenty."""

    ttl_seconds: float
    clock: Callable[[], float] = time.monotonic
    _items: dict[K, tuple[float, V]] = field(default_factory=dict)

    def get(self, key: K) -> V | None:
        """The cached value, or None when absent or expired."""
        hit = self._items.get(key)
        if hit is None or hit[0] <= self.clock():
            self._items.pop(key, None)
            return None
        return hit[1]

    def put(self, key: K, value: V) -> None:
        """Cache ``value`` for ``ttl_seconds``."""
        self._items[key] = (self.clock() + self.ttl_seconds, value)


def normalise_types(subject: dict[str, Any], rule: RuleInfo) -> tuple[dict[str, Any], list[str]]:
    """Spell each ``objectTypeName`` (subject and links) as the rule does, when only the case differs.

    ``objectTypeName`` is case-sensitive in Graph (``User`` for apps, ``user`` for AD cloud sync) and callers
    write either; the rule's object mappings say which one this job takes. Returns notes for the ledger.
    """
    notes: list[str] = []
    names = rule.source_object_names

    def fix(item: dict[str, Any], pointer: str) -> dict[str, Any]:
        written = item.get("objectTypeName")
        if not isinstance(written, str) or written in names:
            return item
        matches = [n for n in names if n.casefold() == written.casefold()]
        if len(matches) != 1:
            return item
        notes.append(f"{pointer}/objectTypeName {written!r} -> {matches[0]!r} (as rule {rule.id} spells it)")
        return {**item, "objectTypeName": matches[0]}

    result = fix(subject, "")
    links = result.get("links")
    if isinstance(links, dict):
        new_links = dict(links)
        for name in ("members", "owners"):
            if isinstance(links.get(name), list):
                new_links[name] = [fix(m, f"/links/{name}/{i}") for i, m in enumerate(links[name])]
        if isinstance(links.get("manager"), dict):
            new_links["manager"] = fix(links["manager"], "/links/manager")
        result = {**result, "links": new_links}
    return result, notes
