"""Lambda and API Gateway v2 requests (REST-JSON APIs) as the IAM permissions AWS checks.

**Lambda**: each REST path and method is one operation, authorised as ``lambda:<Op>`` on
the function's ARN (qualified when the request names a version or alias, by ``:qualifier``
in the name or ``?Qualifier=``); the function may be named by name, partial ARN or ARN.
Invoke is ``lambda:InvokeFunction``, as is the deprecated InvokeAsync; CreateFunction is
authorised on the ARN the new function will have; ListFunctions, event source mapping
creation and listing and GetAccountSettings on ``*``; tagging on the ARN in the path.
CreateFunction and UpdateFunctionConfiguration naming a ``Role`` also need
``iam:PassRole`` on that role, as on AWS: otherwise a session could hand a function a
role more powerful than its own and run code as it.
Layers and anything else are not mapped (``*``, with the action ``lambda:<METHOD path>``).

**API Gateway v2** (the management API, ``/v2/...``) is authorised as AWS does for API
Gateway: the action is the HTTP method (``apigateway:GET``, ``apigateway:POST``...) and the
resource is the path without ``/v2`` under ``arn:aws:apigateway:<region>::``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final
from urllib.parse import unquote

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

_FUNCTION: Final = "function"
_ALIAS: Final = "alias"
_CREATED: Final = "created"
_TAGGED: Final = "tagged"
_MAPPING: Final = "mapping"
_ANY: Final = "any"

_FN: Final = r"(?P<fn>[^/]+)"
#: (method, path pattern, operation, what the resource is).
_LAMBDA_ROUTES: Final = tuple(
    (method, re.compile(pattern + "/?"), operation, kind)
    for method, pattern, operation, kind in (
        ("POST", rf"/2015-03-31/functions/{_FN}/invocations", "InvokeFunction", _FUNCTION),
        ("POST", rf"/2014-11-13/functions/{_FN}/invoke-async", "InvokeFunction", _FUNCTION),
        ("GET", r"/2015-03-31/functions", "ListFunctions", _ANY),
        ("POST", r"/2015-03-31/functions", "CreateFunction", _CREATED),
        ("GET", rf"/2015-03-31/functions/{_FN}", "GetFunction", _FUNCTION),
        ("DELETE", rf"/2015-03-31/functions/{_FN}", "DeleteFunction", _FUNCTION),
        (
            "GET",
            rf"/2015-03-31/functions/{_FN}/configuration",
            "GetFunctionConfiguration",
            _FUNCTION,
        ),
        (
            "PUT",
            rf"/2015-03-31/functions/{_FN}/configuration",
            "UpdateFunctionConfiguration",
            _FUNCTION,
        ),
        ("PUT", rf"/2015-03-31/functions/{_FN}/code", "UpdateFunctionCode", _FUNCTION),
        ("GET", rf"/2015-03-31/functions/{_FN}/policy", "GetPolicy", _FUNCTION),
        ("POST", rf"/2015-03-31/functions/{_FN}/policy", "AddPermission", _FUNCTION),
        ("DELETE", rf"/2015-03-31/functions/{_FN}/policy/[^/]+", "RemovePermission", _FUNCTION),
        ("GET", rf"/2015-03-31/functions/{_FN}/versions", "ListVersionsByFunction", _FUNCTION),
        ("POST", rf"/2015-03-31/functions/{_FN}/versions", "PublishVersion", _FUNCTION),
        ("GET", rf"/2015-03-31/functions/{_FN}/aliases", "ListAliases", _FUNCTION),
        ("POST", rf"/2015-03-31/functions/{_FN}/aliases", "CreateAlias", _FUNCTION),
        ("GET", rf"/2015-03-31/functions/{_FN}/aliases/(?P<alias>[^/]+)", "GetAlias", _ALIAS),
        ("PUT", rf"/2015-03-31/functions/{_FN}/aliases/(?P<alias>[^/]+)", "UpdateAlias", _ALIAS),
        (
            "DELETE",
            rf"/2015-03-31/functions/{_FN}/aliases/(?P<alias>[^/]+)",
            "DeleteAlias",
            _ALIAS,
        ),
        (
            "GET",
            rf"/2019-09-25/functions/{_FN}/event-invoke-config/list",
            "ListFunctionEventInvokeConfigs",
            _FUNCTION,
        ),
        (
            "GET",
            rf"/2019-09-25/functions/{_FN}/event-invoke-config",
            "GetFunctionEventInvokeConfig",
            _FUNCTION,
        ),
        (
            "PUT",
            rf"/2019-09-25/functions/{_FN}/event-invoke-config",
            "PutFunctionEventInvokeConfig",
            _FUNCTION,
        ),
        (
            "POST",
            rf"/2019-09-25/functions/{_FN}/event-invoke-config",
            "UpdateFunctionEventInvokeConfig",
            _FUNCTION,
        ),
        (
            "DELETE",
            rf"/2019-09-25/functions/{_FN}/event-invoke-config",
            "DeleteFunctionEventInvokeConfig",
            _FUNCTION,
        ),
        ("PUT", rf"/2017-10-31/functions/{_FN}/concurrency", "PutFunctionConcurrency", _FUNCTION),
        (
            "DELETE",
            rf"/2017-10-31/functions/{_FN}/concurrency",
            "DeleteFunctionConcurrency",
            _FUNCTION,
        ),
        ("GET", rf"/2019-09-30/functions/{_FN}/concurrency", "GetFunctionConcurrency", _FUNCTION),
        ("POST", rf"/2021-10-31/functions/{_FN}/url", "CreateFunctionUrlConfig", _FUNCTION),
        ("GET", rf"/2021-10-31/functions/{_FN}/url", "GetFunctionUrlConfig", _FUNCTION),
        ("PUT", rf"/2021-10-31/functions/{_FN}/url", "UpdateFunctionUrlConfig", _FUNCTION),
        ("DELETE", rf"/2021-10-31/functions/{_FN}/url", "DeleteFunctionUrlConfig", _FUNCTION),
        ("GET", r"/2017-03-31/tags/(?P<arn>.+)", "ListTags", _TAGGED),
        ("POST", r"/2017-03-31/tags/(?P<arn>.+)", "TagResource", _TAGGED),
        ("DELETE", r"/2017-03-31/tags/(?P<arn>.+)", "UntagResource", _TAGGED),
        ("GET", r"/2015-03-31/event-source-mappings", "ListEventSourceMappings", _ANY),
        ("POST", r"/2015-03-31/event-source-mappings", "CreateEventSourceMapping", _ANY),
        (
            "GET",
            r"/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)",
            "GetEventSourceMapping",
            _MAPPING,
        ),
        (
            "PUT",
            r"/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)",
            "UpdateEventSourceMapping",
            _MAPPING,
        ),
        (
            "DELETE",
            r"/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)",
            "DeleteEventSourceMapping",
            _MAPPING,
        ),
        ("GET", r"/2016-08-19/account-settings", "GetAccountSettings", _ANY),
    )
)
_APIGATEWAY_V2_PREFIX: Final = "/v2/"
#: Lambda operations that hand a function a role: AWS also checks ``iam:PassRole`` on it.
_PASSES_ROLE: Final = frozenset({"CreateFunction", "UpdateFunctionConfiguration"})


def lambda_permissions(request: HttpRequest) -> RequiredPermissions:
    """What AWS authorises for a Lambda API request (module docstring)."""
    method = request.method.upper()
    for route_method, pattern, operation, kind in _LAMBDA_ROUTES:
        if route_method != method:
            continue
        match = pattern.fullmatch(request.raw_path)
        if match is None:
            continue
        groups = match.groupdict()
        resource = _lambda_resource(request, kind, groups)
        if resource is None:
            break
        required = one(Protocol.REST_JSON, "lambda", operation, resource)
        if operation in _PASSES_ROLE:
            return _passing_role(request, required)
        return required
    return unmapped(request, Protocol.REST_JSON, f"{method} {request.raw_path}")


def apigateway_permissions(request: HttpRequest) -> RequiredPermissions:
    """API Gateway's management API: ``apigateway:<METHOD>`` on the path's resource."""
    method = request.method.upper()
    if not request.raw_path.startswith(_APIGATEWAY_V2_PREFIX):
        return unmapped(request, Protocol.REST_JSON, f"{method} {request.raw_path}")
    path = "/" + request.raw_path.removeprefix(_APIGATEWAY_V2_PREFIX).rstrip("/")
    resource = f"arn:{request.partition}:apigateway:{request.region}::{unquote(path)}"
    permission = Permission(f"apigateway:{method}", resource)
    return RequiredPermissions(Protocol.REST_JSON, f"{method} {path}", (permission,))


def _passing_role(request: HttpRequest, required: RequiredPermissions) -> RequiredPermissions:
    if "Role" not in request.json_body():
        return required
    role = request.json_body()["Role"]
    if not isinstance(role, str) or not role:
        return refused(Protocol.REST_JSON, required.operation, "a Role that is not an ARN")
    passing = Permission("iam:PassRole", role)
    return replace(required, permissions=(*required.permissions, passing))


def function_arn(request: HttpRequest, reference: str, qualifier: str | None = None) -> str:
    """The ARN a function reference (name, ``name:qualifier``, partial ARN or ARN) names,
    qualified when the reference or ``qualifier`` names a version or alias."""
    parts = unquote(reference).split(":")
    if parts[0] == "arn" and len(parts) >= 7:
        base, named = ":".join(parts[:7]), parts[7] if len(parts) > 7 else None
    elif len(parts) >= 3 and parts[1] == "function":
        base = f"arn:{request.partition}:lambda:{request.region}:{parts[0]}:function:{parts[2]}"
        named = parts[3] if len(parts) > 3 else None
    else:
        base = request.arn("lambda", f"function:{parts[0]}")
        named = parts[1] if len(parts) > 1 else None
    chosen = qualifier or named
    return f"{base}:{chosen}" if chosen else base


def _lambda_resource(request: HttpRequest, kind: str, groups: dict[str, str]) -> str | None:
    if kind == _ANY:
        return ANY_RESOURCE
    if kind == _TAGGED:
        return unquote(groups["arn"])
    if kind == _MAPPING:
        return request.arn("lambda", f"event-source-mapping:{unquote(groups['uuid'])}")
    if kind == _CREATED:
        name = request.json_body().get("FunctionName")
        return function_arn(request, name) if isinstance(name, str) and name else None
    qualifier = (
        unquote(groups["alias"]) if kind == _ALIAS else request.query_params().get("Qualifier")
    )
    return function_arn(request, groups["fn"], qualifier or None)
