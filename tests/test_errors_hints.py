"""Hints that name the right fix: a stack whose resources are gone, a local cloud on
another port, an answer that is not AWS's (issue 12, "Messages")."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError

from imgcli.errors import SERVICE_ID_KEY, ExitCode, FailureContext, describe_failure


def client_error(code: str, service: str, operation: str = "PutObject") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "not found"},
            "ResponseMetadata": {SERVICE_ID_KEY: service},
        },
        operation,
    )


@pytest.mark.parametrize(
    ("code", "service"),
    [
        ("NoSuchBucket", "S3"),
        ("ResourceNotFoundException", "DynamoDB"),
        ("ResourceNotFoundException", "Lambda"),
        ("AWS.SimpleQueueService.NonExistentQueue", "SQS"),
        ("QueueDoesNotExist", "SQS"),
        ("NotFoundException", "ApiGatewayV2"),
    ],
)
def test_a_stack_resource_that_is_gone_means_bootstrap_again(code: str, service: str) -> None:
    failure = describe_failure(client_error(code, service), FailureContext(stack="prod"))
    assert failure.exit_code == ExitCode.NO_STACK
    assert failure.message == (
        f"stack 'prod' has lost its resources: {service} PutObject failed ({code}): not found"
    )
    assert failure.hint is not None
    assert "run 'imgcli --stack prod bootstrap' to create them again" in failure.hint


def test_without_a_stack_name_the_hint_is_plain_bootstrap() -> None:
    failure = describe_failure(client_error("NoSuchBucket", "S3"))
    assert failure.exit_code == ExitCode.NO_STACK
    assert failure.hint is not None and "'imgcli bootstrap'" in failure.hint


@pytest.mark.parametrize(
    ("code", "service"),
    [
        ("ResourceNotFoundException", "CloudWatch Logs"),  # a log group comes with logging
        ("NoSuchKey", "S3"),  # an object, not the stack's
        ("NotFoundException", "Lambda"),
    ],
)
def test_other_not_found_errors_stay_remote(code: str, service: str) -> None:
    assert describe_failure(client_error(code, service)).exit_code == ExitCode.REMOTE


def unreachable(port: int) -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=f"http://127.0.0.1:{port}/")


def test_unreachable_local_endpoint_names_the_port_tried_and_the_one_running() -> None:
    context = FailureContext(stack="default", running_local_port=lambda: 4739)
    failure = describe_failure(unreachable(4599), context)
    assert failure.exit_code == ExitCode.NETWORK
    assert failure.hint is not None
    assert failure.hint.startswith(
        "nothing answers on port 4599, but this data dir's local cloud runs on port 4739"
    )
    assert "IMGCLI_LOCAL_PORT=4739" in failure.hint


def test_unreachable_local_endpoint_with_none_running_says_how_to_start_it_there() -> None:
    failure = describe_failure(unreachable(5005), FailureContext(running_local_port=lambda: None))
    assert failure.hint == (
        "nothing answers on port 5005: start the local cloud with 'imgcli local start --port 5005'"
    )


def test_the_running_port_is_asked_only_for_a_local_endpoint() -> None:
    def never() -> int | None:
        raise AssertionError("asked")

    remote = EndpointConnectionError(endpoint_url="https://sts.amazonaws.com/")
    failure = describe_failure(remote, FailureContext(running_local_port=never))
    assert failure.hint is not None and "local start" not in failure.hint


def test_an_answer_that_is_not_aws_is_a_remote_failure_not_a_bug() -> None:
    error = ResponseParserError(
        "Unable to parse response (syntax error: line 1, column 0), invalid XML received. "
        "Further retries may succeed:\nb'<html>proxy says no'" + "x" * 1000
    )
    failure = describe_failure(error)
    assert failure.exit_code == ExitCode.REMOTE
    assert failure.message.startswith(
        "the endpoint answered with something that is not an AWS response: Unable to parse"
    )
    assert len(failure.message) < 400
    assert "\n" not in failure.message
    assert failure.hint is not None and "endpoint" in failure.hint
