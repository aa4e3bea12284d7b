"""Exit codes, imgcli's own errors, and the one place that turns any exception into them.

Scripts branch on imgcli's exit code and people read its last line, so both come from one
table (``ExitCode``) and one function (``describe_failure``), the way httpie keeps
``status.py`` and ``core.py``: a command never picks an exit code or words an error itself;
it raises, and the CLI frame (``imgcli.commands.frame.reports_failures``) prints the
description and exits with its code.

botocore's exceptions are recognised without importing botocore here: an exception can only
be one of botocore's if ``botocore.exceptions`` is already in ``sys.modules``, so a failure
before any AWS work costs no boto import and ``imgcli --help`` stays fast. The stack layer's
errors (``imgcli.infra.errors``, which knows no exit codes) are recognised the same way and
mapped by the kind of problem each one names.

Some hints need what only the run knows: the selected stack's name (a stack whose bucket,
table or function is gone is told to bootstrap *that* stack again), and the port the
local cloud of this data dir answers on (an unreachable local endpoint names the port it
tried and the one running). The caller passes them as a ``FailureContext``
(``imgcli.invocation.Invocation.describe_failure``), so this module stays a pure mapping.

This module imports neither typer nor rich: it decides *what* to say, ``imgcli.output``
decides how it looks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar
from urllib.parse import urlsplit


class ExitCode(IntEnum):
    """imgcli's exit codes; documented in the README and stable across releases."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    NO_STACK = 3
    AUTH = 4
    REMOTE = 5
    NETWORK = 6
    # sysexits.h EX_SOFTWARE: the conventional code for "internal software error".
    INTERNAL = 70
    # 128 + SIGINT, what shells report for a process ended by Ctrl-C.
    INTERRUPTED = 130
    # 128 + SIGPIPE: what `ls | head` reports when head stops reading early.
    BROKEN_PIPE = 141


class ImgcliError(Exception):
    """An error imgcli anticipated: carries its exit code and a hint of what to do next.

    Raise a subclass; each one fixes the exit code for its family of problems.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ImgcliError):
    """The command line asks for something imgcli cannot do as asked."""

    exit_code = ExitCode.USAGE


class ConfigError(ImgcliError):
    """The config file or an ``IMGCLI_*`` variable holds a value imgcli cannot use."""

    exit_code = ExitCode.USAGE


class NoStackError(ImgcliError):
    """The selected stack has not been bootstrapped (or its record is incomplete)."""

    exit_code = ExitCode.NO_STACK


class AuthError(ImgcliError):
    """Credentials are missing or were refused, outside botocore (e.g. the signed API call)."""

    exit_code = ExitCode.AUTH


class RemoteError(ImgcliError):
    """A remote service answered with an error, outside botocore (e.g. the signed API call)."""

    exit_code = ExitCode.REMOTE


class NetworkError(ImgcliError):
    """An endpoint could not be reached, outside botocore (e.g. the signed API call)."""

    exit_code = ExitCode.NETWORK


class PartialFailure(ImgcliError):
    """Some items of a batch failed; the ones that worked were already reported."""

    exit_code = ExitCode.SOME_FAILED

    def __init__(self, failed: int, total: int, what: str = "items", *, hint: str | None = None):
        super().__init__(f"{failed} of {total} {what} failed", hint=hint)
        self.failed = failed
        self.total = total


@dataclass(frozen=True)
class Failure:
    """What the user is told about a failure: one line (message and hint) and an exit code."""

    message: str
    exit_code: ExitCode
    hint: str | None = None


# Codes AWS services use when the caller's identity or permissions are the problem; the fix
# is on the user's side (credentials, profile, IAM), unlike other service errors.
AUTH_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        # S3 answers HEAD requests without a body, so only the status survives as the code.
        "403",
    }
)
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException"})
_BUSY_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)

# Codes that, met on one of the stack's own resources, mean the resource no longer exists:
# per service id, None for "whatever the service" (the code says which resource it is).
# CloudWatch Logs is left out: a function's log group appears only once it has logged.
_GONE_CODES: dict[str | None, frozenset[str]] = {
    None: frozenset(
        {"NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
    ),
    "DynamoDB": frozenset({"ResourceNotFoundException"}),
    "Lambda": frozenset({"ResourceNotFoundException"}),
    "ApiGatewayV2": frozenset({"NotFoundException"}),
}
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# imgcli.aws records the calling service here on every error response: botocore's
# ClientError names the operation but not the service.
SERVICE_ID_KEY = "ImgcliServiceId"

_CREDENTIALS_HINT = (
    "configure AWS credentials (aws configure, AWS_PROFILE or --profile), "
    "or use a stack with target = 'local'"
)


@dataclass(frozen=True)
class FailureContext:
    """What the run knows that makes a hint exact; every field may be unknown.

    ``running_local_port`` is asked only when a local endpoint did not answer: the port
    this data dir's local cloud answers on, or None when none runs.
    """

    stack: str | None = None
    running_local_port: Callable[[], int | None] | None = None


_NO_CONTEXT = FailureContext()


def describe_failure(exc: BaseException, context: FailureContext = _NO_CONTEXT) -> Failure:
    """Say what went wrong and what to do about it, in one line, with the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", ExitCode.INTERRUPTED)
    if isinstance(exc, ImgcliError):
        return Failure(_one_line(exc.message), exc.exit_code, exc.hint)
    from_infra = _describe_infra_failure(exc)
    if from_infra is not None:
        return from_infra
    from_aws = _describe_botocore_failure(exc, context)
    if from_aws is not None:
        return from_aws
    return Failure(
        _one_line(f"unexpected error: {type(exc).__name__}: {exc}"),
        ExitCode.INTERNAL,
        "this is a bug in imgcli: please report it with the output of the same command "
        "run with --verbose",
    )


def _describe_infra_failure(exc: BaseException) -> Failure | None:
    if "imgcli.infra.errors" not in sys.modules:
        return None
    from imgcli.infra.errors import InfraError, Problem

    if not isinstance(exc, InfraError):
        return None
    exit_codes = {
        Problem.USAGE: ExitCode.USAGE,
        Problem.NO_STACK: ExitCode.NO_STACK,
        Problem.REMOTE: ExitCode.REMOTE,
        Problem.INTERNAL: ExitCode.INTERNAL,
    }
    return Failure(_one_line(exc.message), exit_codes[exc.problem], exc.hint)


def _describe_botocore_failure(exc: BaseException, context: FailureContext) -> Failure | None:
    if "botocore.exceptions" not in sys.modules:
        return None
    from botocore import exceptions as aws

    if isinstance(exc, aws.ClientError):
        return _describe_client_error(exc, context)
    if isinstance(exc, aws.NoCredentialsError):
        return Failure("no AWS credentials found", ExitCode.AUTH, _CREDENTIALS_HINT)
    if isinstance(exc, aws.PartialCredentialsError):
        return Failure(_one_line(str(exc)), ExitCode.AUTH, "complete or remove those credentials")
    if isinstance(exc, aws.ProfileNotFound):
        return Failure(
            _one_line(str(exc)),
            ExitCode.AUTH,
            "check --profile, IMGCLI_PROFILE, AWS_PROFILE and the profile names in ~/.aws/config",
        )
    if isinstance(exc, aws.NoRegionError):
        return Failure(
            "no AWS region configured",
            ExitCode.USAGE,
            "pass --region, set IMGCLI_REGION or AWS_REGION, or add region to the stack in "
            "imgcli's config file",
        )
    # ConnectionError: refused, DNS, TLS, proxy, connect timeout. HTTPClientError: the
    # connection broke or timed out mid-request (read timeouts, closed connections).
    if isinstance(exc, aws.ConnectionError | aws.HTTPClientError):
        endpoint = str(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
        return Failure(_one_line(str(exc)), ExitCode.NETWORK, _unreachable_hint(endpoint, context))
    return _describe_unreadable_answer(exc)


def _describe_unreadable_answer(exc: BaseException) -> Failure | None:
    # botocore's parsers raise ResponseParserError for an answer that is not in the
    # service's protocol (imgcli.aws turns error answers it can read into ClientErrors
    # first): whatever answered is not the AWS API the endpoint should be.
    if "botocore.parsers" not in sys.modules:
        return None
    from botocore.parsers import ResponseParserError

    if not isinstance(exc, ResponseParserError):
        return None
    said = _one_line(str(exc))
    if len(said) > 300:
        said = said[:300] + "..."
    return Failure(
        f"the endpoint answered with something that is not an AWS response: {said}",
        ExitCode.REMOTE,
        "check the endpoint (imgcli config shows it; IMGCLI_ENDPOINT_URL, AWS_ENDPOINT_URL): "
        "the local cloud answers only at http://127.0.0.1:PORT or http://localhost:PORT",
    )


def _describe_client_error(exc: Any, context: FailureContext) -> Failure:
    response = exc.response
    error = response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = error.get("Message") or "no message"
    service = response.get("ResponseMetadata", {}).get(SERVICE_ID_KEY)
    call = f"{service} {exc.operation_name}" if service else exc.operation_name
    if code in AUTH_ERROR_CODES:
        auth_hint = (
            "refresh your credentials (e.g. aws sso login) and try again"
            if code in _EXPIRED_CODES
            else "check which credentials are in use (imgcli config) and their IAM permissions"
        )
        refused = _one_line(f"AWS refused {call} ({code}): {message}")
        return Failure(refused, ExitCode.AUTH, auth_hint)
    failed = f"{call} failed ({code}): {message}"
    if code in _GONE_CODES[None] or code in _GONE_CODES.get(service, ()):
        stack = f"stack '{context.stack}'" if context.stack else "the stack"
        bootstrap = (
            f"imgcli --stack {context.stack} bootstrap" if context.stack else "imgcli bootstrap"
        )
        return Failure(
            _one_line(f"{stack} has lost its resources: {failed}"),
            ExitCode.NO_STACK,
            "they are gone (a local cloud reset, or removed by hand): "
            f"run '{bootstrap}' to create them again",
        )
    busy_hint = "the service is busy or failing: try again later" if code in _BUSY_CODES else None
    return Failure(_one_line(failed), ExitCode.REMOTE, busy_hint)


def _unreachable_hint(endpoint: str, context: FailureContext) -> str:
    parts = urlsplit(endpoint)
    if (parts.hostname or "") not in _LOCAL_HOSTS:
        return "check the network and the endpoint (IMGCLI_ENDPOINT_URL, AWS_ENDPOINT_URL)"
    try:
        tried = parts.port or 80
    except ValueError:
        return "is the local cloud running? start it with 'imgcli local start'"
    running = context.running_local_port() if context.running_local_port else None
    if running is None:
        return (
            f"nothing answers on port {tried}: start the local cloud with "
            f"'imgcli local start --port {tried}'"
        )
    if running != tried:
        return (
            f"nothing answers on port {tried}, but this data dir's local cloud runs on port "
            f"{running}: set IMGCLI_LOCAL_PORT={running} (or the stack's local_port), or stop "
            f"it ('imgcli local stop') and start it with 'imgcli local start --port {tried}'"
        )
    return f"the local cloud on port {tried} stopped answering: see 'imgcli local status'"


def _one_line(text: str) -> str:
    # The error line must stay one line: AWS messages sometimes carry newlines.
    return " ".join(text.split())
