"""The stack's HTTP API on the local cloud: execute-api calls, routed to Lambda functions.

moto 5.2.5 keeps HTTP APIs (API Gateway v2) as control-plane data but serves no call to
them in server mode. ``ExecuteApi`` is the WSGI app that answers those calls the way API
Gateway does, so the CLI's signed ``GET /images`` reaches the retrieve function locally
exactly as on AWS. It puts together ``api_routes`` (the route a request selects),
``sigv4`` (who signed it) and ``api_events`` (the event the function gets, and the
response its result becomes).

**URL scheme.** On AWS an API lives at ``https://<apiId>.execute-api.<region>.amazonaws.com``;
on the local target it is ``http://127.0.0.1:PORT/_api/<apiId>`` (``api_url``). A path
prefix, not a host name, because ``127.0.0.1`` has no subdomains and the CLI, curl and
botocore must reach it with no DNS or ``/etc/hosts`` set-up. The stack uses the
``$default`` stage, which adds no path segment on AWS either, so there is no stage segment
here: ``GET /_api/<apiId>/images/a.jpg`` is the request ``GET /images/a.jpg`` to the API.
The gate decides which requests are the HTTP API's (``gate_routing``: the raw path starts
with exactly ``/_api/``) and hands this app the ``ApiCall`` it found; this app never
decides again, and answers 404 to a request the gate did not route here.

**What a request goes through**, in API Gateway's order:

1. The API, by id (``apis``, read afresh per request so route changes apply at once),
   else 404 ``{"message":"Not Found"}``.
2. The route the request selects (``api_routes.match_route``), else 404
   ``{"message":"Not Found"}``.
3. For an ``AWS_IAM`` route, SigV4 (``sigv4.verify``) with any credentials the local
   cloud knows (``identities``: the owner's, a role session's with its token), within
   API Gateway's five minutes, else 403 with API Gateway's message; then the caller's
   ``execute-api:Invoke`` permission on the route's ARN (``authorize``, which the server
   connects to the role authoriser; the owner may do anything), else 403 with AWS's
   "is not authorized" message. ``NONE`` routes are open, as on AWS. JWT and Lambda
   authorizers are not emulated: such routes answer 403 and say why in the log, so
   nothing is served more openly than on AWS.
4. The Lambda proxy integration with payload format 2.0 (the stack's only kind): the
   event (``api_events.build_event``) goes to ``invoke(function_arn, event)``; its result
   becomes the HTTP response (``api_events.http_response``). A function error, an
   exception from ``invoke`` or a malformed proxy response is 500
   ``{"message":"Internal Server Error"}``, as API Gateway answers; the reason goes to the
   log, never to the client. Other integrations and payload format 1.0 also answer 500,
   with a log line saying the local cloud does not serve them.

Not emulated: throttling, the 30-second integration timeout (the runtime enforces the
function's own timeout), CORS configuration, custom domains and named stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from imgcli.localcloud import sigv4, sigv4_claim
from imgcli.localcloud.api_events import (
    PAYLOAD_FORMAT,
    STAGE,
    ApiRequest,
    HttpResponse,
    MalformedResponse,
    build_event,
    http_response,
    message_response,
    new_request_id,
)
from imgcli.localcloud.api_routes import (
    NO_AUTHORIZATION,
    ApiDescription,
    ApiLookup,
    RouteMatch,
    match_route,
)
from imgcli.localcloud.gate_routing import API_CALL_KEY, ApiCall, request_headers
from imgcli.localcloud.identity import Identities, Principal

LOGGER: Final = logging.getLogger(__name__)

AWS_IAM: Final = "AWS_IAM"
#: HTTP API's request payload limit.
MAX_REQUEST_BODY_BYTES: Final = 10 * 1024 * 1024

NOT_FOUND: Final = "Not Found"
INTERNAL_SERVER_ERROR: Final = "Internal Server Error"

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
#: ``authorize(principal, route_arn)``: whether the caller may ``execute-api:Invoke`` it.
Authorize = Callable[[Principal, str], bool]


def allow_all(principal: Principal, route_arn: str) -> bool:
    """Every caller SigV4 accepted may invoke (no role authoriser)."""
    return True


class ExecuteApi:
    """WSGI app: serves the ``gate_routing.ApiCall`` the gate left in the environ as API
    Gateway would.

    Collaborators come in through the constructor: ``invoke`` runs a function (the server
    connects it to the Lambda runtime), ``apis`` describes an API (``moto_api_lookup``),
    ``identities`` are the credentials SigV4 accepts, ``authorize`` decides a verified
    caller's ``execute-api:Invoke``, ``clock`` tells the time (tests move it to make a
    signature expire). Requests are independent: no lock is held while a
    function runs, so a function may call back into the local cloud.
    """

    def __init__(
        self,
        *,
        invoke: Invoke,
        apis: ApiLookup,
        identities: Identities,
        region: str,
        authorize: Authorize = allow_all,
        clock: Clock = time.time,
    ) -> None:
        self._invoke = invoke
        self._apis = apis
        self._identities = identities
        self._region = region
        self._authorize = authorize
        self._clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        call = environ.get(API_CALL_KEY)
        request_id = new_request_id()
        if isinstance(call, ApiCall):
            response = self._serve(environ, call, request_id)
        else:
            response = message_response(404, NOT_FOUND)
        headers = [*response.headers, ("apigw-requestid", request_id)]
        headers.append(("content-length", str(len(response.body))))
        start_response(_status_line(response.status), [_wsgi_header(h) for h in headers])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [response.body]

    def _serve(self, environ: Mapping[str, Any], call: ApiCall, request_id: str) -> HttpResponse:
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
                    sigv4_claim.SignedRequest(
                        method, call.signed_path, call.raw_query, request.headers
                    ),
                    body,
                    identities=self._identities,
                    region=self._region,
                    service=sigv4.EXECUTE_API,
                    now=self._clock(),
                ).principal
            except sigv4_claim.SignatureRejected as rejection:
                LOGGER.info("refused %s %s: %s", method, call.signed_path, rejection.message)
                return message_response(403, rejection.message)
            route_arn = (
                f"arn:aws:execute-api:{self._region}:{api.account_id}:{call.api_id}/{STAGE}/"
                f"{method}/{call.raw_path.lstrip('/')}"
            )
            if not self._authorize(caller, route_arn):
                who = caller.role_arn or caller.access_key_id
                return message_response(
                    403,
                    f"User: {who} is not authorized to perform: execute-api:Invoke "
                    f"on resource: {route_arn}",
                )
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
        caller: Principal | None,
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


def _api_request(environ: Mapping[str, Any], method: str, call: ApiCall, body: bytes) -> ApiRequest:
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
