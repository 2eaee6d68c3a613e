"""App settings, read once from the environment and validated.

Why a typed object instead of ``os.environ`` lookups scattered through the code: every setting the app
reads is named here (the infra test compares this list with the Bicep template), a bad value fails with
the setting's name instead of deep inside a call, and tests build settings from a plain dict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.core import ids
from shared.core.callbacks import CallbackPolicy
from shared.core.errors import SettingsError
from shared.core.pacing import RateLimit
from shared.core.schedules import Schedule, parse_schedules

#: Every setting the app reads (the infra test checks the template sets what is required).
KNOWN_SETTINGS = (
    "AzureWebJobsStorage",
    "AZURE_CLIENT_ID",
    "GRAPH_BASE_URL",
    "GRAPH_CLOUD",
    "PROVISIONING_TARGETS",
    "ALLOW_UNLISTED_TARGETS",
    "GRAPH_RATE_LIMIT",
    "GRAPH_RATE_SCOPE",
    "LEDGER_RETENTION_DAYS",
    "WORK_CLAIM_SECONDS",
    "JOB_HOLD_SECONDS",
    "PUBLIC_BASE_URL",
    "GRAPH_RETRY_BUDGET_MINUTES",
    "CALLBACK_ALLOWED_HOSTS",
    "EVENTGRID_TOPIC_ENDPOINT",
    "PROVISIONING_SCHEDULES",
    "AUTH_MODE",
)

#: ``AUTH_MODE`` values: ``entra`` = every route but /api/health needs an App Service Authentication principal
#: holding the route's app role (function keys still checked by the host); ``keys`` = function keys only.
AUTH_MODES = ("entra", "keys")

#: Hosts a ``PUBLIC_BASE_URL`` may name over plain http: only this machine (local runs, tests).
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

#: The largest retry budget accepted: with backoff capped at 5 minutes this keeps a call's attempts below
#: the hard cap (shared.core.retry.HARD_MAX_ATTEMPTS), which must stay a backstop, not the limit that bites.
MAX_RETRY_BUDGET_MINUTES = 240

#: Graph roots of the national clouds (docs/graph-api-facts.md#national-clouds). The token scope follows the host.
GRAPH_CLOUDS: dict[str, str] = {
    "Global": "https://graph.microsoft.com",
    "USGov": "https://graph.microsoft.us",
    "USGovDoD": "https://dod-graph.microsoft.us",
    "China": "https://microsoftgraph.chinacloudapi.cn",
}


@dataclass(frozen=True)
class Target:
    """A named provisioning target: one synchronization job of one service principal."""

    name: str
    service_principal_id: str
    job_id: str
    rule_id: str | None = None


@dataclass(frozen=True)
class StorageSettings:
    """Where the ledger and queues live: a connection string, or identity-based service URIs."""

    connection_string: str | None = None
    table_service_uri: str | None = None
    queue_service_uri: str | None = None
    blob_service_uri: str | None = None
    credential_client_id: str | None = None


#: What aiohttp's ``trust_env`` reads for proxies, as Python's urllib spells them (either case).
_PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy")
    for name in (base, base.upper())
)


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment."""

    storage: StorageSettings
    graph_base_url: str
    graph_scope: str
    azure_client_id: str | None = None
    targets: Mapping[str, Target] = field(default_factory=dict)
    allow_unlisted_targets: bool = False
    rate_limit: RateLimit = RateLimit(5, 10.0)  # noqa: RUF009 (frozen, so one shared default is safe)
    rate_scope: str = "tenant"
    ledger_retention_days: int = 90
    work_claim_seconds: int = 300
    job_hold_seconds: int = 60
    public_base_url: str | None = None
    retry_budget_minutes: int = 60
    callback_policy: CallbackPolicy = CallbackPolicy()  # noqa: RUF009 (frozen)
    eventgrid_topic_endpoint: str | None = None
    schedules: tuple[Schedule, ...] = ()
    auth_mode: str = "keys"
    #: Proxy variables are set (``HTTPS_PROXY`` …): the storage clients honour them. Otherwise they are told
    #: not to look, which spares aiohttp re-reading the environment and ~/.netrc on every storage request
    #: (a fifth of a busy worker's CPU, measured with py-spy).
    env_proxies: bool = False

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raises :class:`SettingsError` naming the setting."""
        base_url = _graph_base_url(env)
        targets = parse_targets(env.get("PROVISIONING_TARGETS", ""))
        return cls(
            storage=_storage(env),
            graph_base_url=base_url,
            graph_scope=graph_scope_for(base_url),
            azure_client_id=env.get("AZURE_CLIENT_ID") or None,
            targets=targets,
            allow_unlisted_targets=_bool(env, "ALLOW_UNLISTED_TARGETS", default=False),
            rate_limit=RateLimit.parse(env.get("GRAPH_RATE_LIMIT") or "5/10s"),
            rate_scope=_choice(env, "GRAPH_RATE_SCOPE", ("tenant", "job"), default="tenant"),
            ledger_retention_days=_positive_int(env, "LEDGER_RETENTION_DAYS", default=90),
            work_claim_seconds=_positive_int(env, "WORK_CLAIM_SECONDS", default=300),
            job_hold_seconds=_positive_int(env, "JOB_HOLD_SECONDS", default=60),
            public_base_url=public_base_url(env.get("PUBLIC_BASE_URL", "")),
            retry_budget_minutes=_positive_int(
                env, "GRAPH_RETRY_BUDGET_MINUTES", default=60, maximum=MAX_RETRY_BUDGET_MINUTES
            ),
            callback_policy=CallbackPolicy.parse(env.get("CALLBACK_ALLOWED_HOSTS")),
            eventgrid_topic_endpoint=eventgrid_endpoint(env.get("EVENTGRID_TOPIC_ENDPOINT", "")),
            schedules=parse_schedules(env.get("PROVISIONING_SCHEDULES", ""), targets),
            auth_mode=_choice(env, "AUTH_MODE", AUTH_MODES, default="keys"),
            env_proxies=any(env.get(name) for name in _PROXY_VARIABLES),
        )

    def target_for_ids(self, service_principal_id: str, job_id: str) -> Target | None:
        """The configured target with these ids, if any (ids compare case-insensitively, like Graph's)."""
        for target in self.targets.values():
            if (
                target.service_principal_id.lower() == service_principal_id.lower()
                and target.job_id.lower() == job_id.lower()
            ):
                return target
        return None


def graph_scope_for(base_url: str) -> str:
    """The ``.default`` scope of the Graph host the app talks to (national clouds need their own)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def parse_targets(text: str) -> dict[str, Target]:
    """Parse ``PROVISIONING_TARGETS``: ``{"name": {"servicePrincipalId", "jobId", "ruleId"?}}``."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"PROVISIONING_TARGETS is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(raw, dict):
        raise SettingsError("PROVISIONING_TARGETS must be a JSON object of named targets")
    targets: dict[str, Target] = {}
    for name, spec in raw.items():
        where = f"PROVISIONING_TARGETS[{name!r}]"
        if not ids.is_target_name(name):
            raise SettingsError(f"{where}: a target name is 1-64 letters, digits, '-', '_' or '.'")
        if not isinstance(spec, dict):
            raise SettingsError(f"{where} must be an object with servicePrincipalId and jobId")
        unknown = set(spec) - {"servicePrincipalId", "jobId", "ruleId"}
        if unknown:
            raise SettingsError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
        sp, job, rule = spec.get("servicePrincipalId"), spec.get("jobId"), spec.get("ruleId")
        if not isinstance(sp, str) or not ids.is_guid(sp):
            raise SettingsError(f"{where}.servicePrincipalId must be a GUID")
        if not isinstance(job, str) or not ids.is_job_id(job):
            raise SettingsError(f"{where}.jobId must be a synchronization job id")
        if rule is not None and (not isinstance(rule, str) or not ids.is_rule_id(rule)):
            raise SettingsError(f"{where}.ruleId must be a synchronization rule id")
        targets[name] = Target(name, sp, job, rule)
    return targets


def public_base_url(text: str) -> str | None:
    """``PUBLIC_BASE_URL``: where callers reach the app (``/api/...`` hangs below it); None when unset.

    Absolute links (``Location``) are built from it, never from a request's ``Host``, so it must be an
    absolute https URL; plain http only for this machine. No query, fragment or credentials: a link
    appends a path to it.
    """
    raw = text.strip()
    if not raw:
        return None
    problem = "PUBLIC_BASE_URL must be an absolute https URL such as https://func-api-abc.azurewebsites.net"
    try:
        parts = urlsplit(raw)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError as exc:
        raise SettingsError(f"{problem}; it does not parse as a URL") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise SettingsError(f"{problem}, got one without https:// and a host name")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise SettingsError(f"{problem}; plain http is only allowed for localhost and 127.0.0.1, not {host!r}")
    if "?" in raw or "#" in raw or "@" in parts.netloc:
        raise SettingsError(f"{problem}, without a query, fragment or credentials")
    return raw.rstrip("/")


def eventgrid_endpoint(text: str) -> str | None:
    """``EVENTGRID_TOPIC_ENDPOINT``: the topic's https endpoint (plain http only for this machine); None when unset."""
    raw = text.strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("https", "http") or (parts.scheme == "http" and host not in LOCAL_HOSTS):
        raise SettingsError(
            "EVENTGRID_TOPIC_ENDPOINT must be an https URL such as https://topic.westeurope-1.eventgrid.azure.net/api/events"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise SettingsError("EVENTGRID_TOPIC_ENDPOINT must not carry a query, fragment or credentials")
    return raw


def _graph_base_url(env: Mapping[str, str]) -> str:
    explicit = (env.get("GRAPH_BASE_URL") or "").strip()
    if explicit:
        parts = urlsplit(explicit)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
            raise SettingsError(
                "GRAPH_BASE_URL must be an absolute http(s) URL such as https://graph.microsoft.com/beta"
            )
        return explicit.rstrip("/")
    cloud = (env.get("GRAPH_CLOUD") or "Global").strip()
    if cloud not in GRAPH_CLOUDS:
        raise SettingsError(f"GRAPH_CLOUD must be one of {', '.join(GRAPH_CLOUDS)}, got {cloud!r}")
    return f"{GRAPH_CLOUDS[cloud]}/beta"


def _storage(env: Mapping[str, str]) -> StorageSettings:
    conn = (env.get("AzureWebJobsStorage") or "").strip()
    if conn:
        return StorageSettings(connection_string=conn)
    prefix = "AzureWebJobsStorage__"
    account = env.get(prefix + "accountName")

    def uri(service: str) -> str | None:
        explicit = env.get(f"{prefix}{service}ServiceUri")
        if explicit:
            return explicit.rstrip("/")
        return f"https://{account}.{service}.core.windows.net" if account else None

    table, queue, blob = uri("table"), uri("queue"), uri("blob")
    if not (table and queue):
        raise SettingsError(
            "AzureWebJobsStorage is not set: give a connection string, or AzureWebJobsStorage__accountName "
            "(or __tableServiceUri and __queueServiceUri) with __credential=managedidentity"
        )
    return StorageSettings(
        table_service_uri=table,
        queue_service_uri=queue,
        blob_service_uri=blob,
        credential_client_id=env.get(prefix + "clientId") or None,
    )


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], *, default: str) -> str:
    value = (env.get(name) or default).strip()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str, *, default: int, maximum: int | None = None) -> int:
    value = (env.get(name) or "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"{name} must be a positive whole number, got {value!r}")
    if maximum is not None and int(value) > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value!r}")
    return int(value)
