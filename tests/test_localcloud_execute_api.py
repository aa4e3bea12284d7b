"""The local cloud's execute-api endpoint: SigV4, and moto still behind it.

Through a real server (``tests.execute_api_server``). Requests are signed by botocore
(``SigV4Auth``, ``SigV4QueryAuth``) and by curl's ``--aws-sigv4``, and sent byte for byte
with ``http.client`` so that nothing re-encodes the path on the way.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from imgcli.localcloud import API_PATH_PREFIX, api_url, sigv4
from tests.execute_api_server import (
    KEY,
    RECORDER_ARN,
    REGION,
    ROLE_ARN,
    ROLE_KEY,
    ROLE_SECRET,
    ROLE_TOKEN,
    ROUTES,
    SECRET,
    Api,
    Server,
    client,
    create_api,
    image_path,
    send,
    serving_execute_api,
    signed,
    signed_send,
)


@pytest.fixture(scope="module")
def running_server() -> Iterator[Server]:
    with serving_execute_api() as server:
        yield server


@pytest.fixture
def server(running_server: Server) -> Server:
    return running_server.reset()


@pytest.fixture
def api(server: Server) -> Api:
    return create_api(server, RECORDER_ARN, ROUTES)


# --- signing --------------------------------------------------------------------------


def test_a_route_without_authorization_needs_no_signature(server: Server, api: Api) -> None:
    reply = send(server, "GET", f"{api.path}/public")

    assert reply.status == 200
    assert "authorizer" not in server.functions.last_event["requestContext"]


def test_a_presigned_url_is_accepted_until_it_expires(server: Server, api: Api) -> None:
    request = AWSRequest(method="GET", url=f"{server.endpoint}{api.path}/images?limit=2")
    SigV4QueryAuth(Credentials(KEY, SECRET), "execute-api", REGION, expires=60).add_auth(request)
    target = request.url.removeprefix(server.endpoint)

    assert send(server, "GET", target).status == 200
    server.clock.offset = 120
    expired = send(server, "GET", target)
    assert expired.status == 403
    assert expired.json()["message"].startswith("Signature expired")


# --- curl signs differently, and is accepted too -------------------------------------------


def test_a_request_signed_by_curl_is_accepted(server: Server, api: Api) -> None:
    key = "holiday 2024/naïve+café #1.jpg"
    # Query deliberately unsorted: curl signs it in the order sent, botocore sorted.
    url = f"{server.endpoint}{image_path(api, key)}?z=1&a=b%20c"
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--aws-sigv4",
            f"aws:amz:{REGION}:execute-api",
            "--user",
            f"{KEY}:{SECRET}",
            "--write-out",
            "\n%{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")

    assert status == "200", body
    assert json.loads(body) == {"ok": True}
    event = server.functions.last_event
    assert event["pathParameters"] == {"key": key}
    assert event["rawQueryString"] == "z=1&a=b%20c"


@pytest.mark.parametrize(
    ("secret", "path"),
    [
        ("not-the-secret", "/images"),
        # curl 7.88 encodes the path once; with a literal % that is ambiguous (see sigv4).
        (SECRET, f"/images/{quote('100%.png')}"),
    ],
)
def test_curl_requests_that_cannot_be_verified_are_refused(
    server: Server, api: Api, secret: str, path: str
) -> None:
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--aws-sigv4",
            f"aws:amz:{REGION}:execute-api",
            "--user",
            f"{KEY}:{secret}",
            "--write-out",
            "\n%{http_code}",
            f"{server.endpoint}{api.path}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert result.stdout.rpartition("\n")[2] == "403"
    assert server.functions.calls == []


# --- refusals --------------------------------------------------------------------------


def test_an_unsigned_request_is_forbidden(server: Server, api: Api) -> None:
    reply = send(server, "GET", f"{api.path}/images")

    assert reply.status == 403
    assert reply.json() == {"message": "Forbidden"}
    assert reply.headers["content-type"] == "application/json"
    assert server.functions.calls == []


@pytest.mark.parametrize(
    ("signed_target", "sent_target"),
    [
        ("/images/a.jpg", "/images/b.jpg"),
        # curl's form of the second is botocore's of the first: a collision, refused.
        ("/images/a%20b.jpg", "/images/a%2520b.jpg"),
        ("/images?prefix=a%2Bb", "/images?prefix=a+b"),
        ("/images?limit=2", "/images?limit=3"),
        ("/images?limit=2", "/images?limit=2&prefix=x"),
        ("/images?limit=2", "/images"),
    ],
)
def test_a_request_changed_after_signing_is_refused(
    server: Server, api: Api, signed_target: str, sent_target: str
) -> None:
    headers = signed(server, "GET", api.path + signed_target)

    reply = send(server, "GET", api.path + sent_target, headers)

    assert reply.status == 403
    assert reply.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)
    assert server.functions.calls == []


def test_a_signed_header_changed_after_signing_is_refused(server: Server, api: Api) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target, headers={"x-imgcli-purpose": "list"})

    reply = send(server, "GET", target, {**headers, "x-imgcli-purpose": "delete"})

    assert reply.status == 403
    assert reply.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)


def test_a_body_changed_after_signing_is_refused(server: Server, api: Api) -> None:
    target = f"{api.path}/uploads"
    headers = signed(server, "POST", target, body=b"original")
    claimed = {**headers, "x-amz-content-sha256": hashlib.sha256(b"original").hexdigest()}

    plain = send(server, "POST", target, headers, body=b"tampered")
    with_hash = send(server, "POST", target, claimed, body=b"tampered")

    assert plain.status == 403
    assert plain.json()["message"].startswith(sigv4.SIGNATURE_MISMATCH)
    assert with_hash.status == 403
    assert with_hash.json() == {"message": sigv4.CONTENT_HASH_MISMATCH}


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"secret": "wrong-secret"}, sigv4.SIGNATURE_MISMATCH),
        ({"key": "AKIAIOSFODNN7EXAMPLE", "secret": "x"}, sigv4.UNKNOWN_ACCESS_KEY),
        ({"token": "a-session-token"}, sigv4.UNKNOWN_ACCESS_KEY),
    ],
)
def test_foreign_credentials_are_refused(
    server: Server, api: Api, credentials: dict[str, str], message: str
) -> None:
    reply = signed_send(server, "GET", f"{api.path}/images", **credentials)

    assert reply.status == 403
    assert reply.json()["message"].startswith(message)


def test_a_role_session_may_call_an_aws_iam_route_if_its_role_may_invoke_it(
    server: Server, api: Api
) -> None:
    role = {"key": ROLE_KEY, "secret": ROLE_SECRET, "token": ROLE_TOKEN}
    target = f"{api.path}/images/a.jpg"

    allowed = signed_send(server, "GET", target, **role)
    server.authorizations.denied.add(ROLE_ARN)
    refused = signed_send(server, "GET", target, **role)
    without_token = signed_send(server, "GET", target, key=ROLE_KEY, secret=ROLE_SECRET)

    assert allowed.status == 200
    route_arn = f"arn:aws:execute-api:{REGION}:123456789012:{api.api_id}/$default/GET/images/a.jpg"
    assert server.authorizations.checked[0] == (ROLE_KEY, route_arn)
    assert server.functions.calls[0][1]["requestContext"]["authorizer"]["iam"]["userArn"] == (
        ROLE_ARN
    )
    assert refused.status == 403
    assert refused.json()["message"].startswith(f"User: {ROLE_ARN} is not authorized")
    assert without_token.status == 403
    assert len(server.functions.calls) == 1


@pytest.mark.parametrize(
    ("offset", "message"), [(360, "Signature expired"), (-360, "Signature not yet current")]
)
def test_a_timestamp_over_five_minutes_off_is_refused(
    server: Server, api: Api, offset: float, message: str
) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target)
    server.clock.offset = offset

    reply = send(server, "GET", target, headers)

    assert reply.status == 403
    assert reply.json()["message"].startswith(message)


def test_a_timestamp_within_five_minutes_is_accepted(server: Server, api: Api) -> None:
    target = f"{api.path}/images"
    headers = signed(server, "GET", target)
    server.clock.offset = 240

    assert send(server, "GET", target, headers).status == 200


def test_an_incomplete_authorization_header_is_refused(server: Server, api: Api) -> None:
    headers = {"authorization": "AWS4-HMAC-SHA256 Credential=x", "x-amz-date": "20250314T101501Z"}

    reply = send(server, "GET", f"{api.path}/images", headers)

    assert reply.status == 403
    assert "requires 'SignedHeaders'" in reply.json()["message"]


# --- the /_api prefix -----------------------------------------------------------------


def test_requests_outside_the_prefix_still_reach_moto(server: Server, api: Api) -> None:
    apis = client(server, "apigatewayv2")
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="imgcli-execute-api-test")

    assert api.api_id in [item["ApiId"] for item in apis.get_apis()["Items"]]
    assert "imgcli-execute-api-test" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_api_url_puts_the_api_under_the_prefix() -> None:
    assert api_url("http://127.0.0.1:4599/", "abc123") == "http://127.0.0.1:4599/_api/abc123"
    assert API_PATH_PREFIX == "/_api"
