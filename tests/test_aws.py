"""boto3 sessions and clients from stack settings: endpoint, region, profile, retries, pool."""

from __future__ import annotations

import datetime
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, NoRegionError, ProfileNotFound
from botocore.parsers import ResponseParserError
from botocore.stub import Stubber
from botocore.utils import parse_timestamp as botocore_parse_timestamp
from urllib3 import HTTPResponse

from imgcli import __version__
from imgcli.aws import DEFAULT_MAX_POOL_CONNECTIONS, AwsClients, parse_timestamp
from imgcli.config import Flags, StackSettings, local_access_key, resolve_stack
from imgcli.errors import ExitCode, describe_failure


def settings(**flags: object) -> StackSettings:
    return resolve_stack(Flags(**flags), os.environ)  # type: ignore[arg-type]


def test_client_config_has_standard_retries_pool_and_user_agent() -> None:
    s3 = AwsClients(settings()).client("s3", max_pool_connections=32)
    config = s3.meta.config
    assert config.retries["mode"] == "standard"
    assert config.max_pool_connections == 32
    assert config.user_agent_extra == f"imgcli/{__version__}"


def test_default_pool_size_is_botocores() -> None:
    s3 = AwsClients(settings()).client("s3")
    assert s3.meta.config.max_pool_connections == DEFAULT_MAX_POOL_CONNECTIONS == 10


def test_local_stack_client_uses_the_local_cloud() -> None:
    clients = AwsClients(settings())
    s3 = clients.client("s3")
    assert s3.meta.endpoint_url == "http://127.0.0.1:4599"
    assert s3.meta.region_name == "us-east-1"
    # bucket.127.0.0.1 does not resolve: the local cloud needs path-style S3 URLs.
    assert s3.meta.config.s3["addressing_style"] == "path"
    # The local cloud's own key, not whatever AWS credentials the environment holds.
    credentials = clients.session.get_credentials()
    assert credentials.access_key == local_access_key(os.environ).access_key_id
    assert credentials.access_key != os.environ["AWS_ACCESS_KEY_ID"]


def test_configured_endpoint_and_region_are_used() -> None:
    dynamodb = AwsClients(
        settings(target="aws", endpoint_url="http://example.test:8000", region="eu-west-1")
    ).client("dynamodb")
    assert dynamodb.meta.endpoint_url == "http://example.test:8000"
    assert dynamodb.meta.region_name == "eu-west-1"


def test_clients_are_cached_per_service_and_pool_size() -> None:
    clients = AwsClients(settings())
    assert clients.client("s3") is clients.client("s3")
    assert clients.client("s3", max_pool_connections=32) is clients.client(
        "s3", max_pool_connections=32
    )
    assert clients.client("s3", max_pool_connections=32) is not clients.client("s3")
    assert clients.client("dynamodb") is not clients.client("s3")
    assert AwsClients(clients.settings).client("s3") is not clients.client("s3")


def test_concurrent_callers_share_one_client() -> None:
    clients = AwsClients(settings())
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: clients.client("s3", max_pool_connections=8), range(16)))
    assert all(client is made[0] for client in made)


def test_aws_endpoint_url_is_honoured_when_none_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://from-aws-env.test:4566")
    aws = settings(target="aws")
    assert aws.endpoint_url is None
    assert AwsClients(aws).client("s3").meta.endpoint_url == "http://from-aws-env.test:4566"


def test_aws_target_without_endpoint_uses_the_real_aws_endpoint() -> None:
    s3 = AwsClients(settings(target="aws")).client("s3")
    assert s3.meta.endpoint_url == "https://s3.amazonaws.com"


def write_profile(name: str, region: str) -> None:
    with Path(os.environ["AWS_CONFIG_FILE"]).open("a") as config:
        config.write(f"[profile {name}]\nregion = {region}\n")


def test_aws_profile_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    write_profile("work", "eu-west-2")
    monkeypatch.setenv("AWS_PROFILE", "work")
    # Environment regions would beat the profile's: take them away to see the profile.
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    clients = AwsClients(settings(target="aws"))
    assert clients.session.profile == "work"
    assert clients.client("s3").meta.region_name == "eu-west-2"


def test_settings_profile_beats_aws_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    write_profile("work", "eu-west-2")
    write_profile("home", "ap-southeast-2")
    monkeypatch.setenv("AWS_PROFILE", "work")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    clients = AwsClients(settings(target="aws", profile="home"))
    assert clients.session.profile == "home"
    assert clients.client("s3").meta.region_name == "ap-southeast-2"


def test_unknown_profile_is_an_auth_failure() -> None:
    with pytest.raises(ProfileNotFound) as raised:
        AwsClients(settings(target="aws", profile="missing")).client("s3")
    assert describe_failure(raised.value).exit_code == ExitCode.AUTH


def test_no_region_anywhere_is_a_usage_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(NoRegionError) as raised:
        AwsClients(settings(target="aws")).client("dynamodb")
    assert describe_failure(raised.value).exit_code == ExitCode.USAGE


def test_client_errors_name_the_service() -> None:
    s3 = AwsClients(settings()).client("s3")
    with Stubber(s3) as stubber:
        stubber.add_client_error(
            "put_object",
            service_error_code="NoSuchBucket",
            service_message="The specified bucket does not exist",
            http_status_code=404,
        )
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket="missing", Key="a.jpg", Body=b"x")
    failure = describe_failure(raised.value)
    # A missing bucket is the stack's own: its resources are gone (exit 3, bootstrap again).
    assert failure.exit_code == ExitCode.NO_STACK
    assert failure.message == (
        "the stack has lost its resources: "
        "S3 PutObject failed (NoSuchBucket): The specified bucket does not exist"
    )


def test_successful_responses_are_untouched() -> None:
    s3 = AwsClients(settings()).client("s3")
    with Stubber(s3) as stubber:
        stubber.add_response("list_buckets", {"Buckets": []})
        response = s3.list_buckets()
    assert "ImgcliServiceId" not in response.get("ResponseMetadata", {})


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-27T04:29:39.000Z",
        "2026-11-27T04:29:39Z",
        "2026-11-27T04:29:39.123456789Z",
        "20261127T042939Z",
        "2026-11-27T06:29:39+02:00",
        "Fri, 27 Nov 2026 04:29:39 GMT",
        "1795753779",
        1795753779,
    ],
)
def test_timestamps_are_the_datetimes_botocore_would_give(value: object) -> None:
    parsed = parse_timestamp(value)
    assert parsed == botocore_parse_timestamp(value)
    assert parsed.utcoffset() is not None


def test_a_bad_timestamp_is_refused_as_botocore_refuses_it() -> None:
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp("2026-11-27Z")


LISTING = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>false</IsTruncated>
<Contents><Key>a.jpg</Key><LastModified>2026-11-27T04:29:39.000Z</LastModified>
<ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag><Size>1</Size></Contents>
</ListBucketResult>"""


def test_clients_parse_response_timestamps_with_imgclis_parser() -> None:
    s3 = AwsClients(settings()).client("s3")

    def canned_listing(request: Any, **_: Any) -> AWSResponse:
        raw = HTTPResponse(body=io.BytesIO(LISTING), preload_content=False)
        return AWSResponse(request.url, 200, {}, raw)

    s3.meta.events.register("before-send.s3.ListObjectsV2", canned_listing)
    modified = s3.list_objects_v2(Bucket="b")["Contents"][0]["LastModified"]

    assert modified == datetime.datetime(2026, 11, 27, 4, 29, 39, tzinfo=datetime.UTC)
    # fromisoformat's UTC, not dateutil's: the fast path read it.
    assert modified.tzinfo is datetime.UTC


def test_clients_are_made_without_importing_boto3() -> None:
    # boto3 only wraps the botocore session and clients imgcli makes: 15 ms of start-up.
    probe = (
        "import sys\n"
        "from imgcli.aws import AwsClients\n"
        "from imgcli.config import Flags, resolve_stack\n"
        "import os\n"
        "clients = AwsClients(resolve_stack(Flags(), os.environ))\n"
        "clients.client('s3').list_objects_v2\n"
        "clients.session.get_credentials()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'boto3'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# The region: AWS_REGION before AWS_DEFAULT_REGION, as the AWS CLI v2 and the SDKs


@pytest.mark.parametrize(
    ("unset", "flag", "expected"),
    [
        ((), None, "eu-west-2"),  # AWS_REGION beats AWS_DEFAULT_REGION and the profile
        (("AWS_REGION",), None, "eu-west-1"),  # then AWS_DEFAULT_REGION
        (("AWS_REGION", "AWS_DEFAULT_REGION"), None, "ap-southeast-2"),  # then the profile
        ((), "ca-central-1", "ca-central-1"),  # --region beats them all
    ],
)
def test_the_region_follows_the_aws_clis_order(
    monkeypatch: pytest.MonkeyPatch,
    moto_aws: None,
    unset: tuple[str, ...],
    flag: str | None,
    expected: str,
) -> None:
    write_profile("work", "ap-southeast-2")
    monkeypatch.setenv("AWS_PROFILE", "work")
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in unset:
        monkeypatch.delenv(name)
    clients = AwsClients(settings(target="aws", region=flag))
    assert clients.region == expected
    from imgcli.lambdas.records import TABLE_DEFINITION

    dynamodb = clients.client("dynamodb")
    created = dynamodb.create_table(TableName="regional", **TABLE_DEFINITION)
    assert created["TableDescription"]["TableArn"].startswith(f"arn:aws:dynamodb:{expected}:")


def test_a_local_stack_keeps_the_local_clouds_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    assert AwsClients(settings()).client("s3").meta.region_name == "us-east-1"


# Error answers botocore cannot read


def canned(status: int, body: bytes, content_type: str) -> Any:
    def answer(request: Any, **_: Any) -> AWSResponse:
        raw = HTTPResponse(body=io.BytesIO(body), preload_content=False)
        return AWSResponse(request.url, status, {"Content-Type": content_type}, raw)

    return answer


# What the local cloud answers a request addressed to a host name it does not serve.
HOST_REFUSAL = b'{"message": "the local cloud answers only requests addressed to 127.0.0.1"}'


def test_a_json_refusal_to_a_query_protocol_call_is_a_client_error() -> None:
    sts = AwsClients(settings()).client("sts")
    sts.meta.events.register(
        "before-send.sts.GetCallerIdentity", canned(403, HOST_REFUSAL, "application/json")
    )
    with pytest.raises(ClientError) as raised:
        sts.get_caller_identity()
    assert raised.value.response["Error"]["Code"] == "403"
    failure = describe_failure(raised.value)
    assert failure.exit_code == ExitCode.AUTH
    assert failure.message == (
        "AWS refused STS GetCallerIdentity (403): "
        "the local cloud answers only requests addressed to 127.0.0.1"
    )


def test_a_plain_text_refusal_keeps_its_words_escaped() -> None:
    iam = AwsClients(settings(target="aws")).client("iam")
    iam.meta.events.register(
        "before-send.iam.ListRoles", canned(400, b"bad <gateway>\x1b[31m", "text/plain")
    )
    with pytest.raises(ClientError) as raised:
        iam.list_roles()
    assert raised.value.response["Error"] == {"Code": "400", "Message": "bad <gateway>\\x1b[31m"}


def test_a_query_protocol_error_in_xml_is_left_to_botocore() -> None:
    body = (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>"
        b"<Message>The security token included in the request is invalid.</Message>"
        b"</Error><RequestId>1</RequestId></ErrorResponse>"
    )
    sts = AwsClients(settings()).client("sts")
    sts.meta.events.register("before-send.sts.GetCallerIdentity", canned(403, body, "text/xml"))
    with pytest.raises(ClientError) as raised:
        sts.get_caller_identity()
    assert raised.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_a_success_that_is_not_aws_is_a_remote_failure() -> None:
    sts = AwsClients(settings()).client("sts")
    sts.meta.events.register(
        "before-send.sts.GetCallerIdentity", canned(200, b"<html>hotel wifi", "text/html")
    )
    with pytest.raises(ResponseParserError) as raised:
        sts.get_caller_identity()
    failure = describe_failure(raised.value)
    assert failure.exit_code == ExitCode.REMOTE
    assert "not an AWS response" in failure.message
