"""Which IAM permissions a request to the local cloud needs: AWS's action and resource ARNs.

The authoriser (``authorizer``) asks :func:`required_permissions` for every call a role
session makes, then evaluates each permission against the role's policies
(``iam_policy``). The service is the one the request was signed for (the SigV4 credential
scope, :func:`signing_scope`), as AWS routes it. The families live in their own modules:
S3 (``iam_requests_s3``), Lambda and API Gateway (``iam_requests_rest``), the JSON-target
and query-protocol services (``iam_requests_rpc``); the types in ``iam_request_model``.

Why not moto's ``moto.iam.access_control``: it authorises inside moto's response classes
(after routing, per service), knows resources only for part of S3 (everything else is
``*``), cannot tell a DynamoDB index or log stream, matches wildcards with unescaped
regular expressions (a ``.`` in a pattern matches anything, ``?`` is not a wildcard),
treats a condition that does not hold as an explicit deny, and raises moto's own error
formats. A mapping of our own, from the request as sent, is small, testable without
moto, and says exactly what it does not know (the ``unmapped`` results, authorised on
``*``).

Before any of them, a request moto could read otherwise than these mappings (an
``Action`` beside an ``X-Amz-Target``, a repeated parameter...) is refused
(``iam_request_shape``).

Operations a family does not know, and services without a family, are authorised as
``<service>:<Operation>`` on ``*``: the operation from ``X-Amz-Target``, ``Action=``, a
Smithy RPC v2 path (``/service/<Service>/operation/<Op>``), or for an unknown REST path its
method and path. Only a policy that allows every resource allows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from imgcli.localcloud.iam_request_model import (
    HttpRequest,
    Protocol,
    RequiredPermissions,
    refused,
    unmapped,
)
from imgcli.localcloud.iam_request_shape import ambiguity
from imgcli.localcloud.iam_requests_rest import apigateway_permissions, lambda_permissions
from imgcli.localcloud.iam_requests_rpc import json_target_permissions, query_permissions
from imgcli.localcloud.iam_requests_s3 import s3_permissions

_CREDENTIAL: Final = re.compile(r"Credential=([^,\s]+)")
_RPC_V2_PATH: Final = re.compile(r"/service/[^/]+/operation/(?P<operation>[^/]+)")


def required_permissions(request: HttpRequest) -> RequiredPermissions:
    """What AWS would authorise for ``request``: its operation, error protocol and checks.
    A request moto could read otherwise than this mapping is refused (``iam_request_shape``)."""
    reason = ambiguity(request)
    if reason is not None:
        return refused(_protocol(request), "an ambiguous request", reason)
    if request.service == "s3":
        return s3_permissions(request)
    target = request.headers.get("x-amz-target")
    if target:
        return json_target_permissions(request, target)
    if request.service == "lambda":
        return lambda_permissions(request)
    if request.service == "apigateway":
        return apigateway_permissions(request)
    rpc_v2 = _RPC_V2_PATH.fullmatch(request.raw_path)
    if rpc_v2 is not None:
        return unmapped(request, Protocol.UNKNOWN, rpc_v2["operation"])
    return query_permissions(request)


def _protocol(request: HttpRequest) -> Protocol:
    if request.service == "s3":
        return Protocol.S3
    if request.service in ("lambda", "apigateway"):
        return Protocol.REST_JSON
    return Protocol.JSON if "x-amz-target" in request.headers else Protocol.QUERY


def needs_body(service: str, method: str, query: str) -> bool:
    """Whether mapping the request reads its body: not for S3's object uploads, which may
    be gigabytes and are sent streaming, only for DeleteObjects' list of keys."""
    if service == "s3":
        return method.upper() == "POST" and "delete" in dict(parse_qsl(query, True))
    return True


def signing_scope(headers: Mapping[str, str], query: str) -> tuple[str, str] | None:
    """The (service, region) a request was signed for, from its SigV4 credential scope
    (``Authorization`` header, or ``X-Amz-Credential`` of a presigned URL)."""
    match = _CREDENTIAL.search(headers.get("authorization", ""))
    credential = match[1] if match else dict(parse_qsl(query)).get("X-Amz-Credential", "")
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return None
    return parts[3], parts[2]
