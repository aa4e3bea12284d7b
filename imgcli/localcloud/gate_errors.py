"""The gate's refusals, each in the error format of the service the request was for.

A client learns why it was refused from the error code its SDK raises (botocore's
``ClientError.response["Error"]["Code"]``), and the SDK finds that code only where its
service's protocol puts it. So a refusal is written in one of four formats, picked from
the service in the request's credential scope, or from the request's shape when it has
none (an unsigned request):

* **S3** (REST-XML): ``<Error><Code>...</Code><Message>...</Message></Error>``, with S3's
  codes and statuses (``AccessDenied`` 403 for an unsigned request or an expired
  pre-signed URL, ``SignatureDoesNotMatch`` 403, ``InvalidAccessKeyId`` 403,
  ``RequestTimeTooSkewed`` 403, ``ExpiredToken`` 400, ``InvalidToken`` 400...).
* **JSON** (DynamoDB, CloudWatch Logs, SQS; any request with ``X-Amz-Target``):
  ``{"__type": "...", "message": "..."}``, status 400 as DynamoDB answers
  (``UnrecognizedClientException``, ``InvalidSignatureException``,
  ``MissingAuthenticationTokenException``, ``ExpiredTokenException``).
* **REST-JSON** (Lambda, API Gateway): the same body, the code also in
  ``x-amzn-ErrorType`` (where botocore looks first), status 403.
* **Query** (IAM, STS, SQS's older form; any form-encoded ``Action=``):
  ``<ErrorResponse><Error><Type>Sender</Type><Code>...``, status 403
  (``InvalidClientTokenId``, ``SignatureDoesNotMatch``, ``MissingAuthenticationToken``,
  ``ExpiredToken``).

Refusals that are not about the signature (a body over its limit, S3's ``KeyTooLongError``
and ``EntityTooLarge``) use the same formats with their own codes, and so do the gate's
own (another ``Host``, a cross-origin request, a path the gate never routes): botocore's
Query parser (IAM, STS) raises ``ResponseParserError`` on any body that is not its XML,
which imgcli could only report as an internal error (exit 70).

**A credential scoped to another region** (:func:`wrong_region`) is answered as AWS
answers it. S3 says ``AuthorizationHeaderMalformed`` (``AuthorizationQueryParametersError``
for a pre-signed URL), 400, "the region 'X' is wrong; expecting 'Y'", with the right
region in a ``<Region>`` element and the ``x-amz-bucket-region`` header: botocore reads
either and sends the request again signed for that region, so an S3 client configured
for another region works, as it does against a bucket on AWS (a HEAD has no body, hence
the header). The other services refuse with "Credential should be scoped to a valid
region": ``InvalidSignatureException`` (JSON, REST-JSON) or ``SignatureDoesNotMatch``
(Query), the local cloud's region named after AWS's words.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final
from xml.sax.saxutils import escape

from imgcli.localcloud.sigv4_claim import Failure


class Protocol(Enum):
    S3 = "s3"
    JSON = "json"
    REST_JSON = "rest-json"
    QUERY = "query"


#: Services whose requests carry no shape that says their protocol.
_SERVICE_PROTOCOLS: Final[Mapping[str, Protocol]] = {
    "s3": Protocol.S3,
    "dynamodb": Protocol.JSON,
    "logs": Protocol.JSON,
    "sqs": Protocol.JSON,
    "iam": Protocol.QUERY,
    "sts": Protocol.QUERY,
    "lambda": Protocol.REST_JSON,
    "apigateway": Protocol.REST_JSON,
}
_STATUS: Final[Mapping[Protocol, int]] = {
    Protocol.JSON: 400,
    Protocol.REST_JSON: 403,
    Protocol.QUERY: 403,
}

#: (status, code, message or None for the verifier's own words) per failure, for S3.
_S3_FAILURES: Final[Mapping[Failure, tuple[int, str, str | None]]] = {
    Failure.MISSING: (403, "AccessDenied", "Access Denied"),
    Failure.MALFORMED: (400, "AuthorizationHeaderMalformed", None),
    Failure.SCOPE: (400, "AuthorizationHeaderMalformed", None),
    Failure.UNKNOWN_KEY: (
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    Failure.BAD_TOKEN: (
        400,
        "InvalidToken",
        "The provided token is malformed or otherwise invalid.",
    ),
    Failure.EXPIRED_TOKEN: (400, "ExpiredToken", "The provided token has expired."),
    Failure.SKEWED: (
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    ),
    Failure.EXPIRED_URL: (403, "AccessDenied", "Request has expired"),
    Failure.MISMATCH: (403, "SignatureDoesNotMatch", None),
    Failure.CONTENT_HASH: (
        400,
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    ),
    Failure.PAYLOAD_FORM: (400, "InvalidRequest", None),
    Failure.UNSIGNED_HEADER: (403, "AccessDenied", None),
}
#: The code per failure for JSON and REST-JSON services (messages: the verifier's own).
_JSON_CODES: Final[Mapping[Failure, str]] = {
    Failure.MISSING: "MissingAuthenticationTokenException",
    Failure.MALFORMED: "IncompleteSignatureException",
    Failure.SCOPE: "InvalidSignatureException",
    Failure.UNKNOWN_KEY: "UnrecognizedClientException",
    Failure.BAD_TOKEN: "UnrecognizedClientException",
    Failure.EXPIRED_TOKEN: "ExpiredTokenException",
    Failure.SKEWED: "InvalidSignatureException",
    Failure.EXPIRED_URL: "InvalidSignatureException",
    Failure.MISMATCH: "InvalidSignatureException",
    Failure.CONTENT_HASH: "InvalidSignatureException",
    Failure.PAYLOAD_FORM: "InvalidSignatureException",
    Failure.UNSIGNED_HEADER: "InvalidSignatureException",
}
_QUERY_CODES: Final[Mapping[Failure, str]] = {
    Failure.MISSING: "MissingAuthenticationToken",
    Failure.MALFORMED: "IncompleteSignature",
    Failure.SCOPE: "SignatureDoesNotMatch",
    Failure.UNKNOWN_KEY: "InvalidClientTokenId",
    Failure.BAD_TOKEN: "InvalidClientTokenId",
    Failure.EXPIRED_TOKEN: "ExpiredToken",
    Failure.SKEWED: "SignatureDoesNotMatch",
    Failure.EXPIRED_URL: "SignatureDoesNotMatch",
    Failure.MISMATCH: "SignatureDoesNotMatch",
    Failure.CONTENT_HASH: "SignatureDoesNotMatch",
    Failure.PAYLOAD_FORM: "SignatureDoesNotMatch",
    Failure.UNSIGNED_HEADER: "SignatureDoesNotMatch",
}
_MISSING_TOKEN_MESSAGE: Final = "Request is missing Authentication Token"  # noqa: S105


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def protocol_of(
    service: str | None, headers: Mapping[str, str], raw_path: str, raw_query: str
) -> Protocol:
    """The error format for a request to ``service`` (``None``: unsigned) of this shape."""
    if service == "s3":
        return Protocol.S3
    if "x-amz-target" in headers:
        return Protocol.JSON
    content_type = headers.get("content-type", "").lower()
    if content_type.startswith("application/x-www-form-urlencoded") or any(
        part.startswith("Action=") for part in raw_query.split("&")
    ):
        return Protocol.QUERY
    if service is not None and service in _SERVICE_PROTOCOLS:
        return _SERVICE_PROTOCOLS[service]
    # REST-JSON APIs version their paths: /2015-03-31/functions, /v2/apis.
    if raw_path.startswith(("/20", "/v2/")) or service is not None:
        return Protocol.REST_JSON
    return Protocol.S3


def signature_refused(protocol: Protocol, failure: Failure, message: str) -> ErrorAnswer:
    """A refusal for a request whose signature failed with ``failure``."""
    if protocol is Protocol.S3:
        status, code, fixed = _S3_FAILURES[failure]
        return s3_error(status, code, fixed or message)
    if failure is Failure.MISSING:
        message = _MISSING_TOKEN_MESSAGE
    if protocol is Protocol.QUERY:
        return query_error(_STATUS[protocol], _QUERY_CODES[failure], message)
    return json_error(protocol, _STATUS[protocol], _JSON_CODES[failure], message)


def refused(protocol: Protocol, status: int, code: str, message: str) -> ErrorAnswer:
    """Any other refusal, with its own status and code, in the service's format."""
    if protocol is Protocol.S3:
        return s3_error(status, code, message)
    if protocol is Protocol.QUERY:
        return query_error(status, code, message)
    return json_error(protocol, status, code, message)


def wrong_region(protocol: Protocol, claimed: str, region: str, *, presigned: bool) -> ErrorAnswer:
    """The refusal of a credential scoped to ``claimed`` by a cloud in ``region``."""
    if protocol is Protocol.S3:
        if presigned:
            code = "AuthorizationQueryParametersError"
            message = f"Error parsing the X-Amz-Credential parameter; the region '{claimed}'"
        else:
            code = "AuthorizationHeaderMalformed"
            message = f"The authorization header is malformed; the region '{claimed}'"
        return s3_error(400, code, f"{message} is wrong; expecting '{region}'", region=region)
    message = (
        f"Credential should be scoped to a valid region, not '{claimed}'. "
        f"The local cloud's region is '{region}'."
    )
    return signature_refused(protocol, Failure.SCOPE, message)


#: The gate's own refusals (not about a signature): the code per status.
_GATE_CODES: Final[Mapping[int, str]] = {400: "InvalidURI", 403: "AccessDenied", 404: "NotFound"}


def gate_refused(protocol: Protocol, status: int, message: str) -> ErrorAnswer:
    """A request the gate answers itself (another host, a path it never routes), in the
    format of the service the request looks meant for."""
    code = _GATE_CODES.get(status, "InvalidRequest")
    if protocol in (Protocol.JSON, Protocol.REST_JSON) and code == "AccessDenied":
        code = "AccessDeniedException"
    return refused(protocol, status, code, message)


def s3_error(status: int, code: str, message: str, *, region: str | None = None) -> ErrorAnswer:
    """S3's ``<Error>``; ``region`` adds the ``<Region>`` element and the
    ``x-amz-bucket-region`` header that S3 sends when a request went to the wrong region."""
    request_id = _request_id()
    region_element = "" if region is None else f"<Region>{escape(region)}</Region>"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"{region_element}<RequestId>{request_id}</RequestId></Error>"
    ).encode()
    answer = _answer(status, "application/xml", body, request_id)
    if region is None:
        return answer
    return ErrorAnswer(answer.status, (*answer.headers, ("x-amz-bucket-region", region)), body)


def query_error(status: int, code: str, message: str) -> ErrorAnswer:
    request_id = _request_id()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return _answer(status, "text/xml", body, request_id)


def json_error(protocol: Protocol, status: int, code: str, message: str) -> ErrorAnswer:
    request_id = _request_id()
    body = json.dumps({"__type": code, "message": message}).encode()
    content_type = (
        "application/json" if protocol is Protocol.REST_JSON else ("application/x-amz-json-1.0")
    )
    answer = _answer(status, content_type, body, request_id)
    if protocol is Protocol.REST_JSON:
        return ErrorAnswer(answer.status, (*answer.headers, ("x-amzn-ErrorType", code)), body)
    return answer


def plain_error(status: int, message: str) -> ErrorAnswer:
    """A refusal that belongs to no AWS service (a bad Host, moto's own API)."""
    body = json.dumps({"message": message}).encode()
    return _answer(status, "application/json", body, _request_id())


def _answer(status: int, content_type: str, body: bytes, request_id: str) -> ErrorAnswer:
    return ErrorAnswer(
        status,
        (
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ),
        body,
    )


def _request_id() -> str:
    return secrets.token_hex(8).upper()
