"""AWS Signature Version 4 checking for the local cloud's HTTP API routes with ``AWS_IAM``.

On AWS an ``AWS_IAM`` route answers 403 to any request not signed with valid credentials;
the local cloud must do the same, or a client that forgets to sign (or signs wrongly)
would work locally and fail on AWS. The local cloud accepts exactly one key pair
(the owner's, from ``imgcli.localcloud.secret``), so "valid" means signed with that secret.

**Recompute, do not re-implement.** The signature is recomputed with botocore's own
``SigV4Auth`` pieces (header canonicalisation, string to sign, key derivation, HMAC), fed
with the request exactly as it travelled:

* the path from the raw request URI, never the decoded ``PATH_INFO`` (a key with ``%20``
  would otherwise canonicalise as a space and never match);
* the raw query string;
* exactly the headers named in ``SignedHeaders``, with the values received (``host``
  includes its port: ``127.0.0.1:4599``);
* the timestamp from ``x-amz-date`` (or ``Date``), the credential scope's region and the
  service ``execute-api``.

**Two canonical forms, and where the second one stops.** Signers disagree on how to
canonicalise an already-encoded URL. botocore (like AWS) removes dot segments and doubled
slashes from the path and percent-encodes it again (``%20`` becomes ``%2520``, as SigV4
specifies for every service but S3), and sorts the query pairs as they appear on the
wire. curl 7.88's ``--aws-sigv4`` uses the path as sent, encoded once, and the query in
the order sent. Both forms are accepted, each as a whole (botocore's path with botocore's
query, curl's with curl's), but the two are not independent: curl's form of
``/a%2520b`` *is* botocore's form of ``/a%20b``, so a botocore signature for the key
``a b`` would also pass for the key ``a%20b``. Such a collision needs a ``%25`` (an
encoded ``%``) in the path that curl's form is applied to, so curl's form is tried only
for paths without one. A curl 7.88 request for a key containing ``%`` is therefore
refused, as AWS (which only knows the double-encoded form) refuses it too. A query form
that re-encodes names and values (AWS's own) is not tried: it would make ``+`` and
``%2B``, which decode differently, interchangeable, and no signer that matters needs it.
The comparison is constant-time.

**The body.** botocore trusts ``x-amz-content-sha256`` when a client sends it instead of
hashing the body; a server must not, so the header is checked against the body here
(``UNSIGNED-PAYLOAD`` fails that check too: the body is always signed here).

**Also accepted: pre-signed URLs** (``X-Amz-Signature`` and friends in the query, as
botocore's ``SigV4QueryAuth`` writes them), valid for their ``X-Amz-Expires``.

**Refused**, with API Gateway's 403 messages: no signature at all (HTTP API says
``Forbidden``), an incomplete ``Authorization`` header, a credential scoped to another
date, region or service, an access key other than the local one, any session token (the
local key has none, so a token means foreign credentials), a timestamp more than five
minutes from the server's clock, and a signature that does not match.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import quote, unquote

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path

SERVICE: Final = "execute-api"
ALGORITHM: Final = "AWS4-HMAC-SHA256"
#: How far a request's timestamp may be from the server's clock, as on AWS.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
#: The longest validity a pre-signed URL may claim (seven days, as on AWS).
MAX_PRESIGNED_EXPIRY: Final = 7 * 24 * 3600

MISSING_AUTHENTICATION: Final = "Forbidden"
UNKNOWN_ACCESS_KEY: Final = "The security token included in the request is invalid."
SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
CONTENT_HASH_MISMATCH: Final = (
    "The provided 'x-amz-content-sha256' header does not match what was computed."
)

_PRESIGN_SIGNATURE: Final = "X-Amz-Signature"
#: A literal ``%`` in the path, percent-encoded: see the module docstring.
_ENCODED_PERCENT: Final = "%25"


@dataclass(frozen=True)
class SignedRequest:
    """One HTTP request as received: what a signature can cover."""

    method: str
    #: The path exactly as the client sent it, still percent-encoded.
    raw_path: str
    #: The query string exactly as sent, without the ``?``.
    raw_query: str
    #: Header values by lower-case name; repeated headers joined with ``,``.
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Caller:
    """Who signed an accepted request."""

    access_key: str


class SignatureRejected(Exception):
    """The request is not signed acceptably; ``message`` is API Gateway's 403 text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class _Claim:
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
    session_token: str | None = None


def verify(
    request: SignedRequest,
    *,
    credentials: tuple[str, str],
    region: str,
    now: float,
    service: str = SERVICE,
) -> Caller:
    """The caller if ``request`` is signed with ``credentials``; else ``SignatureRejected``."""
    access_key, secret_key = credentials
    claim = _claim(request)
    _check_scope(claim, region=region, service=service)
    if not hmac.compare_digest(claim.access_key.encode(), access_key.encode()):
        raise SignatureRejected(UNKNOWN_ACCESS_KEY)
    if claim.session_token is not None:
        raise SignatureRejected(UNKNOWN_ACCESS_KEY)
    _check_time(claim, now)
    payload_hash = _payload_hash(request)
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    forms = list(_canonical_requests(signer, request, claim, payload_hash))
    provided = claim.signature.encode("utf-8", "replace")
    # Every form is checked so the time taken does not depend on which one matched.
    matches = [hmac.compare_digest(_sign(signer, claim, form).encode(), provided) for form in forms]
    if not any(matches):
        raise SignatureRejected(_mismatch_message(signer, claim, forms[0]))
    return Caller(access_key=claim.access_key)


def _claim(request: SignedRequest) -> _Claim:
    authorization = request.headers.get("authorization")
    if authorization is not None:
        return _header_claim(request, authorization)
    if any(unquote(name) == _PRESIGN_SIGNATURE for name, _ in _query_pairs(request.raw_query)):
        return _query_claim(request)
    raise SignatureRejected(MISSING_AUTHENTICATION)


def _header_claim(request: SignedRequest, authorization: str) -> _Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected(
            f"Authorization header requires the '{ALGORITHM}' algorithm, not {algorithm!r}."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals:
            raise SignatureRejected(
                "Invalid key=value pair (missing equal-sign) in Authorization header."
            )
        fields[name] = value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise SignatureRejected(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )
    return _claim_from(
        credential=fields["Credential"],
        signed_headers=fields["SignedHeaders"],
        signature=fields["Signature"],
        timestamp=_header_timestamp(request.headers),
        query=request.raw_query,
        session_token=request.headers.get("x-amz-security-token"),
    )


def _query_claim(request: SignedRequest) -> _Claim:
    pairs = _query_pairs(request.raw_query)
    fields = {unquote(name): unquote(value) for name, value in pairs}
    missing = [
        name
        for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders")
        if name not in fields
    ]
    if missing:
        raise SignatureRejected(
            " ".join(f"AWS query-string parameters must include '{name}'." for name in missing)
        )
    if fields["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureRejected(f"X-Amz-Algorithm only supports '{ALGORITHM}'.")
    expires = fields.get("X-Amz-Expires", "")
    if not expires.isdigit() or not 0 < int(expires) <= MAX_PRESIGNED_EXPIRY:
        raise SignatureRejected(
            f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGNED_EXPIRY}."
        )
    return _claim_from(
        credential=fields["X-Amz-Credential"],
        signed_headers=fields["X-Amz-SignedHeaders"],
        signature=fields[_PRESIGN_SIGNATURE],
        timestamp=_iso_basic(fields["X-Amz-Date"]),
        query="&".join(
            f"{name}={value}" if value is not None else name
            for name, value in _raw_query_items(request.raw_query)
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
) -> _Claim:
    scope = credential.split("/")
    if len(scope) != 5:
        raise SignatureRejected(
            f"Credential should be scoped to a valid region, service and date: {credential!r}."
        )
    if "host" not in signed_headers.split(";"):
        raise SignatureRejected("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    access_key, scope_date, scope_region, scope_service, terminator = scope
    return _Claim(
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
            raise SignatureRejected(f"Invalid date header: {headers['date']!r}.") from None
        return parsed.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
    raise SignatureRejected(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


def _iso_basic(text: str) -> str:
    """``text`` if it is a SigV4 timestamp (``20250314T101501Z``); else the request fails."""
    try:
        datetime.strptime(text, SIGV4_TIMESTAMP)
    except ValueError:
        raise SignatureRejected(
            f"Date must be in ISO-8601 'basic format'. Got {text!r}. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None
    return text


def _check_scope(claim: _Claim, *, region: str, service: str) -> None:
    if claim.scope_date != claim.timestamp[:8]:
        raise SignatureRejected(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{claim.scope_date}' != '{claim.timestamp[:8]}', "
            f"from '{claim.timestamp}'."
        )
    if claim.scope_region != region:
        raise SignatureRejected(
            f"Credential should be scoped to a valid region, not '{claim.scope_region}'. "
        )
    if claim.scope_service != service:
        raise SignatureRejected(f"Credential should be scoped to correct service: '{service}'. ")
    if claim.scope_terminator != "aws4_request":
        raise SignatureRejected(
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{claim.scope_terminator}'. "
        )


def _check_time(claim: _Claim, now: float) -> None:
    signed_at = datetime.strptime(claim.timestamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now, UTC)
    if claim.expires is not None:
        if current > signed_at + timedelta(seconds=claim.expires):
            raise SignatureRejected(f"Signature expired: {claim.timestamp} + {claim.expires} s.")
    elif signed_at < current - MAX_CLOCK_SKEW:
        raise SignatureRejected(
            f"Signature expired: {claim.timestamp} is now earlier than "
            f"{_stamp(current - MAX_CLOCK_SKEW)} ({_stamp(current)} - 5 min.)"
        )
    if signed_at > current + MAX_CLOCK_SKEW:
        raise SignatureRejected(
            f"Signature not yet current: {claim.timestamp} is still later than "
            f"{_stamp(current + MAX_CLOCK_SKEW)} ({_stamp(current)} + 5 min.)"
        )


def _stamp(moment: datetime) -> str:
    return moment.strftime(SIGV4_TIMESTAMP)


def _payload_hash(request: SignedRequest) -> str:
    """The body's SHA-256, after checking any ``x-amz-content-sha256`` claim against it."""
    actual = hashlib.sha256(request.body).hexdigest()
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed is not None and not hmac.compare_digest(claimed.lower().encode(), actual.encode()):
        raise SignatureRejected(CONTENT_HASH_MISMATCH)
    return actual if claimed is None else claimed


def _canonical_requests(
    signer: SigV4Auth, request: SignedRequest, claim: _Claim, payload_hash: str
) -> Iterator[str]:
    """The canonical request as botocore forms it, then as curl 7.88 does when that cannot
    be mistaken for another request's botocore form (see the module docstring)."""
    headers = _canonical_headers(signer, request.headers, claim.signed_headers)
    botocore_form = (_double_encoded_path(request.raw_path), _sorted_query(claim.query))
    curl_form = (request.raw_path or "/", claim.query)
    forms = [botocore_form]
    if _ENCODED_PERCENT not in request.raw_path and curl_form != botocore_form:
        forms.append(curl_form)
    for path, query in forms:
        yield "\n".join(
            (
                request.method.upper(),
                path,
                query,
                headers + "\n",
                claim.signed_headers,
                payload_hash,
            )
        )


def _canonical_headers(signer: SigV4Auth, headers: Mapping[str, str], signed_headers: str) -> str:
    """Exactly the signed headers, canonicalised by botocore (a missing one stays empty,
    so the signature cannot match)."""
    selected = HTTPHeaders()
    for name in signed_headers.split(";"):
        selected[name] = headers.get(name, "")
    canonical: str = signer.canonical_headers(selected)
    return canonical


def _double_encoded_path(raw_path: str) -> str:
    """botocore's (and SigV4's) canonical path: normalised, then percent-encoded again."""
    return quote(normalize_url_path(raw_path), safe="/~")


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return [(name, value or "") for name, value in _raw_query_items(raw_query)]


def _raw_query_items(raw_query: str) -> list[tuple[str, str | None]]:
    """``name=value`` pairs as sent (``value`` is ``None`` where there was no ``=``)."""
    items: list[tuple[str, str | None]] = []
    for part in raw_query.split("&") if raw_query else ():
        name, equals, value = part.partition("=")
        items.append((name, value if equals else None))
    return items


def _sorted_query(query: str) -> str:
    """botocore's form: the pairs as sent, sorted by name then value."""
    return "&".join(f"{name}={value}" for name, value in sorted(_query_pairs(query)))


def _sign(signer: SigV4Auth, claim: _Claim, canonical_request: str) -> str:
    signature: str = signer.signature(
        _string_to_sign(signer, claim, canonical_request), _carrier(claim)
    )
    return signature


def _string_to_sign(signer: SigV4Auth, claim: _Claim, canonical_request: str) -> str:
    string_to_sign: str = signer.string_to_sign(_carrier(claim), canonical_request)
    return string_to_sign


def _carrier(claim: _Claim) -> AWSRequest:
    """The only part of a request botocore's string-to-sign and key derivation read."""
    carrier = AWSRequest()
    carrier.context["timestamp"] = claim.timestamp
    return carrier


def _mismatch_message(signer: SigV4Auth, claim: _Claim, canonical_request: str) -> str:
    """API Gateway's text, with the canonical forms it shows to help find the difference."""
    return (
        f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
        f"'{canonical_request}'\n\nThe String-to-Sign should have been\n"
        f"'{_string_to_sign(signer, claim, canonical_request)}'\n"
    )
