"""RPC-style requests (one endpoint, the operation named in the request) as IAM permissions.

Two wire forms: JSON with ``X-Amz-Target: <Prefix>.<Operation>`` (DynamoDB, SQS, CloudWatch
Logs) and the query protocol's ``Action=<Operation>`` in the form body or query string
(IAM, STS, SQS's older protocol). The action is ``<service>:<Operation>`` unless AWS says
otherwise; the resource comes from the request's parameters:

* **DynamoDB**: ``iam_requests_dynamodb``.
* **SQS**: the queue moto will act on: the last ``/`` segment of ``QueueUrl`` (or of the
  request path without one), or the whole ``QueueUrl`` when it is a bare name, as moto's
  ``_get_queue_name`` reads it; a URL with ``?`` or ``#``, of another account, or whose
  name is no queue name is refused. CreateQueue and GetQueueUrl use ``QueueName``; the
  batch calls need the single call's action (``SendMessageBatch`` → ``sqs:SendMessage``);
  ListQueues on ``*``.
* **CloudWatch Logs**: ``logGroupName`` and ``logStreamName`` →
  ``arn:aws:logs:<region>:<account>:log-group:<group>:log-stream:<stream>``; a group alone →
  ``...:log-group:<group>:*``, the form CloudWatch Logs reports a group's ARN in and the
  one policies grant (``log-group:<group>:*`` is what a Lambda role's logging statement
  names); DescribeLogGroups → ``...:log-group:*``. A ``logGroupIdentifier`` must be the
  exact ARN of a group that exists (``iam_moto_resources``), alone: moto resolves any
  other identifier to the last group created.
* **IAM**: the role, user, group, instance profile or policy the call names (``RoleName``
  before ``PolicyArn``: attaching a policy is authorised on the role); calls naming none
  on ``*``. Paths are not looked up: ``role/<name>``.
* **STS**: AssumeRole on ``RoleArn``; GetCallerIdentity is always allowed.

Any other operation of a JSON or query service is authorised as ``<service>:<Operation>``
on ``*`` (``iam_request_model.unmapped``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from imgcli.localcloud.iam_request_model import (
    ANY_RESOURCE,
    HttpRequest,
    Permission,
    Protocol,
    RequiredPermissions,
    one,
    refused,
    unmapped,
)
from imgcli.localcloud.iam_requests_dynamodb import dynamodb_permissions

_SQS_BATCHES: Final = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_SQS_ACCOUNT_WIDE: Final = frozenset({"ListQueues"})
_QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,80}(\.fifo)?")
_LOGS_ACCOUNT_WIDE: Final = frozenset({"DescribeLogGroups"})
#: IAM parameters naming the entity a call is authorised on, most specific first.
_IAM_ENTITIES: Final = (
    ("RoleName", "role/"),
    ("UserName", "user/"),
    ("GroupName", "group/"),
    ("InstanceProfileName", "instance-profile/"),
)
_IAM_ARNS: Final = ("PolicyArn", "OpenIDConnectProviderArn", "SAMLProviderArn")
_ASSUME_ROLE: Final = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
GET_CALLER_IDENTITY: Final = "GetCallerIdentity"


def json_target_permissions(request: HttpRequest, target: str) -> RequiredPermissions:
    """A request with ``X-Amz-Target: <Prefix>.<Operation>``."""
    operation = target.rpartition(".")[2]
    body = request.json_body()
    if request.service == "dynamodb":
        return dynamodb_permissions(request, operation)
    if request.service == "sqs":
        return _sqs(request, operation, body, Protocol.JSON)
    if request.service == "logs":
        return _logs(request, operation, body)
    if request.service == "sts":
        return _sts(request, operation, body, Protocol.JSON)
    return unmapped(request, Protocol.JSON, operation)


def query_permissions(request: HttpRequest) -> RequiredPermissions:
    """A query-protocol request: ``Action=<Operation>`` in the form body or query string."""
    params = request.form_params()
    operation = params.get("Action", "")
    if not operation:
        return unmapped(request, Protocol.QUERY, f"{request.method} {request.raw_path}")
    if request.service == "iam":
        return _iam(request, operation, params)
    if request.service == "sts":
        return _sts(request, operation, params, Protocol.QUERY)
    if request.service == "sqs":
        return _sqs(request, operation, params, Protocol.QUERY)
    return unmapped(request, Protocol.QUERY, operation)


def _sqs(
    request: HttpRequest, operation: str, params: dict[str, Any], protocol: Protocol
) -> RequiredPermissions:
    action = f"sqs:{_SQS_BATCHES.get(operation, operation)}"
    queue_url = params.get("QueueUrl")
    if not isinstance(queue_url, str) and request.raw_path.strip("/"):
        queue_url = request.raw_path  # moto falls back to the path's last segment
    if isinstance(queue_url, str):
        arn = _queue_arn(request, queue_url)
        if arn is None:
            return refused(protocol, operation, f"the queue URL {queue_url!r}")
        return _all(protocol, operation, [(action, arn)])
    name = params.get("QueueName")
    if isinstance(name, str) and name and operation in ("CreateQueue", "GetQueueUrl"):
        owner = params.get("QueueOwnerAWSAccountId") or request.account
        arn = f"arn:{request.partition}:sqs:{request.region}:{owner}:{name}"
        return _all(protocol, operation, [(action, arn)])
    if operation in _SQS_ACCOUNT_WIDE:
        return _all(protocol, operation, [(action, ANY_RESOURCE)])
    return unmapped(request, protocol, operation)


def _queue_arn(request: HttpRequest, queue_url: str) -> str | None:
    """The queue moto's ``_get_queue_name`` will act on: the last ``/`` segment of a URL
    (or path), or the whole value when it is not an ``http(s)://`` URL (a bare name).
    ``None`` (refused) for a name that is not a queue name, a ``?`` or ``#`` anywhere, or a
    URL naming another account: moto would act on this account's queue of that name."""
    if "?" in queue_url or "#" in queue_url:
        return None
    is_url = queue_url.startswith(("http://", "https://"))
    segments = queue_url.split("/") if is_url or queue_url.startswith("/") else [queue_url]
    name = segments[-1]
    account = segments[-2] if len(segments) >= 2 and segments[-2] else request.account
    if is_url and len(segments) < 5:
        account = request.account  # http://host/name
    if not _QUEUE_NAME.fullmatch(name) or account != request.account:
        return None
    return f"arn:{request.partition}:sqs:{request.region}:{account}:{name}"


def _logs(request: HttpRequest, operation: str, body: dict[str, Any]) -> RequiredPermissions:
    group = body.get("logGroupName")
    identifier = body.get("logGroupIdentifier")
    must_resolve: tuple[str, ...] = ()
    if identifier is not None:
        # moto resolves an identifier matching no group's ARN to the last group created.
        prefix = request.arn("logs", "log-group:")
        if (
            group is not None
            or not isinstance(identifier, str)
            or not identifier.startswith(prefix)
            or identifier.endswith(":*")
        ):
            return refused(
                Protocol.JSON, operation, "a logGroupIdentifier that is not a log group's ARN"
            )
        group, must_resolve = identifier.removeprefix(prefix), (identifier,)
    stream = body.get("logStreamName")
    if isinstance(group, str) and group:
        if isinstance(stream, str) and stream:
            resource = request.arn("logs", f"log-group:{group}:log-stream:{stream}")
        else:
            resource = request.arn("logs", f"log-group:{group}:*")
        permission = Permission(f"logs:{operation}", resource)
        return RequiredPermissions(
            Protocol.JSON, operation, (permission,), must_resolve=must_resolve
        )
    if isinstance(body.get("resourceArn"), str):
        return one(Protocol.JSON, "logs", operation, body["resourceArn"])
    if operation in _LOGS_ACCOUNT_WIDE:
        return one(Protocol.JSON, "logs", operation, request.arn("logs", "log-group:*"))
    return unmapped(request, Protocol.JSON, operation)


def _iam(request: HttpRequest, operation: str, params: dict[str, str]) -> RequiredPermissions:
    for parameter, kind in _IAM_ENTITIES:
        if params.get(parameter):
            arn = f"arn:{request.partition}:iam::{request.account}:{kind}{params[parameter]}"
            return one(Protocol.QUERY, "iam", operation, arn)
    for parameter in _IAM_ARNS:
        if params.get(parameter):
            return one(Protocol.QUERY, "iam", operation, params[parameter])
    if operation == "CreatePolicy" and params.get("PolicyName"):
        path = params.get("Path") or "/"
        arn = f"arn:{request.partition}:iam::{request.account}:policy{path}{params['PolicyName']}"
        return one(Protocol.QUERY, "iam", operation, arn)
    if operation.startswith("List") or operation.startswith("GetAccount"):
        return one(Protocol.QUERY, "iam", operation, ANY_RESOURCE)
    return unmapped(request, Protocol.QUERY, operation)


def _sts(
    request: HttpRequest, operation: str, params: dict[str, Any], protocol: Protocol
) -> RequiredPermissions:
    if operation == GET_CALLER_IDENTITY:
        return RequiredPermissions(protocol, operation, always_allowed=True)
    role_arn = params.get("RoleArn")
    if operation in _ASSUME_ROLE and isinstance(role_arn, str) and role_arn:
        return one(protocol, "sts", operation, role_arn)
    if operation in ("GetSessionToken", "DecodeAuthorizationMessage", "GetAccessKeyInfo"):
        return one(protocol, "sts", operation, ANY_RESOURCE)
    return unmapped(request, protocol, operation)


def _all(
    protocol: Protocol, operation: str, checks: Iterable[tuple[str, str]]
) -> RequiredPermissions:
    permissions = tuple(Permission(action, resource) for action, resource in checks)
    return RequiredPermissions(protocol, operation, permissions)
