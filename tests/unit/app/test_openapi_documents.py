"""The shipped API documents: generated from the models, valid for their OpenAPI versions."""

from __future__ import annotations

import json

from openapi_spec_validator.validation.validators import OpenAPIV2SpecValidator, OpenAPIV31SpecValidator

from shared.contract import openapi_batch
from shared.contract.openapi import document, swagger2
from shared.usecases import batch
from tests.paths import ROOT


def _shipped(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((ROOT / name).read_text())
    return data


def test_openapi_31_is_valid_and_shipped_as_generated() -> None:
    doc = document()
    assert _shipped("openapi.json") == doc, "regenerate openapi.json (see shared/contract/openapi.py)"
    assert list(OpenAPIV31SpecValidator(doc).iter_errors()) == []


def test_the_connector_definition_is_valid_swagger_20_and_shipped_as_generated() -> None:
    """Logic Apps / Power Platform custom connectors import OpenAPI 2.0 only."""
    doc = swagger2(document())
    assert _shipped("connector/apiDefinition.swagger.json") == doc
    assert list(OpenAPIV2SpecValidator(doc).iter_errors()) == []
    text = json.dumps(doc)
    assert "#/components/" not in text
    assert '"oneOf"' not in text
    assert sorted(doc["paths"]) == sorted(document()["paths"])


def test_the_batch_route_is_documented_with_the_limit_it_enforces() -> None:
    doc = document()
    batch_body = doc["components"]["schemas"]["BatchRequest"]["properties"]["requests"]
    assert batch_body["maxItems"] == batch.MAX_REQUESTS == openapi_batch.MAX_ITEMS
    assert doc["paths"]["/provision/batch"]["post"]["operationId"] == "ProvisionBatch"
    assert set(doc["paths"]["/provision"]) == {"post", "get"}, "the merge keeps both methods"
