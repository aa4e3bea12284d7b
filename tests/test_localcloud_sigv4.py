"""SigV4 verification for every service, without a server (``sigv4``, ``sigv4_claim``).

AWS's own published examples (S3's "Examples of signature calculations", secret
``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY`` at 2013-05-24T00:00:00Z) pin the canonical
forms; botocore's signers make the rest, at the real time, with the verifier's clock moved.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imgcli.localcloud import sigv4
from imgcli.localcloud.gate import FixedIdentities
from imgcli.localcloud.identity import Principal
from imgcli.localcloud.sigv4_claim import Failure, SignatureRejected, SignedRequest, read_claim

REGION = "us-east-1"
AWS_KEY, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TIME = 1369353600.0  # 2013-05-24T00:00:00Z, the time of AWS's examples
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
KEY, SECRET = "LKIATESTSIGV40000000", "sigv4-test-secret"
ROLE = Principal("ASIATESTSIGV4ROLE000", "role-secret", "role-token", "arn:aws:iam::1:role/r", 2e9)
IDENTITIES = FixedIdentities([Principal(AWS_KEY, AWS_SECRET), Principal(KEY, SECRET), ROLE])


def verify(request: SignedRequest, body: bytes = b"", **options: Any) -> sigv4.Verified:
    settings: dict[str, Any] = {
        "identities": IDENTITIES,
        "region": REGION,
        "service": "s3",
        "now": time.time(),
        **options,
    }
    return sigv4.verify(request, body, **settings)


def refusal(request: SignedRequest, body: bytes = b"", **options: Any) -> Failure:
    with pytest.raises(SignatureRejected) as refused:
        verify(request, body, **options)
    return refused.value.failure


def as_received(request: AWSRequest) -> SignedRequest:
    parts = urlsplit(request.url)
    # The Host header is added when the request is sent (botocore signed it from the URL).
    headers = {"host": parts.netloc, **{k.lower(): v for k, v in request.headers.items()}}
    return SignedRequest(request.method, parts.path, parts.query, headers)


def botocore_signed(
    method: str = "GET",
    url: str = "http://127.0.0.1:4599/bucket/key",
    *,
    service: str = "s3",
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> SignedRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    # S3's signer replaces a payload hash given in the headers; the plain one signs it.
    claims_payload = "X-Amz-Content-SHA256" in (headers or {})
    signer = S3SigV4Auth if service == "s3" and not claims_payload else SigV4Auth
    signer(Credentials(key, secret, token), service, REGION).add_auth(request)
    return as_received(request)


def presigned(url: str, expires: int, *, service: str = "s3") -> SignedRequest:
    request = AWSRequest(method="GET", url=url)
    S3SigV4QueryAuth(Credentials(KEY, SECRET), service, REGION, expires=expires).add_auth(request)
    return as_received(request)


# --- AWS's published examples ----------------------------------------------------------


def test_aws_get_object_example_is_accepted_and_its_principal_returned() -> None:
    request = SignedRequest(
        "GET",
        "/test.txt",
        "",
        {
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "authorization": f"AWS4-HMAC-SHA256 Credential={AWS_KEY}/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
    )

    assert verify(request, now=AWS_TIME).principal.access_key_id == AWS_KEY
    wrong = FixedIdentities([Principal(AWS_KEY, "not-the-secret")])
    assert refusal(request, now=AWS_TIME, identities=wrong) is Failure.MISMATCH


def test_aws_put_object_example_checks_the_body_against_its_claimed_hash() -> None:
    body = b"Welcome to Amazon S3."
    request = SignedRequest(
        "PUT",
        "/test%24file.text",  # S3's canonical path is the path as sent
        "",
        {
            "date": "Fri, 24 May 2013 00:00:00 GMT",
            "host": "examplebucket.s3.amazonaws.com",
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "authorization": f"AWS4-HMAC-SHA256 Credential={AWS_KEY}/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-storage-class,"
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        },
    )

    assert verify(request, body, now=AWS_TIME).payload == hashlib.sha256(body).hexdigest()
    assert refusal(request, b"Welcome to Amazon S4.", now=AWS_TIME) is Failure.CONTENT_HASH


# --- every service, botocore's canonical forms -----------------------------------------


@pytest.mark.parametrize(
    ("service", "url", "headers", "body"),
    [
        ("s3", "http://127.0.0.1:4599/bucket/a%20b/c%2Bd%25e.jpg?versionId=x&acl", {}, b""),
        (
            "dynamodb",
            "http://127.0.0.1:4599/",
            {"X-Amz-Target": "DynamoDB_20120810.ListTables"},
            b"{}",
        ),
        ("lambda", "http://127.0.0.1:4599/2015-03-31/functions/a%3Ab/invocations", {}, b"{}"),
        ("iam", "http://127.0.0.1:4599/", {}, b"Action=ListRoles&Version=2010-05-08"),
    ],
)
def test_botocore_signatures_verify_for_every_service(
    service: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    request = botocore_signed("POST", url, service=service, headers=headers, body=body)

    assert verify(request, body, service=service).principal.access_key_id == KEY
    assert refusal(request, body + b" ", service=service) in (
        Failure.MISMATCH,
        Failure.CONTENT_HASH,
    )


def test_s3_paths_are_not_encoded_again_but_other_services_paths_are() -> None:
    # A botocore signature for the S3 key "a b" must not pass for the key "a%20b", nor the
    # other way round: S3 signs the path as sent, everything else double-encodes it.
    s3 = botocore_signed(url="http://127.0.0.1:4599/bucket/a%20b")
    moved = SignedRequest(s3.method, "/bucket/a%2520b", s3.raw_query, s3.headers)

    assert verify(s3).principal.access_key_id == KEY
    assert refusal(moved) is Failure.MISMATCH


# --- keys and session tokens -----------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "failure"),
    [
        ({"key": "AKIAUNKNOWNKEY000000", "secret": SECRET}, Failure.UNKNOWN_KEY),
        ({"token": "a-token-the-owner-has-not"}, Failure.BAD_TOKEN),
        ({"key": ROLE.access_key_id, "secret": ROLE.secret_access_key}, Failure.UNKNOWN_KEY),
        (
            {"key": ROLE.access_key_id, "secret": ROLE.secret_access_key, "token": "foreign"},
            Failure.BAD_TOKEN,
        ),
    ],
)
def test_keys_and_tokens_that_do_not_belong_together_are_refused(
    credentials: dict[str, Any], failure: Failure
) -> None:
    assert refusal(botocore_signed(**credentials)) is failure


def test_a_role_session_with_its_token_is_accepted_until_it_expires() -> None:
    request = botocore_signed(
        key=ROLE.access_key_id, secret=ROLE.secret_access_key, token=ROLE.session_token
    )
    assert ROLE.expires_at is not None

    assert verify(request).principal == ROLE
    assert refusal(request, now=ROLE.expires_at) is Failure.EXPIRED_TOKEN


# --- time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "minutes", "accepted"),
    [
        ("s3", 14, True),
        ("s3", 16, False),
        ("s3", -14, True),
        ("s3", -16, False),
        ("dynamodb", 14, True),
        ("dynamodb", 16, False),
        ("execute-api", 4, True),
        ("execute-api", 6, False),
    ],
)
def test_header_signatures_allow_fifteen_minutes_of_skew_and_api_gateway_five(
    service: str, minutes: int, accepted: bool
) -> None:
    request = botocore_signed(service=service)
    now = time.time() + minutes * 60

    if accepted:
        assert verify(request, service=service, now=now).principal.access_key_id == KEY
    else:
        assert refusal(request, service=service, now=now) is Failure.SKEWED


def test_a_presigned_url_dies_the_second_its_expiry_passes() -> None:
    request = presigned("http://127.0.0.1:4599/bucket/key", expires=60)
    stamp = request.raw_query.split("X-Amz-Date=")[1][:16]
    signed_at = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))

    assert verify(request, now=signed_at + 59.999).payload == sigv4.UNSIGNED_PAYLOAD
    assert refusal(request, now=signed_at + 60) is Failure.EXPIRED_URL


def test_a_presigned_url_may_claim_at_most_seven_days() -> None:
    request = presigned("http://127.0.0.1:4599/bucket/key", expires=7 * 24 * 3600)
    too_long = SignedRequest(
        "GET",
        request.raw_path,
        request.raw_query.replace("X-Amz-Expires=604800", "X-Amz-Expires=604801"),
        request.headers,
    )

    assert verify(request).claim.expires == 604800
    assert refusal(too_long) is Failure.MALFORMED


# --- what a request may claim ----------------------------------------------------------


def test_a_request_with_no_signature_is_missing_one_whatever_its_query_says() -> None:
    request = SignedRequest(
        "GET", "/moto-api/recorder/start-recording", f"X-Amz-Credential={KEY}/", {"host": "h"}
    )

    assert refusal(request) is Failure.MISSING


def test_a_header_signature_and_a_presigned_query_together_are_refused() -> None:
    request = botocore_signed()
    both = SignedRequest("GET", request.raw_path, "X-Amz-Signature=0", request.headers)

    assert refusal(both) is Failure.MALFORMED


def test_the_credential_must_come_first_in_the_authorization_header() -> None:
    # moto dispatches on the first field: the scope it sees must be the one verified.
    request = botocore_signed(service="dynamodb", url="http://127.0.0.1:4599/")
    credential, signed_headers, signature = request.headers["authorization"].split(", ")
    algorithm, credential = credential.split(" ")
    reordered = f"{algorithm} {signed_headers}, {credential}, {signature}"
    headers = {**request.headers, "authorization": reordered}

    with pytest.raises(SignatureRejected) as refused:
        read_claim(SignedRequest("POST", "/", "", headers))
    assert refused.value.failure is Failure.MALFORMED


def test_signature_zero_and_a_date_of_2000_are_refused() -> None:
    request = botocore_signed()
    authorization = request.headers["authorization"]
    zero = {
        **request.headers,
        "authorization": authorization.split("Signature=")[0] + "Signature=0",
    }
    old = {**request.headers, "x-amz-date": "20000101T000000Z"}

    assert refusal(SignedRequest("GET", request.raw_path, "", zero)) is Failure.MISMATCH
    assert refusal(SignedRequest("GET", request.raw_path, "", old)) is Failure.SCOPE


def test_an_x_amz_header_that_was_not_signed_is_refused() -> None:
    request = botocore_signed("PUT")
    copied = {**request.headers, "x-amz-copy-source": "other-bucket/secret.jpg"}

    assert refusal(SignedRequest("PUT", request.raw_path, "", copied)) is Failure.UNSIGNED_HEADER


@pytest.mark.parametrize(
    ("service", "url", "claimed", "failure"),
    [
        ("dynamodb", "http://127.0.0.1:4599/", sigv4.UNSIGNED_PAYLOAD, Failure.PAYLOAD_FORM),
        ("s3", "http://127.0.0.1:4599/b/k", sigv4.STREAMING_SIGNED, Failure.PAYLOAD_FORM),
        ("s3", "http://127.0.0.1:4599/b/k", "not-a-hash", Failure.PAYLOAD_FORM),
    ],
)
def test_payload_forms_outside_what_the_service_accepts_are_refused(
    service: str, url: str, claimed: str, failure: Failure
) -> None:
    # The streaming form without Content-Encoding: aws-chunked and a decoded length.
    request = botocore_signed(
        "PUT", url, service=service, headers={"X-Amz-Content-SHA256": claimed}
    )

    assert refusal(request, service=service) is failure


def test_unsigned_payload_is_accepted_for_s3() -> None:
    request = botocore_signed("PUT", headers={"X-Amz-Content-SHA256": sigv4.UNSIGNED_PAYLOAD})

    assert verify(request, b"any body").payload == sigv4.UNSIGNED_PAYLOAD


@pytest.mark.parametrize(
    ("region", "service"), [("eu-west-1", "s3"), (REGION, "dynamodb"), (REGION, "s3")]
)
def test_a_credential_scoped_elsewhere_is_refused(region: str, service: str) -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1:4599/bucket/key")
    S3SigV4Auth(Credentials(KEY, SECRET), "s3", region).add_auth(request)
    expected = "sts" if (region, service) == (REGION, "s3") else service

    assert refusal(as_received(request), service=expected) is Failure.SCOPE
