"""Snapshots of the local cloud's state, proved through boto3 against moto.

The round trip builds a realistic state with plain boto3 calls, saves it, wipes moto, loads
it, and compares everything a client can observe (every object version and delete marker,
every item, function code, API ids, queue messages), then checks the restored state still
accepts changes. The other tests cover what makes a snapshot safe to rely on: atomic
writes, refusing another moto's or a damaged snapshot without touching the running state,
the scheduler, and the moto internals the module relies on.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import zipfile
from collections import ChainMap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.base_backend import BackendDict
from moto.s3.models import s3_backends

from imgcli.localcloud import persistence
from imgcli.localcloud.persistence import SnapshotError, SnapshotScheduler
from tests.conftest import FAKE_REGION

ACCOUNT = "123456789012"
OBJECTS = 1_000
OBJECT_BYTES = 20_000
ITEMS = 1_000
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
INLINE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


def client(service: str, endpoint_url: str | None = None) -> Any:
    return boto3.client(service, region_name=FAKE_REGION, endpoint_url=endpoint_url)


def function_zip() -> bytes:
    """The same bytes on every call (a fixed date), so a restored copy can be compared."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo("handler.py", date_time=(2024, 1, 1, 0, 0, 0))
        archive.writestr(entry, "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def wipe_moto() -> None:
    """What a fresh process starts with: moto holding nothing."""
    BackendDict.reset()


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "data" / "state.pickle"


# --- the realistic state ------------------------------------------------------------------


def build_state(timings: dict[str, float]) -> dict[str, Any]:
    """Create one of everything the stack uses; return the ids a client would remember."""
    s3 = client("s3")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"second", b"third"):
        s3.put_object(Bucket="versioned", Key="photos/cat one.jpg", Body=body)
    s3.delete_object(Bucket="versioned", Key="photos/cat one.jpg")  # a delete marker
    s3.put_object(Bucket="versioned", Key="photos/dog.jpg", Body=b"dog", Metadata={"w": "3"})
    upload = s3.create_multipart_upload(Bucket="versioned", Key="big.bin")
    s3.upload_part(
        Bucket="versioned",
        Key="big.bin",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"p" * 5 * 1024 * 1024,
    )

    s3.create_bucket(Bucket="plain")
    started = time.perf_counter()
    for index in range(OBJECTS):
        # Distinct bodies, so an object restored with another's content would show.
        body = index.to_bytes(4, "big") * (OBJECT_BYTES // 4)
        s3.put_object(Bucket="plain", Key=f"images/{index:04d}.jpg", Body=body)
    timings["put 1,000 objects of 20 KB"] = time.perf_counter() - started

    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName="images",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "album", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-album",
                "KeySchema": [{"AttributeName": "album", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, ITEMS, 25):
        dynamodb.batch_write_item(
            RequestItems={
                "images": [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"image#{index}"},
                                "album": {"S": f"album#{index % 7}"},
                                "size": {"N": str(index * 10)},
                                "tags": {"SS": ["a", f"t{index}"]},
                            }
                        }
                    }
                    for index in range(start, start + 25)
                ]
            }
        )

    iam = client("iam")
    role = iam.create_role(RoleName="imgcli-save", AssumeRolePolicyDocument=json.dumps(TRUST))
    iam.put_role_policy(
        RoleName="imgcli-save", PolicyName="read", PolicyDocument=json.dumps(INLINE_POLICY)
    )

    sqs = client("sqs")
    queue_url = sqs.create_queue(QueueName="imgcli-failures")["QueueUrl"]
    for index in range(5):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"failed event {index}")
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    awslambda = client("lambda")
    function = awslambda.create_function(
        FunctionName="imgcli-save",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": function_zip()},
        Environment={"Variables": {"TABLE": "images"}},
        Timeout=30,
    )
    version = awslambda.publish_version(FunctionName="imgcli-save")["Version"]
    awslambda.create_alias(FunctionName="imgcli-save", Name="live", FunctionVersion=version)
    awslambda.put_function_event_invoke_config(
        FunctionName="imgcli-save",
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    awslambda.add_permission(
        FunctionName="imgcli-save",
        StatementId="s3-invoke",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::plain",
    )

    apigateway = client("apigatewayv2")
    api = apigateway.create_api(Name="imgcli", ProtocolType="HTTP")
    integration = apigateway.create_integration(
        ApiId=api["ApiId"],
        IntegrationType="AWS_PROXY",
        IntegrationUri=function["FunctionArn"],
        PayloadFormatVersion="2.0",
    )
    apigateway.create_route(
        ApiId=api["ApiId"],
        RouteKey="GET /images/{key}",
        Target=f"integrations/{integration['IntegrationId']}",
        AuthorizationType="AWS_IAM",
    )
    apigateway.create_stage(ApiId=api["ApiId"], StageName="$default", AutoDeploy=True)

    logs = client("logs")
    logs.create_log_group(logGroupName="/aws/lambda/imgcli-save")
    logs.create_log_stream(logGroupName="/aws/lambda/imgcli-save", logStreamName="one")
    logs.put_log_events(
        logGroupName="/aws/lambda/imgcli-save",
        logStreamName="one",
        logEvents=[{"timestamp": 1_700_000_000_000, "message": "saved cat one.jpg"}],
    )
    return {"queue_url": queue_url, "api_id": api["ApiId"], "upload_id": upload["UploadId"]}


def observe(ids: dict[str, Any]) -> dict[str, Any]:
    """Everything a client can read back about the state, minus per-request noise."""
    s3, dynamodb, iam = client("s3"), client("dynamodb"), client("iam")
    awslambda, sqs, apigateway, logs = (
        client("lambda"),
        client("sqs"),
        client("apigatewayv2"),
        client("logs"),
    )
    api_id = ids["api_id"]
    versions = clean(s3.list_object_versions(Bucket="versioned"))
    observed: dict[str, Any] = {
        "buckets": sorted(bucket["Name"] for bucket in s3.list_buckets()["Buckets"]),
        "versioning": clean(s3.get_bucket_versioning(Bucket="versioned")),
        "versions": versions,
        "version bodies": {
            f"{version['Key']}@{version['VersionId']}": s3.get_object(
                Bucket="versioned", Key=version["Key"], VersionId=version["VersionId"]
            )["Body"].read()
            for version in versions["Versions"]
        },
        "dog metadata": s3.head_object(Bucket="versioned", Key="photos/dog.jpg")["Metadata"],
        "uploads": clean(s3.list_multipart_uploads(Bucket="versioned"))["Uploads"],
        "parts": clean(s3.list_parts(Bucket="versioned", Key="big.bin", UploadId=ids["upload_id"]))[
            "Parts"
        ],
        "plain objects": [
            clean(page)["Contents"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket="plain")
        ],
        "plain samples": {
            key: hashlib.sha256(s3.get_object(Bucket="plain", Key=key)["Body"].read()).hexdigest()
            for key in ("images/0000.jpg", "images/0500.jpg", "images/0999.jpg")
        },
        "table": clean(dynamodb.describe_table(TableName="images"))["Table"],
        "items": sorted(
            (
                item
                for page in dynamodb.get_paginator("scan").paginate(TableName="images")
                for item in page["Items"]
            ),
            key=lambda item: item["pk"]["S"],
        ),
        "album 3": dynamodb.query(
            TableName="images",
            IndexName="by-album",
            KeyConditionExpression="album = :album",
            ExpressionAttributeValues={":album": {"S": "album#3"}},
        )["Count"],
        "role": clean(iam.get_role(RoleName="imgcli-save"))["Role"],
        "inline policy": clean(iam.get_role_policy(RoleName="imgcli-save", PolicyName="read")),
        "function": clean(awslambda.get_function(FunctionName="imgcli-save"))["Configuration"],
        "versions of function": [
            clean(version)
            for version in awslambda.list_versions_by_function(FunctionName="imgcli-save")[
                "Versions"
            ]
        ],
        "alias": clean(awslambda.get_alias(FunctionName="imgcli-save", Name="live")),
        "invoke config": clean(
            awslambda.get_function_event_invoke_config(FunctionName="imgcli-save")
        ),
        "permission policy": json.loads(awslambda.get_policy(FunctionName="imgcli-save")["Policy"]),
        "queue": clean(sqs.get_queue_attributes(QueueUrl=ids["queue_url"], AttributeNames=["All"])),
        "apis": clean(apigateway.get_apis())["Items"],
        "routes": clean(apigateway.get_routes(ApiId=api_id))["Items"],
        "integrations": clean(apigateway.get_integrations(ApiId=api_id))["Items"],
        "stages": clean(apigateway.get_stages(ApiId=api_id))["Items"],
        "log groups": clean(logs.describe_log_groups())["logGroups"],
        "log events": [
            event["message"]
            for event in logs.get_log_events(
                logGroupName="/aws/lambda/imgcli-save", logStreamName="one"
            )["events"]
        ],
    }
    return observed


def observed_json(ids: dict[str, Any]) -> str:
    """``observe`` as text, comparable across processes (bytes and dates as their repr)."""
    return json.dumps(observe(ids), default=str, sort_keys=True)


#: Loads a snapshot in a fresh interpreter, as ``local start`` does, and observes it.
FRESH_PROCESS_LOAD = """
import json, sys
from pathlib import Path
from moto import mock_aws
from imgcli.localcloud import persistence
from tests.test_localcloud_persistence import observed_json
with mock_aws():
    persistence.load_snapshot(Path(sys.argv[1]))
    print(observed_json(json.loads(sys.argv[2])))
"""


def clean(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def deployed_zip(function_name: str) -> bytes:
    from moto.awslambda.models import lambda_backends

    function = lambda_backends[ACCOUNT][FAKE_REGION].get_function(function_name, None)
    return bytes(function.code_bytes)


def receive_all(queue_url: str) -> list[str]:
    sqs = client("sqs")
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return sorted(bodies)
        bodies.extend(message["Body"] for message in messages)


def test_round_trip_restores_everything_a_client_can_see(moto_aws: None, snapshot: Path) -> None:
    timings: dict[str, float] = {}
    ids = build_state(timings)
    before = observe(ids)
    # The point of the S3 fix: three versions and a marker, not just the current one.
    assert len(before["versions"]["Versions"]) == 4
    assert len(before["versions"]["DeleteMarkers"]) == 1

    saved = persistence.save_snapshot(snapshot)
    wipe_moto()
    assert client("s3").list_buckets()["Buckets"] == []
    loaded = persistence.load_snapshot(snapshot)

    assert loaded is not None
    assert observe(ids) == before
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS_LOAD, str(snapshot), json.dumps(ids)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert fresh.stdout.strip() == observed_json(ids)
    assert deployed_zip("imgcli-save") == function_zip()  # what the runtime will unpack
    assert receive_all(ids["queue_url"]) == [f"failed event {index}" for index in range(5)]
    assert {"s3", "dynamodb", "lambda", "iam", "sqs", "apigatewayv2", "logs"} <= set(
        loaded.services
    )
    assert (loaded.moto_version, loaded.size_bytes) == (saved.moto_version, saved.size_bytes)
    timings["save"], timings["load"] = saved.seconds, loaded.seconds
    print(
        f"\nsnapshot {saved.size_bytes / 1e6:.1f} MB; "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items())
    )


def test_restored_state_keeps_working(moto_aws: None, snapshot: Path) -> None:
    s3, sqs, awslambda, dynamodb = client("s3"), client("sqs"), client("lambda"), client("dynamodb")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="versioned", Key="k", Body=b"one")["VersionId"]
    upload_id = s3.create_multipart_upload(Bucket="versioned", Key="big")["UploadId"]
    part = s3.upload_part(
        Bucket="versioned", Key="big", UploadId=upload_id, PartNumber=1, Body=b"p" * 10
    )
    queue_url = sqs.create_queue(QueueName="q")["QueueUrl"]
    role = client("iam").create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(TRUST))
    function_arn = awslambda.create_function(
        FunctionName="f",
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": function_zip()},
    )["FunctionArn"]
    dynamodb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    persistence.save_snapshot(snapshot)
    wipe_moto()
    persistence.load_snapshot(snapshot)

    second = s3.put_object(Bucket="versioned", Key="k", Body=b"two")["VersionId"]
    listed = s3.list_object_versions(Bucket="versioned", Prefix="k")["Versions"]
    assert [version["VersionId"] for version in listed] == [second, first]
    s3.complete_multipart_upload(
        Bucket="versioned",
        Key="big",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.get_object(Bucket="versioned", Key="big")["Body"].read() == b"p" * 10
    # A bucket name is still taken (S3's global namespace lives on its BackendDict).
    elsewhere = boto3.client("s3", region_name="eu-west-1")
    with pytest.raises(elsewhere.exceptions.BucketAlreadyOwnedByYou):
        elsewhere.create_bucket(
            Bucket="versioned", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    # The queue's condition was recreated: a long poll waits, and a send still arrives.
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
    sqs.send_message(QueueUrl=queue_url, MessageBody="after")
    assert receive_all(queue_url) == ["after"]
    # Lambda's index by ARN (the weak one) and its alias table work, old and new entries.
    function = awslambda.get_function(FunctionName=function_arn)["Configuration"]
    assert function["FunctionName"] == "f"
    version = awslambda.publish_version(FunctionName="f")["Version"]
    awslambda.create_alias(FunctionName="f", Name="live", FunctionVersion=version)
    assert awslambda.get_alias(FunctionName="f", Name="live")["FunctionVersion"] == version
    # Conditional writes still see the restored item.
    dynamodb.update_item(
        TableName="t",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET n = n + :one",
        ConditionExpression="n = :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(
            TableName="t", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)"
        )
    item = dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
    assert item["n"] == {"N": "2"}


def test_a_running_server_serves_the_loaded_state(snapshot: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3, apigateway = client("s3", endpoint), client("apigatewayv2", endpoint)
        s3.create_bucket(Bucket="served")
        s3.put_object(Bucket="served", Key="a b.jpg", Body=b"jpeg")
        api_id = apigateway.create_api(Name="imgcli", ProtocolType="HTTP")["ApiId"]
        persistence.save_snapshot(snapshot)
        s3.delete_object(Bucket="served", Key="a b.jpg")
        apigateway.delete_api(ApiId=api_id)

        persistence.load_snapshot(snapshot)

        # The same clients, on the same server, see the saved state again.
        assert s3.get_object(Bucket="served", Key="a b.jpg")["Body"].read() == b"jpeg"
        assert apigateway.get_api(ApiId=api_id)["Name"] == "imgcli"
    finally:
        server.stop()
        wipe_moto()


# --- safety -------------------------------------------------------------------------------


def test_no_snapshot_loads_nothing(moto_aws: None, snapshot: Path) -> None:
    client("s3").create_bucket(Bucket="kept")
    assert persistence.load_snapshot(snapshot) is None
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]


def test_a_failed_rename_keeps_the_last_good_snapshot(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="old")
    persistence.save_snapshot(snapshot)
    good = snapshot.read_bytes()
    s3.create_bucket(Bucket="new")

    def crash(source: object, destination: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        persistence.save_snapshot(snapshot)
    monkeypatch.undo()

    assert snapshot.read_bytes() == good
    # No temporary file left behind.
    assert sorted(snapshot.parent.iterdir()) == [snapshot, persistence.bodies_directory(snapshot)]
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["old"]


def test_a_temporary_file_left_by_a_killed_save_is_ignored_then_removed(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    persistence.save_snapshot(snapshot)
    leftover = snapshot.parent / f".{snapshot.name}.abc123.tmp"
    leftover.write_bytes(b"half a snapshot")
    wipe_moto()
    assert persistence.load_snapshot(snapshot) is not None
    persistence.save_snapshot(snapshot)
    assert not leftover.exists()


def rewrite_header(path: Path, **changes: Any) -> None:
    magic, header, body = path.read_bytes().split(b"\n", 2)
    fields = json.loads(header) | changes
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)


@pytest.mark.parametrize(
    ("changes", "saved_by"),
    [({"moto": "5.0.0"}, "moto 5.0.0"), ({"format": 999}, "format 999")],
)
def test_another_versions_snapshot_is_refused(
    moto_aws: None, snapshot: Path, changes: dict[str, Any], saved_by: str
) -> None:
    persistence.save_snapshot(snapshot)
    rewrite_header(snapshot, **changes)
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError) as refused:
        persistence.load_snapshot(snapshot)

    message = str(refused.value)
    assert saved_by in message
    assert f"moto {persistence.MOTO_VERSION}" in message
    assert "imgcli local reset" in message
    # Refused before anything was touched.
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["running"]


def rewrite_body(path: Path, body: bytes) -> None:
    magic, header, _ = path.read_bytes().split(b"\n", 2)
    fields = json.loads(header) | {
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    path.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped byte":
        middle = len(data) // 2 + 100
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not a snapshot":
        path.write_bytes(b"PK\x03\x04 some zip")
    elif how == "header only":
        path.write_bytes(data[: data.index(b"\n", len(persistence.MAGIC)) + 1])
    elif how == "bad header":
        path.write_bytes(persistence.MAGIC + b"{not json\n" + data)


@pytest.mark.parametrize(
    "how", ["truncated", "flipped byte", "empty", "not a snapshot", "header only", "bad header"]
)
def test_a_damaged_snapshot_is_refused_and_the_state_untouched(
    moto_aws: None, snapshot: Path, how: str
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="saved")
    s3.put_object(Bucket="saved", Key="k", Body=b"x" * 50_000)
    persistence.save_snapshot(snapshot)
    damage(snapshot, how)

    with pytest.raises(SnapshotError, match="imgcli local reset"):
        persistence.load_snapshot(snapshot)

    assert s3.get_object(Bucket="saved", Key="k")["Body"].read() == b"x" * 50_000


def test_a_service_that_cannot_be_pickled_is_skipped_not_fatal(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    client("kms").create_key()  # moto keeps a cryptography key object, which pickle refuses

    saved = persistence.save_snapshot(snapshot)
    wipe_moto()
    loaded = persistence.load_snapshot(snapshot)

    assert saved.skipped == ("kms",)
    assert loaded is not None
    assert (loaded.skipped, "s3" in loaded.services) == (("kms",), True)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]
    assert client("kms").list_keys()["Keys"] == []


def test_a_checked_snapshot_that_cannot_be_restored_leaves_moto_empty(
    moto_aws: None, snapshot: Path
) -> None:
    persistence.save_snapshot(snapshot)
    # A whole, correctly checksummed snapshot naming backends moto does not have: what a
    # change to moto's layout under the same version string would look like.
    body = pickle.dumps([("moto.s3.models", "no_such_backends", {}, {})])
    rewrite_body(snapshot, pickle.dumps({}) + body)  # no body files, then the backends
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError, match="imgcli local reset"):
        persistence.load_snapshot(snapshot)

    assert client("s3").list_buckets()["Buckets"] == []


# --- object bodies ------------------------------------------------------------------------


def body_files(snapshot: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in persistence.bodies_directory(snapshot).iterdir())


def test_object_bodies_are_written_once_and_kept_out_of_the_snapshot(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    big = os.urandom(1_000_000)
    s3.put_object(Bucket="bodies", Key="big.jpg", Body=big)
    first = persistence.save_snapshot(snapshot)
    s3.put_object(Bucket="bodies", Key="small.jpg", Body=b"small")
    second = persistence.save_snapshot(snapshot)
    third = persistence.save_snapshot(snapshot)

    # Each body once, by the first save that saw it; the snapshot holds none of them.
    assert (first.bodies_written, second.bodies_written, third.bodies_written) == (1, 1, 0)
    assert third.size_bytes < len(big) // 10
    assert body_files(snapshot) == sorted([big, b"small"])
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read() == big
    # The restored key still knows its file: the next save writes nothing.
    assert persistence.save_snapshot(snapshot).bodies_written == 0


def test_a_deleted_objects_body_goes_with_it_and_a_copy_keeps_the_content(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="source.jpg", Body=b"content")
    s3.put_object(Bucket="bodies", Key="gone.jpg", Body=b"gone")
    persistence.save_snapshot(snapshot)
    s3.copy_object(
        Bucket="bodies", Key="copy.jpg", CopySource={"Bucket": "bodies", "Key": "source.jpg"}
    )
    s3.delete_objects(
        Bucket="bodies", Delete={"Objects": [{"Key": "source.jpg"}, {"Key": "gone.jpg"}]}
    )
    persistence.save_snapshot(snapshot)

    assert body_files(snapshot) == [b"content"]
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert s3.get_object(Bucket="bodies", Key="copy.jpg")["Body"].read() == b"content"
    s3.delete_object(Bucket="bodies", Key="copy.jpg")
    persistence.save_snapshot(snapshot)
    assert body_files(snapshot) == []


@pytest.mark.parametrize("held", ["in memory", "in a file"])
def test_saving_a_body_leaves_its_buffer_where_moto_had_it(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    # moto reads a key's buffer without the key's lock (to compute its ETag), so a save
    # that seeks could corrupt that read, or be corrupted by it.
    if held == "in a file":
        monkeypatch.setenv("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", "1024")
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    data = os.urandom(10_000)
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=data)
    key = s3_backends[ACCOUNT]["aws"].buckets["bodies"].keys["k.jpg"]
    assert key._value_buffer._rolled == (held == "in a file")
    key._value_buffer.seek(1234)

    persistence.save_snapshot(snapshot)

    assert key._value_buffer.tell() == 1234
    assert body_files(snapshot) == [data]


@pytest.mark.parametrize("damage", ["removed", "cut short"])
def test_a_missing_or_damaged_body_is_refused_and_the_state_untouched(
    moto_aws: None, snapshot: Path, damage: str
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=b"0123456789")
    persistence.save_snapshot(snapshot)
    (body,) = persistence.bodies_directory(snapshot).iterdir()
    if damage == "removed":
        body.unlink()
    else:
        body.write_bytes(b"01234")
    s3.create_bucket(Bucket="running")

    with pytest.raises(SnapshotError, match=r"names an object body that is .*imgcli local reset"):
        persistence.load_snapshot(snapshot)

    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["bodies", "running"]


def test_a_completed_multipart_upload_survives_saves_before_and_after_it(
    moto_aws: None, snapshot: Path
) -> None:
    # Completing disposes the parts (their buffers close) while the new key still refers
    # to them: saved like moto pickles them, empty, and without files.
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    part_size = 5 * 1024 * 1024
    upload = s3.create_multipart_upload(Bucket="bodies", Key="big.jpg")["UploadId"]
    parts = [
        s3.upload_part(
            Bucket="bodies", Key="big.jpg", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        for number, body in ((1, os.urandom(part_size)), (2, b"end"))
    ]
    persistence.save_snapshot(snapshot)  # the parts, while the upload is in progress
    s3.complete_multipart_upload(
        Bucket="bodies",
        Key="big.jpg",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(parts, 1)]
        },
    )
    whole = s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read()
    persistence.save_snapshot(snapshot)
    persistence.save_snapshot(snapshot)

    assert body_files(snapshot) == [whole]
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read() == whole


def test_a_body_that_cannot_be_written_fails_the_save_and_keeps_the_last_one(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="old.jpg", Body=b"old")
    persistence.save_snapshot(snapshot)
    good = snapshot.read_bytes()
    s3.put_object(Bucket="bodies", Key="new.jpg", Body=b"new")

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    # Not "S3 cannot be pickled, saved without it": the save fails.
    with pytest.raises(SnapshotError, match="No space left on device"):
        persistence.save_snapshot(snapshot)
    monkeypatch.undo()

    assert snapshot.read_bytes() == good
    assert body_files(snapshot) == [b"old"]


def test_a_format_1_snapshot_with_the_bodies_inside_still_loads(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=b"inside")
    # What format 1 wrote: the same pickle, with moto's own pickling of each key.
    backend_dicts = list(BackendDict._instances)  # type: ignore[misc]
    entries = [persistence._entry(backends) for backends in backend_dicts]
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = ChainMap[type, Any](dict(persistence._fixes()), copyreg.dispatch_table)
    pickler.dump(entries)
    persistence.save_snapshot(snapshot)
    rewrite_header(snapshot, format=1)
    rewrite_body(snapshot, buffer.getvalue())
    wipe_moto()

    assert persistence.load_snapshot(snapshot) is not None
    assert s3.get_object(Bucket="bodies", Key="k.jpg")["Body"].read() == b"inside"


def test_a_body_removed_by_hand_is_written_again_by_the_next_save(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=b"body")
    persistence.save_snapshot(snapshot)
    for path in persistence.bodies_directory(snapshot).iterdir():
        path.unlink()

    assert persistence.save_snapshot(snapshot).bodies_written == 1
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert s3.get_object(Bucket="bodies", Key="k.jpg")["Body"].read() == b"body"


def test_save_reads_the_state_under_the_callers_lock(moto_aws: None, snapshot: Path) -> None:
    lock = threading.Lock()
    finished = threading.Event()

    def save() -> None:
        persistence.save_snapshot(snapshot, lock=lock)
        finished.set()

    with lock:
        saver = threading.Thread(target=save)
        saver.start()
        assert not finished.wait(0.2)
    saver.join(5)
    assert finished.is_set()


# --- the scheduler ------------------------------------------------------------------------

TICK = 0.02


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(TICK / 2)


@pytest.fixture
def scheduler(moto_aws: None, snapshot: Path) -> Iterator[SnapshotScheduler]:
    scheduler = SnapshotScheduler(snapshot, interval_s=TICK)
    yield scheduler
    scheduler.stop()


def test_scheduler_saves_nothing_while_nothing_changes(
    scheduler: SnapshotScheduler, snapshot: Path
) -> None:
    time.sleep(TICK * 10)
    assert (scheduler.saves, snapshot.exists()) == (0, False)
    assert scheduler.stop() is None
    assert not snapshot.exists()


def test_scheduler_saves_a_change_then_settles(
    scheduler: SnapshotScheduler, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="changed")
    scheduler.mark_dirty()
    # One save for the change, one more for a change marked before moto applied it.
    wait_until(lambda: scheduler.saves == 2)
    time.sleep(TICK * 10)
    assert scheduler.saves == 2
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["changed"]


def test_scheduler_saves_once_more_on_stop(moto_aws: None, snapshot: Path) -> None:
    scheduler = SnapshotScheduler(snapshot, interval_s=60)
    client("s3").create_bucket(Bucket="last-second")
    scheduler.mark_dirty()

    info = scheduler.stop()

    assert info is not None
    assert (info.path, scheduler.saves) == (snapshot, 1)
    assert scheduler.stop() is None  # idempotent
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["last-second"]


def test_scheduler_retries_a_failed_save(moto_aws: None, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    snapshot = blocker / "state.pickle"  # cannot be written while blocker is a file
    scheduler = SnapshotScheduler(snapshot, interval_s=TICK)
    try:
        scheduler.mark_dirty()
        time.sleep(TICK * 5)
        assert scheduler.saves == 0
        blocker.unlink()
        wait_until(lambda: scheduler.saves >= 1)
        assert snapshot.exists()
    finally:
        scheduler.stop()


# --- the moto internals this relies on ----------------------------------------------------


def test_moto_internals_are_where_persistence_expects_them() -> None:
    persistence.check_moto_internals()


def test_plain_pickle_still_gets_moto_wrong(moto_aws: None) -> None:
    """Why each pickling fix exists; if this fails, moto changed and the fix may go."""
    from moto.awslambda.models import lambda_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends

    s3 = client("s3")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="versioned", Key="k", Body=b"one")
    s3.put_object(Bucket="versioned", Key="k", Body=b"two")
    client("sqs").create_queue(QueueName="q")
    keys = s3_backends[ACCOUNT]["aws"].buckets["versioned"].keys

    assert len(keys.getlist("k")) == 2
    assert len(pickle.loads(pickle.dumps(keys)).getlist("k")) == 1  # silently drops versions
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        pickle.dumps(lambda_backends[ACCOUNT][FAKE_REGION]._lambdas)
    with pytest.raises(TypeError):
        pickle.dumps(sqs_backends[ACCOUNT][FAKE_REGION].queues["q"])
