"""What the request-to-permission mapping (``iam_requests``) takes and gives, and its helpers.

A request arrives as the local cloud received it (:class:`HttpRequest`: method, raw path,
raw query, headers, body, and the service and region it was signed for); the mapping
answers with :class:`RequiredPermissions`: the operation, the wire protocol its errors
must use, and every (action, resource ARN) pair AWS would authorise for it. The service
families live in ``iam_requests_s3``, ``iam_requests_rest`` and ``iam_requests_rpc``;
this module is what they share, so none of them imports another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

#: Signing names whose IAM action prefix differs from the name.
_ACTION_PREFIXES: Final = {"monitoring": "cloudwatch", "email": "ses"}

#: The resource of a request AWS authorises against no particular resource.
ANY_RESOURCE: Final = "*"


class Protocol(Enum):
    """How a service writes its errors: the authoriser's refusal must look the same."""

    S3 = "s3"  # REST-XML, S3's own <Error> document
    JSON = "json"  # X-Amz-Target JSON (DynamoDB, SQS, CloudWatch Logs, ...)
    QUERY = "query"  # Action=... form (IAM, STS, SQS's older protocol)
    REST_JSON = "rest-json"  # Lambda, API Gateway
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HttpRequest:
    """A request as the local cloud received it.

    ``raw_path`` and ``query`` are exactly as sent (still percent-encoded); ``headers``
    are keyed by lower-case name; ``service`` and ``region`` come from the SigV4
    credential scope the request was signed with; ``account`` is the local cloud's.
    """

    method: str
    raw_path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    service: str
    region: str
    account: str
    partition: str = "aws"

    def query_params(self) -> dict[str, str]:
        """The query string's parameters, decoded. A repeated name is refused before any
        mapping reads this (``iam_request_shape``), so which one wins never matters."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def form_params(self) -> dict[str, str]:
        """Query-protocol parameters: the query string's, then the form body's."""
        params = self.query_params()
        if "x-www-form-urlencoded" in self.headers.get("content-type", ""):
            params.update(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))
        return params

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object; ``{}`` when it is empty or not an object."""
        try:
            parsed = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def path(self) -> str:
        """The path, percent-decoded."""
        return unquote(self.raw_path)

    def arn(self, service: str, resource: str, *, region: str | None = None) -> str:
        """An ARN of this request's partition, region and account."""
        in_region = self.region if region is None else region
        return f"arn:{self.partition}:{service}:{in_region}:{self.account}:{resource}"


@dataclass(frozen=True)
class Permission:
    """One authorisation AWS makes for a request: ``action`` on ``resource``."""

    action: str
    resource: str


@dataclass(frozen=True)
class RequiredPermissions:
    """What a request needs: every permission must be allowed.

    ``mapped`` is ``False`` when the local cloud does not know the operation's resources:
    it is then authorised against ``*``, which only a policy allowing every resource
    allows. ``always_allowed`` marks calls AWS never refuses (``sts:GetCallerIdentity``).
    """

    protocol: Protocol
    operation: str
    permissions: tuple[Permission, ...] = field(default=())
    mapped: bool = True
    always_allowed: bool = False
    #: Why the request is refused whatever the policies say: moto could read it otherwise
    #: than the mapping did (``iam_request_shape``), or AWS itself would refuse it.
    refusal: str | None = None
    #: ARNs moto must resolve the request's identifiers to, or the request is refused:
    #: for identifiers moto may resolve to another resource (``iam_moto_resources``).
    must_resolve: tuple[str, ...] = field(default=())


def action_prefix(service: str) -> str:
    """The IAM action prefix of a signing name (``monitoring`` → ``cloudwatch``)."""
    return _ACTION_PREFIXES.get(service, service)


def unmapped(request: HttpRequest, protocol: Protocol, operation: str) -> RequiredPermissions:
    """An operation whose resources the local cloud does not know: ``service:Op`` on ``*``."""
    action = f"{action_prefix(request.service)}:{operation}"
    return RequiredPermissions(
        protocol, operation, (Permission(action, ANY_RESOURCE),), mapped=False
    )


def refused(protocol: Protocol, operation: str, reason: str) -> RequiredPermissions:
    """A request the local cloud refuses whatever the caller's policies allow."""
    return RequiredPermissions(protocol, operation, refusal=reason)


def one(protocol: Protocol, service: str, operation: str, resource: str) -> RequiredPermissions:
    """The common case: one action, named after the operation, on one resource."""
    return RequiredPermissions(
        protocol, operation, (Permission(f"{service}:{operation}", resource),)
    )
