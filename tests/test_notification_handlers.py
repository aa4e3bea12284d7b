"""The notification handler: a moto round trip that keeps everyone else's configuration,
and on a Stubber what moto cannot show (EventBridge kept, filter rule names lower-cased, a
bucket we may not read, retries while the Lambda permission propagates)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imgcli.infra.errors import InfraError
from imgcli.infra.names import StackNames
from imgcli.infra.notification_handlers import (
    NOTIFICATION_VALIDATION_PATIENCE,
    OWN_NOTIFICATION_ID,
    NotificationHandler,
)
from imgcli.infra.resources import Kind, Resource
from imgcli.infra.storage_handlers import storage_handlers
from tests.storagedata import ACCOUNT, REGION, Clients, changed, clients_in, desired, never_sleep


@pytest.fixture
def clients(moto_aws: None) -> Clients:
    return clients_in(REGION)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def handlers(clients: Clients, sleeps: list[float]) -> Any:
    return storage_handlers(clients, region=REGION, sleep=sleeps.append)


def foreign_configuration(clients: Clients) -> dict[str, Any]:
    sqs = clients("sqs")
    url = sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return {
        "QueueConfigurations": [
            {
                "Id": "thumbnails",
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "raw/"}]}},
            }
        ],
        "LambdaFunctionConfigurations": [
            {
                "Id": "audit",
                "LambdaFunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:audit",
                "Events": ["s3:ObjectRemoved:*"],
            }
        ],
    }


def foreign_part(clients: Clients, bucket: str) -> dict[str, Any]:
    configuration = clients("s3").get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata")
    lambdas = configuration.get("LambdaFunctionConfigurations", [])
    configuration["LambdaFunctionConfigurations"] = [
        entry for entry in lambdas if not OWN_NOTIFICATION_ID.fullmatch(entry["Id"])
    ]
    return dict(configuration)


def test_notification_round_trip_keeps_other_configurations(
    handlers: Any, clients: Clients
) -> None:
    resource = desired(Kind.NOTIFICATION)
    handler = handlers[Kind.NOTIFICATION]
    clients("s3").create_bucket(Bucket=resource.name)
    foreign = foreign_configuration(clients)
    clients("s3").put_bucket_notification_configuration(
        Bucket=resource.name, NotificationConfiguration=foreign
    )
    assert handler.read(resource.name) is None

    handler.create(resource, {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == resource.settings
    assert foreign_part(clients, resource.name) == foreign

    created_only = changed(resource, "events", ["s3:ObjectCreated:*"])
    handler.update(created_only, "events", {})
    observed = handler.read(resource.name)
    assert observed is not None
    assert observed.settings == created_only.settings
    assert foreign_part(clients, resource.name) == foreign

    handler.delete(resource.name, delete_images=False)
    assert handler.read(resource.name) is None
    assert foreign_part(clients, resource.name) == foreign
    handler.delete(resource.name, delete_images=False)


def test_notification_of_a_missing_bucket(handlers: Any) -> None:
    resource = desired(Kind.NOTIFICATION)
    handler = handlers[Kind.NOTIFICATION]
    assert handler.read(resource.name) is None
    handler.delete(resource.name, delete_images=False)
    with pytest.raises(InfraError, match="does not exist"):
        handler.create(resource, {})


@pytest.mark.parametrize("stack", ["t1", "my-gallery-2"])
def test_own_notification_id_shape_follows_stack_names(stack: str) -> None:
    assert OWN_NOTIFICATION_ID.fullmatch(StackNames(stack, ACCOUNT, REGION).notification_id)


def test_notification_merge_keeps_eventbridge_and_lowercases_filter_rules() -> None:
    # moto drops EventBridgeConfiguration and never returns "Prefix": only a stub shows this.
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    queue = {
        "Id": "thumbnails",
        "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
        "Events": ["s3:ObjectCreated:*"],
    }
    with Stubber(s3) as stubber:
        stubber.add_response(
            "get_bucket_notification_configuration",
            {
                "QueueConfigurations": [
                    {
                        **queue,
                        "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "r/"}]}},
                    }
                ],
                "EventBridgeConfiguration": {},
            },
            {"Bucket": resource.name},
        )
        stubber.add_response(
            "put_bucket_notification_configuration",
            {},
            {
                "Bucket": resource.name,
                "NotificationConfiguration": {
                    "QueueConfigurations": [
                        {
                            **queue,
                            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "r/"}]}},
                        }
                    ],
                    "EventBridgeConfiguration": {},
                    "LambdaFunctionConfigurations": [
                        {
                            "Id": resource.settings["id"],
                            "LambdaFunctionArn": resource.settings["function_arn"],
                            "Events": resource.settings["events"],
                        }
                    ],
                },
                "SkipDestinationValidation": False,
            },
        )
        storage_handlers(lambda _: s3, region=REGION)[Kind.NOTIFICATION].create(resource, {})
        stubber.assert_no_pending_responses()


def test_notification_of_a_bucket_we_may_not_read_is_none_of_ours() -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    handler = NotificationHandler(s3, sleep=never_sleep)
    with Stubber(s3) as stubber:
        for _ in range(2):
            stubber.add_client_error(
                "get_bucket_notification_configuration",
                "AccessDenied",
                "Access Denied",
                403,
                expected_params={"Bucket": resource.name},
            )
        assert handler.read(resource.name) is None
        handler.delete(resource.name, delete_images=False)  # and nothing is written
        stubber.assert_no_pending_responses()


UNVALIDATED = "Unable to validate the following destination configurations"


def expect_notification_put(
    stubber: Stubber, resource: Resource, *, refusals: int, message: str = UNVALIDATED
) -> None:
    stubber.add_response("get_bucket_notification_configuration", {}, {"Bucket": resource.name})
    put = {
        "Bucket": resource.name,
        "NotificationConfiguration": {
            "LambdaFunctionConfigurations": [
                {
                    "Id": resource.settings["id"],
                    "LambdaFunctionArn": resource.settings["function_arn"],
                    "Events": resource.settings["events"],
                }
            ]
        },
        "SkipDestinationValidation": False,
    }
    for _ in range(refusals):
        stubber.add_client_error(
            "put_bucket_notification_configuration",
            "InvalidArgument",
            message,
            400,
            expected_params=put,
        )


def test_notification_write_retries_while_the_lambda_permission_propagates(
    sleeps: list[float],
) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=2)
        stubber.add_response("put_bucket_notification_configuration", {})
        NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == [1.0, 2.0]


def test_notification_write_gives_up_after_about_half_a_minute(sleeps: list[float]) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    retries = list(NOTIFICATION_VALIDATION_PATIENCE.delays())
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=len(retries) + 1)
        with pytest.raises(
            InfraError,
            match=r"notification of bucket .*still refuses after 27 s.*Unable to validate",
        ) as gave_up:
            NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
        stubber.assert_no_pending_responses()
    assert sleeps == retries == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert "lets S3 invoke it" in str(gave_up.value.hint)


def test_notification_write_does_not_retry_other_invalid_arguments(sleeps: list[float]) -> None:
    resource = desired(Kind.NOTIFICATION)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stubber:
        expect_notification_put(stubber, resource, refusals=1, message="Invalid event name")
        with pytest.raises(ClientError, match="Invalid event name"):
            NotificationHandler(s3, sleep=sleeps.append).create(resource, {})
    assert sleeps == []
