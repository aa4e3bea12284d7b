"""How moto's state pickles in a snapshot, proved through boto3 against moto.

The round trip builds a realistic state with plain boto3 calls, saves it, wipes moto, loads
it, and compares everything a client can observe (every object version and delete marker,
every item, function code, API ids, queue messages), then checks the restored state still
accepts changes. ``test_plain_pickle_still_gets_moto_wrong`` shows why each fix exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from imgcli.localcloud import persistence
from tests.conftest import FAKE_REGION
from tests.localcloud_snapshots import ACCOUNT, KEY, client, wipe_moto

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


def function_zip() -> bytes:
    """The same bytes on every call (a fixed date), so a restored copy can be compared."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo("handler.py", date_time=(2024, 1, 1, 0, 0, 0))
        archive.writestr(entry, "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


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
from tests.localcloud_snapshots import KEY
from tests.test_localcloud_snapshot_pickling import observed_json
with mock_aws():
    persistence.load_snapshot(Path(sys.argv[1]), key=KEY)
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

    saved = persistence.save_snapshot(snapshot, key=KEY)
    wipe_moto()
    assert client("s3").list_buckets()["Buckets"] == []
    loaded = persistence.load_snapshot(snapshot, key=KEY)

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
    persistence.save_snapshot(snapshot, key=KEY)
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)

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


# --- the pickling fixes -------------------------------------------------------------------


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
