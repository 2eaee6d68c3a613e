"""The Bicep template and the app agree on settings: proven by parsing infra/ with pycep-parser.

The Bicep CLI cannot run here, so this is the check that a deployment starts with everything the app reads
(``shared.settings.KNOWN_SETTINGS``) and sets nothing the app or the platform would ignore. Remove a setting
from ``infra/app/api.bicep`` and ``test_every_required_setting_is_set`` fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from shared.adapters import log_store
from shared.contract import names
from shared.core.pacing import RateLimit
from shared.settings import GRAPH_CLOUDS, KNOWN_SETTINGS, Settings
from shared.triggers import prefer
from tests.paths import ROOT

INFRA = ROOT / "infra"

#: App settings the template may leave out, each with why that is safe.
OPTIONAL_WITH_SAFE_DEFAULT: dict[str, str] = {
    "GRAPH_BASE_URL": "GRAPH_CLOUD picks the Graph host and token scope in Azure; GRAPH_BASE_URL is for the local "
    "emulator and would override GRAPH_CLOUD if set.",
    "WORK_CLAIM_SECONDS": "How long one instance's claim on a work item lasts before another may take it over "
    "(default 300 s). A tuning knob the tests shorten; the default is the one meant for Azure.",
    "JOB_HOLD_SECONDS": "How long the items of a paused or quarantined job wait before the job is looked at again "
    "(default 60 s). A tuning knob with a safe default.",
    "GRAPH_RETRY_BUDGET_MINUTES": "How long a call keeps retrying through a Graph outage (default 60 min, at most "
    "240). A tuning knob with a safe default; the bench and tests shorten it.",
    "CALLBACK_ALLOWED_HOSTS": "Defaults to *.logic.azure.com, the hosts of Logic Apps callback URLs.",
    "EVENTGRID_TOPIC_ENDPOINT": "Unset: outcome events go to the provisioning-outcomes queue only.",
    "PROVISIONING_SCHEDULES": "Unset: no recurring schedules.",
    "AUTH_MODE": "keys (the default) keeps the function-key check the host always makes; entra adds the App "
    "Service Authentication role check. The template sets entra when it configures authentication.",
}

#: App settings satisfied by another form of the same setting.
SATISFIED_BY_ANOTHER_FORM: dict[str, str] = {
    "AzureWebJobsStorage": "identity-based AzureWebJobsStorage__* (shared keys are off, so no connection string "
    "exists); see test_host_storage_is_identity_based.",
}

#: Contract settings (../shared/DESIGN.md "Settings", issues 12 and 14) the template sets while the app is taught
#: to read them on other branches. Once ``shared.settings.KNOWN_SETTINGS`` lists one, it is checked like every
#: other setting (required, since no exemption above names it) and its entry here has no effect; remove it then.
SETTINGS_AHEAD_OF_THE_APP: dict[str, str] = {
    "AUTH_MODE": "entra (App Service Authentication validated the caller; roles from X-MS-CLIENT-PRINCIPAL) or keys "
    "(function keys only): main.bicep authMode, default entra.",
}

#: Settings the template sets that the app does not read but the platform does, each with who reads it.
PLATFORM_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage__blobServiceUri": "Functions host: its keys, locks and leases (blob); the app's log store.",
    "AzureWebJobsStorage__queueServiceUri": "Functions host: the queue trigger; the app's work queue.",
    "AzureWebJobsStorage__tableServiceUri": "Functions host (identity-based host storage); the app's ledger.",
    "AzureWebJobsStorage__credential": "Functions host: 'managedidentity' selects the user-assigned identity.",
    "AzureWebJobsStorage__clientId": "Functions host: which user-assigned identity to use.",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Functions host and the Python worker's OpenTelemetry exporter.",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra-only ingestion (App Insights local auth is disabled).",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "Python worker: configures azure-monitor-opentelemetry itself.",
}

#: Settings deprecated (or unsupported) on Flex Consumption: emitting one is a mistake.
FLEX_DEPRECATED = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
    "TZ",
    "AzureWebJobsStorage",
}

ROLE_DEFINITIONS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

GRAPH_APP_ROLES = {
    "Synchronization.ReadWrite.All": "9b50c33d-700f-43b1-b2eb-87e89b703581",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
}


# --- reading the template -------------------------------------------------------------------------------------


@cache
def template(relative: str) -> dict[str, Any]:
    """One .bicep file as pycep-parser's JSON structure."""
    return parse((INFRA / relative).read_text())


def parse(text: str) -> dict[str, Any]:
    # pycep types its result as a TypedDict; the tests walk it as plain JSON.
    return cast(dict[str, Any], BicepParser().parse(text=text))


def bicep_files() -> list[str]:
    return sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep"))


def resources(type_name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file, symbolic name, config) of every resource of this type declared (not ``existing``) in infra/."""
    for relative in bicep_files():
        for name, resource in template(relative).get("resources", {}).items():
            if resource["type"].lower() == type_name.lower() and not resource.get("existing"):
                yield relative, name, _unwrap(resource["config"])


def the_resource(type_name: str) -> dict[str, Any]:
    found = list(resources(type_name))
    assert len(found) == 1, f"expected exactly one {type_name}, found {[(f, n) for f, n, _ in found]}"
    return found[0][2]


def _unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """A loop (``[for ...]``) or condition (``if``) wraps the body; the body is what we check."""
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def function_app() -> dict[str, Any]:
    app = the_resource("Microsoft.Web/sites")
    assert "functionapp" in app["kind"], app["kind"]
    return app


def app_settings(app: dict[str, Any] | None = None) -> dict[str, Any]:
    """Name -> value expression of the function app's ``siteConfig.appSettings``; names must be literals."""
    entries = (app or function_app())["properties"]["siteConfig"]["appSettings"]
    assert isinstance(entries, list), "appSettings must be a literal array so every name is visible here"
    names = [entry["name"] for entry in entries]
    assert all(isinstance(n, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names), names
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {entry["name"]: entry["value"] for entry in entries}


def missing_settings(names: set[str]) -> set[str]:
    """Settings the app reads that a template setting ``names`` would leave unset."""
    required = set(KNOWN_SETTINGS) - set(OPTIONAL_WITH_SAFE_DEFAULT) - set(SATISFIED_BY_ANOTHER_FORM)
    return required - names


def unknown_settings(names: set[str]) -> set[str]:
    """Settings that neither the app nor the platform reads (nor the contract names for the app to read)."""
    return names - set(KNOWN_SETTINGS) - set(PLATFORM_SETTINGS) - set(SETTINGS_AHEAD_OF_THE_APP)


def param_decorator(param: dict[str, Any], kind: str) -> Any:
    for decorator in param.get("decorators", []):
        if decorator["type"] == kind:
            return decorator["argument"]
    return None


# --- (a) every setting the app requires is set -----------------------------------------------------------------


def test_exemptions_name_real_settings() -> None:
    # A stale exemption would hide a setting the app reads from the check below.
    assert set(OPTIONAL_WITH_SAFE_DEFAULT) <= set(KNOWN_SETTINGS)
    assert set(SATISFIED_BY_ANOTHER_FORM) <= set(KNOWN_SETTINGS)
    assert not set(PLATFORM_SETTINGS) & set(KNOWN_SETTINGS)
    assert not set(PLATFORM_SETTINGS) & set(SETTINGS_AHEAD_OF_THE_APP)


def test_settings_ahead_of_the_app_are_set_from_parameters() -> None:
    """Each contract setting the app is being taught to read comes from a main.bicep parameter, with its default."""
    settings = app_settings()
    assert set(SETTINGS_AHEAD_OF_THE_APP) <= set(settings)
    assert settings["AUTH_MODE"] == "authMode"
    assert settings["CALLBACK_ALLOWED_HOSTS"] == "callbackAllowedHosts"
    assert settings["EVENTGRID_TOPIC_ENDPOINT"] == "eventGridTopicEndpoint"
    assert settings["PROVISIONING_SCHEDULES"] == "provisioningSchedules"
    main = template("main.bicep")
    params = main["parameters"]
    assert params["authMode"]["default"] == "entra"
    assert param_decorator(params["authMode"], "allowed") == ["entra", "keys"]
    assert param_decorator(template("app/api.bicep")["parameters"]["authMode"], "allowed") == ["entra", "keys"]
    assert params["callbackAllowedHosts"]["default"] == "*.logic.azure.com"
    passed = main["modules"]["api"]["config"]["params"]
    assert passed["authMode"] == "authMode"
    assert passed["callbackAllowedHosts"] == "callbackAllowedHosts"
    assert passed["provisioningSchedules"] == "schedulesJson"
    # No schedules given: the app gets [] (an empty list), not an empty string.
    schedules = main["variables"]["schedulesJson"]["value"]["operator"]["operands"]
    assert schedules["condition"] == {"function": {"type": "empty", "parameters": {"item_to_test": "schedulesGiven"}}}
    assert schedules["true_value"] == "[]"
    # No topic: the setting is empty; otherwise the endpoint of the topic the identity may send to.
    endpoint = passed["eventGridTopicEndpoint"]["operator"]["operands"]
    assert endpoint["condition"] == {
        "operator": {"type": "equals", "operands": {"operand_1": "eventGridTopic", "operand_2": "none"}}
    }
    assert endpoint["true_value"] == ""
    assert endpoint["false_value"]["operator"]["operands"]["operand_1"] == "eventGridSender"


def test_every_required_setting_is_set() -> None:
    missing = missing_settings(set(app_settings()))
    assert not missing, f"the template does not set {sorted(missing)}, which the app reads (shared/settings.py)"


def test_removing_a_setting_from_the_template_is_caught() -> None:
    text = (INFRA / "app/api.bicep").read_text()
    stripped, count = re.subn(r"\{\s*name: 'GRAPH_RATE_SCOPE'\s*value: graphRateScope\s*\}", "", text)
    assert count == 1, "the GRAPH_RATE_SCOPE entry moved; update this test"
    parsed = parse(stripped)
    app = _unwrap(parsed["resources"]["functionApp"]["config"])
    assert missing_settings(set(app_settings(app))) == {"GRAPH_RATE_SCOPE"}


# --- (b) AzureWebJobsStorage by identity ------------------------------------------------------------------------


def test_host_storage_is_identity_based() -> None:
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings, "a connection string cannot work: shared keys are disabled"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    # The same user-assigned identity for the host, the app's SDK clients and App Insights.
    assert settings["AzureWebJobsStorage__clientId"] == settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"


def test_the_app_accepts_the_template_settings_with_their_defaults() -> None:
    """The app's own parser, fed what Azure would hold with the template's parameter defaults."""
    main = template("main.bicep")["parameters"]
    sample = {
        "AzureWebJobsStorage__blobServiceUri": "https://stexample.blob.core.windows.net/",
        "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net/",
        "AzureWebJobsStorage__tableServiceUri": "https://stexample.table.core.windows.net/",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        "GRAPH_CLOUD": main["graphCloud"]["default"],
        "PROVISIONING_TARGETS": main["provisioningTargets"]["default"],
        "ALLOW_UNLISTED_TARGETS": "true" if main["allowUnlistedTargets"]["default"] else "false",
        "GRAPH_RATE_LIMIT": main["graphRateLimit"]["default"],
        "GRAPH_RATE_SCOPE": main["graphRateScope"]["default"],
        "LEDGER_RETENTION_DAYS": str(main["ledgerRetentionDays"]["default"]),
        "PUBLIC_BASE_URL": "https://func-api-abc123.azurewebsites.net",  # what publicBase computes by default
        "AUTH_MODE": main["authMode"]["default"],
        "CALLBACK_ALLOWED_HOSTS": main["callbackAllowedHosts"]["default"],
        "EVENTGRID_TOPIC_ENDPOINT": "",  # eventGridTopic none (the default)
        "PROVISIONING_SCHEDULES": "[]",  # schedulesJson with no schedules given
    }
    assert set(sample) >= set(app_settings()) - set(PLATFORM_SETTINGS) - {"AzureWebJobsStorage__credential"}
    settings = Settings.from_environ(sample)
    assert settings.storage.connection_string is None
    assert settings.storage.table_service_uri == "https://stexample.table.core.windows.net"
    assert settings.storage.credential_client_id == settings.azure_client_id
    assert settings.graph_base_url == "https://graph.microsoft.com/beta"
    assert settings.rate_limit == RateLimit(5, 10.0)
    assert settings.public_base_url == "https://func-api-abc123.azurewebsites.net"


def test_public_base_url_is_the_apps_https_host_unless_given() -> None:
    """Links are built on PUBLIC_BASE_URL: by default the app's own https default host name, never empty."""
    assert app_settings()["PUBLIC_BASE_URL"] == "publicBase"
    api = template("app/api.bicep")
    choice = api["variables"]["publicBase"]["value"]["operator"]
    assert choice["type"] == "conditional"
    assert choice["operands"]["condition"]["function"] == {
        "type": "empty",
        "parameters": {"item_to_test": "publicBaseUrl"},
    }
    assert choice["operands"]["true_value"] == "https://${name}.${appServiceDomain}"
    domains = {k: v for k, v in api["variables"]["appServiceDomains"]["value"].items()}
    assert domains["AzureCloud"] == "azurewebsites.net"
    assert template("main.bicep")["parameters"]["publicBaseUrl"]["default"] == ""


def test_http_concurrency_suits_an_async_app_with_bounded_waits() -> None:
    """Flex runs Python HTTP at 1 request per instance by default; one Prefer: wait caller would block the rest."""
    scale = function_app()["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["triggers"]["http"]["perInstanceConcurrency"] == "httpPerInstanceConcurrency"
    default = template("main.bicep")["parameters"]["httpPerInstanceConcurrency"]["default"]
    assert default >= 2 * prefer.MAX_CONCURRENT_WAITS, "waiting callers may take at most half the slots"


def test_parameter_choices_match_what_the_app_accepts() -> None:
    main = template("main.bicep")["parameters"]
    assert param_decorator(main["graphCloud"], "allowed") == list(GRAPH_CLOUDS)
    assert param_decorator(main["graphRateScope"], "allowed") == ["tenant", "job"]
    assert param_decorator(main["graphPermission"], "allowed") == list(GRAPH_APP_ROLES)
    RateLimit.parse(main["graphRateLimit"]["default"])


# --- (c) nothing unknown ----------------------------------------------------------------------------------------


def test_no_setting_is_unknown_to_the_app_or_the_platform() -> None:
    unknown = unknown_settings(set(app_settings()))
    assert not unknown, f"set by the template but read by nobody: {sorted(unknown)} (add to the app or explain)"


def test_no_setting_deprecated_on_flex() -> None:
    assert not set(app_settings()) & FLEX_DEPRECATED


def test_platform_telemetry_is_switched_on() -> None:
    assert app_settings()["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"


# --- (d) structure ---------------------------------------------------------------------------------------------


def test_storage_accepts_identities_only() -> None:
    storage = the_resource("Microsoft.Storage/storageAccounts")["properties"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["supportsHttpsTrafficOnly"] is True


def test_storage_holds_what_the_app_uses() -> None:
    main = template("main.bicep")
    variables = {name: v["value"] for name, v in main["variables"].items()}
    assert variables["ledgerTableName"] == names.TABLE_NAME
    assert variables["provisioningLogsContainerName"] == log_store.CONTAINER
    queues = set(variables["storageQueueNames"])
    assert {names.WORK_QUEUE, f"{names.WORK_QUEUE}-poison"} <= queues
    assert {"provisioning-requests", "provisioning-requests-poison"} <= queues  # queue contract, docs/architecture.md
    storage = main["modules"]["storage"]["config"]["params"]
    assert storage["tables"] == ["ledgerTableName"]
    assert storage["queues"] == "storageQueueNames"
    assert "provisioningLogsContainerName" in storage["containers"]
    assert "deploymentContainerName" in storage["containers"]


def test_flex_consumption_python_311() -> None:
    plan = the_resource("Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True
    config = function_app()["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    scale = config["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"  # a parameter, not a constant
    assert scale["instanceMemoryMB"] == "instanceMemoryMB"
    main = template("main.bicep")["parameters"]
    assert main["maximumInstanceCount"]["type"] == "int"


def test_function_app_runs_as_the_user_assigned_identity() -> None:
    app = function_app()
    assert app["identity"]["type"] == "UserAssigned"
    assert app["properties"]["httpsOnly"] is True
    assert app["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}  # azd finds it


def test_role_assignments_use_the_four_roles() -> None:
    rbac = template("app/rbac.bicep")
    role_ids = {v["value"] for v in rbac["variables"].values() if isinstance(v["value"], str)}
    for role, guid in ROLE_DEFINITIONS.items():
        assert guid in role_ids, f"{role} ({guid}) is not assigned"
    storage_roles = rbac["variables"]["appStorageRoles"]["value"]
    assert set(storage_roles) == {"storageBlobDataOwner", "storageQueueDataContributor", "storageTableDataContributor"}
    assignments = list(resources("Microsoft.Authorization/roleAssignments"))
    scopes = {config["scope"] for _, _, config in assignments}
    assert {"storage", "applicationInsights"} <= scopes


def test_application_insights_is_entra_only() -> None:
    insights = the_resource("Microsoft.Insights/components")["properties"]
    assert insights["DisableLocalAuth"] is True
    assert "WorkspaceResourceId" in insights


def test_graph_app_role_is_granted_through_the_graph_extension() -> None:
    grant_file = "app/graph-permission.bicep"
    grant = template(grant_file)
    assert "microsoftGraphV1" in grant["extensions"]
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"] == "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
    assignments = [(f, n) for f, n, _ in resources("Microsoft.Graph/appRoleAssignedTo")]
    # Graph app roles for the app's identity only here; entra-app.bicep assigns the API's own roles to callers.
    assert [(f, n) for f, n in assignments if f != "app/entra-app.bicep"] == [
        (grant_file, "appRoleAssignment"),
        (grant_file, "groupMemberReadAssignment"),
        (grant_file, "userReadBasicAssignment"),
    ]
    graph_sp = grant["resources"]["microsoftGraph"]
    assert graph_sp["existing"] is True
    assert graph_sp["config"]["appId"] == "00000003-0000-0000-c000-000000000000"
    role_ids = {k.strip("'"): v for k, v in grant["variables"]["appRoleIds"]["value"].items()}
    assert role_ids == GRAPH_APP_ROLES
    module = template("main.bicep")["modules"]["graphGrant"]
    assert module["detail"]["path"] == grant_file
    assert module["config"]["condition"] == "grantGraphPermission"  # skippable for sovereign clouds


def test_no_registry_modules() -> None:
    # br/public: (AVM) modules cannot be fetched on these machines; every module is a local file that exists.
    for relative in bicep_files():
        for name, module in template(relative).get("modules", {}).items():
            assert module["type"] == "local", f"{relative}: module {name} is not a local file"
            assert (INFRA / Path(relative).parent / module["detail"]["path"]).is_file()


@pytest.mark.parametrize("name", ["main.parameters.json"])
def test_parameters_file_names_only_real_parameters(name: str) -> None:
    declared = set(template("main.bicep")["parameters"])
    given = set(json.loads((INFRA / name).read_text())["parameters"])
    assert given <= declared, f"{name} passes parameters main.bicep does not declare: {sorted(given - declared)}"
    assert {"environmentName", "location"} <= given


def test_outputs_azd_and_the_grant_script_need() -> None:
    outputs = set(template("main.bicep")["outputs"])
    assert {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
        "GRAPH_CLOUD",
        "GRAPH_PERMISSION",
    } <= outputs
