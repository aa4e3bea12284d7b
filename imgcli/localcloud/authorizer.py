"""The authoriser: every call a role session makes is checked against the role's policies.

A WSGI layer between the gate and moto. The gate has verified the request's signature and
left the caller in the environ (``identity.ENVIRON_KEY``); for the owner (no
``role_arn``) the request passes untouched, as the account's root may do anything. For a
role session the authoriser maps the request to what AWS authorises
(``iam_requests.required_permissions``: action and resource ARNs), reads the role's
policies from moto's IAM at that moment (``role_policies``), evaluates each permission
(``iam_policy``) and lets the request reach moto only if every one is allowed. A refusal
is AWS's AccessDenied in the service's own wire format, so SDKs raise what they would on
AWS:

* S3: 403, ``<Error><Code>AccessDenied</Code>...``, the resource quoted in the message;
* JSON-target services: ``{"__type": "...#AccessDeniedException", "message": ...}``, 400
  as DynamoDB and CloudWatch Logs answer, 403 for SQS (with its query-compatible
  ``x-amzn-query-error: AccessDenied;Sender``, which botocore reads as the code);
* REST-JSON (Lambda, API Gateway): 403 with ``x-amzn-ErrorType: AccessDeniedException``;
* query protocol (IAM, STS, SQS's older form): 403 ``<ErrorResponse>``.

The message is AWS's: ``User: <assumed-role ARN> is not authorized to perform: <action>
on resource: <ARN> because no identity-based policy allows the <action> action`` (or
``with an explicit deny in an identity-based policy``). Each refusal is logged with the
statements that could not be evaluated, so a least-privilege mistake is easy to find.

A request moto could read otherwise than the mapping (``iam_request_shape``) is refused
whatever the policies say; so is one naming a resource moto would resolve to another
(``RequiredPermissions.must_resolve``). ``sts:AssumeRole`` is also checked against the
role's trust policy and MaxSessionDuration (``iam_assume_role``), the owner's for its
duration only. A JSON body reaches moto with its ``&`` escaped (the same document), as
moto also reads a JSON body as a query string.

``sts:GetCallerIdentity`` is always allowed, as on AWS, and answered here for a role
session with its assumed-role ARN (moto would answer with a made-up user for the
sessions it did not issue). Resource-based policies (bucket policies, queue policies) are
not evaluated for role sessions: same-account access needs only the identity policy,
and the stack's bucket policy only refuses plain HTTP, which is all the local cloud
speaks.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from imgcli.localcloud.iam_assume_role import ASSUME_ROLE, Refusal, TrustSource
from imgcli.localcloud.iam_assume_role import refusal as assume_role_refusal
from imgcli.localcloud.iam_moto_resources import resolves_exactly
from imgcli.localcloud.iam_policy import Decision, Document, Evaluation, evaluate
from imgcli.localcloud.iam_request_model import HttpRequest, Permission, Protocol
from imgcli.localcloud.iam_request_shape import ambiguity
from imgcli.localcloud.iam_requests import needs_body, required_permissions, signing_scope
from imgcli.localcloud.iam_requests_rpc import GET_CALLER_IDENTITY
from imgcli.localcloud.identity import ENVIRON_KEY, Principal
from imgcli.localcloud.role_policies import (
    role_id,
    role_policy_documents,
    role_trust,
    session_context,
)
from imgcli.localcloud.role_sessions import RoleSession, assumed_role_arn

LOGGER: Final = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]
#: The role's identity policy documents, read at the moment of the call.
PolicySource = Callable[[str], Sequence[Document]]

_QUERY_NAMESPACES: Final = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
}
_JSON_403_SERVICES: Final = frozenset({"sqs"})
_REASONS: Final = {400: "Bad Request", 403: "Forbidden"}


class Authorizer:
    """WSGI middleware: lets a role session's request through to ``app`` only if the
    role's policies allow it (module docstring). ``account`` is the local cloud's;
    ``policies`` reads a role's documents (moto's IAM by default; tests pass their own)."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        account: str,
        default_region: str,
        policies: PolicySource = role_policy_documents,
        resolves: Callable[[str], bool] = resolves_exactly,
        trust: TrustSource = role_trust,
    ) -> None:
        self._app = app
        self._account = account
        self._default_region = default_region
        self._policies = policies
        self._resolves = resolves
        self._trust = trust

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        principal = environ.get(ENVIRON_KEY)
        if not isinstance(principal, Principal):
            return self._app(environ, start_response)
        if principal.role_arn is None:
            if _signed_for_sts(environ):
                return self._owner_sts(environ, start_response)
            return self._app(environ, start_response)
        request = self._request(environ)
        required = required_permissions(request)
        caller = _session_arn(principal)
        if required.refusal is not None:
            LOGGER.warning("AccessDenied: %s sent %s", caller, required.refusal)
            message = (
                f"User: {caller} is not authorized to perform this request: the local "
                f"cloud refuses {required.refusal}"
            )
            return _refuse(start_response, request, required.protocol, message)
        if required.always_allowed:
            if required.operation == GET_CALLER_IDENTITY:
                return _caller_identity(start_response, principal, caller, required.protocol)
            return self._app(environ, start_response)
        documents = self._policies(principal.role_arn)
        context = session_context(principal.role_arn, request.region)
        for permission in required.permissions:
            evaluation = evaluate(documents, permission.action, permission.resource, context)
            if not evaluation.allowed:
                _log_refusal(caller, required.operation, permission, evaluation, required.mapped)
                message = access_denied_message(caller, permission, evaluation.decision)
                return _refuse(start_response, request, required.protocol, message)
        for arn in required.must_resolve:
            if not self._resolves(arn):
                LOGGER.warning(
                    "AccessDenied: %s named %s, which moto would not act on", caller, arn
                )
                message = (
                    f"User: {caller} named {arn} by an identifier the local cloud cannot "
                    "resolve to it (name it by logGroupName)"
                )
                return _refuse(start_response, request, required.protocol, message)
        if request.service == "sts" and required.operation == ASSUME_ROLE:
            params = _sts_params(request, required.protocol)
            refused = assume_role_refusal(
                params,
                request.region,
                caller_role=principal.role_arn,
                caller_session=caller,
                trust_of=self._trust,
            )
            if refused is not None:
                LOGGER.warning("%s: %s", refused.code, refused.message)
                return _refuse(start_response, request, required.protocol, refused.message, refused)
        if required.protocol is Protocol.JSON:
            _escape_ampersands(environ, request.body)
        return self._app(environ, start_response)

    def _owner_sts(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """The owner's AssumeRole is bounded in duration like everyone's (``iam_assume_role``)."""
        request = self._request(environ)
        if request.service == "sts" and ambiguity(request) is None:
            protocol = Protocol.JSON if "x-amz-target" in request.headers else Protocol.QUERY
            params = _sts_params(request, protocol)
            if params.get("Action", request.headers.get("x-amz-target", "")).endswith(ASSUME_ROLE):
                refused = assume_role_refusal(params, request.region, trust_of=self._trust)
                if refused is not None:
                    return _refuse(start_response, request, protocol, refused.message, refused)
        return self._app(environ, start_response)

    def _request(self, environ: Environ) -> HttpRequest:
        raw_path, query = _raw_target(environ)
        headers = _headers(environ)
        service, region = signing_scope(headers, query) or ("", self._default_region)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        body = _take_body(environ) if needs_body(service, method, query) else b""
        return HttpRequest(
            method=method,
            raw_path=raw_path,
            query=query,
            headers=headers,
            body=body,
            service=service,
            region=region,
            account=self._account,
        )


def principal_allows(principal: Principal, action: str, resource: str, region: str) -> bool:
    """Whether ``principal`` may do ``action`` on ``resource`` now: the owner always; a role
    session if its role's policies allow it. For checks outside the request path, such as
    ``execute-api:Invoke`` on an ``AWS_IAM`` route (:func:`execute_api_arn`)."""
    if principal.role_arn is None:
        return True
    documents = role_policy_documents(principal.role_arn)
    context = session_context(principal.role_arn, region)
    evaluation = evaluate(documents, action, resource, context)
    if not evaluation.allowed:
        permission = Permission(action, resource)
        _log_refusal(_session_arn(principal), action, permission, evaluation, mapped=True)
    return evaluation.allowed


def execute_api_arn(
    region: str, account: str, api_id: str, stage: str, method: str, path: str
) -> str:
    """The resource ``execute-api:Invoke`` is checked on for a call to an HTTP API:
    ``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>``."""
    return f"arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}/{path.lstrip('/')}"


def access_denied_message(caller: str, permission: Permission, decision: Decision) -> str:
    """AWS's AccessDenied message for ``caller`` refused ``permission``."""
    resource = permission.resource
    if permission.action.startswith("s3:") and resource != "*":
        resource = f'"{resource}"'
    refused = f"User: {caller} is not authorized to perform: {permission.action} on resource: "
    if decision is Decision.EXPLICIT_DENY:
        return f"{refused}{resource} with an explicit deny in an identity-based policy"
    return (
        f"{refused}{resource} because no identity-based policy allows the "
        f"{permission.action} action"
    )


def _session_arn(principal: Principal) -> str:
    session = principal.session_name if isinstance(principal, RoleSession) else ""
    return assumed_role_arn(principal.role_arn or "", session or principal.access_key_id)


def _log_refusal(
    caller: str, operation: str, permission: Permission, evaluation: Evaluation, mapped: bool
) -> None:
    detail = "" if mapped else " (the local cloud does not know this operation's resources)"
    LOGGER.warning(
        "AccessDenied: %s may not %s (%s on %s, %s)%s%s",
        caller,
        operation,
        permission.action,
        permission.resource,
        evaluation.decision.value,
        detail,
        "".join(f"; {note}" for note in evaluation.notes),
    )


def _refuse(
    start_response: StartResponse,
    request: HttpRequest,
    protocol: Protocol,
    message: str,
    error: Refusal | None = None,
) -> list[bytes]:
    """AccessDenied (or ``error``'s code and status) in the service's own wire format."""
    code = "AccessDenied" if error is None else error.code
    status = 403 if error is None else error.status
    request_id = str(uuid.uuid4())
    headers: list[tuple[str, str]] = [("x-amzn-RequestId", request_id)]
    if protocol is Protocol.S3:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>{request_id}</RequestId>"
            f"<HostId>{request_id}</HostId></Error>"
        ).encode()
        headers += [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        if request.method == "HEAD":
            body = b""
    elif protocol is Protocol.QUERY:
        namespace = _QUERY_NAMESPACES.get(request.service, "https://amazonaws.com/doc/")
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    elif protocol is Protocol.REST_JSON:
        key = "Message" if request.service == "lambda" else "message"
        body = json.dumps({"Type": "User", key: message}).encode()
        headers += [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"{code}Exception" if error is None else code),
        ]
    else:
        json_code = f"{code}Exception" if error is None else code
        body = json.dumps(
            {"__type": f"com.amazon.coral.service#{json_code}", "message": message}
        ).encode()
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
        if request.service in _JSON_403_SERVICES:
            headers.append(("x-amzn-query-error", f"{code};Sender"))
        elif error is None:
            status = 400
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {_REASONS[status]}", headers)
    return [body]


def _escape_ampersands(environ: Environ, body: bytes) -> None:
    """Hands moto the JSON body with every ``&`` written ``\\u0026`` (the same JSON: in a
    valid document ``&`` only occurs in strings). moto also parses a JSON body as a query
    string, and services that read that first (CloudWatch Logs' ``_get_param``) would
    take a ``&logGroupName=...`` smuggled in a string for a parameter."""
    if b"&" in body:
        escaped = body.replace(b"&", b"\\u0026")
        environ["wsgi.input"] = io.BytesIO(escaped)
        environ["CONTENT_LENGTH"] = str(len(escaped))


def _signed_for_sts(environ: Mapping[str, Any]) -> bool:
    """Cheap pre-check on the owner's hot path: only STS requests are read further."""
    signed = f"{environ.get('HTTP_AUTHORIZATION', '')} {environ.get('QUERY_STRING', '')}"
    return "/sts/aws4_request" in signed or "%2Fsts%2Faws4_request" in signed


def _sts_params(request: HttpRequest, protocol: Protocol) -> dict[str, Any]:
    return request.json_body() if protocol is Protocol.JSON else dict(request.form_params())


def _caller_identity(
    start_response: StartResponse, principal: Principal, caller: str, protocol: Protocol
) -> list[bytes]:
    role_arn = principal.role_arn or ""
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    # AWS's UserId of a session: the role's unique id, then the session name.
    unique_id = role_id(role_arn) or "AROA" + principal.access_key_id[4:]
    user_id = f"{unique_id}:{caller.rsplit('/', 1)[-1]}"
    request_id = str(uuid.uuid4())
    if protocol is Protocol.JSON:
        body = json.dumps({"UserId": user_id, "Account": account, "Arn": caller}).encode()
        content_type = "application/x-amz-json-1.0"
    else:
        body = (
            f'<GetCallerIdentityResponse xmlns="{_QUERY_NAMESPACES["sts"]}">'
            f"<GetCallerIdentityResult><Arn>{escape(caller)}</Arn>"
            f"<UserId>{escape(user_id)}</UserId><Account>{account}</Account>"
            "</GetCallerIdentityResult><ResponseMetadata>"
            f"<RequestId>{request_id}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        ).encode()
        content_type = "text/xml"
    start_response(
        "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [body]


def _raw_target(environ: Mapping[str, Any]) -> tuple[str, str]:
    """The path and query exactly as sent (werkzeug keeps them in ``REQUEST_URI``)."""
    raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(raw_uri, str) and raw_uri:
        parts = urlsplit(raw_uri)
        return parts.path, parts.query
    return str(environ.get("PATH_INFO", "")), str(environ.get("QUERY_STRING", ""))


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].lower().replace("_", "-")] = str(value)
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.lower().replace("_", "-")] = str(value)
    return headers


def _take_body(environ: Environ) -> bytes:
    """Reads the whole body and puts it back as a fresh stream for the app behind."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = str(environ.get("CONTENT_LENGTH") or "")
    if length.isdigit():
        body: bytes = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body
