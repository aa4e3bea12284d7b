"""Wrong keys, another region, another host: the local cloud refuses as AWS does (``gate``,
``gate_errors``), in each protocol's own format, so botocore raises the ``ClientError`` it
would raise on AWS and never a ``ResponseParserError`` (imgcli's exit 70 in issue 12).

Plain boto3 against a started local cloud (``tests.localstack``), for every service imgcli
uses: S3 (REST-XML), IAM and STS (Query, whose parser fails on any body that is not its
XML), DynamoDB, SQS and CloudWatch Logs (JSON), Lambda and API Gateway (REST-JSON).
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from imgcli.config import LOCAL_REGION
from imgcli.localcloud import process
from tests.localstack import KEY, SECRET, local_cloud_env

BUCKET = "faithful-errors"
OTHER_REGION = "eu-west-1"
CALLS: dict[str, Callable[[Any], Any]] = {
    "s3": lambda c: c.list_objects_v2(Bucket=BUCKET),
    "iam": lambda c: c.list_roles(),
    "sts": lambda c: c.get_caller_identity(),
    "dynamodb": lambda c: c.list_tables(),
    "sqs": lambda c: c.list_queues(),
    "logs": lambda c: c.describe_log_groups(),
    "lambda": lambda c: c.list_functions(),
    "apigatewayv2": lambda c: c.get_apis(),
}
#: AWS's codes for (an access key it does not know, a wrong secret, another region).
CODES: dict[str, tuple[str, str, str]] = {
    "s3": ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed"),
    "iam": ("InvalidClientTokenId", "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
    "sts": ("InvalidClientTokenId", "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
    **dict.fromkeys(
        ("dynamodb", "sqs", "logs", "lambda", "apigatewayv2"),
        ("UnrecognizedClientException", "InvalidSignatureException", "InvalidSignatureException"),
    ),
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as base, local_cloud_env(Path(base), "errors") as env:
        status, _ = process.start(int(env["IMGCLI_LOCAL_PORT"]), env)
        url = f"http://127.0.0.1:{status.port}"
        _client(url, "s3").create_bucket(Bucket=BUCKET)
        yield url


def _client(
    endpoint: str,
    service: str,
    *,
    key: str = KEY,
    secret: str = SECRET,
    region: str = LOCAL_REGION,
    signature_version: str | None = None,
) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            signature_version=signature_version,
        ),
    )


def _refusal(call: Callable[[], Any]) -> tuple[str, str]:
    """The code and message botocore found; a ``ResponseParserError`` fails the test."""
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return str(error["Code"]), str(error.get("Message", ""))


@pytest.mark.parametrize("service", sorted(CALLS))
def test_wrong_keys_raise_the_service_s_own_client_error(endpoint: str, service: str) -> None:
    unknown_key, wrong_secret, _ = CODES[service]
    call = CALLS[service]
    CALLS[service](_client(endpoint, service))  # the right keys work

    stranger = _client(endpoint, service, key="AKIAUNKNOWNKEY000000")
    assert _refusal(lambda: call(stranger))[0] == unknown_key
    assert _refusal(lambda: call(_client(endpoint, service, secret="wrong")))[0] == wrong_secret


@pytest.mark.parametrize("service", sorted(set(CALLS) - {"s3"}))
def test_another_region_is_refused_with_aws_s_words(endpoint: str, service: str) -> None:
    elsewhere = _client(endpoint, service, region=OTHER_REGION)

    code, message = _refusal(lambda: CALLS[service](elsewhere))

    assert code == CODES[service][2]
    assert message.startswith(
        f"Credential should be scoped to a valid region, not '{OTHER_REGION}'"
    )
    assert f"'{LOCAL_REGION}'" in message


def test_an_s3_client_in_another_region_follows_the_region_s3_names(endpoint: str) -> None:
    # On AWS, S3's refusal names the bucket's region and botocore signs again for it.
    s3 = _client(endpoint, "s3", region=OTHER_REGION)

    s3.put_object(Bucket=BUCKET, Key="elsewhere.txt", Body=b"from afar")

    assert s3.get_object(Bucket=BUCKET, Key="elsewhere.txt")["Body"].read() == b"from afar"
    assert s3.head_object(Bucket=BUCKET, Key="elsewhere.txt")["ContentLength"] == 9
    s3.head_bucket(Bucket=BUCKET)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["elsewhere.txt"]
    s3.delete_object(Bucket=BUCKET, Key="elsewhere.txt")


def _fetch(url: str | urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, b""
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def test_s3_names_its_region_for_a_header_and_a_pre_signed_url(endpoint: str) -> None:
    request = AWSRequest(method="GET", url=f"{endpoint}/{BUCKET}")
    S3SigV4Auth(Credentials(KEY, SECRET), "s3", OTHER_REGION).add_auth(request)
    header_signed = urllib.request.Request(request.url, headers=dict(request.headers.items()))
    s3 = _client(endpoint, "s3", region=OTHER_REGION, signature_version="s3v4")
    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"})
    wrong = f"the region '{OTHER_REGION}' is wrong; expecting '{LOCAL_REGION}'"

    for target, code, message in (
        (
            header_signed,
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; {wrong}",
        ),
        (
            presigned,
            "AuthorizationQueryParametersError",
            f"Error parsing the X-Amz-Credential parameter; {wrong}",
        ),
    ):
        status, headers, body = _fetch(target)
        assert status == 400
        assert f"<Code>{code}</Code><Message>{message}</Message>" in body.decode()
        assert f"<Region>{LOCAL_REGION}</Region>" in body.decode()
        assert headers["x-amz-bucket-region"] == LOCAL_REGION


@pytest.mark.parametrize("service", sorted(CALLS))
def test_the_gate_s_own_refusals_parse_in_every_protocol(endpoint: str, service: str) -> None:
    # 127.1 is 127.0.0.1 spelled another way: the gate answers only its own host names.
    port = endpoint.rpartition(":")[2]
    elsewhere = _client(f"http://127.1:{port}", service)

    code, message = _refusal(lambda: CALLS[service](elsewhere))

    assert code in ("AccessDenied", "AccessDeniedException")
    assert "127.0.0.1 or localhost" in message
