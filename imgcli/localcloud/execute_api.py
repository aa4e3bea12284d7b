"""The stack's HTTP API on the local cloud: execute-api calls, routed to Lambda functions.

moto 5.2.5 keeps HTTP APIs (API Gateway v2) as control-plane data but serves no call to
them in server mode. ``ExecuteApi`` is a WSGI middleware in front of moto's app that
answers those calls the way API Gateway does, so the CLI's signed ``GET /images`` reaches
the retrieve function locally exactly as on AWS.

**URL scheme.** On AWS an API lives at ``https://<apiId>.execute-api.<region>.amazonaws.com``;
on the local target it is ``http://127.0.0.1:PORT/_api/<apiId>`` (``api_url``). A path
prefix, not a host name, because ``127.0.0.1`` has no subdomains and the CLI, curl and
botocore must reach it with no DNS or ``/etc/hosts`` set-up. The stack uses the
``$default`` stage, which adds no path segment on AWS either, so there is no stage segment
here: ``GET /_api/<apiId>/images/a.jpg`` is the request ``GET /images/a.jpg`` to the API.
Nothing under ``/_api/`` ever reaches moto (no S3 bucket can be called ``_api``, and
moto's own paths start differently); everything else passes through untouched.

**What a request goes through**, in API Gateway's order:

1. The API, by id (``apis``, read afresh per request so route changes apply at once),
   else 404 ``{"message":"Not Found"}``.
2. The route. API Gateway picks the most specific match: literal segments beat
   ``{name}`` (one segment), which beats a greedy ``{name+}`` (one or more, only last);
   compared segment by segment from the left. For the same path template a route for the
   request's method beats ``ANY`` ("ANY matches all methods that you haven't defined for
   a resource", AWS, "Create routes for HTTP APIs"). ``$default`` takes what nothing else
   matches; otherwise 404 ``{"message":"Not Found"}``.
3. For an ``AWS_IAM`` route, SigV4 against the local cloud's only credentials
   (``sigv4.verify``), else 403 with API Gateway's message. ``NONE`` routes are open.
   JWT and Lambda authorizers are not emulated: such routes answer 403 and say why in the
   log, so nothing is served more openly than on AWS.
4. The Lambda proxy integration with payload format 2.0 (the stack's only kind): the
   event below goes to ``invoke(function_arn, event)``; its result becomes the HTTP
   response. A function error, an exception from ``invoke`` or a malformed proxy response
   is 500 ``{"message":"Internal Server Error"}``, as API Gateway answers; the reason goes
   to the log, never to the client. Other integrations and payload format 1.0 also answer
   500, with a log line saying the local cloud does not serve them.

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
forms. ``AWS_IAM`` routes add ``authorizer.iam`` for the signer: the local key is no IAM
user, so it is described as the account's root identity. A body is passed as text when
its content type is textual and it is valid UTF-8, otherwise base64 with
``isBase64Encoded``.

**The response.** A JSON object with ``statusCode`` is a proxy response: ``headers``,
``cookies`` (each a ``Set-Cookie``), ``body`` and ``isBase64Encoded``, the fields AWS
documents for format 2.0 (``multiValueHeaders`` is format 1.0's and is ignored). Without a
``content-type`` header the response says ``text/plain; charset=utf-8``, as HTTP API was
observed to. A wrong type in any of those fields, or a header value with a line break, is
malformed. Any other result (no ``statusCode``, or not an object) is, per AWS's format 2.0
rules, a 200 ``application/json`` response whose body is the function's result.

Not emulated: throttling, the 30-second integration timeout (the runtime enforces the
function's own timeout), CORS configuration, custom domains and named stages.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from imgcli.localcloud import API_PATH_PREFIX, MotoInternalsChanged, sigv4

LOGGER: Final = logging.getLogger(__name__)

#: Every API's path on the local cloud starts with this, then ``/<apiId>``.
STAGE: Final = "$default"
DEFAULT_ROUTE: Final = "$default"
ANY_METHOD: Final = "ANY"
AWS_IAM: Final = "AWS_IAM"
NO_AUTHORIZATION: Final = "NONE"
PAYLOAD_FORMAT: Final = "2.0"
#: HTTP API's request payload limit.
MAX_REQUEST_BODY_BYTES: Final = 10 * 1024 * 1024

NOT_FOUND: Final = "Not Found"
INTERNAL_SERVER_ERROR: Final = "Internal Server Error"

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
_LAMBDA_INVOCATION_MARKER: Final = ":lambda:path/2015-03-31/functions/"

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class FunctionFailed:
    """What ``invoke`` returns when the function raised, timed out or crashed.

    Any other return value is the function's result, parsed from JSON. ``invoke`` may also
    raise; both end as API Gateway's 500.
    """

    message: str


#: ``invoke(function_arn, event)``: the function's parsed JSON result, or ``FunctionFailed``.
Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class ApiRoute:
    """One route of an HTTP API, as much as serving it needs."""

    #: ``"GET /images/{key+}"``, ``"ANY /{proxy+}"`` or ``"$default"``.
    route_key: str
    #: ``"NONE"``, ``"AWS_IAM"``, ``"JWT"`` or ``"CUSTOM"``.
    authorization_type: str
    #: The Lambda function a proxy integration calls; ``None`` for anything else.
    function_arn: str | None
    payload_format_version: str | None


@dataclass(frozen=True)
class ApiDescription:
    """An HTTP API's routes, and the account it belongs to (for ``requestContext``)."""

    api_id: str
    account_id: str
    routes: tuple[ApiRoute, ...]


#: ``apis(api_id)``: the API's description, or ``None`` when there is no such API.
ApiLookup = Callable[[str], ApiDescription | None]


def moto_api_lookup(account: str, region: str) -> ApiLookup:
    """Reads HTTP APIs from moto's API Gateway v2 backend for ``account`` and ``region``.

    The only code that touches those moto internals (``apigatewayv2_backends``, ``Api``'s
    ``routes`` and ``integrations``, their attributes); a change of shape raises
    ``MotoInternalsChanged`` naming what moved.
    """

    def lookup(api_id: str) -> ApiDescription | None:
        # Imported on first use: ``api_url`` must stay importable without moto's weight.
        from moto.apigatewayv2.models import apigatewayv2_backends

        try:
            api = apigatewayv2_backends[account][region].apis.get(api_id)
            if api is None:
                return None
            # Copies: another thread may be changing the API through moto meanwhile.
            integrations = dict(api.integrations)
            routes = tuple(_route(route, integrations) for route in list(api.routes.values()))
        except (AttributeError, KeyError, TypeError) as exc:
            raise MotoInternalsChanged(
                "imgcli's execute-api needs moto's API Gateway v2 models, which changed "
                f"shape: {type(exc).__name__}: {exc}"
            ) from exc
        return ApiDescription(api_id=api_id, account_id=account, routes=routes)

    return lookup


def _route(route: Any, integrations: Mapping[str, Any]) -> ApiRoute:
    target = route.target or ""
    integration = integrations.get(target.removeprefix("integrations/"))
    function_arn = None
    payload_format = None
    if integration is not None:
        payload_format = integration.payload_format_version
        if integration.integration_type == "AWS_PROXY":
            function_arn = lambda_function_arn(integration.integration_uri or "")
    return ApiRoute(
        route_key=route.route_key,
        authorization_type=route.authorization_type or NO_AUTHORIZATION,
        function_arn=function_arn,
        payload_format_version=payload_format,
    )


def lambda_function_arn(integration_uri: str) -> str | None:
    """The function an ``AWS_PROXY`` integration URI names, in either form AWS accepts:
    the function ARN itself, or API Gateway's ``.../functions/<arn>/invocations``."""
    if _LAMBDA_INVOCATION_MARKER in integration_uri:
        arn = integration_uri.split(_LAMBDA_INVOCATION_MARKER, 1)[1]
        return arn.removesuffix("/invocations")
    if integration_uri.startswith("arn:") and ":lambda:" in integration_uri:
        return integration_uri
    return None


# --- routing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    """The route a request selected, and its path parameters (decoded once)."""

    route: ApiRoute
    path_parameters: dict[str, str] = field(default_factory=dict)


def match_route(routes: Iterable[ApiRoute], method: str, raw_path: str) -> RouteMatch | None:
    """The route API Gateway would choose for ``method`` and ``raw_path`` (still encoded)."""
    segments = _segments(raw_path)
    best: tuple[tuple[list[int], bool], RouteMatch] | None = None
    fallback: RouteMatch | None = None
    for route in routes:
        if route.route_key == DEFAULT_ROUTE:
            fallback = RouteMatch(route)
            continue
        route_method, _, template = route.route_key.partition(" ")
        if route_method not in (method, ANY_METHOD):
            continue
        matched = _match_template(_segments(template), segments)
        if matched is None:
            continue
        specificity, parameters = matched
        rank = (specificity, route_method == method)
        if best is None or rank > best[0]:
            best = (rank, RouteMatch(route, parameters))
    return best[1] if best is not None else fallback


def _segments(path: str) -> list[str]:
    return [] if path in ("", "/") else path.removeprefix("/").split("/")


def _match_template(
    template: list[str], segments: list[str]
) -> tuple[list[int], dict[str, str]] | None:
    """Per-segment specificity (literal 2, ``{name}`` 1, ``{name+}`` 0) and parameters."""
    specificity: list[int] = []
    parameters: dict[str, str] = {}
    for index, part in enumerate(template):
        if part.startswith("{") and part.endswith("+}"):
            # Greedy: the rest of the path as sent, so doubled slashes survive.
            rest = "/".join(segments[index:])
            if not rest:
                return None
            parameters[part[1:-2]] = _decode(rest)
            specificity.append(0)
            return specificity, parameters
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if not segments[index]:
                return None
            parameters[part[1:-1]] = _decode(segments[index])
            specificity.append(1)
        elif _decode(segments[index]) == part:
            specificity.append(2)
        else:
            return None
    if len(segments) != len(template):
        return None
    return specificity, parameters


def _decode(text: str) -> str:
    """Percent-decoding once, as API Gateway decodes paths: ``+`` is not a space."""
    return unquote(text)


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
    caller: sigv4.Caller | None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway would send for ``request``."""
    path = _decode(request.raw_path or "/")
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
    caller: sigv4.Caller | None,
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


def _iam_identity(caller: sigv4.Caller, account_id: str) -> dict[str, Any]:
    return {
        "accessKey": caller.access_key,
        "accountId": account_id,
        "callerId": account_id,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{account_id}:root",
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


# --- the middleware --------------------------------------------------------------------


@dataclass(frozen=True)
class _ApiCall:
    """Where a request under ``API_PATH_PREFIX`` goes: the API, and the path within it."""

    api_id: str
    raw_path: str
    raw_query: str
    #: The whole path as sent, which is what the client signed.
    signed_path: str


class ExecuteApi:
    """WSGI middleware: serves ``/_api/<apiId>/...`` as API Gateway would, and passes every
    other request to ``app`` (moto).

    Collaborators come in through the constructor: ``invoke`` runs a function (the server
    connects it to the Lambda runtime), ``apis`` describes an API (``moto_api_lookup``),
    ``credentials`` are the only ones SigV4 accepts, ``clock`` tells the time (tests move
    it to make a signature expire). Requests are independent: no lock is held while a
    function runs, so a function may call back into the local cloud.
    """

    def __init__(
        self,
        app: WsgiApp,
        *,
        invoke: Invoke,
        apis: ApiLookup,
        credentials: tuple[str, str],
        region: str,
        clock: Clock = time.time,
    ) -> None:
        self._app = app
        self._invoke = invoke
        self._apis = apis
        self._credentials = credentials
        self._region = region
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        call = _api_call(environ)
        if call is None:
            return self._app(environ, start_response)
        request_id = new_request_id()
        response = self._serve(environ, call, request_id)
        headers = [*response.headers, ("apigw-requestid", request_id)]
        headers.append(("content-length", str(len(response.body))))
        start_response(_status_line(response.status), [_wsgi_header(h) for h in headers])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [response.body]

    def _serve(self, environ: Mapping[str, Any], call: _ApiCall, request_id: str) -> HttpResponse:
        body = _read_body(environ)
        if body is None:
            return message_response(413, "Request Entity Too Large")
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            api = self._apis(call.api_id)
        except Exception:
            LOGGER.exception("reading HTTP API %s failed", call.api_id)
            return message_response(500, INTERNAL_SERVER_ERROR)
        match = None if api is None else match_route(api.routes, method, call.raw_path)
        if api is None or match is None:
            return message_response(404, NOT_FOUND)
        request = _api_request(environ, method, call, body)
        caller = None
        if match.route.authorization_type == AWS_IAM:
            try:
                caller = sigv4.verify(
                    sigv4.SignedRequest(
                        method, call.signed_path, call.raw_query, request.headers, body
                    ),
                    credentials=self._credentials,
                    region=self._region,
                    now=self._clock(),
                )
            except sigv4.SignatureRejected as rejection:
                LOGGER.info("refused %s %s: %s", method, call.signed_path, rejection.message)
                return message_response(403, rejection.message)
        elif match.route.authorization_type != NO_AUTHORIZATION:
            LOGGER.warning(
                "route %r uses %s authorization, which the local cloud does not emulate",
                match.route.route_key,
                match.route.authorization_type,
            )
            return message_response(403, "Forbidden")
        return self._call_function(request, match, api, request_id=request_id, caller=caller)

    def _call_function(
        self,
        request: ApiRequest,
        match: RouteMatch,
        api: ApiDescription,
        *,
        request_id: str,
        caller: sigv4.Caller | None,
    ) -> HttpResponse:
        route = match.route
        if route.function_arn is None or route.payload_format_version != PAYLOAD_FORMAT:
            LOGGER.error(
                "route %r has no Lambda proxy integration with payload format %s; "
                "the local cloud serves no other kind",
                route.route_key,
                PAYLOAD_FORMAT,
            )
            return message_response(500, INTERNAL_SERVER_ERROR)
        event = build_event(
            request, match, api, request_id=request_id, now=self._clock(), caller=caller
        )
        try:
            result = self._invoke(route.function_arn, event)
        except Exception:
            LOGGER.exception("invoking %s for %r failed", route.function_arn, route.route_key)
            return message_response(500, INTERNAL_SERVER_ERROR)
        if isinstance(result, FunctionFailed):
            LOGGER.warning("%s failed for %r: %s", route.function_arn, route.route_key, result)
            return message_response(500, INTERNAL_SERVER_ERROR)
        try:
            return http_response(result)
        except MalformedResponse as problem:
            LOGGER.warning("%s returned a malformed response: %s", route.function_arn, problem)
            return message_response(500, INTERNAL_SERVER_ERROR)


def _api_call(environ: Mapping[str, Any]) -> _ApiCall | None:
    """The API call a request makes, or ``None`` when it is not under the prefix."""
    raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(raw_uri, str) and raw_uri:
        parts = urlsplit(raw_uri)
        raw_path, raw_query = parts.path, parts.query
    else:
        # Not werkzeug's or gunicorn's server: the best there is (decoded by the server).
        raw_path = str(environ.get("PATH_INFO", ""))
        raw_query = str(environ.get("QUERY_STRING", ""))
    prefix = API_PATH_PREFIX + "/"
    if not raw_path.startswith(prefix):
        return None
    api_id, slash, rest = raw_path.removeprefix(prefix).partition("/")
    return _ApiCall(api_id=api_id, raw_path=slash + rest, raw_query=raw_query, signed_path=raw_path)


def _api_request(
    environ: Mapping[str, Any], method: str, call: _ApiCall, body: bytes
) -> ApiRequest:
    return ApiRequest(
        method=method,
        raw_path=call.raw_path,
        raw_query=call.raw_query,
        headers=request_headers(environ),
        body=body,
        protocol=str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
        source_ip=str(environ.get("REMOTE_ADDR", "")),
        server_port=str(environ.get("SERVER_PORT", "")),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
    )


def request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name, values as the client sent them."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            name = key
        else:
            continue
        headers[name.lower().replace("_", "-")] = _wsgi_text(str(value))
    return headers


def _wsgi_text(value: str) -> str:
    """WSGI hands header bytes over as latin-1; clients that send non-ASCII send UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _read_body(environ: Mapping[str, Any]) -> bytes | None:
    """The whole request body, or ``None`` when it is over HTTP API's limit."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    if length_text.isdigit():
        length = int(length_text)
        if length > MAX_REQUEST_BODY_BYTES:
            return None
        data: bytes = stream.read(length)
        return data
    if environ.get("wsgi.input_terminated"):
        data = stream.read(MAX_REQUEST_BODY_BYTES + 1)
        return data if len(data) <= MAX_REQUEST_BODY_BYTES else None
    return b""


def _status_line(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


def _wsgi_header(header: tuple[str, str]) -> tuple[str, str]:
    """WSGI wants latin-1 strings; non-latin-1 text goes out as its UTF-8 bytes."""
    name, value = header
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        value = value.encode("utf-8").decode("latin-1")
    return name, value
