"""Finding a call's ruleId from the job schema, once per job per TTL.

Used when neither the request nor the target names a ruleId. The schema GET is not the rate-limited
provisionOnDemand call, but it is still a Graph round trip: the rules of a job are cached per process.
"""

from __future__ import annotations

from shared.core.ports import GraphFailure, Provisioner
from shared.core.rules import NoRule, RuleInfo, TtlCache, choose_rule

SCHEMA_TTL_SECONDS = 15 * 60
#: A schema that could not be read is not asked for again (for casing only) for this long.
UNREADABLE_TTL_SECONDS = 5 * 60


class RuleDiscovery:
    """Resolves the rule for (servicePrincipalId, jobId, objectTypeName) through a cached schema read."""

    def __init__(self, graph: Provisioner, cache: TtlCache[tuple[str, str], list[RuleInfo]] | None = None) -> None:
        self._graph = graph
        self._cache = cache or TtlCache(SCHEMA_TTL_SECONDS)
        self._unreadable: TtlCache[tuple[str, str], bool] = TtlCache(UNREADABLE_TTL_SECONDS)

    async def _rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure:
        key = (service_principal_id.lower(), job_id)
        rules = self._cache.get(key)
        if rules is None:
            fetched = await self._graph.schema_rules(service_principal_id, job_id)
            if isinstance(fetched, GraphFailure):
                return fetched
            rules = fetched
            self._cache.put(key, rules)
        return rules

    async def known_rule(self, service_principal_id: str, job_id: str, rule_id: str) -> RuleInfo | None:
        """The configured rule as the schema describes it; None when the schema cannot be read or lacks it.

        Only used to settle ``objectTypeName`` casing, so a failure here never blocks the call itself.
        """
        key = (service_principal_id.lower(), job_id)
        if self._unreadable.get(key):
            return None
        rules = await self._rules(service_principal_id, job_id)
        if isinstance(rules, GraphFailure):
            self._unreadable.put(key, True)  # do not ask before every call
            return None
        return next((r for r in rules if r.id == rule_id), None)

    async def resolve(
        self, service_principal_id: str, job_id: str, object_type_name: str
    ) -> RuleInfo | NoRule | GraphFailure:
        """The rule to use, why none fits, or the Graph failure that kept us from knowing."""
        rules = await self._rules(service_principal_id, job_id)
        if isinstance(rules, GraphFailure):
            return rules
        return choose_rule(rules, object_type_name)
