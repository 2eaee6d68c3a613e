"""scripts/grant_graph_permission.py offline: argument handling and the plan it prints for a given tenant state.

Only the Graph client is replaced (``unittest.mock``); the Azure CLI sign-in is never reached.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

from shared.settings import GRAPH_CLOUDS
from tests.paths import ROOT


def _load_script() -> ModuleType:
    # scripts/ is not a package (it holds shell scripts); load the file the way the wrapper runs it.
    spec = importlib.util.spec_from_file_location("grant_graph_permission", ROOT / "scripts/grant_graph_permission.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


grant = _load_script()
MI = "11111111-1111-1111-1111-111111111111"
GRAPH_SP = "22222222-2222-2222-2222-222222222222"
SP_A = "33333333-3333-3333-3333-333333333333"
SP_B = "44444444-4444-4444-4444-444444444444"
SYNC = "9b50c33d-700f-43b1-b2eb-87e89b703581"
OWNED_BY = "18a4783c-866b-4cc7-a460-3d5e5662c884"
GROUP_MEMBER_READ = "98830695-27a2-44f7-8c18-0c3ebc9698f6"
USER_READ_BASIC = "97235f07-e226-4f63-ace3-39588e11d3a1"
TARGETS = json.dumps(
    {
        "workday-to-ad": {"servicePrincipalId": SP_A, "jobId": "Workday2AD.abc.def"},
        "salesforce": {"servicePrincipalId": SP_B, "jobId": "salesForce.abc.def", "ruleId": "rule-1"},
    }
)


def fake_graph(*, assignments: list[dict[str, Any]] | None = None, owners: dict[str, set[str]] | None = None) -> Any:
    graph = mock.create_autospec(grant.RestGraph, instance=True)
    graph.service_principal.return_value = {"id": MI, "displayName": "id-api-xyz"}
    graph.service_principal_by_app_id.return_value = {
        "id": GRAPH_SP,
        "appRoles": [
            {"id": SYNC, "value": "Synchronization.ReadWrite.All", "allowedMemberTypes": ["Application"]},
            {"id": OWNED_BY, "value": "Application.ReadWrite.OwnedBy", "allowedMemberTypes": ["Application"]},
            {"id": GROUP_MEMBER_READ, "value": "GroupMember.Read.All", "allowedMemberTypes": ["Application"]},
            {"id": USER_READ_BASIC, "value": "User.ReadBasic.All", "allowedMemberTypes": ["Application"]},
        ],
    }
    graph.app_role_assignments.return_value = assignments or []
    graph.owner_ids.side_effect = lambda sp: (owners or {}).get(sp, set())
    return graph


def run(argv: list[str], graph: Any, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    roots: list[str] = []

    def factory(root: str) -> Any:
        roots.append(root)
        return graph

    out = io.StringIO()
    code = grant.main(argv, env=env or {}, graph_factory=factory, out=out)
    return code, out.getvalue(), roots


def test_dry_run_prints_the_grant_and_changes_nothing() -> None:
    graph = fake_graph()
    code, out, roots = run(["--principal-id", MI, "--dry-run"], graph)
    assert code == 0
    assert roots == ["https://graph.microsoft.com"]
    assert "dry run: nothing is changed" in out
    assert f"[grant] app role Synchronization.ReadWrite.All ({SYNC}) of Microsoft Graph ({GRAPH_SP})" in out
    assert "would do" in out
    graph.assign_app_role.assert_not_called()
    graph.add_owner.assert_not_called()


def test_grants_when_missing() -> None:
    graph = fake_graph()
    code, out, _ = run(["--principal-id", MI], graph)
    assert code == 0
    graph.assign_app_role.assert_called_once_with(MI, GRAPH_SP, SYNC)
    assert out.rstrip().endswith(": done")


def test_idempotent_when_already_granted() -> None:
    graph = fake_graph(assignments=[{"resourceId": GRAPH_SP, "appRoleId": SYNC, "principalId": MI}])
    code, out, _ = run(["--principal-id", MI], graph)
    assert code == 0
    assert "already done" in out
    graph.assign_app_role.assert_not_called()


def test_a_different_role_on_graph_does_not_count() -> None:
    graph = fake_graph(assignments=[{"resourceId": GRAPH_SP, "appRoleId": OWNED_BY}])
    run(["--principal-id", MI], graph)
    graph.assign_app_role.assert_called_once_with(MI, GRAPH_SP, SYNC)


def test_owned_by_adds_ownership_of_each_target_not_yet_owned() -> None:
    graph = fake_graph(owners={SP_A: {MI}})
    env = {"AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": MI, "GRAPH_PERMISSION": "Application.ReadWrite.OwnedBy"}
    code, out, _ = run(["--targets", TARGETS], graph, env)
    assert code == 0
    graph.assign_app_role.assert_called_once_with(MI, GRAPH_SP, OWNED_BY)
    graph.add_owner.assert_called_once_with(SP_B, MI)
    assert f"as owner of service principal {SP_A} (target workday-to-ad): already done" in out
    assert f"as owner of service principal {SP_B} (target salesforce): done" in out


def test_owned_by_dry_run_lists_every_step() -> None:
    graph = fake_graph()
    env = {"PROVISIONING_TARGETS": TARGETS}
    code, out, _ = run(["--principal-id", MI, "--permission", "Application.ReadWrite.OwnedBy", "--dry-run"], graph, env)
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[grant", "[owner", "[owner"]
    assert all(line.endswith("would do") for line in lines)
    graph.add_owner.assert_not_called()


def test_owned_by_without_targets_warns() -> None:
    code, out, _ = run(["--principal-id", MI, "--permission", "Application.ReadWrite.OwnedBy"], fake_graph())
    assert code == 0
    assert "warning: Application.ReadWrite.OwnedBy without targets owns nothing" in out


def test_targets_from_base64_as_azd_holds_them() -> None:
    graph = fake_graph()
    env = {
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": MI,
        "GRAPH_PERMISSION": "Application.ReadWrite.OwnedBy",
        "PROVISIONING_TARGETS_BASE64": base64.b64encode(TARGETS.encode()).decode(),
    }
    run(["--dry-run"], graph, env)
    assert sorted(c.args[0] for c in graph.owner_ids.call_args_list) == sorted([SP_A, SP_B])


def test_targets_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_text(TARGETS)
    graph = fake_graph()
    code, _, _ = run(
        ["--principal-id", MI, "--permission", "Application.ReadWrite.OwnedBy", "--targets", f"@{path}"], graph
    )
    assert code == 0
    assert graph.add_owner.call_count == 2


@pytest.mark.parametrize(("cloud", "root"), list(GRAPH_CLOUDS.items()))
def test_cloud_picks_the_graph_host(cloud: str, root: str) -> None:
    _, out, roots = run(["--principal-id", MI, "--dry-run"], fake_graph(), {"GRAPH_CLOUD": cloud})
    assert roots == [root]
    assert f"Microsoft Graph: {root} ({cloud})" in out


def test_command_line_wins_over_the_environment() -> None:
    _, _, roots = run(["--principal-id", MI, "--cloud", "USGov", "--dry-run"], fake_graph(), {"GRAPH_CLOUD": "China"})
    assert roots == ["https://graph.microsoft.us"]


def test_role_id_is_looked_up_by_name_in_the_cloud() -> None:
    graph = fake_graph()
    graph.service_principal_by_app_id.return_value["appRoles"][0]["id"] = "55555555-5555-5555-5555-555555555555"
    _, out, _ = run(["--principal-id", MI], graph)
    graph.assign_app_role.assert_called_once_with(MI, GRAPH_SP, "55555555-5555-5555-5555-555555555555")
    assert "not the public cloud's" in out


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no managed identity"),
        (["--principal-id", "id-api-xyz"], {}, "must be a GUID"),
        (["--principal-id", MI], {"GRAPH_CLOUD": "Germany"}, "GRAPH_CLOUD must be one of"),
        (["--principal-id", MI], {"GRAPH_PERMISSION": "Directory.ReadWrite.All"}, "GRAPH_PERMISSION must be one of"),
        (["--principal-id", MI, "--targets", "{not json"], {}, "PROVISIONING_TARGETS is not valid JSON"),
        (["--principal-id", MI, "--targets", "@/nonexistent/targets.json"], {}, "--targets @/nonexistent"),
        (["--principal-id", MI], {"PROVISIONING_TARGETS_BASE64": "%%%"}, "PROVISIONING_TARGETS_BASE64 is not base64"),
    ],
)
def test_bad_input_exits_2_naming_it(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = fake_graph()
    code, _, roots = run(argv, graph, env)
    assert code == grant.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert roots == []


def test_unknown_identity_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    graph = fake_graph()
    graph.service_principal.return_value = None
    code, _, _ = run(["--principal-id", MI], graph)
    assert code == grant.EXIT_USAGE
    assert "principalId, not its clientId" in capsys.readouterr().err
    graph.assign_app_role.assert_not_called()


def test_graph_refusal_exits_1_with_the_permissions_needed(capsys: pytest.CaptureFixture[str]) -> None:
    graph = fake_graph()
    graph.assign_app_role.side_effect = grant.GraphError(403, "POST", "/servicePrincipals/x/appRoleAssignments", "{}")
    code, _, _ = run(["--principal-id", MI], graph)
    assert code == grant.EXIT_GRAPH
    assert "AppRoleAssignment.ReadWrite.All" in capsys.readouterr().err


def test_parse_dotenv_reads_azd_env_get_values() -> None:
    text = 'AZURE_ENV_NAME="dev"\nPROVISIONING_TARGETS="{\\"a\\": {\\"jobId\\": \\"x\\"}}"\nEMPTY=""\n# comment\n'
    assert grant.parse_dotenv(text) == {
        "AZURE_ENV_NAME": "dev",
        "PROVISIONING_TARGETS": '{"a": {"jobId": "x"}}',
        "EMPTY": "",
    }


def test_permission_ids_match_the_template() -> None:
    text = (ROOT / "infra/app/graph-permission.bicep").read_text()
    for name, role_id in {**grant.PERMISSIONS, **grant.READ_PERMISSIONS}.items():
        assert f"'{name}': '{role_id}'" in text


def test_read_permissions_are_not_granted_unless_switched_on() -> None:
    graph = fake_graph()
    env = {"SCHEDULES_USE_GROUPS": "false", "RESOLVE_USER_PRINCIPAL_NAMES": ""}
    code, out, _ = run(["--principal-id", MI], graph, env)
    assert code == 0
    graph.assign_app_role.assert_called_once_with(MI, GRAPH_SP, SYNC)
    assert "GroupMember" not in out
    assert "User.ReadBasic" not in out


def test_read_permissions_follow_the_azd_switches_like_the_template() -> None:
    """The same values azd passes to schedulesUseGroups / resolveUserPrincipalNames switch the grants on."""
    graph = fake_graph(assignments=[{"resourceId": GRAPH_SP, "appRoleId": SYNC}])
    env = {
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": MI,
        "SCHEDULES_USE_GROUPS": "true",
        "RESOLVE_USER_PRINCIPAL_NAMES": "TRUE",
    }
    code, out, _ = run([], graph, env)
    assert code == 0
    assert [c.args for c in graph.assign_app_role.call_args_list] == [
        (MI, GRAPH_SP, GROUP_MEMBER_READ),
        (MI, GRAPH_SP, USER_READ_BASIC),
    ]
    assert "(and GroupMember.Read.All, User.ReadBasic.All)" in out
    assert f"[grant] app role Synchronization.ReadWrite.All ({SYNC})" in out
    assert out.count(": already done") == 1


def test_read_permission_flags_and_idempotence() -> None:
    graph = fake_graph(assignments=[{"resourceId": GRAPH_SP, "appRoleId": USER_READ_BASIC}])
    code, out, _ = run(["--principal-id", MI, "--read-users", "--read-group-members", "--dry-run"], graph)
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("[grant]")]
    assert [line.split(" (")[0] for line in lines] == [
        "[grant] app role Synchronization.ReadWrite.All",
        "[grant] app role GroupMember.Read.All",
        "[grant] app role User.ReadBasic.All",
    ]
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["would do", "would do", "already done"]
    graph.assign_app_role.assert_not_called()


def test_a_switch_that_is_not_a_boolean_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, roots = run(["--principal-id", MI], fake_graph(), {"SCHEDULES_USE_GROUPS": "yes"})
    assert code == grant.EXIT_USAGE
    assert "SCHEDULES_USE_GROUPS must be true or false" in capsys.readouterr().err
    assert roots == []


def test_wrapper_help_runs_without_azure() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts/grant-graph-permission"), "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--dry-run" in proc.stdout
    # And as a plain file, the way the wrapper runs it.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/grant_graph_permission.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
