"""The real SDKs against the emulator, exactly as the app uses them: ManagedIdentityCredential + msgraph-beta."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options import RetryHandlerOption
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.synchronization_job_application_parameters import (
    SynchronizationJobApplicationParameters,
)
from msgraph_beta.generated.models.synchronization_job_subject import SynchronizationJobSubject
from msgraph_beta.generated.service_principals.item.synchronization.jobs.item.provision_on_demand.provision_on_demand_post_request_body import (  # noqa: E501
    ProvisionOnDemandPostRequestBody,
)
from msgraph_beta.graph_request_adapter import GraphRequestAdapter
from msgraph_beta.graph_service_client import GraphServiceClient

from emulator.config import EmulatorConfig
from emulator.testing import RunningEmulator, running_emulator
from tests.paths import EMULATOR_FIXTURES

FIXTURES = EMULATOR_FIXTURES
SP, JOB, RULE = (
    "c8c95753-f628-48e1-9fab-76c2d4cf624c",
    "3f7565a3-fde6-4e4d-bda8-1bb70aba3612",
    "ea807875-5618-4f0a-9125-0b46a05298ca",
)
SEED_USER = "9bb0f679-a883-4a6f-8260-35b491b8b8c8"
DEFAULT_MI = "7f3e2a1b-9c8d-4e6f-a5b4-3c2d1e0f9a8b"

# The generated request builders warn about their own deprecated configuration classes when first imported.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]


@pytest.fixture
async def running(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(identity_header="sdk-secret", rate_limit="100/10s")
    async with running_emulator(config) as emu:
        for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", emu.token_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
        yield emu


def graph_client(credential: ManagedIdentityCredential, base: str) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[f"{base}/.default"])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"{base}/beta"
    return GraphServiceClient(request_adapter=adapter)


def body_for(object_id: str) -> ProvisionOnDemandPostRequestBody:
    subject = SynchronizationJobSubject(object_id=object_id, object_type_name="User")
    return ProvisionOnDemandPostRequestBody(
        parameters=[SynchronizationJobApplicationParameters(rule_id=RULE, subjects=[subject])]
    )


async def test_managed_identity_credential_gets_a_token(running: RunningEmulator) -> None:
    async with ManagedIdentityCredential() as credential:
        token = await credential.get_token(f"{running.base_url}/.default")
    assert token.token.count(".") == 2
    assert token.expires_on > time.time() + 3600
    async with ManagedIdentityCredential(client_id="0aa0aa0a-1111-2222-3333-444444444444") as credential:
        await credential.get_token("https://graph.microsoft.com/.default")
    calls = running.emulator.calls.list("token")
    assert [c["clientId"] for c in calls] == [DEFAULT_MI, "0aa0aa0a-1111-2222-3333-444444444444"]
    assert all(c["status"] == 200 for c in calls)


async def test_sdk_end_to_end_seed_example_1_and_429(running: RunningEmulator) -> None:
    base = running.base_url
    expected: dict[str, Any] = json.loads((FIXTURES / "seed003-example1.json").read_text())
    async with ManagedIdentityCredential() as credential:
        client = graph_client(credential, base)
        job = client.service_principals.by_service_principal_id(SP).synchronization.jobs.by_synchronization_job_id(JOB)

        result = await job.provision_on_demand.post(body_for(SEED_USER))
        assert result is not None
        assert result.key == expected["key"]
        assert result.value == expected["value"]

        fresh = await job.provision_on_demand.post(body_for("e1a2b3c4-0001-4a5b-8c6d-000000000001"))
        assert fresh is not None
        assert fresh.key == '{"result":"Success","details":{}}'

        status = await job.get()
        assert status is not None
        assert status.status is not None
        assert str(status.status.code.value if status.status.code else None) == "Active"
        assert status.schedule is not None
        assert status.schedule.interval == datetime.timedelta(minutes=40)
        schema = await job.schema.get()
        assert schema is not None
        assert schema.synchronization_rules
        rule = schema.synchronization_rules[0]
        assert rule.id == RULE
        assert any(m.key == "supportsProvisionOnDemand" and m.value == "true" for m in rule.metadata or [])

        running.emulator.limiter.configure(running.emulator.limiter.limit.parse("1/10s"))
        no_retry = RequestConfiguration(options=[RetryHandlerOption(max_retries=0)])  # type: ignore[var-annotated]
        await job.provision_on_demand.post(body_for(SEED_USER), request_configuration=no_retry)
        with pytest.raises(ODataError) as caught:
            await job.provision_on_demand.post(body_for(SEED_USER), request_configuration=no_retry)
        assert caught.value.response_status_code == 429
        assert caught.value.error is not None
        assert caught.value.error.code == "TooManyRequests"
        headers = {k.lower(): v for k, v in (caught.value.response_headers or {}).items()}
        assert int(headers["retry-after"]) >= 1

    calls = running.emulator.calls.list("provisionOnDemand")
    assert [c["status"] for c in calls] == [200, 200, 200, 429]
    assert all(c["authorization"] == "Bearer" and c["clientId"] == DEFAULT_MI for c in calls)
    assert calls[0]["body"] == {
        "parameters": [{"ruleId": RULE, "subjects": [{"objectId": SEED_USER, "objectTypeName": "User"}]}]
    }
