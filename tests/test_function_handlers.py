"""The function and permission handlers: round trips on moto, and on a Stubber what moto
cannot show: IAM propagation retries, waits for function state, and the order of calls,
with every sleep recorded instead of slept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imgcli.infra.aws_support import Patience
from imgcli.infra.compute_handlers import compute_handlers
from imgcli.infra.errors import InfraError
from imgcli.infra.function_handlers import ROLE_PROPAGATION, FunctionHandler, PermissionHandler
from imgcli.infra.handlers import ResourceHandler
from imgcli.infra.packaging import code_sha256
from imgcli.infra.resources import API_ID, Kind
from tests.computedata import (
    NAMES,
    REGION,
    ZIP,
    Sleeps,
    assert_reads_back,
    changed,
    client_factory,
    create_all,
    desired,
    lambda_sha256,
    make_zip,
)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def handlers(moto_aws: None, sleeps: Sleeps) -> dict[Kind, ResourceHandler]:
    return compute_handlers(client_factory, sleep=sleeps)


# moto round trips -----------------------------------------------------------------------


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


PERMISSION = desired(Kind.PERMISSION)[0]
ADD_PERMISSION = {
    "FunctionName": SAVE.name,
    "StatementId": "s3-invoke",
    "Action": "lambda:InvokeFunction",
    "Principal": "s3.amazonaws.com",
    "SourceArn": NAMES.bucket_arn,
    "SourceAccount": NAMES.account,
}
REMOVE_PERMISSION = {"FunctionName": SAVE.name, "StatementId": "s3-invoke"}


def statement(source_arn: str = NAMES.bucket_arn) -> dict[str, Any]:
    """The S3 permission as Lambda's GetPolicy shows it."""
    return {
        "Sid": "s3-invoke",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": FUNCTION_ARN,
        "Condition": {
            "StringEquals": {"AWS:SourceAccount": NAMES.account},
            "ArnLike": {"AWS:SourceArn": source_arn},
        },
    }


def expect_add_conflict(stubber: Stubber) -> None:
    stubber.add_client_error(
        "add_permission",
        "ResourceConflictException",
        "The statement id (s3-invoke) provided already exists.",
        409,
        expected_params=ADD_PERMISSION,
    )


def expect_policy(stubber: Stubber, *statements: dict[str, Any]) -> None:
    policy = {"Version": "2012-10-17", "Id": "default", "Statement": list(statements)}
    stubber.add_response("get_policy", {"Policy": json.dumps(policy)}, {"FunctionName": SAVE.name})


def test_a_sid_taken_by_an_older_statement_is_replaced(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    expect_add_conflict(stubber)
    expect_policy(stubber, statement(source_arn="arn:aws:s3:::an-older-bucket"))
    stubber.add_response("remove_permission", {}, REMOVE_PERMISSION)
    stubber.add_response("add_permission", {"Statement": "{}"}, ADD_PERMISSION)
    assert PermissionHandler(client, sleep=sleeps).create(PERMISSION, {}) == {}
    assert sleeps == []


def test_a_sid_another_run_just_filled_with_this_statement_is_left_alone(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    """Two bootstraps at once: the second's add conflicts with the first's identical
    statement. Removing it and adding again would open a window without it (and a third
    run's add in that window would conflict again): nothing more to do."""
    client, stubber = lambda_stub
    expect_add_conflict(stubber)
    expect_policy(stubber, statement())
    PermissionHandler(client, sleep=sleeps).create(PERMISSION, {})  # no remove, no 2nd add


def test_a_replacement_raced_by_another_run_ends_with_its_one_statement(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    """An update removes the old statement, and another run's add of the new one gets in
    before ours: our add conflicts, and the statement there is the one wanted."""
    client, stubber = lambda_stub
    stubber.add_response("remove_permission", {}, REMOVE_PERMISSION)
    expect_add_conflict(stubber)
    expect_policy(stubber, statement())
    PermissionHandler(client, sleep=sleeps).update(PERMISSION, "source_arn", {})


def test_a_conflict_with_no_statement_there_is_tried_again_after_a_pause(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    """ResourceConflictException also means "an update of the function is in progress"."""
    client, stubber = lambda_stub
    expect_add_conflict(stubber)
    expect_policy(stubber)  # no statement with the Sid
    stubber.add_response("add_permission", {"Statement": "{}"}, ADD_PERMISSION)
    PermissionHandler(client, sleep=sleeps).create(PERMISSION, {})
    assert sleeps == [1]


def test_a_conflict_that_never_settles_is_bounded(
    lambda_stub: tuple[Any, Stubber], sleeps: Sleeps
) -> None:
    client, stubber = lambda_stub
    patience = Patience(delay_s=1, total_s=2)
    for _ in range(3):
        expect_add_conflict(stubber)
        expect_policy(stubber)
    handler = PermissionHandler(client, sleep=sleeps, patience=patience)
    with pytest.raises(InfraError, match="stays in conflict after 2 s"):
        handler.create(PERMISSION, {})
    assert sleeps == [1, 1]


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
