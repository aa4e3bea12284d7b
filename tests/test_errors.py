"""The exit-code table and the one mapping from exceptions to what the user is told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from imgcli.errors import (
    SERVICE_ID_KEY,
    ConfigError,
    ExitCode,
    ImgcliError,
    NoStackError,
    PartialFailure,
    UsageError,
    describe_failure,
)
from imgcli.infra.errors import (
    BucketNotEmpty,
    InfraError,
    InvalidStackName,
    PackagingError,
    StackNotBootstrapped,
    StackUsageError,
    UnresolvedRef,
)

REPO = Path(__file__).resolve().parents[1]


def client_error(code: str, message: str = "boom", operation: str = "PutObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_exit_codes_are_the_documented_ones() -> None:
    # Scripts depend on these numbers: changing one is a breaking change.
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "SOME_FAILED": 1,
        "USAGE": 2,
        "NO_STACK": 3,
        "AUTH": 4,
        "REMOTE": 5,
        "NETWORK": 6,
        "INTERNAL": 70,
        "INTERRUPTED": 130,
        "BROKEN_PIPE": 141,
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad"), ExitCode.USAGE),
        (ConfigError("bad file"), ExitCode.USAGE),
        (NoStackError("none"), ExitCode.NO_STACK),
        (PartialFailure(2, 5, "uploads"), ExitCode.SOME_FAILED),
    ],
)
def test_imgcli_errors_carry_their_code_and_hint(error: ImgcliError, code: ExitCode) -> None:
    error.hint = "do this"
    failure = describe_failure(error)
    assert failure.exit_code == code
    assert failure.message == error.message
    assert failure.hint == "do this"


def test_partial_failure_counts() -> None:
    assert describe_failure(PartialFailure(2, 5, "uploads")).message == "2 of 5 uploads failed"


def test_keyboard_interrupt_is_130() -> None:
    assert describe_failure(KeyboardInterrupt()).exit_code == ExitCode.INTERRUPTED


def test_anything_else_is_internal_and_asks_for_a_report() -> None:
    failure = describe_failure(ZeroDivisionError("division by zero"))
    assert failure.exit_code == ExitCode.INTERNAL
    assert "ZeroDivisionError: division by zero" in failure.message
    assert failure.hint is not None
    assert "report" in failure.hint
    assert "--verbose" in failure.hint


@pytest.mark.parametrize(
    "code",
    [
        "AccessDenied",
        "AccessDeniedException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
    ],
)
def test_auth_client_errors_are_auth(code: str) -> None:
    failure = describe_failure(client_error(code, "Access Denied"))
    assert failure.exit_code == ExitCode.AUTH
    assert code in failure.message
    assert "PutObject" in failure.message
    assert "Access Denied" in failure.message
    assert failure.hint


def test_expired_token_hint_says_refresh() -> None:
    hint = describe_failure(client_error("ExpiredToken")).hint
    assert hint is not None
    assert "refresh" in hint


def test_other_client_errors_are_remote_with_service_operation_and_message() -> None:
    error = ClientError(
        {
            "Error": {"Code": "InvalidTag", "Message": "The tag provided was not a valid tag"},
            "ResponseMetadata": {SERVICE_ID_KEY: "S3"},
        },
        "PutObject",
    )
    failure = describe_failure(error)
    assert failure.exit_code == ExitCode.REMOTE
    assert failure.message == (
        "S3 PutObject failed (InvalidTag): The tag provided was not a valid tag"
    )


def test_throttling_suggests_trying_later() -> None:
    failure = describe_failure(client_error("ThrottlingException", operation="Query"))
    assert failure.exit_code == ExitCode.REMOTE
    assert failure.hint is not None
    assert "later" in failure.hint


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NoCredentialsError(), ExitCode.AUTH),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), ExitCode.AUTH),
        (ProfileNotFound(profile="work"), ExitCode.AUTH),
        (NoRegionError(), ExitCode.USAGE),
        (EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"), ExitCode.NETWORK),
        (ConnectTimeoutError(endpoint_url="https://s3.amazonaws.com"), ExitCode.NETWORK),
        (
            ReadTimeoutError(endpoint_url="https://s3.amazonaws.com", error="timed out"),
            ExitCode.NETWORK,
        ),
        (ConnectionClosedError(endpoint_url="https://s3.amazonaws.com"), ExitCode.NETWORK),
    ],
)
def test_botocore_families(error: Exception, code: ExitCode) -> None:
    failure = describe_failure(error)
    assert failure.exit_code == code
    assert failure.hint


def test_profile_not_found_names_the_profile() -> None:
    assert "work" in describe_failure(ProfileNotFound(profile="work")).message


def test_unreachable_local_endpoint_suggests_starting_the_local_cloud() -> None:
    failure = describe_failure(EndpointConnectionError(endpoint_url="http://127.0.0.1:4599/"))
    assert failure.hint is not None
    assert "imgcli local start" in failure.hint
    remote = describe_failure(EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"))
    assert remote.hint is not None
    assert "local start" not in remote.hint


def test_messages_are_one_line() -> None:
    failure = describe_failure(client_error("ValidationException", "first line\n  second line"))
    assert "\n" not in failure.message
    assert failure.message.endswith("first line second line")


def test_mapping_does_not_import_botocore() -> None:
    # A failure before any AWS work must not pay for importing botocore.
    code = (
        "import sys\n"
        "from imgcli.errors import describe_failure\n"
        "describe_failure(RuntimeError('x'))\n"
        "describe_failure(KeyboardInterrupt())\n"
        "print('botocore' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StackUsageError("lives elsewhere"), ExitCode.USAGE),
        (InvalidStackName("bad name"), ExitCode.USAGE),
        (BucketNotEmpty("still holds images"), ExitCode.USAGE),
        (StackNotBootstrapped("never bootstrapped"), ExitCode.NO_STACK),
        (PackagingError("no wheel"), ExitCode.REMOTE),
        (InfraError("gave up waiting"), ExitCode.REMOTE),
        (UnresolvedRef("no output yet"), ExitCode.INTERNAL),
    ],
)
def test_the_stack_layers_errors_map_to_exit_codes_by_their_problem(
    error: InfraError, code: ExitCode
) -> None:
    # infra knows no exit codes: each of its errors names a Problem, mapped here once.
    error.hint = "do this"
    failure = describe_failure(error)
    assert (failure.exit_code, failure.message, failure.hint) == (code, error.message, "do this")
