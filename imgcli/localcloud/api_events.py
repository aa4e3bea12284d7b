"""What API Gateway hands a Lambda proxy integration, and what it makes of the answer.

``execute_api`` calls :func:`build_event` for a request whose route (``api_routes``) it
selected and authorized, and :func:`http_response` on what the function returned. Both are
pure, and follow payload format 2.0, the stack's only kind.

**The event** follows AWS's payload 2.0 and the real events in ``tests/events/``:
``rawQueryString`` exactly as sent (still percent-encoded); ``rawPath`` and
``requestContext.http.path`` percent-decoded (HTTP API delivers them decoded, see
``lambdas.retrieve``); ``pathParameters`` percent-decoded once, so ``+`` stays ``+`` and a
literal ``%`` arrives as sent; ``queryStringParameters`` form-decoded (``+`` is a space,
as on API Gateway, aws-cdk #19827), repeated names joined with ``,``; header names lower
case, repeated headers joined with ``,``; the ``cookie`` header moved to ``cookies``; the
``x-forwarded-*`` and ``x-amzn-trace-id`` headers API Gateway adds. ``requestContext``
carries the account, API id, the ``Host`` the client used as ``domainName`` (its
``domainPrefix`` is the API id, as on AWS's default domain), method, path, protocol,
source IP, user agent, a request id in API Gateway's format (also sent back as the
``apigw-requestid`` response header), stage ``$default`` and the time in both of AWS's
forms. ``AWS_IAM`` routes add ``authorizer.iam`` for the signer: the owner's key is no IAM
user, so it is described as the account's root identity; a role session by its role. A
body is passed as text when its content type is textual and it is valid UTF-8, otherwise
base64 with ``isBase64Encoded``.

**The response.** A JSON object with ``statusCode`` is a proxy response: ``headers``,
``cookies`` (each a ``Set-Cookie``), ``body`` and ``isBase64Encoded``, the fields AWS
documents for format 2.0 (``multiValueHeaders`` is format 1.0's and is ignored). Without a
``content-type`` header the response says ``text/plain; charset=utf-8``, as HTTP API was
observed to. A wrong type in any of those fields, or a header value with a line break, is
malformed. Any other result (no ``statusCode``, or not an object) is, per AWS's format 2.0
rules, a 200 ``application/json`` response whose body is the function's result.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from imgcli.localcloud.api_routes import ApiDescription, RouteMatch, decode
from imgcli.localcloud.identity import Principal

#: The stage every request is on: the stack deploys only ``$default``.
STAGE: Final = "$default"
PAYLOAD_FORMAT: Final = "2.0"

#: Month names for ``requestContext.time``, independent of the process locale.
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_TEXT_TYPES: Final = (
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
)
#: Headers that describe one connection, not the message: WSGI forbids apps to set them.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


# --- the payload 2.0 event -------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One call to an API, as received (paths relative to the API, still encoded)."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    protocol: str
    source_ip: str
    server_port: str
    scheme: str


def build_event(
    request: ApiRequest,
    match: RouteMatch,
    api: ApiDescription,
    *,
    request_id: str,
    now: float,
    caller: Principal | None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway would send for ``request``."""
    path = decode(request.raw_path or "/")
    headers = _event_headers(request, now)
    cookies = _cookies(headers.pop("cookie", ""))
    event: dict[str, Any] = {
        "version": PAYLOAD_FORMAT,
        "routeKey": match.route.route_key,
        "rawPath": path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = _request_context(
        request, match, api, path=path, request_id=request_id, now=now, caller=caller
    )
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    body, is_base64 = _event_body(request.body, headers.get("content-type", ""))
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = is_base64
    return event


def _event_headers(request: ApiRequest, now: float) -> dict[str, str]:
    headers = dict(request.headers)
    forwarded_for = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip
    )
    headers["x-forwarded-port"] = request.server_port
    headers["x-forwarded-proto"] = request.scheme
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{secrets.token_hex(12)}")
    return headers


def _cookies(header: str) -> list[str]:
    # Repeated Cookie headers arrive comma-joined; a cookie value cannot contain a comma.
    return [c.strip() for part in header.split(",") for c in part.split(";") if c.strip()]


def _query_parameters(raw_query: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters


def _request_context(
    request: ApiRequest,
    match: RouteMatch,
    api: ApiDescription,
    *,
    path: str,
    request_id: str,
    now: float,
    caller: Principal | None,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
    }
    if caller is not None:
        context["authorizer"] = {"iam": _iam_identity(caller, api.account_id)}
    context.update(
        {
            "domainName": request.headers.get("host", ""),
            "domainPrefix": api.api_id,
            "http": {
                "method": request.method,
                "path": path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": match.route.route_key,
            "stage": STAGE,
            "time": _clf_time(now),
            "timeEpoch": int(now * 1000),
        }
    )
    return context


def _iam_identity(caller: Principal, account_id: str) -> dict[str, Any]:
    # A role session's own ARN (assumed-role/...) needs its session name, which the
    # principal does not carry: the role stands for it.
    user_arn = caller.role_arn or f"arn:aws:iam::{account_id}:root"
    return {
        "accessKey": caller.access_key_id,
        "accountId": account_id,
        "callerId": account_id,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": user_arn,
        "userId": account_id,
    }


def _clf_time(now: float) -> str:
    """``14/Mar/2025:10:15:01 +0000``, the Common Log Format time API Gateway uses."""
    moment = datetime.fromtimestamp(now, UTC)
    return (
        f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:"
        f"{moment.strftime('%H:%M:%S')} +0000"
    )


def _event_body(body: bytes, content_type: str) -> tuple[str | None, bool]:
    if not body:
        return None, False
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith(_TEXT_TYPES) or media_type.endswith(("+json", "+xml")):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def new_request_id() -> str:
    """An id shaped like API Gateway's (``Hx2KrhKWIAMEbYg=``): 11 random bytes, base64."""
    return base64.b64encode(secrets.token_bytes(11)).decode("ascii")


# --- the proxy response ----------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedResponse(Exception):
    """The function's result is not a proxy response API Gateway could send."""


def http_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a format 2.0 function result."""
    if not isinstance(result, dict) or "statusCode" not in result:
        body = json.dumps(result, ensure_ascii=False).encode("utf-8")
        return HttpResponse(200, [("content-type", "application/json")], body)
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode must be an HTTP status, not {status!r}")
    headers = list(_response_headers(result.get("headers")))
    headers.extend(("set-cookie", cookie) for cookie in _response_cookies(result.get("cookies")))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "text/plain; charset=utf-8"))
    return HttpResponse(status, headers, _response_body(result))


def _response_headers(headers: Any) -> Iterator[tuple[str, str]]:
    if headers is None:
        return
    if not isinstance(headers, dict):
        raise MalformedResponse(f"headers must be an object, not {type(headers).__name__}")
    for name, value in headers.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise MalformedResponse(f"header {name!r} must be a string, not {value!r}")
        _check_header_text(name, value)
        if name.lower() not in _HOP_BY_HOP:
            yield name, value


def _response_cookies(cookies: Any) -> list[str]:
    if cookies is None:
        return []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise MalformedResponse("cookies must be a list of strings")
    for cookie in cookies:
        _check_header_text("set-cookie", cookie)
    return cookies


def _check_header_text(name: str, value: str) -> None:
    """No line breaks: a header must not be able to start another one."""
    if not name or any(c in text for text in (name, value) for c in "\r\n\0"):
        raise MalformedResponse(f"header {name!r} contains a line break or is empty")


def _response_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponse(f"body must be a string, not {type(body).__name__}")
    encoded = result.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedResponse(f"isBase64Encoded must be true or false, not {encoded!r}")
    if not encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedResponse(f"body is not valid base64: {exc}") from None


def message_response(status: int, message: str) -> HttpResponse:
    """API Gateway's own error shape: ``{"message": "..."}``."""
    body = json.dumps({"message": message}).encode("utf-8")
    return HttpResponse(status, [("content-type", "application/json")], body)
