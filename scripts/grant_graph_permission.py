"""Grant the app's managed identity its Microsoft Graph permission where Bicep cannot.

When to run it (docs/deploy.md, "Grant the Graph permission"):
- the template's Graph grant was skipped (``grantGraphPermission=false``): a sovereign cloud, where the Microsoft
  Graph Bicep extension does not deploy, or a deployer without ``AppRoleAssignment.ReadWrite.All``;
- ``Application.ReadWrite.OwnedBy`` was chosen: that permission acts only on service principals the identity owns,
  so the identity is added as an owner of each target's service principal (``PROVISIONING_TARGETS``).

What it does, each step only when not already done (idempotent):
1. finds the Microsoft Graph service principal of the cloud (``GRAPH_CLOUD`` picks the host) and the app role
   with the permission's name;
2. assigns that app role to the managed identity (``POST /servicePrincipals/{id}/appRoleAssignments``);
3. for ``Application.ReadWrite.OwnedBy``: adds the identity as owner of each target's service principal
   (``POST /servicePrincipals/{id}/owners/$ref``);
4. the read permissions of optional features, only when switched on (as the template's ``schedulesUseGroups`` and
   ``resolveUserPrincipalNames`` do): ``GroupMember.Read.All`` for schedules with a group
   (``SCHEDULES_USE_GROUPS=true`` or ``--read-group-members``), ``User.ReadBasic.All`` for subjects given by UPN
   (``RESOLVE_USER_PRINCIPAL_NAMES=true`` or ``--read-users``).
``--dry-run`` reads the current state and prints the plan without changing anything.

It signs in with the Azure CLI (``az login``; for a national cloud first ``az cloud set --name AzureUSGovernment``
or ``AzureChinaCloud``) and calls Graph v1.0 over plain HTTPS: the project's only Graph SDK is the beta one,
and these directory writes are stable v1.0 API. The signed-in account needs ``AppRoleAssignment.ReadWrite.All``
and ``Application.Read.All`` (e.g. the Privileged Role Administrator role), and for ownership
``Application.ReadWrite.All`` or ownership of the target apps (e.g. Application Administrator).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file (scripts/grant-graph-permission): make `shared` importable
    sys.path.insert(0, str(ROOT))

from shared.core.errors import SettingsError  # noqa: E402
from shared.settings import GRAPH_CLOUDS, Target, parse_targets  # noqa: E402

#: appId of Microsoft Graph, the same in every cloud.
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

#: App role ids on the Microsoft Graph service principal (docs/graph-api-facts.md#permissions). The script looks the
#: role up by name on the cloud's Graph service principal and only warns if the id differs from these.
PERMISSIONS: dict[str, str] = {
    "Synchronization.ReadWrite.All": "9b50c33d-700f-43b1-b2eb-87e89b703581",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
}

#: Read permissions of optional features (the same ids as infra/app/graph-permission.bicep), with the setting
#: (azd environment value) that switches each on.
READ_PERMISSIONS: dict[str, str] = {
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    "User.ReadBasic.All": "97235f07-e226-4f63-ace3-39588e11d3a1",
}
READ_PERMISSION_SWITCHES: dict[str, str] = {
    "GroupMember.Read.All": "SCHEDULES_USE_GROUPS",
    "User.ReadBasic.All": "RESOLVE_USER_PRINCIPAL_NAMES",
}

EXIT_USAGE = 2
EXIT_GRAPH = 1

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class UsageError(Exception):
    """Bad or missing input; the message says which."""


class GraphError(Exception):
    """Graph answered with an error."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


class GraphApi(Protocol):
    """The few Graph v1.0 calls the script makes (the boundary the tests replace)."""

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any] | None: ...

    def service_principal(self, object_id: str) -> dict[str, Any] | None: ...

    def app_role_assignments(self, principal_id: str) -> list[dict[str, Any]]: ...

    def assign_app_role(self, principal_id: str, resource_id: str, app_role_id: str) -> None: ...

    def owner_ids(self, service_principal_id: str) -> set[str]: ...

    def add_owner(self, service_principal_id: str, owner_id: str) -> None: ...


class RestGraph:
    """Graph v1.0 over HTTPS with a bearer token from the Azure CLI (azure-identity's AzureCliCredential)."""

    def __init__(self, graph_root: str, token: Callable[[], str]) -> None:
        self._root = graph_root.rstrip("/")
        self._token = token

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the URL is one of the fixed https Graph roots
            f"{self._root}/v1.0{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - see above
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise GraphError(exc.code, method, path, exc.read().decode(errors="replace")) from exc
        return json.loads(payload) if payload else None

    def _list(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = self._call("GET", path)
        while True:
            items.extend(page.get("value", []))
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return items
            page = self._call("GET", next_link.removeprefix(f"{self._root}/v1.0"))

    def service_principal_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        query = urllib.parse.urlencode({"$filter": f"appId eq '{app_id}'", "$select": "id,appId,displayName,appRoles"})
        found = self._list(f"/servicePrincipals?{query}")
        return found[0] if found else None

    def service_principal(self, object_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(
                "GET", f"/servicePrincipals/{object_id}?$select=id,appId,displayName,servicePrincipalType"
            )
        except GraphError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def app_role_assignments(self, principal_id: str) -> list[dict[str, Any]]:
        return self._list(f"/servicePrincipals/{principal_id}/appRoleAssignments")

    def assign_app_role(self, principal_id: str, resource_id: str, app_role_id: str) -> None:
        self._call(
            "POST",
            f"/servicePrincipals/{principal_id}/appRoleAssignments",
            {"principalId": principal_id, "resourceId": resource_id, "appRoleId": app_role_id},
        )

    def owner_ids(self, service_principal_id: str) -> set[str]:
        return {o["id"] for o in self._list(f"/servicePrincipals/{service_principal_id}/owners?$select=id")}

    def add_owner(self, service_principal_id: str, owner_id: str) -> None:
        self._call(
            "POST",
            f"/servicePrincipals/{service_principal_id}/owners/$ref",
            {"@odata.id": f"{self._root}/v1.0/directoryObjects/{owner_id}"},
        )


def azure_cli_graph(graph_root: str) -> GraphApi:
    """The real Graph client: token for ``<root>/.default`` from the Azure CLI's signed-in account."""
    from azure.identity import AzureCliCredential  # imported here so --help and the tests need no Azure

    credential = AzureCliCredential()
    scope = f"{graph_root}/.default"
    return RestGraph(graph_root, lambda: credential.get_token(scope).token)


# --- inputs -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    principal_id: str
    permission: str
    cloud: str
    targets: dict[str, Target]
    dry_run: bool
    read_permissions: tuple[str, ...] = ()

    @property
    def graph_root(self) -> str:
        return GRAPH_CLOUDS[self.cloud]


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY="value"`` lines as ``azd env get-values`` prints them (double-quoted, backslash escapes)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r'\s*([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|(.*))\s*', line)
        if not match:
            continue
        quoted, bare = match.group(2), match.group(3)
        values[match.group(1)] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (bare or "").strip()
    return values


def azd_environment() -> dict[str, str]:
    """Values of the current azd environment (the template's outputs and the parameters set with azd env set)."""
    azd = shutil.which("azd")
    if not azd:
        raise UsageError("--azd needs the Azure Developer CLI (azd) on PATH")
    result = subprocess.run([azd, "env", "get-values"], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise UsageError(f"azd env get-values failed: {result.stderr.strip()}")
    return parse_dotenv(result.stdout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/grant-graph-permission",
        description="Grant the app's managed identity its Microsoft Graph permission (and, for "
        "Application.ReadWrite.OwnedBy, ownership of each target's service principal). Idempotent.",
    )
    parser.add_argument(
        "--principal-id",
        help="object id of the managed identity's service principal "
        "(default: AZURE_MANAGED_IDENTITY_PRINCIPAL_ID, an output of infra/main.bicep)",
    )
    parser.add_argument(
        "--permission",
        choices=list(PERMISSIONS),
        help="Graph application permission (default: GRAPH_PERMISSION, else Synchronization.ReadWrite.All)",
    )
    parser.add_argument("--cloud", choices=list(GRAPH_CLOUDS), help="Graph cloud (default: GRAPH_CLOUD, else Global)")
    parser.add_argument(
        "--targets",
        help="PROVISIONING_TARGETS JSON, or @file to read it from a file "
        "(default: PROVISIONING_TARGETS, else base64-decoded PROVISIONING_TARGETS_BASE64)",
    )
    parser.add_argument(
        "--azd", action="store_true", help="read the defaults from the current azd environment (azd env get-values)"
    )
    parser.add_argument(
        "--read-group-members",
        action="store_true",
        help="also grant GroupMember.Read.All (schedules with a group; default: SCHEDULES_USE_GROUPS=true)",
    )
    parser.add_argument(
        "--read-users",
        action="store_true",
        help="also grant User.ReadBasic.All (subjects by UPN; default: RESOLVE_USER_PRINCIPAL_NAMES=true)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    return parser


def resolve_inputs(args: argparse.Namespace, env: Mapping[str, str]) -> Inputs:
    """Command-line values win over the environment (or the azd environment with --azd)."""
    principal_id = (args.principal_id or env.get("AZURE_MANAGED_IDENTITY_PRINCIPAL_ID") or "").strip()
    if not principal_id:
        raise UsageError(
            "no managed identity: pass --principal-id, set AZURE_MANAGED_IDENTITY_PRINCIPAL_ID, or use --azd"
        )
    if not _GUID.fullmatch(principal_id):
        raise UsageError(f"--principal-id must be a GUID (the identity's principalId), got {principal_id!r}")
    permission = args.permission or env.get("GRAPH_PERMISSION") or "Synchronization.ReadWrite.All"
    if permission not in PERMISSIONS:
        raise UsageError(f"GRAPH_PERMISSION must be one of {', '.join(PERMISSIONS)}, got {permission!r}")
    cloud = args.cloud or env.get("GRAPH_CLOUD") or "Global"
    if cloud not in GRAPH_CLOUDS:
        raise UsageError(f"GRAPH_CLOUD must be one of {', '.join(GRAPH_CLOUDS)}, got {cloud!r}")
    flags = {"GroupMember.Read.All": args.read_group_members, "User.ReadBasic.All": args.read_users}
    reads = tuple(p for p in READ_PERMISSIONS if flags[p] or _switched_on(env, READ_PERMISSION_SWITCHES[p]))
    return Inputs(principal_id, permission, cloud, _targets(args.targets, env), bool(args.dry_run), reads)


def _switched_on(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value not in ("", "true", "false"):
        raise UsageError(f"{name} must be true or false, got {env[name]!r}")
    return value == "true"


def _targets(option: str | None, env: Mapping[str, str]) -> dict[str, Target]:
    if option is not None and option.startswith("@"):
        try:
            text = Path(option[1:]).read_text()
        except OSError as exc:
            raise UsageError(f"--targets {option}: {exc.strerror}") from exc
    elif option is not None:
        text = option
    elif env.get("PROVISIONING_TARGETS"):
        text = env["PROVISIONING_TARGETS"]
    elif env.get("PROVISIONING_TARGETS_BASE64"):
        try:
            text = base64.b64decode(env["PROVISIONING_TARGETS_BASE64"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"PROVISIONING_TARGETS_BASE64 is not base64 of UTF-8 text: {exc}") from exc
    else:
        text = ""
    try:
        return parse_targets(text)
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc


# --- the plan -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing the script makes true; ``done`` when it already was."""

    kind: str  # "grant" | "owner"
    description: str
    done: bool
    apply: Callable[[], None]


def plan(inputs: Inputs, graph: GraphApi, out: TextIO) -> list[Step]:
    """Read the current state and list the steps; raises GraphError/UsageError when something is missing."""
    identity = graph.service_principal(inputs.principal_id)
    if identity is None:
        raise UsageError(
            f"no service principal {inputs.principal_id} in this tenant ({inputs.cloud}): check the id "
            "(the identity's principalId, not its clientId) and the signed-in tenant"
        )
    identity_name = identity.get("displayName") or inputs.principal_id
    graph_sp = graph.service_principal_by_app_id(MICROSOFT_GRAPH_APP_ID)
    if graph_sp is None:
        raise UsageError("the Microsoft Graph service principal was not found in this tenant")
    existing = graph.app_role_assignments(inputs.principal_id)
    steps = []
    for permission in (inputs.permission, *inputs.read_permissions):
        role_id = _app_role_id(graph_sp, permission, out)
        assigned = any(a.get("resourceId") == graph_sp["id"] and a.get("appRoleId") == role_id for a in existing)
        steps.append(
            Step(
                "grant",
                f"app role {permission} ({role_id}) of Microsoft Graph ({graph_sp['id']}) "
                f"to {identity_name} ({inputs.principal_id})",
                assigned,
                _assign(graph, inputs.principal_id, graph_sp["id"], role_id),
            )
        )
    if inputs.permission == "Application.ReadWrite.OwnedBy":
        for target in inputs.targets.values():
            sp_id = target.service_principal_id
            owners = graph.owner_ids(sp_id)
            steps.append(
                Step(
                    "owner",
                    f"{identity_name} ({inputs.principal_id}) as owner of service principal {sp_id} "
                    f"(target {target.name})",
                    inputs.principal_id in owners,
                    _add_owner(graph, sp_id, inputs.principal_id),
                )
            )
    return steps


def _assign(graph: GraphApi, principal_id: str, resource_id: str, app_role_id: str) -> Callable[[], None]:
    return lambda: graph.assign_app_role(principal_id, resource_id, app_role_id)


def _add_owner(graph: GraphApi, service_principal_id: str, owner_id: str) -> Callable[[], None]:
    return lambda: graph.add_owner(service_principal_id, owner_id)


def _app_role_id(graph_sp: Mapping[str, Any], permission: str, out: TextIO) -> str:
    roles = [
        r
        for r in graph_sp.get("appRoles", [])
        if r.get("value") == permission and "Application" in r.get("allowedMemberTypes", ["Application"])
    ]
    if not roles:
        raise UsageError(f"Microsoft Graph in this cloud has no application permission {permission}")
    role_id = str(roles[0]["id"])
    known = {**PERMISSIONS, **READ_PERMISSIONS}[permission]
    if role_id != known:
        print(f"note: {permission} has id {role_id} here, not the public cloud's {known}", file=out)
    return role_id


def run(inputs: Inputs, graph: GraphApi, out: TextIO) -> None:
    mode = "dry run: nothing is changed" if inputs.dry_run else "applying"
    also = f" (and {', '.join(inputs.read_permissions)})" if inputs.read_permissions else ""
    print(
        f"Microsoft Graph: {inputs.graph_root} ({inputs.cloud}); permission {inputs.permission}{also}; {mode}",
        file=out,
    )
    steps = plan(inputs, graph, out)
    for step in steps:
        if step.done:
            state = "already done"
        elif inputs.dry_run:
            state = "would do"
        else:
            step.apply()
            state = "done"
        print(f"[{step.kind}] {step.description}: {state}", file=out)
    if inputs.permission == "Application.ReadWrite.OwnedBy" and not inputs.targets:
        print(
            "warning: Application.ReadWrite.OwnedBy without targets owns nothing, so every provisionOnDemand call "
            "will be refused (403); pass --targets or set PROVISIONING_TARGETS, then run this again",
            file=out,
        )
    if inputs.permission == "Synchronization.ReadWrite.All" and inputs.targets:
        print("note: Synchronization.ReadWrite.All covers every target; no ownership is needed", file=out)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    graph_factory: Callable[[str], GraphApi] = azure_cli_graph,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        environment = dict(os.environ if env is None else env)
        if args.azd:
            environment = {**environment, **azd_environment()}
        inputs = resolve_inputs(args, environment)
        run(inputs, graph_factory(inputs.graph_root), out)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GraphError as exc:
        hint = ""
        if exc.status in (401, 403):
            hint = (
                " (the signed-in account needs AppRoleAssignment.ReadWrite.All and Application.Read.All, e.g. "
                "Privileged Role Administrator; ownership also needs Application Administrator)"
            )
        print(f"error: {exc}{hint}", file=sys.stderr)
        return EXIT_GRAPH
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
