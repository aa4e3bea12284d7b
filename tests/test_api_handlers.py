"""The HTTP API handler: round trips on moto (routes, integration, stage, tags, an API
left half made, a same-named API of someone else's), and on a Stubber the stage replaced
only where the endpoint lacks UpdateStage."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imgcli.infra.api_handlers import HttpApiHandler
from imgcli.infra.compute_handlers import compute_handlers
from imgcli.infra.handlers import ResourceHandler
from imgcli.infra.resources import API_ID, API_URL, Kind
from tests.computedata import (
    NAMES,
    REGION,
    Sleeps,
    assert_reads_back,
    changed,
    client_factory,
    desired,
)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handlers(moto_aws: None, sleeps: Sleeps) -> dict[Kind, ResourceHandler]:
    return compute_handlers(client_factory, sleep=sleeps)


# moto round trips -----------------------------------------------------------------------


def test_api_round_trip(handlers: dict[Kind, ResourceHandler]) -> None:
    apis = handlers[Kind.API]
    (api,) = desired(Kind.API)
    assert apis.read(api.name) is None

    outputs = apis.create(api, {})
    assert outputs[API_URL].startswith("https://")
    assert outputs[API_ID] in outputs[API_URL]
    assert_reads_back(apis, api, {})
    observed = apis.read(api.name)
    assert observed is not None and observed.outputs == outputs

    stage = api.settings["stage"]
    current = api
    for setting, value in [
        ("routes", {"GET /images": "NONE", "GET /images/{key+}": "AWS_IAM", "GET /x": "AWS_IAM"}),
        ("routes", {"GET /images": "AWS_IAM"}),
        ("integration", {**api.settings["integration"], "uri": NAMES.function_arn("other")}),
        ("stage", {**stage, "burst_limit": 10, "rate_limit": 5.0}),
        ("stage", {**stage, "auto_deploy": False}),
        ("tags", {"imgcli:stack": "t1", "imgcli:extra": "yes"}),
    ]:
        current = changed(current, setting, value)
        apis.update(current, setting, {})
        assert_reads_back(apis, current, {})
    for setting in api.settings:
        apis.update(api, setting, {})
    assert_reads_back(apis, api, {})

    # Every route still sends its requests to the one integration.
    client = boto3.client("apigatewayv2", region_name=REGION)
    (integration,) = client.get_integrations(ApiId=outputs[API_ID])["Items"]
    targets = {r["Target"] for r in client.get_routes(ApiId=outputs[API_ID])["Items"]}
    assert targets == {f"integrations/{integration['IntegrationId']}"}

    # create again (a re-run that lost its state) finds the API instead of making another
    assert apis.create(api, {}) == outputs
    assert len(client.get_apis()["Items"]) == 1

    apis.delete(api.name, delete_images=False)
    assert apis.read(api.name) is None
    apis.delete(api.name, delete_images=False)


def test_a_same_named_api_without_our_tag_is_not_ours(
    handlers: dict[Kind, ResourceHandler],
) -> None:
    (api,) = desired(Kind.API)
    client = boto3.client("apigatewayv2", region_name=REGION)
    theirs = client.create_api(Name=api.name, ProtocolType="HTTP")["ApiId"]
    assert handlers[Kind.API].read(api.name) is None
    ours = handlers[Kind.API].create(api, {})[API_ID]
    assert ours != theirs
    handlers[Kind.API].delete(api.name, delete_images=False)
    assert [item["ApiId"] for item in client.get_apis()["Items"]] == [theirs]


def test_an_api_left_half_made_is_completed_by_updates(
    handlers: dict[Kind, ResourceHandler],
) -> None:
    (api,) = desired(Kind.API)
    client = boto3.client("apigatewayv2", region_name=REGION)
    client.create_api(Name=api.name, ProtocolType="HTTP", Tags=api.settings["tags"])
    observed = handlers[Kind.API].read(api.name)
    assert observed is not None
    assert observed.settings == {
        "routes": {},
        "integration": None,
        "stage": None,
        "tags": api.settings["tags"],
    }
    for setting in api.settings:  # the order the planner would update them in
        if observed.settings[setting] != api.settings[setting]:
            handlers[Kind.API].update(api, setting, {})
    assert_reads_back(handlers[Kind.API], api, {})


# Stubbed: retries, waits and call order -------------------------------------------------

API = desired(Kind.API)[0]
API_ITEM = {
    "ApiId": "abc",
    "Name": API.name,
    "Tags": API.settings["tags"],
    "ProtocolType": "HTTP",
    "RouteSelectionExpression": "$request.method $request.path",
}
STAGE_ARGS = {
    "ApiId": "abc",
    "StageName": "$default",
    "AutoDeploy": True,
    "DefaultRouteSettings": {"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50.0},
}


def expect_stage_update(stubber: Stubber, *, code: str, status: int) -> None:
    stubber.add_response("get_apis", {"Items": [API_ITEM]}, {})
    stubber.add_response("get_stages", {"Items": [{"StageName": "$default"}]}, {"ApiId": "abc"})
    stubber.add_client_error(
        "update_stage", code, "Internal Server Error", status, expected_params=STAGE_ARGS
    )


def test_a_moto_server_without_update_stage_gets_the_stage_replaced() -> None:
    # A moto server answers an operation it lacks with a 500 that names no AWS error.
    client = boto3.client("apigatewayv2", region_name=REGION, endpoint_url="http://127.0.0.1:5000")
    with Stubber(client) as stubber:
        expect_stage_update(stubber, code="500", status=500)
        stubber.add_response("delete_stage", {}, {"ApiId": "abc", "StageName": "$default"})
        stubber.add_response("create_stage", {}, STAGE_ARGS)
        HttpApiHandler(client).update(API, "stage", {})
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("region", ["us-east-1", "cn-north-1"])
def test_a_500_from_aws_never_replaces_the_live_stage(region: str) -> None:
    client = boto3.client("apigatewayv2", region_name=region)
    assert client.meta.endpoint_url.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    with Stubber(client) as stubber:
        expect_stage_update(stubber, code="500", status=500)
        with pytest.raises(ClientError, match=r"\(500\)"):
            HttpApiHandler(client).update(API, "stage", {})
        stubber.assert_no_pending_responses()  # and no delete_stage or create_stage


@pytest.mark.parametrize("code", ["503", "TooManyRequestsException"])
def test_other_stage_update_errors_are_raised_even_off_aws(code: str) -> None:
    client = boto3.client("apigatewayv2", region_name=REGION, endpoint_url="http://127.0.0.1:5000")
    with Stubber(client) as stubber:
        expect_stage_update(stubber, code=code, status=503 if code == "503" else 429)
        with pytest.raises(ClientError):
            HttpApiHandler(client).update(API, "stage", {})
        stubber.assert_no_pending_responses()
