"""The gate: only the owner (and its role sessions) gets in, for every service (``gate``).

Through a real server (``tests.gate_harness``): moto and the HTTP API behind the gate on a
loopback port. boto3, curl's ``--aws-sigv4`` and the AWS CLI must keep working with the
right secret; every attack from issue 11 must be refused, in the service's own error
format, without reaching moto. The S3-specific rules are in ``test_localcloud_gate_s3``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imgcli.localcloud import MotoInternalsChanged, gate_services
from imgcli.localcloud.gate_routing import Destination, route
from tests.gate_harness import (
    HEALTH,
    KEY,
    OLD_KEY,
    OLD_SECRET,
    OLD_TOKEN,
    REGION,
    ROLE_ARN,
    ROLE_KEY,
    ROLE_SECRET,
    ROLE_TOKEN,
    SECRET,
    Server,
    client,
    send,
    serving_gate,
    signed,
    signed_send,
)
from tests.localstack import aws_cli

BUCKET = "gate-test-bucket"


@pytest.fixture(scope="module")
def running_server() -> Iterator[Server]:
    with serving_gate() as server:
        client(server, "s3").create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def server(running_server: Server) -> Server:
    return running_server.reset()


# --- every service works with the right secret --------------------------------------------

CALLS: dict[str, Callable[[Any], Any]] = {
    "s3": lambda c: c.list_objects_v2(Bucket=BUCKET),
    "dynamodb": lambda c: c.list_tables(),
    "lambda": lambda c: c.list_functions(),
    "iam": lambda c: c.list_roles(),
    "sts": lambda c: c.get_caller_identity(),
    "sqs": lambda c: c.list_queues(),
    "logs": lambda c: c.describe_log_groups(),
    "apigatewayv2": lambda c: c.get_apis(),
}


@pytest.mark.parametrize("service", sorted(CALLS))
def test_every_service_answers_the_owner_and_a_role_session(server: Server, service: str) -> None:
    CALLS[service](client(server, service))
    CALLS[service](client(server, service, key=ROLE_KEY, secret=ROLE_SECRET, token=ROLE_TOKEN))

    owner, role = server.moto.principals[-2:]
    assert owner is not None and owner.access_key_id == KEY and owner.role_arn is None
    assert role is not None and role.role_arn == ROLE_ARN


def test_writes_through_the_gate_reach_moto(server: Server) -> None:
    dynamodb = client(server, "dynamodb")
    dynamodb.create_table(
        TableName="gate-test-table",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="gate-test-table", Item={"k": {"S": "é ü"}})
    queue = client(server, "sqs").create_queue(QueueName="gate-test-queue")["QueueUrl"]
    client(server, "sqs").send_message(QueueUrl=queue, MessageBody="hello")
    client(server, "logs").create_log_group(logGroupName="/gate/test")

    item = dynamodb.get_item(TableName="gate-test-table", Key={"k": {"S": "é ü"}})
    assert item["Item"] == {"k": {"S": "é ü"}}
    assert client(server, "sqs").receive_message(QueueUrl=queue)["Messages"][0]["Body"] == "hello"


# --- refusals, in each service's own format ---------------------------------------------------

#: What botocore raises for a wrong secret, an unknown key, a missing or expired token.
EXPECTED_CODES: dict[str, tuple[str, str, str, str]] = {
    "s3": ("SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidAccessKeyId", "ExpiredToken"),
    "dynamodb": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ),
    "lambda": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ),
    "iam": (
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "InvalidClientTokenId",
        "ExpiredToken",
    ),
    "sts": (
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "InvalidClientTokenId",
        "ExpiredToken",
    ),
    "sqs": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ),
    "logs": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ),
    "apigatewayv2": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    ),
}
#: AWS's statuses: DynamoDB and the other JSON-protocol services answer 400.
EXPECTED_STATUS = {"s3": 403, "dynamodb": 400, "sqs": 400, "logs": 400}


def _raised(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("service", sorted(CALLS))
def test_foreign_credentials_raise_the_service_s_own_client_error(
    server: Server, service: str
) -> None:
    call = CALLS[service]
    wrong_secret, unknown_key, missing_token, expired = EXPECTED_CODES[service]
    before = len(server.moto.principals)

    assert _raised(lambda: call(client(server, service, secret="not-the-secret"))) == (
        wrong_secret,
        EXPECTED_STATUS.get(service, 403),
    )
    assert _raised(lambda: call(client(server, service, key="AKIAUNKNOWNKEY000000")))[0] == (
        unknown_key
    )
    assert _raised(lambda: call(client(server, service, key=ROLE_KEY, secret=ROLE_SECRET)))[0] == (
        missing_token
    )
    old = client(server, service, key=OLD_KEY, secret=OLD_SECRET, token=OLD_TOKEN)
    assert _raised(lambda: call(old))[0] == expired
    assert len(server.moto.principals) == before  # nothing reached moto


@pytest.mark.parametrize(
    ("service", "headers", "body", "code", "status"),
    [
        ("s3", {}, b"", "AccessDenied", 403),
        (
            "dynamodb",
            {"X-Amz-Target": "DynamoDB_20120810.ListTables"},
            b"{}",
            "MissingAuthenticationTokenException",
            400,
        ),
        (
            "sts",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Action=GetCallerIdentity&Version=2011-06-15",
            "MissingAuthenticationToken",
            403,
        ),
    ],
)
def test_an_unsigned_request_is_refused_in_the_shape_it_came_in(
    server: Server, service: str, headers: dict[str, str], body: bytes, code: str, status: int
) -> None:
    reply = send(server, "POST" if body else "GET", "/", headers, body)

    assert (reply.status, reply.code) == (status, code)
    assert server.moto.principals == []


def test_a_role_key_with_a_foreign_session_token_is_refused(server: Server) -> None:
    s3 = client(server, "s3", key=ROLE_KEY, secret=ROLE_SECRET, token="someone-elses-token")

    assert _raised(lambda: s3.list_objects_v2(Bucket=BUCKET)) == ("InvalidToken", 400)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"secret": "wrong-secret"}, "SignatureDoesNotMatch"),
        ({"signature": "0"}, "SignatureDoesNotMatch"),
        ({"date": "20000101T000000Z"}, "AuthorizationHeaderMalformed"),
    ],
)
def test_the_issue_s_signature_attacks_are_refused(
    server: Server, change: dict[str, str], code: str
) -> None:
    target = f"/{BUCKET}/attack.txt"
    headers = signed(server, "PUT", target, body=b"x", secret=change.get("secret", SECRET))
    if "signature" in change:
        authorization = headers["Authorization"]
        headers["Authorization"] = authorization.split("Signature=")[0] + "Signature=0"
    if "date" in change:
        headers["X-Amz-Date"] = change["date"]

    reply = send(server, "PUT", target, headers, b"x")

    assert (reply.status >= 400, reply.code) == (True, code)
    assert server.moto.principals == []


def test_a_signature_beyond_fifteen_minutes_is_too_skewed(server: Server) -> None:
    target = f"/{BUCKET}"
    headers = signed(server, "GET", target)

    server.clock.offset = 14 * 60
    assert send(server, "GET", target, headers).status == 200
    server.clock.offset = 16 * 60
    reply = send(server, "GET", target, headers)
    assert (reply.status, reply.code) == (403, "RequestTimeTooSkewed")


# --- routing: one decision, on the raw path ---------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "HEAD"])
@pytest.mark.parametrize(
    "path",
    [
        f"/moto-api/recorder/start-recording?X-Amz-Credential={KEY}/",
        "/moto-api/recorder/stop-recording",
        "/moto-api/recorder/reset-recording",
        "/moto-api/recorder/replay-recording",
        "/moto-api/seed?a=42",
        "/moto-api/reset",
        "/moto-api/data.json",
        "/moto-api/",
        "/moto-apix",
        "/%6Doto-api/reset",
        "//moto-api/reset",
    ],
)
def test_moto_s_own_api_is_unreachable(server: Server, method: str, path: str) -> None:
    reply = send(server, method, path)

    assert reply.status in (403, 404)
    assert server.moto.principals == []  # nothing reached moto


def test_moto_s_api_is_unreachable_even_signed_by_the_owner(server: Server) -> None:
    for path in ("/moto-api/reset", "/%6Doto-api/reset"):
        assert signed_send(server, "POST", path).status in (403, 404)
    assert server.moto.principals == []


def test_an_unsigned_put_of_apiprobe_creates_no_bucket(server: Server) -> None:
    reply = send(server, "PUT", "/_apiprobe")

    assert (reply.status, reply.code) == (403, "AccessDenied")
    names = [b["Name"] for b in client(server, "s3").list_buckets()["Buckets"]]
    assert "_apiprobe" not in names


@pytest.mark.parametrize("path", ["/%5Fapi/x/images", "/_ap%69/x/images", "/%5F%61pi/"])
def test_an_encoded_api_prefix_is_refused(server: Server, path: str) -> None:
    assert send(server, "GET", path).status == 404
    assert signed_send(server, "GET", path).status == 404
    assert server.moto.principals == []


@pytest.mark.parametrize(
    ("target", "destination"),
    [
        ("/_imgcli/health?nonce=ab", Destination.HEALTH),
        ("/_imgcli/health/", Destination.REFUSED),
        ("/_imgcli/other", Destination.REFUSED),
        ("/_api/abc/images", Destination.API),
        ("/_api/", Destination.API),
        ("/_api", Destination.AWS),
        ("/_apiprobe", Destination.AWS),
        ("/%5Fapi/abc", Destination.REFUSED),
        ("/moto-api", Destination.REFUSED),
        ("/bucket/moto-api", Destination.AWS),
        ("/bucket/a%20b", Destination.AWS),
        ("http://127.0.0.1:1/_api/abc", Destination.REFUSED),
        ("/bucket/key#fragment", Destination.REFUSED),
        ("*", Destination.REFUSED),
    ],
)
def test_routes_are_decided_on_the_raw_target(target: str, destination: Destination) -> None:
    assert route({"REQUEST_URI": target}).destination is destination


def test_the_http_api_gets_the_routing_result(server: Server) -> None:
    reply = send(server, "GET", "/_api/no-such-api/images")

    assert (reply.status, reply.json()) == (404, {"message": "Not Found"})
    assert server.moto.principals == []


def test_the_health_check_gets_the_raw_query(server: Server) -> None:
    reply = send(server, "GET", "/_imgcli/health?nonce=0a1b")

    assert (reply.status, reply.json()) == (200, HEALTH)
    assert server.health_queries == ["nonce=0a1b"]
    assert send(server, "POST", "/_imgcli/health").status == 405


@pytest.mark.parametrize(
    "headers",
    [{"host": "evil.example:1"}, {"origin": "http://evil.example"}, {"origin": "null"}],
)
def test_other_hosts_and_origins_are_refused(server: Server, headers: dict[str, str]) -> None:
    target = f"/{BUCKET}"
    sent = {**signed(server, "GET", target), **headers}

    assert send(server, "GET", target, sent).status == 403
    assert send(server, "GET", "/_imgcli/health", headers).status == 403
    assert server.moto.principals == [] and server.health_queries == []


def test_a_scope_for_a_service_moto_does_not_serve_is_refused(server: Server) -> None:
    for service in ("execute-api", "no-such-service"):
        reply = signed_send(server, "POST", "/", service=service, body=b"{}")
        assert reply.status == 403, service
    assert server.moto.principals == []


def test_moto_serves_what_the_dispatcher_serves() -> None:
    assert all(gate_services.moto_serves(s) for s in ("s3", "dynamodb", "lambda", "sts", "logs"))
    assert not any(gate_services.moto_serves(s) for s in ("execute-api", "motoapi", "nothing"))


def test_a_moved_moto_dispatch_table_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.backend_index
    import moto.core.request

    gate_services.check_moto_internals()
    monkeypatch.setattr(moto.backend_index, "backend_url_patterns", [("s3", "not a regex")])
    with pytest.raises(MotoInternalsChanged, match="backend_url_patterns"):
        gate_services.check_moto_internals()
    monkeypatch.undo()
    monkeypatch.setattr(moto.core.request, "PRESERVED_HEADER_NAMES_ENVIRON_KEY", "elsewhere")
    with pytest.raises(MotoInternalsChanged, match="headers with '_'"):
        gate_services.check_moto_internals()


# --- other clients ---------------------------------------------------------------------------


def _curl(server: Server, *args: str, secret: str = SECRET) -> tuple[str, str]:
    result = subprocess.run(
        [
            *("curl", "--silent", "--show-error", "--aws-sigv4", f"aws:amz:{REGION}:s3"),
            *("--user", f"{KEY}:{secret}", "--write-out", "\n%{http_code}", *args),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, status = result.stdout.rpartition("\n")
    return status, body


def test_curl_aws_sigv4_puts_and_gets_s3_objects(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "curl body.txt"
    source.write_bytes(b"from curl")
    url = f"{server.endpoint}/{BUCKET}/curl%20dir/a%2Bb.txt"
    # curl 7.88 signs -T uploads as if empty, so PUT the body as data; moto would store a
    # form-encoded body (curl's default type for data) as an empty object.
    put = ["-X", "PUT", "-H", "Content-Type: text/plain", "--data-binary", f"@{source}", url]

    assert _curl(server, *put)[0] == "200"
    assert _curl(server, url) == ("200", "from curl")
    assert _curl(server, url, secret="wrong")[0] == "403"


@pytest.mark.skipif(
    aws_cli() is None,
    reason="no AWS CLI: neither benchmarks/.venv-awscli (make bench installs it) nor aws on PATH",
)
def test_the_aws_cli_copies_to_and_from_s3(server: Server, tmp_path: Path) -> None:
    cli = aws_cli()
    assert cli is not None
    source = tmp_path / "cli.txt"
    source.write_bytes(b"from the aws cli " * 1000)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }

    def aws(*args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "--endpoint-url", server.endpoint, *args],
            env={**env, "AWS_SECRET_ACCESS_KEY": secret},
            capture_output=True,
            text=True,
            timeout=60,
        )

    copied = aws("s3", "cp", str(source), f"s3://{BUCKET}/cli/copy.txt")
    assert copied.returncode == 0, copied.stderr
    fetched = aws("s3", "cp", f"s3://{BUCKET}/cli/copy.txt", str(tmp_path / "back.txt"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "back.txt").read_bytes() == source.read_bytes()
    refused = aws("s3", "ls", f"s3://{BUCKET}/", secret="wrong")
    assert refused.returncode != 0 and "SignatureDoesNotMatch" in refused.stderr
