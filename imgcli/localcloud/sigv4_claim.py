"""What a request says about its SigV4 signature, read from its header or its query.

The first step of checking a signature (``sigv4`` does the rest): the ``Authorization``
header (``AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/<service>/aws4_request,
SignedHeaders=..., Signature=...`` with ``x-amz-date`` or ``Date``) or a pre-signed URL's
query (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-SignedHeaders``, ``X-Amz-Signature``, and ``X-Amz-Security-Token`` for a role
session), as a :class:`Claim`. Nothing here is trusted yet.

Refused here, as AWS refuses them: a request with both forms, a header whose fields are
incomplete or repeated, a credential not of five ``/``-separated parts or naming no
plausible service, ``host`` not among the signed headers, a timestamp not in ISO-8601
basic form, a pre-signed URL claiming more than seven days, and Signature Version 2
(``AWS key:signature``, ``AWSAccessKeyId=``). The header's
``Credential`` must come first: moto picks the service it dispatches to from the first
field, and that must be the one verified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Final
from urllib.parse import unquote

from botocore.auth import SIGV4_TIMESTAMP

ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: The longest validity a pre-signed URL may claim (seven days, as on AWS).
MAX_PRESIGNED_EXPIRY: Final = 7 * 24 * 3600
MISSING_AUTHENTICATION: Final = "Forbidden"
SIGNATURE_VERSION_2: Final = (
    "The local cloud accepts AWS Signature Version 4 only, as S3 does for new buckets; "
    "sign with SigV4 (botocore: Config(signature_version='s3v4'), which boto3 does not "
    "use by default for pre-signed S3 URLs)."
)

_PRESIGN_SIGNATURE: Final = "X-Amz-Signature"
_SERVICE_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]*")
_TIMESTAMP: Final = re.compile(r"[0-9]{8}T[0-9]{6}Z")


class Failure(Enum):
    """Why a request's signature was refused; each service words it its own way."""

    #: No signature at all.
    MISSING = "missing"
    #: An incomplete or contradictory Authorization header or pre-signed query.
    MALFORMED = "malformed"
    #: A credential scoped to another date, region or service, or to no service we serve.
    SCOPE = "scope"
    UNKNOWN_KEY = "unknown-key"
    #: A session token foreign, or sent with a key that has none.
    BAD_TOKEN = "bad-token"  # noqa: S105 - a name, not a token
    EXPIRED_TOKEN = "expired-token"  # noqa: S105 - a name, not a token
    #: A header signature more than the allowed skew from the server's clock.
    SKEWED = "skewed"
    #: A pre-signed URL past its ``X-Amz-Expires``.
    EXPIRED_URL = "expired-url"
    MISMATCH = "mismatch"
    #: ``x-amz-content-sha256`` is not the body's hash.
    CONTENT_HASH = "content-hash"
    #: A payload form this service does not accept, or a signed request unsafe to serve.
    PAYLOAD_FORM = "payload-form"
    #: An ``x-amz-*`` header sent but not signed, or unsigned parts of a pre-signed
    #: request that would make it another request.
    UNSIGNED_HEADER = "unsigned-header"


class SignatureRejected(Exception):
    """The request is not signed acceptably: why, and API Gateway's words for it."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    """One HTTP request as received, but its body: what a signature can cover."""

    method: str
    #: The path exactly as the client sent it, still percent-encoded.
    raw_path: str
    #: The query string exactly as sent, without the ``?``.
    raw_query: str
    #: Header values by lower-case name; repeated headers joined with ``,``.
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Claim:
    """What the client says it signed, from the ``Authorization`` header or the query."""

    access_key: str
    scope_date: str
    scope_region: str
    scope_service: str
    scope_terminator: str
    signed_headers: str
    signature: str
    #: ``YYYYMMDDTHHMMSSZ``, the timestamp in the string to sign.
    timestamp: str
    #: The query the signature covers (a pre-signed URL's minus its signature).
    query: str
    #: Seconds a pre-signed URL stays valid; ``None`` for a signed header.
    expires: int | None = None
    session_token: str | None = field(default=None, repr=False)

    @property
    def presigned(self) -> bool:
        return self.expires is not None

    @property
    def scope(self) -> str:
        """``20250314/us-east-1/s3/aws4_request``, as in the string to sign."""
        return "/".join(
            (self.scope_date, self.scope_region, self.scope_service, self.scope_terminator)
        )


def read_claim(request: SignedRequest) -> Claim:
    """What the request says about its signature; ``MISSING`` when it says nothing."""
    authorization = request.headers.get("authorization")
    presigned = any(
        unquote(name) == _PRESIGN_SIGNATURE for name, _ in query_pairs(request.raw_query)
    )
    if authorization is not None and presigned:
        raise SignatureRejected(
            Failure.MALFORMED,
            "Only one auth mechanism allowed; only the X-Amz-Signature query "
            "parameter or the Authorization header should be specified.",
        )
    if authorization is not None:
        return _header_claim(request, authorization)
    if presigned:
        return _query_claim(request)
    if any(unquote(name) == "AWSAccessKeyId" for name, _ in query_pairs(request.raw_query)):
        raise SignatureRejected(Failure.MALFORMED, SIGNATURE_VERSION_2)
    raise SignatureRejected(Failure.MISSING, MISSING_AUTHENTICATION)


def _header_claim(request: SignedRequest, authorization: str) -> Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == "AWS":
        raise SignatureRejected(Failure.MALFORMED, SIGNATURE_VERSION_2)
    if algorithm != ALGORITHM:
        raise SignatureRejected(
            Failure.MALFORMED,
            f"Authorization header requires the '{ALGORITHM}' algorithm, not {algorithm!r}.",
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals:
            raise SignatureRejected(
                Failure.MALFORMED,
                "Invalid key=value pair (missing equal-sign) in Authorization header.",
            )
        if name in fields:
            raise SignatureRejected(
                Failure.MALFORMED, f"Authorization header repeats the '{name}' parameter."
            )
        fields[name] = value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise SignatureRejected(
            Failure.MALFORMED,
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing),
        )
    if next(iter(fields)) != "Credential":
        # moto picks the service from the first field; it must be the one verified here.
        raise SignatureRejected(
            Failure.MALFORMED, "Authorization header must start with its 'Credential' parameter."
        )
    return _claim_from(
        credential=fields["Credential"],
        signed_headers=fields["SignedHeaders"],
        signature=fields["Signature"],
        timestamp=_header_timestamp(request.headers),
        query=request.raw_query,
        session_token=request.headers.get("x-amz-security-token"),
    )


def _query_claim(request: SignedRequest) -> Claim:
    pairs = query_pairs(request.raw_query)
    names = [unquote(name) for name, _ in pairs]
    fields = {unquote(name): unquote(value) for name, value in pairs}
    repeated = sorted(
        {name for name in names if name.startswith("X-Amz-") and names.count(name) > 1}
    )
    if repeated:
        raise SignatureRejected(
            Failure.MALFORMED, f"AWS query-string parameters repeat {', '.join(repeated)}."
        )
    missing = [
        name
        for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders")
        if name not in fields
    ]
    if missing:
        raise SignatureRejected(
            Failure.MALFORMED,
            " ".join(f"AWS query-string parameters must include '{name}'." for name in missing),
        )
    if fields["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureRejected(Failure.MALFORMED, f"X-Amz-Algorithm only supports '{ALGORITHM}'.")
    expires = fields.get("X-Amz-Expires", "")
    if not expires.isdigit() or not 0 < int(expires) <= MAX_PRESIGNED_EXPIRY:
        raise SignatureRejected(
            Failure.MALFORMED,
            f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGNED_EXPIRY}.",
        )
    return _claim_from(
        credential=fields["X-Amz-Credential"],
        signed_headers=fields["X-Amz-SignedHeaders"],
        signature=fields[_PRESIGN_SIGNATURE],
        timestamp=_iso_basic(fields["X-Amz-Date"]),
        query="&".join(
            f"{name}={value}" if value is not None else name
            for name, value in raw_query_items(request.raw_query)
            if unquote(name) != _PRESIGN_SIGNATURE
        ),
        expires=int(expires),
        session_token=fields.get("X-Amz-Security-Token"),
    )


def _claim_from(
    *,
    credential: str,
    signed_headers: str,
    signature: str,
    timestamp: str,
    query: str,
    expires: int | None = None,
    session_token: str | None = None,
) -> Claim:
    scope = credential.split("/")
    if len(scope) != 5 or not _SERVICE_NAME.fullmatch(scope[3]):
        raise SignatureRejected(
            Failure.MALFORMED,
            f"Credential should be scoped to a valid region, service and date: {credential!r}.",
        )
    if "host" not in signed_headers.split(";"):
        raise SignatureRejected(
            Failure.MALFORMED, "'Host' must be a 'SignedHeader' in the AWS Authorization."
        )
    access_key, scope_date, scope_region, scope_service, terminator = scope
    return Claim(
        access_key=access_key,
        scope_date=scope_date,
        scope_region=scope_region,
        scope_service=scope_service,
        scope_terminator=terminator,
        signed_headers=signed_headers,
        signature=signature,
        timestamp=timestamp,
        query=query,
        expires=expires,
        session_token=session_token,
    )


def _header_timestamp(headers: Mapping[str, str]) -> str:
    """``x-amz-date`` as SigV4 uses it, else the ``Date`` header in the same form."""
    if "x-amz-date" in headers:
        return _iso_basic(headers["x-amz-date"])
    if "date" in headers:
        try:
            parsed = parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError):
            raise SignatureRejected(
                Failure.MALFORMED, f"Invalid date header: {headers['date']!r}."
            ) from None
        if parsed.tzinfo is None:
            raise SignatureRejected(Failure.MALFORMED, f"Invalid date header: {headers['date']!r}.")
        return parsed.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
    raise SignatureRejected(
        Failure.MALFORMED,
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def _iso_basic(text: str) -> str:
    """``text`` if it is a SigV4 timestamp (``20250314T101501Z``); else the request fails."""
    try:
        parse_timestamp(text)
    except ValueError:
        raise SignatureRejected(
            Failure.MALFORMED,
            f"Date must be in ISO-8601 'basic format'. Got {text!r}. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
        ) from None
    return text


def parse_timestamp(text: str) -> datetime:
    """The moment a SigV4 timestamp names; ``ValueError`` if it is not one. (``strptime``
    would do, at ten times the cost, on every request.)"""
    if not _TIMESTAMP.fullmatch(text):
        raise ValueError(f"not a SigV4 timestamp: {text!r}")
    return datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[9:11]),
        int(text[11:13]),
        int(text[13:15]),
        tzinfo=UTC,
    )


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return [(name, value or "") for name, value in raw_query_items(raw_query)]


def raw_query_items(raw_query: str) -> list[tuple[str, str | None]]:
    """``name=value`` pairs as sent (``value`` is ``None`` where there was no ``=``)."""
    items: list[tuple[str, str | None]] = []
    for part in raw_query.split("&") if raw_query else ():
        name, equals, value = part.partition("=")
        items.append((name, value if equals else None))
    return items
