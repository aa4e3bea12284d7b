"""The local cloud's front door: only the owner (and the sessions it issued) gets in.

Anyone on the machine can connect to 127.0.0.1, and any web page can make the browser
send a GET there. So every request passes through :class:`Gatekeeper` first, which:

1. answers only requests addressed to ``127.0.0.1:PORT`` or ``localhost:PORT`` (a web
   page using DNS rebinding sends its own host name) and refuses a browser's
   cross-origin request (``Origin``);
2. routes the request once, on its raw path (``gate_routing``): the health check
   (``health(raw_query)``, whose answer proves the owner's secret), a stack's HTTP API
   (``/_api/<apiId>/``, which verifies its own ``AWS_IAM`` routes: ``NONE`` routes are
   public, as on AWS), moto's ``/moto-api/`` (refused, whatever the method), and the AWS
   APIs;
3. verifies an AWS API request's SigV4 signature (``sigv4``) before anything reaches
   moto: the key must be one ``identities`` knows, with its session token if it has
   one and not expired, the scope the local cloud's region and a service moto serves
   (``gate_services``), the time within 15 minutes (a pre-signed URL: before its
   expiry), the signature recomputed, the body's hash checked, and every chunk of a
   streaming upload (``sigv4_chunked``);
4. is as strict as AWS where that costs nothing: bodies capped per service from their
   ``Content-Length`` before they are read, S3 keys at most 1,024 bytes, single uploads
   at most 5 GiB;
5. hands moto the request with the body it read (a ``BytesIO`` of exactly
   ``CONTENT_LENGTH`` bytes, as the client sent it) and the verified ``Principal`` in
   ``environ[identity.ENVIRON_KEY]`` for the layers inside (the authoriser of role
   sessions, the journal).

A refusal is AWS's, in the service's own error format (``gate_errors``), so an SDK
raises the ``ClientError`` it would raise on AWS; the gate's own refusals (another host,
a path never routed) too, in the format of the service the request claims. A credential
scoped to another region is refused first, as AWS does (S3's answer names the right
region, and botocore's S3 client follows it).

**Pre-signed URLs are S3's only.** moto picks the service of a request without an
``Authorization`` header from its shape (``X-Amz-Target``, a form body's ``Action``), and
defaults to S3. A pre-signed URL for another service would be served by the wrong
backend, and whoever holds a pre-signed S3 URL could give its request another shape
(its body and most headers are not signed) and reach STS or Cognito. So pre-signed URLs
are accepted for S3 only, and only in a shape moto dispatches to S3.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Final

from imgcli.localcloud import gate_errors, sigv4, sigv4_chunked
from imgcli.localcloud.gate_errors import ErrorAnswer, Protocol
from imgcli.localcloud.gate_routing import (
    API_CALL_KEY,
    Destination,
    Route,
    request_headers,
    route,
)
from imgcli.localcloud.gate_services import (
    MAX_FRAMING_BYTES,
    MAX_KEY_BYTES,
    MAX_OBJECT_BYTES,
    is_object_upload,
    max_body_bytes,
    moto_serves,
    s3_object_key,
)
from imgcli.localcloud.identity import ENVIRON_KEY, Identities, Principal
from imgcli.localcloud.sigv4_claim import Failure, SignatureRejected, SignedRequest, read_claim

LOGGER: Final = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]
#: ``health(raw_query)``: the health check's JSON answer.
Health = Callable[[str], Mapping[str, Any]]

_FORM: Final = "application/x-www-form-urlencoded"


class _Refused(Exception):
    """A request the gate answers itself, with ``answer``."""

    def __init__(self, answer: ErrorAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class FixedIdentities:
    """The principals known up front (the owner's key): an ``Identities`` for the gate."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self._by_key = {principal.access_key_id: principal for principal in principals}

    def lookup(self, access_key_id: str) -> Principal | None:
        return self._by_key.get(access_key_id)


class Gatekeeper:
    """WSGI: the health check, the HTTP API (``app_for_api``, given the request's
    ``ApiCall`` under ``gate_routing.API_CALL_KEY``) and the verified AWS APIs
    (``app_for_aws``: moto and the layers around it). ``clock`` tells the time (tests
    move it); ``serves`` says whether a credential scope's service exists."""

    def __init__(
        self,
        app_for_aws: WsgiApp,
        app_for_api: WsgiApp,
        *,
        port: int,
        identities: Identities,
        region: str,
        health: Health,
        clock: Callable[[], float] = time.time,
        serves: Callable[[str], bool] = moto_serves,
    ) -> None:
        self._aws = app_for_aws
        self._api = app_for_api
        self._identities = identities
        self._region = region
        self._health = health
        self._clock = clock
        self._serves = serves
        self.hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
        self.origins = frozenset(f"http://{host}" for host in self.hosts)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        where = route(environ)
        refusal = self._address_refusal(environ)
        if refusal is not None:
            return _send(start_response, _gate_refused(environ, where, 403, refusal), method)
        if where.destination is Destination.REFUSED:
            status = 400 if not where.raw_path else 404
            return _send(
                start_response, _gate_refused(environ, where, status, where.reason), method
            )
        if where.destination is Destination.HEALTH:
            return self._answer_health(environ, start_response, where)
        if where.destination is Destination.API:
            environ[API_CALL_KEY] = where.api_call
            return self._api(environ, start_response)
        try:
            self._admit(environ, where)
        except _Refused as refused:
            return _send(start_response, refused.answer, method)
        return self._aws(environ, start_response)

    def _address_refusal(self, environ: Environ) -> str | None:
        if environ.get("HTTP_HOST", "") not in self.hosts:
            return "the local cloud answers only requests addressed to 127.0.0.1 or localhost"
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin not in self.origins:
            return "cross-origin requests are not accepted"
        return None

    def _answer_health(
        self, environ: Environ, start_response: StartResponse, where: Route
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _send(start_response, gate_errors.plain_error(405, "Method Not Allowed"), "")
        body = json.dumps(dict(self._health(where.raw_query))).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _admit(self, environ: Environ, where: Route) -> None:
        """Verify an AWS API request; leave its body and principal in ``environ``."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        headers = request_headers(environ)
        request = SignedRequest(method, where.raw_path, where.raw_query, headers)
        protocol = gate_errors.protocol_of(None, headers, where.raw_path, where.raw_query)
        try:
            claim = read_claim(request)
            service = claim.scope_service
            protocol = gate_errors.protocol_of(service, headers, where.raw_path, where.raw_query)
            if claim.scope_region != self._region:
                LOGGER.info(
                    "refused %s %s: scoped to %r", method, where.raw_path, claim.scope_region
                )
                raise _Refused(
                    gate_errors.wrong_region(
                        protocol, claim.scope_region, self._region, presigned=claim.presigned
                    )
                )
            if not self._serves(service):
                raise SignatureRejected(
                    Failure.SCOPE,
                    f"Credential should be scoped to a service the local cloud serves, "
                    f"not '{service}'.",
                )
            principal = sigv4.authenticate(
                claim,
                identities=self._identities,
                region=self._region,
                service=service,
                now=self._clock(),
            )
            if claim.presigned:
                _check_presigned_shape(service, headers)
            payload = sigv4.declared_payload(request, claim)
            signing_key = b""
            if payload is not None:
                signing_key = sigv4.check_signature(request, claim, principal, payload)
            body = _read_body(environ, _body_limit(request, service, protocol), protocol)
            if payload is None:
                payload = hashlib.sha256(body).hexdigest()
                signing_key = sigv4.check_signature(request, claim, principal, payload)
            sigv4.check_body(payload, body)
        except SignatureRejected as rejection:
            LOGGER.info(
                "refused %s %s: %s", method, where.raw_path, rejection.message.splitlines()[0]
            )
            raise _Refused(
                gate_errors.signature_refused(protocol, rejection.failure, rejection.message)
            ) from None
        if payload in sigv4.STREAMING_PAYLOADS:
            _check_chunks(headers, body, payload, sigv4_chunked.ChunkSigning.of(claim, signing_key))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ[ENVIRON_KEY] = principal


def _gate_refused(environ: Environ, where: Route, status: int, message: str) -> ErrorAnswer:
    """The gate's own refusal, in the format of the service the request claims to be for
    (read from its credential scope, unverified, or from its shape)."""
    headers = request_headers(environ)
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    try:
        service: str | None = read_claim(
            SignedRequest(method, where.raw_path, where.raw_query, headers)
        ).scope_service
    except SignatureRejected:
        service = None
    protocol = gate_errors.protocol_of(service, headers, where.raw_path, where.raw_query)
    return gate_errors.gate_refused(protocol, status, message)


def _check_presigned_shape(service: str, headers: Mapping[str, str]) -> None:
    """Refuse pre-signed requests moto would not dispatch to S3 (module docstring)."""
    if service != sigv4.S3:
        raise SignatureRejected(
            Failure.PAYLOAD_FORM,
            f"The local cloud accepts pre-signed URLs for S3 only, not for {service}: "
            "sign the Authorization header instead.",
        )
    if "x-amz-target" in headers or headers.get("content-type", "").lower().startswith(_FORM):
        raise SignatureRejected(
            Failure.UNSIGNED_HEADER,
            "A pre-signed S3 request may not carry X-Amz-Target or a form-encoded body.",
        )


def _body_limit(request: SignedRequest, service: str, protocol: Protocol) -> int:
    """The most body bytes to read; refuses what AWS would refuse from the headers alone."""
    if service != sigv4.S3:
        return max_body_bytes(service)
    key = s3_object_key(request.raw_path)
    if key is not None and request.method in ("PUT", "POST") and len(key) > MAX_KEY_BYTES:
        raise _Refused(gate_errors.s3_error(400, "KeyTooLongError", "Your key is too long"))
    if not is_object_upload(request.method, request.raw_path, request.raw_query):
        return max_body_bytes(service)
    headers = request.headers
    decoded = headers.get("x-amz-decoded-content-length") or headers.get("content-length")
    if decoded is not None and decoded.isdigit() and int(decoded) > MAX_OBJECT_BYTES:
        raise _Refused(
            gate_errors.s3_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        )
    if "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", ""):
        raise _Refused(
            gate_errors.s3_error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )
        )
    if "x-amz-decoded-content-length" in headers:
        return MAX_OBJECT_BYTES + MAX_FRAMING_BYTES
    return MAX_OBJECT_BYTES


def _read_body(environ: Environ, limit: int, protocol: Protocol) -> bytes:
    """The whole body, at most ``limit`` bytes; none when the request announces none."""
    stream = environ.get("wsgi.input")
    length_text = str(environ.get("CONTENT_LENGTH") or "")
    if stream is None:
        return b""
    if length_text:
        if not length_text.isdigit():
            raise _Refused(
                gate_errors.refused(protocol, 400, "InvalidArgument", "Invalid Content-Length.")
            )
        length = int(length_text)
        if length > limit:
            raise _Refused(_too_large(protocol, limit))
        data: bytes = stream.read(length)
        if len(data) != length:
            raise _Refused(
                gate_errors.refused(
                    protocol,
                    400,
                    "IncompleteBody",
                    "You did not provide the number of bytes specified by the "
                    "Content-Length HTTP header.",
                )
            )
        return data
    if environ.get("wsgi.input_terminated"):
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise _Refused(_too_large(protocol, limit))
        return data
    # Neither a length nor chunked transfer: HTTP/1.1 says the request has no body.
    return b""


def _too_large(protocol: Protocol, limit: int) -> ErrorAnswer:
    if protocol is Protocol.S3:
        if limit >= MAX_OBJECT_BYTES:
            return gate_errors.s3_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        return gate_errors.s3_error(400, "MaxMessageLengthExceeded", "Your request was too big.")
    return gate_errors.refused(
        protocol,
        413,
        "RequestEntityTooLarge",
        f"Request body exceeds the local cloud's limit of {limit} bytes for this service.",
    )


def _check_chunks(
    headers: Mapping[str, str], body: bytes, payload: str, signing: sigv4_chunked.ChunkSigning
) -> None:
    try:
        sigv4_chunked.decode(
            body,
            payload=payload,
            decoded_length=int(headers["x-amz-decoded-content-length"]),
            announced_trailers=headers.get("x-amz-trailer", ""),
            signing=None if payload == sigv4.STREAMING_UNSIGNED_TRAILER else signing,
        )
    except sigv4_chunked.ChunkRejected as rejection:
        status = 403 if rejection.code == "SignatureDoesNotMatch" else 400
        LOGGER.info("refused an aws-chunked body: %s", rejection.message)
        raise _Refused(gate_errors.s3_error(status, rejection.code, rejection.message)) from None


def _send(start_response: StartResponse, answer: ErrorAnswer, method: str) -> list[bytes]:
    start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", list(answer.headers))
    return [] if method == "HEAD" else [answer.body]
