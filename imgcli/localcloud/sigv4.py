"""AWS Signature Version 4, verified for every request the local cloud lets in.

On AWS every request is signed, and a request not signed with valid credentials is
refused; the local cloud does the same (``gate`` for the AWS APIs, ``execute_api`` for
the HTTP API's ``AWS_IAM`` routes), so nobody who cannot read the owner's secret can
drive it, and a client that signs wrongly fails locally as it would on AWS. Valid
credentials are the ones ``identity.Identities`` knows: the owner's key pair
(``secret``), and role sessions, whose session token must come with them.

**Recompute, do not re-implement.** The signature is recomputed with botocore's own
``SigV4Auth`` pieces (header canonicalisation, string to sign, HMAC), fed with the
request exactly as it travelled:

* the path from the raw request URI, never the decoded ``PATH_INFO`` (a key with ``%20``
  would otherwise canonicalise as a space and never match);
* the raw query string;
* exactly the headers named in ``SignedHeaders``, with the values received (``host``
  includes its port: ``127.0.0.1:4599``); every ``x-amz-*`` header sent must be among
  them, as S3 requires ("There were headers present in the request which were not
  signed"): otherwise whoever holds a pre-signed URL could add ``x-amz-copy-source``;
* the timestamp from ``x-amz-date`` (or ``Date``), the credential scope's region (the
  local cloud's only) and service.

**Two canonical forms, and where the second one stops.** Signers disagree on how to
canonicalise an already-encoded URL. botocore (like AWS) removes dot segments and doubled
slashes from the path and percent-encodes it again (``%20`` becomes ``%2520``, as SigV4
specifies for every service but S3), and sorts the query pairs as they appear on the
wire. For S3 the path is used exactly as sent, neither normalised nor encoded again
(botocore's ``S3SigV4Auth``). curl 7.88's ``--aws-sigv4`` uses the path as sent, encoded
once, and the query in the order sent. Both forms are accepted, each as a whole
(botocore's path with botocore's query, curl's with curl's), but outside S3 the two are
not independent: curl's form of ``/a%2520b`` *is* botocore's form of ``/a%20b``, so a
botocore signature for the path ``a b`` would also pass for ``a%20b``. Such a collision
needs a ``%25`` (an encoded ``%``) in the path that curl's form is applied to, so there
curl's form is tried only for paths without one (AWS, which only knows the
double-encoded form, refuses such a curl request too). For S3 both forms share the path,
so only the query order differs. A query form that re-encodes names and values (AWS's
own) is not tried: it would make ``+`` and ``%2B``, which decode differently,
interchangeable, and no signer that matters needs it. Comparisons are constant-time.

**Time.** A header signature is good for 15 minutes either side of the server's clock,
AWS's rule for S3 and the other APIs; API Gateway (``execute-api``) allows 5 minutes, and
so does the HTTP API here. A pre-signed URL (``X-Amz-Signature`` and friends in the
query, as botocore's ``SigV4QueryAuth`` writes them) is dead the second ``X-Amz-Date +
X-Amz-Expires`` passes, and may claim at most seven days.

**The body.** botocore trusts ``x-amz-content-sha256`` when a client sends it instead of
hashing the body; a server must not, so a hash claimed there is checked against the body
(``check_body``). Without the header the body's own hash is signed (curl 7.88 sends none,
even for S3). Only S3 accepts the other forms: ``UNSIGNED-PAYLOAD`` (and a pre-signed S3
URL always means that) and the streaming ``aws-chunked`` forms, whose chunks
``sigv4_chunked`` checks.

A request is checked in steps (``sigv4_claim.read_claim``, then ``authenticate``,
``declared_payload``, ``check_signature``, ``check_body``) so the gate can refuse a
stranger before reading a body; ``verify`` runs them all on a body already read. Each
refusal names its ``sigv4_claim.Failure``; the caller words it in its service's own
error format.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path

from imgcli.localcloud.identity import Identities, Principal
from imgcli.localcloud.sigv4_claim import (
    Claim,
    Failure,
    SignatureRejected,
    SignedRequest,
    parse_timestamp,
    query_pairs,
    read_claim,
)

EXECUTE_API: Final = "execute-api"
S3: Final = "s3"
#: How far a header signature's timestamp may be from the server's clock, as on AWS.
MAX_CLOCK_SKEW: Final = timedelta(minutes=15)
#: API Gateway's tighter window.
EXECUTE_API_CLOCK_SKEW: Final = timedelta(minutes=5)

UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER: Final = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER: Final = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS: Final = frozenset(
    {STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)

UNKNOWN_ACCESS_KEY: Final = "The security token included in the request is invalid."
EXPIRED_TOKEN: Final = "The security token included in the request is expired"  # noqa: S105
SIGNATURE_MISMATCH: Final = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
CONTENT_HASH_MISMATCH: Final = (
    "The provided 'x-amz-content-sha256' header does not match what was computed."
)

#: A literal ``%`` in the path, percent-encoded: see the module docstring.
_ENCODED_PERCENT: Final = "%25"
_SHA256_HEX: Final = re.compile(r"[0-9a-fA-F]{64}")
#: x-amz-* headers that need not be signed: the payload line of the signature covers it.
_UNSIGNED_AMZ_HEADERS: Final = frozenset({"x-amz-content-sha256"})


@dataclass(frozen=True)
class Verified:
    """An accepted request: who signed it, and what chunk signatures chain from."""

    principal: Principal
    claim: Claim
    #: The payload line the signature covers: a SHA-256 or one of the literal forms.
    payload: str
    signing_key: bytes = field(repr=False)


def verify(
    request: SignedRequest,
    body: bytes,
    *,
    identities: Identities,
    region: str,
    service: str,
    now: float,
) -> Verified:
    """Every step for a request whose ``body`` is already read; ``SignatureRejected`` if
    it is not signed for ``service`` by a principal ``identities`` knows."""
    claim = read_claim(request)
    principal = authenticate(claim, identities=identities, region=region, service=service, now=now)
    payload = declared_payload(request, claim) or hashlib.sha256(body).hexdigest()
    signing_key = check_signature(request, claim, principal, payload)
    check_body(payload, body)
    return Verified(principal, claim, payload, signing_key)


def authenticate(
    claim: Claim, *, identities: Identities, region: str, service: str, now: float
) -> Principal:
    """The principal whose key the claim names, if scope, token and time are right."""
    check_scope(claim, region=region, service=service)
    principal = identities.lookup(claim.access_key)
    if principal is None:
        raise SignatureRejected(Failure.UNKNOWN_KEY, UNKNOWN_ACCESS_KEY)
    expected, sent = principal.session_token, claim.session_token
    if expected is not None and sent is None:
        # A temporary key means nothing without its token: AWS knows no such key.
        raise SignatureRejected(Failure.UNKNOWN_KEY, UNKNOWN_ACCESS_KEY)
    if (expected is None) != (sent is None) or not hmac.compare_digest(
        (expected or "").encode(), (sent or "").encode("utf-8", "replace")
    ):
        raise SignatureRejected(Failure.BAD_TOKEN, UNKNOWN_ACCESS_KEY)
    if principal.expires_at is not None and now >= principal.expires_at:
        raise SignatureRejected(Failure.EXPIRED_TOKEN, EXPIRED_TOKEN)
    _check_time(claim, now, clock_skew(service))
    return principal


def clock_skew(service: str) -> timedelta:
    """How far a header signature may be from the server's clock for ``service``."""
    return EXECUTE_API_CLOCK_SKEW if service == EXECUTE_API else MAX_CLOCK_SKEW


def check_scope(claim: Claim, *, region: str, service: str) -> None:
    if claim.scope_date != claim.timestamp[:8]:
        raise SignatureRejected(
            Failure.SCOPE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{claim.scope_date}' != '{claim.timestamp[:8]}', "
            f"from '{claim.timestamp}'.",
        )
    if claim.scope_region != region:
        raise SignatureRejected(
            Failure.SCOPE,
            f"Credential should be scoped to a valid region, not '{claim.scope_region}' "
            f"(the local cloud's region is '{region}').",
        )
    if claim.scope_service != service:
        raise SignatureRejected(
            Failure.SCOPE, f"Credential should be scoped to correct service: '{service}'. "
        )
    if claim.scope_terminator != "aws4_request":
        raise SignatureRejected(
            Failure.SCOPE,
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            f"not '{claim.scope_terminator}'. ",
        )


def declared_payload(request: SignedRequest, claim: Claim) -> str | None:
    """The payload line the request declares without its body being read, or ``None``
    when the signature covers the body's own hash (which then has to be computed)."""
    s3 = claim.scope_service == S3
    if claim.presigned:
        return UNSIGNED_PAYLOAD if s3 else None
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed is None:
        return None
    if _SHA256_HEX.fullmatch(claimed):
        return claimed
    if s3 and claimed == UNSIGNED_PAYLOAD:
        return claimed
    if s3 and claimed in STREAMING_PAYLOADS:
        if "aws-chunked" not in request.headers.get("content-encoding", "").lower():
            raise SignatureRejected(
                Failure.PAYLOAD_FORM,
                f"x-amz-content-sha256 {claimed} needs 'Content-Encoding: aws-chunked'.",
            )
        if not request.headers.get("x-amz-decoded-content-length", "").isdigit():
            raise SignatureRejected(
                Failure.PAYLOAD_FORM,
                f"x-amz-content-sha256 {claimed} needs an x-amz-decoded-content-length header.",
            )
        return claimed
    accepted = "a SHA-256" + (", UNSIGNED-PAYLOAD or a STREAMING-* form" if s3 else "")
    raise SignatureRejected(
        Failure.PAYLOAD_FORM,
        f"x-amz-content-sha256 must be {accepted} for {claim.scope_service}, not {claimed!r}.",
    )


def check_signature(
    request: SignedRequest, claim: Claim, principal: Principal, payload: str
) -> bytes:
    """Recompute the signature over ``payload``; the signing key if it matches."""
    unsigned = sorted(
        name
        for name in request.headers
        if name.startswith("x-amz-")
        and name not in _UNSIGNED_AMZ_HEADERS
        and name not in claim.signed_headers.split(";")
    )
    if unsigned:
        raise SignatureRejected(
            Failure.UNSIGNED_HEADER,
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned),
        )
    signer = SigV4Auth(
        Credentials(principal.access_key_id, principal.secret_access_key),
        claim.scope_service,
        claim.scope_region,
    )
    forms = list(_canonical_requests(signer, request, claim, payload))
    provided = claim.signature.encode("utf-8", "replace")
    # Every form is checked so the time taken does not depend on which one matched.
    key = signing_key(principal.secret_access_key, claim)
    matches = [
        hmac.compare_digest(_sign(signer, key, claim, form).encode(), provided) for form in forms
    ]
    if not any(matches):
        raise SignatureRejected(Failure.MISMATCH, _mismatch_message(signer, claim, forms[0]))
    return key


def check_body(payload: str, body: bytes) -> None:
    """A claimed SHA-256 must be the body's (the literal forms are checked elsewhere)."""
    if _SHA256_HEX.fullmatch(payload):
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(payload.lower().encode(), actual.encode()):
            raise SignatureRejected(Failure.CONTENT_HASH, CONTENT_HASH_MISMATCH)


def signing_key(secret_access_key: str, claim: Claim) -> bytes:
    """SigV4's derived key for the claim's scope (what request and chunk signatures are
    made with)."""
    return _derived_key(
        secret_access_key,
        claim.scope_date,
        claim.scope_region,
        claim.scope_service,
        claim.scope_terminator,
    )


@functools.lru_cache(maxsize=256)
def _derived_key(secret: str, *scope: str) -> bytes:
    # A key lasts a day per service, as the SDKs cache it: four HMACs saved per request.
    key = f"AWS4{secret}".encode()
    for part in scope:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _check_time(claim: Claim, now: float, skew: timedelta) -> None:
    signed_at = parse_timestamp(claim.timestamp)
    current = datetime.fromtimestamp(now, UTC)
    minutes = int(skew.total_seconds() // 60)
    if claim.expires is not None:
        if current >= signed_at + timedelta(seconds=claim.expires):
            raise SignatureRejected(
                Failure.EXPIRED_URL, f"Signature expired: {claim.timestamp} + {claim.expires} s."
            )
    elif signed_at < current - skew:
        raise SignatureRejected(
            Failure.SKEWED,
            f"Signature expired: {claim.timestamp} is now earlier than "
            f"{_stamp(current - skew)} ({_stamp(current)} - {minutes} min.)",
        )
    if signed_at > current + skew:
        raise SignatureRejected(
            Failure.SKEWED,
            f"Signature not yet current: {claim.timestamp} is still later than "
            f"{_stamp(current + skew)} ({_stamp(current)} + {minutes} min.)",
        )


def _stamp(moment: datetime) -> str:
    return moment.strftime(SIGV4_TIMESTAMP)


def _canonical_requests(
    signer: SigV4Auth, request: SignedRequest, claim: Claim, payload: str
) -> Iterator[str]:
    """The canonical request as botocore forms it, then as curl 7.88 does when that cannot
    be mistaken for another request's botocore form (see the module docstring)."""
    headers = _canonical_headers(signer, request.headers, claim.signed_headers)
    raw_path = request.raw_path or "/"
    if claim.scope_service == S3:
        botocore_form = (raw_path, _sorted_query(claim.query))
    else:
        botocore_form = (_double_encoded_path(raw_path), _sorted_query(claim.query))
    curl_form = (raw_path, claim.query)
    forms = [botocore_form]
    if (claim.scope_service == S3 or _ENCODED_PERCENT not in raw_path) and (
        curl_form != botocore_form
    ):
        forms.append(curl_form)
    for path, query in forms:
        yield "\n".join(
            (request.method.upper(), path, query, headers + "\n", claim.signed_headers, payload)
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


def _sorted_query(query: str) -> str:
    """botocore's form: the pairs as sent, sorted by name then value."""
    return "&".join(f"{name}={value}" for name, value in sorted(query_pairs(query)))


def _sign(signer: SigV4Auth, key: bytes, claim: Claim, canonical_request: str) -> str:
    string_to_sign = _string_to_sign(signer, claim, canonical_request)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _string_to_sign(signer: SigV4Auth, claim: Claim, canonical_request: str) -> str:
    string_to_sign: str = signer.string_to_sign(_carrier(claim), canonical_request)
    return string_to_sign


def _carrier(claim: Claim) -> AWSRequest:
    """The only part of a request botocore's string-to-sign reads."""
    carrier = AWSRequest()
    carrier.context["timestamp"] = claim.timestamp
    return carrier


def _mismatch_message(signer: SigV4Auth, claim: Claim, canonical_request: str) -> str:
    """AWS's text, with the canonical forms it shows to help find the difference."""
    return (
        f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
        f"'{canonical_request}'\n\nThe String-to-Sign should have been\n"
        f"'{_string_to_sign(signer, claim, canonical_request)}'\n"
    )
