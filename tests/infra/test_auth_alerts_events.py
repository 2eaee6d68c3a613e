"""What the template adds for issues 12 and 14, proven on the parsed Bicep (pycep-parser, like the settings test):

- App Service Authentication: Entra ID on every route but ``/api/health``, 401 for the rest, switched by
  ``authMode``; the API's own registration with the two app roles, or an existing one.
- Graph read permissions only when the features that need them are switched on.
- Alert rules on the three signals, on the names the app really emits (checked against ``shared.telemetry`` by
  recording through it, and against the log line the queue trigger writes).
- The ``provisioning-outcomes`` queue and the optional Event Grid topic with the least privileged sender role.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import telemetry
from tests.infra.test_settings_contract import INFRA, function_app, param_decorator, resources, template
from tests.paths import ROOT

EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
GRAPH_READ_ROLES = {
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    "User.ReadBasic.All": "97235f07-e226-4f63-ace3-39588e11d3a1",
}


def equals(name: str, value: str) -> dict[str, Any]:
    """pycep's shape of ``name == 'value'``."""
    return {"operator": {"type": "equals", "operands": {"operand_1": name, "operand_2": value}}}


def auth_settings() -> dict[str, Any]:
    found = [(f, n, c) for f, n, c in resources("Microsoft.Web/sites/config") if c["name"] == "authsettingsV2"]
    assert len(found) == 1, found
    relative, _, config = found[0]
    assert relative == "app/api.bicep"
    return config


# --- App Service Authentication ------------------------------------------------------------------------------------


def test_only_health_is_anonymous_and_everything_else_gets_401() -> None:
    auth = auth_settings()
    assert auth["parent"] == "functionApp"
    validation = auth["properties"]["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"  # an API: no login redirect
    assert validation["excludedPaths"] == ["/api/health"]
    host = json.loads((ROOT / "host.json").read_text())
    assert f"/{host['extensions']['http']['routePrefix']}/health" == "/api/health"
    assert auth["properties"]["httpSettings"]["requireHttps"] is True
    assert auth["properties"]["login"]["tokenStore"]["enabled"] is False  # nothing kept for a browser session


def test_entra_mode_switches_the_platform_on_and_keys_mode_off() -> None:
    """Deployed in both modes (not conditionally), so going back to keys really turns Easy Auth off."""
    auth = auth_settings()
    assert (
        "condition"
        not in next(r for r in template("app/api.bicep")["resources"].values() if r["type"].endswith("config"))[
            "config"
        ]
    )
    assert auth["properties"]["platform"]["enabled"] == equals("authMode", "entra")
    entra = auth["properties"]["identityProviders"]["azureActiveDirectory"]
    assert entra["enabled"] == equals("authMode", "entra")
    assert entra["registration"]["clientId"] == "authClientId"
    assert entra["validation"]["allowedAudiences"] == "allowedAudiences"
    issuer = template("app/api.bicep")["variables"]["openIdIssuer"]["value"]
    # The tenant's v2.0 issuer on the cloud's own login host, never a hard-coded public-cloud one.
    assert issuer == "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"


def test_the_registration_is_created_unless_an_existing_one_is_named() -> None:
    main = template("main.bicep")
    create = main["variables"]["createEntraApp"]["value"]["operator"]
    assert create["type"] == "and"
    assert create["operands"]["operand_1"] == equals("authMode", "entra")
    assert create["operands"]["operand_2"] == {
        "function": {"type": "empty", "parameters": {"item_to_test": "existingAuthClientId"}}
    }
    module = main["modules"]["entraApp"]
    assert module["detail"]["path"] == "app/entra-app.bicep"
    assert module["config"]["condition"] == "createEntraApp"
    in_use = main["variables"]["authClientIdInUse"]["value"]["operator"]["operands"]
    assert in_use["condition"] == "createEntraApp"
    assert in_use["false_value"] == "existingAuthClientId"
    assert main["modules"]["api"]["config"]["params"]["authClientId"] == "authClientIdInUse"
    assert main["parameters"]["existingAuthClientId"]["default"] == ""


def test_the_registration_has_the_two_app_roles_for_apps_and_users() -> None:
    entra = template("app/entra-app.bicep")
    assert "microsoftGraphV1" in entra["extensions"]  # the same Graph extension as graph-permission.bicep
    app = entra["resources"]["application"]["config"]
    roles = {role["value"]: role for role in app["appRoles"]}
    assert set(roles) == {"Provisioning.Submit", "Provisioning.Operate"}
    ids = {entra["variables"][role["id"]]["value"] for role in roles.values()}
    assert len(ids) == 2
    for role in roles.values():
        assert role["allowedMemberTypes"] == ["Application", "User"]
        assert role["isEnabled"] is True
        uuid.UUID(entra["variables"][role["id"]]["value"])  # a fixed literal: assignments point at it
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["api"]["requestedAccessTokenVersion"] == 2  # matches the v2.0 issuer Easy Auth validates
    assert entra["variables"]["applicationIdUri"]["value"] == "api://${tenant().tenantId}/${uniqueName}"
    # Only principals holding a role get a token for the API at all.
    sp = entra["resources"]["servicePrincipal"]["config"]
    assert sp["appRoleAssignmentRequired"] is True


def test_roles_are_assigned_only_to_the_principals_given() -> None:
    entra = template("app/entra-app.bicep")
    for name, role_var, principals in (
        ("submitAssignments", "submitRoleId", "submitterPrincipalIds"),
        ("operateAssignments", "operateRoleId", "operatorPrincipalIds"),
    ):
        resource = entra["resources"][name]
        assert resource["type"] == "Microsoft.Graph/appRoleAssignedTo"
        assert resource["config"]["loop_type"]["detail"]["array_name"] == principals
        assert resource["config"]["config"]["appRoleId"] == role_var
        assert entra["parameters"][principals]["default"] == []
    main = template("main.bicep")
    assert main["parameters"]["authSubmitterPrincipalIds"]["default"] == ""
    assert main["parameters"]["authOperatorPrincipalIds"]["default"] == ""


def test_outputs_name_what_a_caller_is_granted_and_asks_a_token_for() -> None:
    outputs = template("main.bicep")["outputs"]
    assert {
        "AUTH_MODE",
        "AUTH_CLIENT_ID",
        "AUTH_APPLICATION_ID_URI",
        "AUTH_SERVICE_PRINCIPAL_ID",
        "AUTH_SUBMIT_ROLE_ID",
        "AUTH_OPERATE_ROLE_ID",
    } <= set(outputs)


# --- Graph permissions only when needed ----------------------------------------------------------------------------


def test_graph_read_permissions_are_granted_only_when_their_feature_is_on() -> None:
    grant = template("app/graph-permission.bicep")
    role_ids = {k.strip("'"): v for k, v in grant["variables"]["readAppRoleIds"]["value"].items()}
    assert role_ids == GRAPH_READ_ROLES
    conditional = {
        "groupMemberReadAssignment": ("readGroupMembers", "GroupMember.Read.All"),
        "userReadBasicAssignment": ("readUserBasics", "User.ReadBasic.All"),
    }
    for name, (flag, permission) in conditional.items():
        config = grant["resources"][name]["config"]
        assert config["condition"] == flag, f"{name} must be conditional on {flag}"
        accessor = config["config"]["appRoleId"]["operator"]["operands"]
        assert accessor == {"operand_1": "readAppRoleIds", "operand_2": permission}
        assert grant["parameters"][flag]["default"] is False
    # The only unconditional Graph grant is the provisioning permission itself.
    unconditional = [n for n, r in grant["resources"].items() if not r["existing"] and "condition" not in r["config"]]
    assert unconditional == ["appRoleAssignment"]
    main = template("main.bicep")
    passed = main["modules"]["graphGrant"]["config"]["config"]["params"]
    assert passed["readGroupMembers"] == "schedulesUseGroups"
    assert passed["readUserBasics"] == "resolveUserPrincipalNames"
    assert main["parameters"]["schedulesUseGroups"]["default"] is False
    assert main["parameters"]["resolveUserPrincipalNames"]["default"] is False


# --- Alerts --------------------------------------------------------------------------------------------------------


@pytest.fixture
def emitted_metrics() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Metric name -> attributes of each data point, recorded through shared.telemetry itself."""
    reader = InMemoryMetricReader()
    otel_metrics._internal._METER_PROVIDER = None
    otel_metrics._internal._METER_PROVIDER_SET_ONCE._done = False
    otel_metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    telemetry.reset_instruments()
    telemetry.graph_call("failed", 404)
    telemetry.graph_call("waiting", 429)
    data = reader.get_metrics_data()
    points: dict[str, list[dict[str, Any]]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(dict(p.attributes or {}) for p in metric.data.data_points)
    yield points
    telemetry.reset_instruments()


def alert_rules() -> dict[str, dict[str, Any]]:
    alerts = template("core/monitor/alerts.bicep")
    return {
        name: r["config"]
        for name, r in alerts["resources"].items()
        if r["type"] == "Microsoft.Insights/scheduledQueryRules"
    }


def query_of(rule: dict[str, Any]) -> str:
    (criterion,) = rule["properties"]["criteria"]["allOf"]
    return str(criterion["query"])


def test_three_alert_rules_watch_the_application_insights_of_the_app() -> None:
    rules = alert_rules()
    assert set(rules) == {"failedCallsAlert", "throttlingAlert", "poisonMessagesAlert"}
    for rule in rules.values():
        assert rule["kind"] == "LogAlert"
        props = rule["properties"]
        assert props["enabled"] is True
        assert props["scopes"] == ["applicationInsightsId"]
        assert props["actions"]["actionGroups"] == "actionGroupIds"
        (criterion,) = props["criteria"]["allOf"]
        assert criterion["operator"] == "GreaterThan"
        # Rows with their timestamp go to the alert service, which aggregates them over the window itself.
        assert "summarize" not in query_of(rule)
        if criterion["timeAggregation"] == "Count":
            assert "metricMeasureColumn" not in criterion
        else:
            assert criterion["timeAggregation"] == "Total"
            assert f"extend {criterion['metricMeasureColumn']} = valueSum" in query_of(rule)
    params = template("main.bicep")["modules"]["alerts"]["config"]["params"]
    assert params["applicationInsightsId"]["operator"]["operands"]["operand_1"] == "monitoring"
    assert params["alertEmail"] == "alertEmail"


def test_failed_calls_and_throttles_use_the_metrics_the_app_emits(
    emitted_metrics: dict[str, list[dict[str, Any]]],
) -> None:
    rules = alert_rules()
    failed = query_of(rules["failedCallsAlert"])
    match = re.search(r'name == "([^"]+)".*customDimensions\["(\w+)"\]\) == "failed"', failed)
    assert match, failed
    name, status = match.groups()
    assert {"status": "failed", "httpStatus": 404} in [
        {k: v for k, v in attrs.items() if k in ("status", "httpStatus")} for attrs in emitted_metrics[name]
    ]
    assert status in emitted_metrics[name][0]
    throttles = query_of(rules["throttlingAlert"])
    (throttle_name,) = re.findall(r'name == "([^"]+)"', throttles)
    assert throttle_name in emitted_metrics, f"the app emits no metric {throttle_name}"
    assert throttle_name != name


def test_poison_alert_matches_what_the_host_and_the_app_log() -> None:
    query = query_of(alert_rules()["poisonMessagesAlert"])
    assert query.startswith("traces")
    (app_line,) = re.findall(r'message == "([^"]+)"', query)
    # The app writes it where it records a queued request as rejected and poisons it (wherever that code lives).
    writers = [p for p in (ROOT / "shared").rglob("*.py") if f'"{app_line}"' in p.read_text()]
    assert writers, "the app no longer logs the line the poison alert counts"
    # The Functions host's own warning when it moves a message after maxDequeueCount (WebJobs QueueProcessor).
    assert 'message startswith "Message has reached MaxDequeueCount"' in query
    queues = set(template("main.bicep")["variables"]["storageQueueNames"]["value"])
    assert {"provisioning-requests-poison", "provisioning-work-poison"} <= queues


def test_the_action_group_exists_only_with_an_email() -> None:
    alerts = template("core/monitor/alerts.bicep")
    group = alerts["resources"]["actionGroup"]["config"]
    empty_email = {"function": {"type": "empty", "parameters": {"item_to_test": "alertEmail"}}}
    assert group["condition"] == {"operator": {"type": "not", "operands": {"bool_value": empty_email}}}
    (receiver,) = group["config"]["properties"]["emailReceivers"]
    assert receiver["emailAddress"] == "alertEmail"
    ids = alerts["variables"]["actionGroupIds"]["value"]["operator"]["operands"]
    assert ids["condition"] == empty_email
    assert ids["true_value"] == []
    assert alerts["parameters"]["alertEmail"]["default"] == ""
    assert template("main.bicep")["parameters"]["alertEmail"]["default"] == ""


# --- Outcome events --------------------------------------------------------------------------------------------------


def test_the_outcomes_queue_exists_and_the_identity_may_send_to_it() -> None:
    main = template("main.bicep")
    assert "provisioning-outcomes" in main["variables"]["storageQueueNames"]["value"]
    # Storage Queue Data Contributor on the account includes sending; no narrower role is needed on top.
    rbac = template("app/rbac.bicep")
    assert rbac["variables"]["storageQueueDataContributor"]["value"] == STORAGE_QUEUE_DATA_CONTRIBUTOR
    assert "storageQueueDataContributor" in rbac["variables"]["appStorageRoles"]["value"]


def test_event_grid_is_optional_and_the_identity_only_sends() -> None:
    main = template("main.bicep")
    param = main["parameters"]["eventGridTopic"]
    assert param["default"] == "none"
    assert param_decorator(param, "allowed") == ["none", "new", "existing"]
    assert main["modules"]["eventGridTopicNew"]["config"]["condition"] == equals("eventGridTopic", "new")
    sender_module = main["modules"]["eventGridSender"]["config"]
    assert sender_module["condition"] == {
        "operator": {"type": "not_equals", "operands": {"operand_1": "eventGridTopic", "operand_2": "none"}}
    }
    sender = template("app/eventgrid-sender.bicep")
    assert sender["variables"]["eventGridDataSender"]["value"] == EVENTGRID_DATA_SENDER
    (assignment,) = [r for r in sender["resources"].values() if r["type"] == "Microsoft.Authorization/roleAssignments"]
    assert assignment["config"]["scope"] == "topic"  # the topic only, not its resource group
    assert assignment["config"]["properties"]["principalType"] == "ServicePrincipal"
    topic = the_topic()
    assert topic["properties"]["disableLocalAuth"] is True  # no access key: Entra identities only
    assert topic["properties"]["inputSchema"] == "CloudEventSchemaV1_0"


def the_topic() -> dict[str, Any]:
    (found,) = list(resources("Microsoft.EventGrid/topics"))
    return found[2]


def test_parameters_file_passes_the_new_parameters_through_azd() -> None:
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name in (
        "authMode",
        "existingAuthClientId",
        "authSubmitterPrincipalIds",
        "authOperatorPrincipalIds",
        "callbackAllowedHosts",
        "provisioningSchedulesBase64",
        "schedulesUseGroups",
        "resolveUserPrincipalNames",
        "eventGridTopic",
        "alertEmail",
    ):
        assert name in given, f"main.parameters.json does not pass {name}"
    assert given["authMode"]["value"] == "${AUTH_MODE=entra}"


def test_no_output_feeds_back_into_a_different_parameter() -> None:
    """azd writes every output into the environment, and main.parameters.json reads the environment back.

    An output named like an environment variable the parameters file reads must be exactly that parameter's
    value, or the next ``azd provision`` deploys with something else (e.g. an AUTH_CLIENT_ID output read back
    as "an existing registration" would stop the template managing its own).
    """
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    reads = {}
    for parameter, entry in given.items():
        match = re.fullmatch(r"\$\{([A-Z0-9_]+)(?:=[^}]*)?\}", str(entry["value"]))
        if match:
            reads[match.group(1)] = parameter
    outputs = template("main.bicep")["outputs"]
    for name, output in outputs.items():
        if name in reads:
            assert output["value"] == reads[name], f"output {name} would be read back into {reads[name]}"


def test_function_app_keeps_https_only_with_auth_in_front() -> None:
    assert function_app()["properties"]["httpsOnly"] is True
