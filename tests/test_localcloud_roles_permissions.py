"""Resource policies and the execution role where AWS checks them (``moto_lambda``,
``s3_destinations``): S3 and API Gateway invoke a function only with its permission, and
the on-failure record is written with the function's role. moto in process (``mock_aws``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from imgcli.localcloud import MotoInternalsChanged, moto_lambda, s3_destinations, s3_events
from tests.lambda_runtime import handler_zip
from tests.s3_event_recorder import Recorder, configure, lambda_target

ACCOUNT = "123456789012"
REGION = "us-east-1"
NAMES = StackNames("demo", ACCOUNT, REGION)
SAVE = NAMES.function_arn(NAMES.save_function)


def create_function(name: str, role_policy: dict[str, Any] | None = None) -> str:
    iam = boto3.client("iam", region_name=REGION)
    trust = json.dumps(policies.lambda_trust_policy(NAMES))
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=trust)["Role"]
    if role_policy is not None:
        iam.put_role_policy(
            RoleName=f"{name}-role", PolicyName="p", PolicyDocument=json.dumps(role_policy)
        )
    created = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role["Arn"],
        Handler="h.echo",
        Code={"ZipFile": handler_zip()},
    )
    return str(created["FunctionArn"])


def allow_s3(function: str, bucket_arn: str, statement_id: str = "s3-invoke") -> None:
    boto3.client("lambda", region_name=REGION).add_permission(
        FunctionName=function,
        StatementId=statement_id,
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=bucket_arn,
        SourceAccount=ACCOUNT,
    )


def test_the_function_spec_carries_its_role(moto_aws: None) -> None:
    create_function(NAMES.save_function)
    spec = moto_lambda.function_spec(ACCOUNT, REGION, NAMES.save_function)
    assert spec is not None
    assert spec.role_arn == f"arn:aws:iam::{ACCOUNT}:role/{NAMES.save_function}-role"


def test_s3_may_invoke_only_with_the_functions_permission_for_that_bucket(moto_aws: None) -> None:
    function = create_function(NAMES.save_function)
    assert not moto_lambda.s3_may_invoke(function, NAMES.bucket_arn, ACCOUNT)  # no policy at all
    allow_s3(NAMES.save_function, NAMES.bucket_arn)
    assert moto_lambda.s3_may_invoke(function, NAMES.bucket_arn, ACCOUNT)
    assert not moto_lambda.s3_may_invoke(function, "arn:aws:s3:::another-bucket", ACCOUNT)
    assert not moto_lambda.s3_may_invoke(function, NAMES.bucket_arn, "999999999999")
    missing = NAMES.function_arn("no-such-function")
    assert not moto_lambda.s3_may_invoke(missing, NAMES.bucket_arn, ACCOUNT)


def test_api_gateway_may_invoke_only_the_routes_it_was_allowed(moto_aws: None) -> None:
    function = create_function(NAMES.retrieve_function)
    route = "GET /images/{key+}"
    boto3.client("lambda", region_name=REGION).add_permission(
        FunctionName=NAMES.retrieve_function,
        StatementId="api-invoke-0",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=NAMES.execute_api_arn("abc123", route),  # what bootstrap writes
        SourceAccount=ACCOUNT,
    )

    def may(api: str, route_key: str) -> bool:
        return moto_lambda.api_may_invoke(ACCOUNT, REGION, api, route_key, function)

    assert may("abc123", route)
    assert not may("abc123", "DELETE /images/{key+}")
    assert not may("other1", route)
    assert not may("abc123", "$default")


def test_the_on_failure_record_is_sent_with_the_functions_role(
    moto_aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=NAMES.failure_queue)["QueueUrl"]
    allowed = create_function(NAMES.save_function, policies.save_function_policy(NAMES))
    refused = create_function("no-sqs", policies.retrieve_function_policy(NAMES))
    send = moto_lambda.destination_sender(ACCOUNT, REGION)

    send(NAMES.failure_queue_arn, {"requestContext": {"functionArn": f"{allowed}:$LATEST"}})
    with caplog.at_level(logging.WARNING, logger=moto_lambda.LOGGER.name):
        send(NAMES.failure_queue_arn, {"requestContext": {"functionArn": f"{refused}:$LATEST"}})
        send(NAMES.failure_queue_arn, {"requestContext": {"functionArn": NAMES.function_arn("x")}})

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["requestContext"]["functionArn"] for m in messages] == [
        f"{allowed}:$LATEST"
    ]
    assert "may not sqs:SendMessage" in caplog.text and "no-sqs-role" in caplog.text
    assert "the function is gone" in caplog.text


# --- S3 notifications checked as AWS checks them ----------------------------------------


@pytest.fixture
def checked_recorder(moto_aws: None) -> Iterator[Recorder]:
    recorder = Recorder()
    uninstall = s3_events.install(recorder, may_invoke=moto_lambda.s3_may_invoke)
    try:
        yield recorder
    finally:
        uninstall()


def test_a_notification_naming_a_function_that_does_not_allow_the_bucket_is_refused(
    checked_recorder: Recorder,
) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=NAMES.bucket)
    s3.create_bucket(Bucket="another-bucket")
    function = create_function(NAMES.save_function)
    allow_s3(NAMES.save_function, NAMES.bucket_arn)

    # Another bucket's notification pointing at the save function: refused, as on AWS.
    with pytest.raises(ClientError) as raised:
        configure(s3, "another-bucket", lambda_target(arn=function))
    error = raised.value.response
    assert error["Error"]["Code"] == "InvalidArgument"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"] == s3_destinations.UNVALIDATED_DESTINATIONS
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(
        Bucket="another-bucket"
    )
    # The stack's own bucket is allowed.
    configure(s3, NAMES.bucket, lambda_target(arn=function))
    s3.put_object(Bucket=NAMES.bucket, Key="a.jpg", Body=b"x")
    assert [arn for arn, _ in checked_recorder.deliveries] == [function]


def test_skipping_destination_validation_is_honoured(checked_recorder: Recorder) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="another-bucket")
    function = create_function(NAMES.save_function)
    s3.put_bucket_notification_configuration(
        Bucket="another-bucket",
        NotificationConfiguration={"LambdaFunctionConfigurations": [lambda_target(arn=function)]},
        SkipDestinationValidation=True,
    )
    # Configured without validation, but still not delivered: the function does not allow it.
    s3.put_object(Bucket="another-bucket", Key="a.jpg", Body=b"x")
    assert checked_recorder.deliveries == []


def test_events_stop_when_the_permission_is_removed(checked_recorder: Recorder) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=NAMES.bucket)
    function = create_function(NAMES.save_function)
    allow_s3(NAMES.save_function, NAMES.bucket_arn)
    configure(s3, NAMES.bucket, lambda_target(arn=function))
    s3.put_object(Bucket=NAMES.bucket, Key="one.jpg", Body=b"x")
    boto3.client("lambda", region_name=REGION).remove_permission(
        FunctionName=NAMES.save_function, StatementId="s3-invoke"
    )
    s3.put_object(Bucket=NAMES.bucket, Key="two.jpg", Body=b"x")
    assert [event.key for event in checked_recorder.events()] == ["one.jpg"]


def test_a_moved_notification_parser_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3.responses import S3Response

    assert s3_destinations.missing_notification_parser() == []
    monkeypatch.delattr(S3Response, s3_destinations.MOTO_NOTIFICATION_PARSER)
    with pytest.raises(MotoInternalsChanged, match="_notification_config_from_body"):
        s3_events.check_moto_internals()


def test_a_changed_lambda_policy_object_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda import policy

    assert moto_lambda.missing_internals() == []

    class Reshaped:
        def __init__(self, parent: Any) -> None:
            self.rules: list[Any] = []

    monkeypatch.setattr(policy, "Policy", Reshaped)
    assert "moto.awslambda.policy.Policy.statements (a list)" in moto_lambda.missing_internals()
