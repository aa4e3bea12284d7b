"""Roles, functions, permissions and the HTTP API: round trips on moto, retries on a Stubber.

The moto tests prove the property the planner relies on: after ``create`` (or ``update``),
``read`` gives back exactly the desired settings, so a second bootstrap plans nothing. The
Stubber tests prove what moto cannot show: IAM propagation retries, waits for function
state, and the order of calls, with every sleep recorded instead of slept.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imgcli.infra.aws_support import Patience
from imgcli.infra.compute_handlers import (
    ROLE_PROPAGATION,
    FunctionHandler,
    HttpApiHandler,
    PermissionHandler,
    RoleHandler,
    compute_handlers,
    policy_document,
)
from imgcli.infra.handlers import InfraError, ResourceHandler, resolved
from imgcli.infra.names import StackNames
from imgcli.infra.packaging import code_sha256
from imgcli.infra.resources import (
    API_ID,
    API_URL,
    FunctionCode,
    Kind,
    Resource,
    StackOptions,
    desired_stack,
)

REGION = "us-east-1"
NAMES = StackNames("t1", "123456789012", REGION)  # moto's default account


def make_zip(body: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lambdas/__init__.py", body)
    return buffer.getvalue()


def lambda_sha256(data: bytes) -> str:
    """What Lambda reports as ``CodeSha256``: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


ZIP = make_zip()
STACK = desired_stack(NAMES, StackOptions(), FunctionCode(ZIP, lambda_sha256(ZIP), "python3.13"))


def desired(kind: Kind) -> list[Resource]:
    return [resource for resource in STACK if resource.kind is kind]


def changed(resource: Resource, setting: str, value: Any, payload: bytes | None = None) -> Resource:
    settings = {**resource.settings, setting: value}
    return dataclasses.replace(
        resource, settings=settings, payload=payload if payload else resource.payload
    )


class Sleeps(list[float]):
    """Records each sleep instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_factory(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handlers(moto_aws: None, sleeps: Sleeps) -> dict[Kind, ResourceHandler]:
    return compute_handlers(client_factory, sleep=sleeps)


def assert_reads_back(handler: ResourceHandler, resource: Resource, refs: dict[str, str]) -> None:
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resolved(resource.settings, refs)


def create_all(handlers: dict[Kind, ResourceHandler], kind: Kind, refs: dict[str, str]) -> None:
    for resource in desired(kind):
        refs.update(handlers[kind].create(resource, refs))


# moto round trips -----------------------------------------------------------------------


def test_role_round_trip(handlers: dict[Kind, ResourceHandler], sleeps: Sleeps) -> None:
    roles = handlers[Kind.ROLE]
    role = desired(Kind.ROLE)[0]
    assert roles.read(role.name) is None

    assert roles.create(role, {}) == {}
    assert_reads_back(roles, role, {})

    policy = role.settings["policies"]["imgcli"]
    narrower = changed(
        role,
        "policies",
        {"imgcli": {**policy, "Statement": policy["Statement"][:1]}, "extra": policy},
    )
    roles.update(narrower, "policies", {})
    assert_reads_back(roles, narrower, {})
    roles.update(role, "policies", {})  # drops the inline policy no longer wanted
    assert_reads_back(roles, role, {})

    iam = boto3.client("iam", region_name=REGION)
    iam.tag_role(RoleName=role.name, Tags=[{"Key": "imgcli:old", "Value": "x"}])
    iam.tag_role(RoleName=role.name, Tags=[{"Key": "team", "Value": "photos"}])
    roles.update(role, "tags", {})
    assert_reads_back(roles, role, {})
    live = iam.list_role_tags(RoleName=role.name)["Tags"]
    assert {t["Key"]: t["Value"] for t in live} == {**role.settings["tags"], "team": "photos"}

    trust = json.loads(json.dumps(role.settings["trust_policy"]))
    trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] = "999999999999"
    roles.update(changed(role, "trust_policy", trust), "trust_policy", {})
    observed = roles.read(role.name)
    assert observed is not None and observed.settings["trust_policy"] == trust

    # A role with an attached managed policy and inline ones still goes away.
    iam.create_policy(PolicyName="managed", PolicyDocument=json.dumps(policy))
    iam.attach_role_policy(RoleName=role.name, PolicyArn="arn:aws:iam::123456789012:policy/managed")
    roles.delete(role.name, delete_images=False)
    assert roles.read(role.name) is None
    roles.delete(role.name, delete_images=False)
    assert sleeps == []


def test_creating_an_existing_role_converges_it(handlers: dict[Kind, ResourceHandler]) -> None:
    roles = handlers[Kind.ROLE]
    role = desired(Kind.ROLE)[0]
    boto3.client("iam", region_name=REGION).create_role(
        RoleName=role.name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    assert roles.create(role, {}) == {}
    assert_reads_back(roles, role, {})


def test_policy_documents_are_read_whichever_way_the_client_returns_them() -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Sid": "100%", "Effect": "Allow"}]}
    text = json.dumps(document)
    assert policy_document(document) == document
    assert policy_document(text) == document
    assert policy_document("%7B%22Version%22%3A%20%222012-10-17%22%7D") == {"Version": "2012-10-17"}


def test_function_round_trip(handlers: dict[Kind, ResourceHandler], sleeps: Sleeps) -> None:
    refs: dict[str, str] = {}
    create_all(handlers, Kind.ROLE, refs)
    functions = handlers[Kind.FUNCTION]
    save, retrieve = desired(Kind.FUNCTION)
    assert "async_invoke" in save.settings and "async_invoke" not in retrieve.settings
    for function in (save, retrieve):
        assert functions.read(function.name) is None
        assert functions.create(function, refs) == {}
        assert_reads_back(functions, function, refs)

    # The digest the stack compares is the one Lambda (here moto) reports.
    live = boto3.client("lambda", region_name=REGION).get_function(FunctionName=save.name)
    assert live["Configuration"]["CodeSha256"] == lambda_sha256(ZIP) == code_sha256(ZIP)

    current = save
    for setting, value in [
        ("memory_mb", 2048),
        ("timeout_s", 30),
        ("environment", {"TABLE_NAME": "other", "EXTRA": "1"}),
        ("handler", "lambdas.other.handler"),
        ("tags", {"imgcli:stack": "t1", "imgcli:extra": "yes"}),
        ("async_invoke", {**save.settings["async_invoke"], "MaximumRetryAttempts": 0}),
    ]:
        current = changed(current, setting, value)
        functions.update(current, setting, refs)
        assert_reads_back(functions, current, refs)
    for setting in save.settings:  # back again; removes the tag imgcli:extra too
        functions.update(save, setting, refs)
    assert_reads_back(functions, save, refs)

    new_zip = make_zip("VERSION = 2\n")
    new_code = changed(save, "code_sha256", lambda_sha256(new_zip), payload=new_zip)
    functions.update(new_code, "code_sha256", refs)
    assert_reads_back(functions, new_code, refs)

    # The retrieve function gains a failure destination it did not have.
    with_async = changed(retrieve, "async_invoke", save.settings["async_invoke"])
    functions.update(with_async, "async_invoke", refs)
    assert_reads_back(functions, with_async, refs)

    for function in (save, retrieve):
        functions.delete(function.name, delete_images=False)
        assert functions.read(function.name) is None
        functions.delete(function.name, delete_images=False)
    assert sleeps == []


def test_creating_an_existing_function_updates_what_differs(
    handlers: dict[Kind, ResourceHandler],
) -> None:
    refs: dict[str, str] = {}
    create_all(handlers, Kind.ROLE, refs)
    functions = handlers[Kind.FUNCTION]
    save = desired(Kind.FUNCTION)[0]
    functions.create(changed(save, "memory_mb", 128), refs)
    assert functions.create(save, refs) == {}
    assert_reads_back(functions, save, refs)


def test_permission_round_trip(handlers: dict[Kind, ResourceHandler]) -> None:
    refs: dict[str, str] = {API_ID: "a1b2c3d4"}
    create_all(handlers, Kind.ROLE, refs)
    create_all(handlers, Kind.FUNCTION, refs)
    permissions = handlers[Kind.PERMISSION]
    for permission in desired(Kind.PERMISSION):
        assert permissions.read(permission.name) is None
        assert permissions.create(permission, refs) == {}
        assert_reads_back(permissions, permission, refs)

    api_permission = desired(Kind.PERMISSION)[-1]
    refs[API_ID] = "e5f6g7h8"  # the API was replaced: the source ARN follows it
    permissions.update(api_permission, "source_arn", refs)
    assert_reads_back(permissions, api_permission, refs)
    observed = permissions.read(api_permission.name)
    assert observed is not None and "e5f6g7h8" in observed.settings["source_arn"]

    for permission in desired(Kind.PERMISSION):
        permissions.delete(permission.name, delete_images=False)
        assert permissions.read(permission.name) is None
        permissions.delete(permission.name, delete_images=False)


def test_permission_of_a_missing_function_reads_as_none(
    handlers: dict[Kind, ResourceHandler],
) -> None:
    permission = desired(Kind.PERMISSION)[0]
    assert handlers[Kind.PERMISSION].read(permission.name) is None
    handlers[Kind.PERMISSION].delete(permission.name, delete_images=False)


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


FOREIGN_TAGS = {"team": "photos"}


def api_arn(name: str) -> str:
    client = boto3.client("apigatewayv2", region_name=REGION)
    api_id = next(a["ApiId"] for a in client.get_apis()["Items"] if a["Name"] == name)
    return f"arn:aws:apigateway:{REGION}::/apis/{api_id}"


def add_foreign_tags(kind: Kind, name: str) -> None:
    if kind is Kind.ROLE:
        boto3.client("iam", region_name=REGION).tag_role(
            RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in FOREIGN_TAGS.items()]
        )
    elif kind is Kind.FUNCTION:
        boto3.client("lambda", region_name=REGION).tag_resource(
            Resource=NAMES.function_arn(name), Tags=FOREIGN_TAGS
        )
    else:
        boto3.client("apigatewayv2", region_name=REGION).tag_resource(
            ResourceArn=api_arn(name), Tags=FOREIGN_TAGS
        )


def all_tags(kind: Kind, name: str) -> dict[str, str]:
    if kind is Kind.ROLE:
        tags = boto3.client("iam", region_name=REGION).list_role_tags(RoleName=name)["Tags"]
        return {t["Key"]: t["Value"] for t in tags}
    if kind is Kind.FUNCTION:
        function = boto3.client("lambda", region_name=REGION).get_function(FunctionName=name)
        return dict(function["Tags"])
    client = boto3.client("apigatewayv2", region_name=REGION)
    return dict(client.get_tags(ResourceArn=api_arn(name))["Tags"])


@pytest.mark.parametrize("kind", [Kind.ROLE, Kind.FUNCTION, Kind.API])
def test_tags_others_added_are_neither_reported_nor_removed(
    handlers: dict[Kind, ResourceHandler], kind: Kind
) -> None:
    refs: dict[str, str] = {}
    if kind is Kind.FUNCTION:
        create_all(handlers, Kind.ROLE, refs)
    resource = desired(kind)[0]
    handler = handlers[kind]
    refs.update(handler.create(resource, refs))
    add_foreign_tags(kind, resource.name)

    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resolved(resource.settings, refs)  # nothing to plan

    more = {**resource.settings["tags"], "imgcli:extra": "yes"}
    handler.update(changed(resource, "tags", more), "tags", refs)
    handler.update(resource, "tags", refs)
    assert all_tags(kind, resource.name) == {**resource.settings["tags"], **FOREIGN_TAGS}


# Stubbed: retries, waits and call order -------------------------------------------------

SAVE = desired(Kind.FUNCTION)[0]
RETRIEVE = desired(Kind.FUNCTION)[1]
FUNCTION_ARN = NAMES.function_arn(SAVE.name)
ROLE_ERROR = "The role defined for the function cannot be assumed by Lambda."


@pytest.fixture
def lambda_stub() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("lambda", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def configuration(**fields: Any) -> dict[str, Any]:
    return {"FunctionName": SAVE.name, "FunctionArn": FUNCTION_ARN, **fields}


def expect_create_function(stubber: Stubber, *, error: str | None = None) -> None:
    settings = SAVE.settings
    params = {
        "FunctionName": SAVE.name,
        "Code": {"ZipFile": ZIP},
        "Architectures": [settings["architecture"]],
        "Role": settings["role_arn"],
        "Handler": settings["handler"],
        "Runtime": settings["runtime"],
        "MemorySize": settings["memory_mb"],
        "Timeout": settings["timeout_s"],
        "Environment": {"Variables": settings["environment"]},
        "Tags": settings["tags"],
        "Publish": False,
    }
    if error is None:
        stubber.add_response("create_function", configuration(State="Pending"), params)
    else:
        stubber.add_client_error(
            "create_function", "InvalidParameterValueException", error, expected_params=params
        )


def expect_configuration(stubber: Stubber, **fields: Any) -> None:
    stubber.add_response(
        "get_function_configuration", configuration(**fields), {"FunctionName": SAVE.name}
    )


def test_create_function_retries_while_the_role_propagates_then_waits_for_active(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_create_function(stubber, error=ROLE_ERROR)
    expect_create_function(stubber, error=ROLE_ERROR)
    expect_create_function(stubber)
    expect_configuration(stubber, State="Pending")
    expect_configuration(stubber, State="Active")
    async_invoke = SAVE.settings["async_invoke"]
    stubber.add_response(
        "put_function_event_invoke_config",
        {},
        {
            "FunctionName": SAVE.name,
            "MaximumRetryAttempts": async_invoke["MaximumRetryAttempts"],
            "MaximumEventAgeInSeconds": async_invoke["MaximumEventAgeInSeconds"],
            "DestinationConfig": {"OnFailure": {"Destination": NAMES.failure_queue_arn}},
        },
    )
    stubber.add_response(
        "get_function_event_invoke_config",
        {
            "MaximumRetryAttempts": async_invoke["MaximumRetryAttempts"],
            "MaximumEventAgeInSeconds": async_invoke["MaximumEventAgeInSeconds"],
            "DestinationConfig": {"OnFailure": {"Destination": async_invoke["OnFailure"]}},
        },
        {"FunctionName": SAVE.name},
    )
    assert FunctionHandler(client, sleep=sleeps).create(SAVE, {}) == {}
    assert sleeps == [1, 2, 1]  # two propagation retries, one poll while Pending


def test_role_propagation_retries_are_bounded(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    retries = list(ROLE_PROPAGATION.delays())
    for _ in range(len(retries) + 1):
        expect_create_function(stubber, error=ROLE_ERROR)
    with pytest.raises(
        InfraError, match=r"cannot use role .*: AWS still refuses after 55 s .*cannot be assumed"
    ) as gave_up:
        FunctionHandler(client, sleep=sleeps).create(SAVE, {})
    assert sleeps == retries == [1, 2, 4, 8, 10, 10, 10, 10]
    assert sum(sleeps) <= ROLE_PROPAGATION.total_s
    assert "trusts lambda.amazonaws.com" in str(gave_up.value.hint)


def test_other_invalid_parameters_are_not_retried(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_create_function(stubber, error="Unzipped size must be smaller than 262144000 bytes")
    with pytest.raises(Exception, match="Unzipped size"):
        FunctionHandler(client, sleep=sleeps).create(SAVE, {})
    assert sleeps == []


def test_waiting_for_active_is_bounded(lambda_stub: tuple[Any, Stubber], sleeps: Sleeps) -> None:
    client, stubber = lambda_stub
    expect_create_function(stubber)
    for _ in range(4):  # 1 + 2 + 4 = 7 s allowed: three sleeps, four looks
        expect_configuration(stubber, State="Pending")
    handler = FunctionHandler(
        client, sleep=sleeps, settling=Patience(delay_s=1, max_delay_s=4, total_s=10)
    )
    with pytest.raises(InfraError, match=r"gave up after 7 s waiting for function .* Active"):
        handler.create(SAVE, {})
    assert sleeps == [1, 2, 4]


SEND_MESSAGE_ERROR = (
    "The function's execution role does not have permissions to call SendMessage on "
    f"{NAMES.failure_queue_arn}"
)


def test_async_invoke_config_retries_while_the_send_message_permission_propagates(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    async_invoke = SAVE.settings["async_invoke"]
    put = {
        "FunctionName": SAVE.name,
        "MaximumRetryAttempts": async_invoke["MaximumRetryAttempts"],
        "MaximumEventAgeInSeconds": async_invoke["MaximumEventAgeInSeconds"],
        "DestinationConfig": {"OnFailure": {"Destination": async_invoke["OnFailure"]}},
    }
    for _ in range(2):
        stubber.add_client_error(
            "put_function_event_invoke_config",
            "InvalidParameterValueException",
            SEND_MESSAGE_ERROR,
            expected_params=put,
        )
    stubber.add_response("put_function_event_invoke_config", {}, put)
    stubber.add_response(
        "get_function_event_invoke_config",
        {key: value for key, value in put.items() if key != "FunctionName"},
        {"FunctionName": SAVE.name},
    )
    FunctionHandler(client, sleep=sleeps).update(SAVE, "async_invoke", {})
    assert sleeps == [1, 2]


def test_configuration_update_retries_while_a_new_role_propagates(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    new_role = NAMES.role_arn("imgcli-t1-new-role")
    update = {"FunctionName": SAVE.name, "Role": new_role}
    expect_configuration(stubber, State="Active", LastUpdateStatus="Successful")
    stubber.add_client_error(
        "update_function_configuration",
        "InvalidParameterValueException",
        ROLE_ERROR,
        expected_params=update,
    )
    stubber.add_response(
        "update_function_configuration", configuration(LastUpdateStatus="InProgress"), update
    )
    expect_configuration(stubber, State="Active", LastUpdateStatus="Successful")
    FunctionHandler(client, sleep=sleeps).update(
        changed(SAVE, "role_arn", new_role), "role_arn", {}
    )
    assert sleeps == [1]


def test_waiting_for_an_update_to_finish_is_bounded(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    for _ in range(4):  # 1 + 2 + 4 = 7 s allowed: three sleeps, four looks
        expect_configuration(stubber, State="Active", LastUpdateStatus="InProgress")
    handler = FunctionHandler(
        client, sleep=sleeps, settling=Patience(delay_s=1, max_delay_s=4, total_s=10)
    )
    with pytest.raises(
        InfraError, match=r"gave up after 7 s waiting for the update of function .* to finish"
    ):
        handler.update(changed(SAVE, "memory_mb", 2048), "memory_mb", {})
    assert sleeps == [1, 2, 4]


def test_a_failed_function_reports_lambdas_reason(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_create_function(stubber)
    expect_configuration(stubber, State="Failed", StateReason="Subnet has no free IPs")
    with pytest.raises(InfraError, match="failed to start: Subnet has no free IPs"):
        FunctionHandler(client, sleep=sleeps).create(SAVE, {})


def test_configuration_update_waits_while_an_update_is_in_progress(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_configuration(stubber, State="Active", LastUpdateStatus="InProgress")
    expect_configuration(stubber, State="Active", LastUpdateStatus="InProgress")
    # An earlier failed update does not block the one that repairs it.
    expect_configuration(stubber, State="Active", LastUpdateStatus="Failed")
    stubber.add_response(
        "update_function_configuration",
        configuration(LastUpdateStatus="InProgress"),
        {"FunctionName": SAVE.name, "MemorySize": 2048},
    )
    expect_configuration(stubber, State="Active", LastUpdateStatus="InProgress")
    expect_configuration(stubber, State="Active", LastUpdateStatus="Successful")
    FunctionHandler(client, sleep=sleeps).update(changed(SAVE, "memory_mb", 2048), "memory_mb", {})
    assert sleeps == [1, 2, 1]


def test_code_update_uploads_then_waits_and_reports_failure(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    new_zip = make_zip("VERSION = 2\n")
    new_code = changed(SAVE, "code_sha256", lambda_sha256(new_zip), payload=new_zip)
    expect_configuration(
        stubber, State="Active", LastUpdateStatus="Successful", CodeSha256=lambda_sha256(ZIP)
    )
    stubber.add_response(
        "update_function_code",
        configuration(LastUpdateStatus="InProgress"),
        {
            "FunctionName": SAVE.name,
            "ZipFile": new_zip,
            "Architectures": ["arm64"],
            "Publish": False,
        },
    )
    expect_configuration(stubber, State="Active", LastUpdateStatus="InProgress")
    expect_configuration(
        stubber,
        State="Active",
        LastUpdateStatus="Failed",
        LastUpdateStatusReason="The unzipped size is too large",
    )
    with pytest.raises(InfraError, match=r"updating function .* failed: The unzipped size"):
        FunctionHandler(client, sleep=sleeps).update(new_code, "code_sha256", {})
    assert sleeps == [1]


def test_code_already_deployed_is_not_uploaded_again(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_configuration(
        stubber,
        State="Active",
        LastUpdateStatus="Successful",
        CodeSha256=SAVE.settings["code_sha256"],
        Architectures=["arm64"],
    )
    FunctionHandler(client, sleep=sleeps).update(SAVE, "architecture", {})


def test_permission_conflict_replaces_the_statement(lambda_stub: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_stub
    permission = desired(Kind.PERMISSION)[0]
    add = {
        "FunctionName": SAVE.name,
        "StatementId": "s3-invoke",
        "Action": "lambda:InvokeFunction",
        "Principal": "s3.amazonaws.com",
        "SourceArn": NAMES.bucket_arn,
        "SourceAccount": NAMES.account,
    }
    stubber.add_client_error(
        "add_permission",
        "ResourceConflictException",
        "The statement id exists",
        409,
        expected_params=add,
    )
    stubber.add_response(
        "remove_permission", {}, {"FunctionName": SAVE.name, "StatementId": "s3-invoke"}
    )
    stubber.add_response("add_permission", {"Statement": "{}"}, add)
    assert PermissionHandler(client).create(permission, {}) == {}


def test_role_delete_removes_policies_before_the_role() -> None:
    client = boto3.client("iam", region_name=REGION)
    role = {"RoleName": "imgcli-t1-save-delete"}
    managed = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_attached_role_policies",
            {"AttachedPolicies": [{"PolicyName": "ReadOnlyAccess", "PolicyArn": managed}]},
            role,
        )
        stubber.add_response("detach_role_policy", {}, {**role, "PolicyArn": managed})
        stubber.add_response("list_role_policies", {"PolicyNames": ["imgcli", "old"]}, role)
        stubber.add_response("delete_role_policy", {}, {**role, "PolicyName": "imgcli"})
        stubber.add_response("delete_role_policy", {}, {**role, "PolicyName": "old"})
        stubber.add_response("delete_role", {}, role)
        RoleHandler(client).delete(role["RoleName"], delete_images=False)
        stubber.assert_no_pending_responses()


def test_role_delete_of_a_missing_role_is_done() -> None:
    client = boto3.client("iam", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("list_attached_role_policies", "NoSuchEntity", "not found", 404)
        RoleHandler(client).delete("gone", delete_images=False)


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


def test_tag_removal_touches_only_our_tags(lambda_stub: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_stub
    stubber.add_response(
        "get_function",
        {
            "Configuration": configuration(),
            "Tags": {"imgcli:stack": "t1", "imgcli:old": "x", "team": "photos", "aws:x": "y"},
        },
        {"FunctionName": SAVE.name},
    )
    stubber.add_response(
        "tag_resource", {}, {"Resource": FUNCTION_ARN, "Tags": {"imgcli:stack": "t1"}}
    )
    stubber.add_response(
        "untag_resource", {}, {"Resource": FUNCTION_ARN, "TagKeys": ["imgcli:old"]}
    )
    FunctionHandler(client, sleep=Sleeps()).update(SAVE, "tags", {})


def test_the_factory_gives_a_handler_for_each_compute_kind(moto_aws: None) -> None:
    handlers = compute_handlers(client_factory, sleep=Sleeps())
    assert set(handlers) == {Kind.ROLE, Kind.FUNCTION, Kind.PERMISSION, Kind.API}
    assert isinstance(handlers[Kind.API], HttpApiHandler)
