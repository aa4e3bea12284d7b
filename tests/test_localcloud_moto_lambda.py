"""moto's Invoke API, served by the local cloud's Lambda runtime (``moto_lambda``).

The tests run moto in process (``mock_aws``), except the last, which serves moto on a
loopback port so that the real save/delete function, zipped as bootstrap deploys it, can
call the local cloud back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from imgcli.infra.packaging import code_sha256
from imgcli.localcloud import moto_lambda
from imgcli.localcloud.async_invoke import AsyncConfig, AsyncInvoker
from imgcli.localcloud.runtime import LambdaRuntime
from tests.lambda_runtime import (
    ACCOUNT,
    CREDENTIALS,
    FAILURES_QUEUE,
    HANDLERS,
    REGION,
    Destinations,
    handler_zip,
    running_runtime,
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    with running_runtime(tmp_path / "runtime") as runtime:
        yield runtime


# --- moto's Invoke API ------------------------------------------------------------------


def create_function(
    lambda_client: Any,
    name: str,
    handler: str,
    zip_bytes: bytes,
    *,
    endpoint_url: str | None = None,
    **extra: Any,
) -> str:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint_url)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    try:
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="fn-role")
    created = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        Timeout=3,
        **extra,
    )
    return str(created["FunctionArn"])


@pytest.fixture
def local_lambda(moto_aws: None, runtime: LambdaRuntime) -> Iterator[AsyncInvoker]:
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: moto_lambda.function_spec(ACCOUNT, REGION, ref),
        invoke_config=lambda ref: moto_lambda.async_config(ACCOUNT, REGION, ref),
        send_to_destination=lambda arn, record: moto_lambda.send_to_queue(
            ACCOUNT, REGION, arn, json.dumps(record)
        ),
        retry_delays=(0.0, 0.0),
        threads=2,
    )
    uninstall = moto_lambda.install_invoke(runtime, invoker)
    yield invoker
    invoker.shutdown()
    uninstall()


def test_moto_internals_the_runtime_relies_on_are_where_it_expects(moto_aws: None) -> None:
    from moto.awslambda.models import lambda_backends

    assert moto_lambda.missing_internals() == []
    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "probe", "h.echo", handler_zip())
    function = lambda_backends[ACCOUNT][REGION].get_function("probe")
    assert moto_lambda.function_attributes_missing(function) == []
    spec = moto_lambda.function_spec(ACCOUNT, REGION, "probe")
    assert spec is not None and spec.handler == "h.echo" and spec.version == "$LATEST"
    assert spec.zip_bytes == handler_zip() and spec.code_sha256 == code_sha256(spec.zip_bytes)
    assert moto_lambda.function_spec(ACCOUNT, REGION, "absent") is None


def test_invoke_through_the_api_runs_the_deployed_code(
    local_lambda: AsyncInvoker, tmp_path: Path
) -> None:
    from moto.awslambda.models import lambda_backends

    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "fn", "h.touch", handler_zip())
    marker = tmp_path / "ran"

    answer = client.invoke(
        FunctionName="fn", Payload=json.dumps({"marker": str(marker)}), LogType="Tail"
    )
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"version": "$LATEST", "code": "one"}
    assert base64.b64decode(answer["LogResult"]).startswith(b"START RequestId: ")
    assert answer["ExecutedVersion"] == "$LATEST"

    failed = client.invoke(
        FunctionName="fn", Payload=json.dumps({"marker": str(marker), "fail": 1})
    )
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "RuntimeError"

    dry = client.invoke(FunctionName="fn", InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert len(marker.read_text().splitlines()) == 2

    queued = client.invoke(
        FunctionName="fn", InvocationType="Event", Payload=json.dumps({"marker": str(marker)})
    )
    assert queued["StatusCode"] == 202
    assert local_lambda.drain(timeout=10)
    assert len(marker.read_text().splitlines()) == 3

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="absent", Payload=b"{}")

    # moto's own callers (event source mappings, SNS, EventBridge) run the code too.
    function = lambda_backends[ACCOUNT][REGION].get_function("fn")
    internal = function.invoke(json.dumps({"marker": str(marker)}), {}, {})
    assert json.loads(internal) == {"version": "$LATEST", "code": "one"}
    assert len(marker.read_text().splitlines()) == 4


def test_invoke_honours_the_qualifier(local_lambda: AsyncInvoker) -> None:
    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "fn", "h.touch", handler_zip())
    client.publish_version(FunctionName="fn")
    two = handler_zip(HANDLERS.replace('"code": "one"', '"code": "two"'))
    client.update_function_code(FunctionName="fn", ZipFile=two)

    def answer(**qualifier: str) -> Any:
        # The event carries a "qualifier" field, which moto used to mistake for the version.
        event = {"marker": "/dev/null", "qualifier": "1"}
        reply = client.invoke(FunctionName="fn", Payload=json.dumps(event), **qualifier)
        return json.loads(reply["Payload"].read())

    assert answer(Qualifier="1") == {"version": "1", "code": "one"}
    assert answer() == {"version": "$LATEST", "code": "two"}
    assert answer(Qualifier="$LATEST") == {"version": "$LATEST", "code": "two"}


def test_async_failure_lands_in_the_on_failure_queue(local_lambda: AsyncInvoker) -> None:
    client = boto3.client("lambda", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="failures")["QueueUrl"]
    function_arn = create_function(client, "fn", "h.fail", handler_zip())
    client.put_function_event_invoke_config(
        FunctionName="fn",
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": FAILURES_QUEUE}},
    )

    client.invoke(FunctionName="fn", InvocationType="Event", Payload=b'{"id": 9}')
    assert local_lambda.drain(timeout=10)

    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["functionArn"] == f"{function_arn}:$LATEST"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"id": 9}
    assert record["responsePayload"]["errorMessage"] == 'no good: {"id": 9}'


def test_uninstall_puts_moto_back(moto_aws: None, runtime: LambdaRuntime) -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda.responses import LambdaResponse

    before = [vars(LambdaResponse)["invoke"], vars(LambdaBackend)["invoke"]]
    before.append(vars(LambdaFunction)["_invoke_lambda"])
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: None,
        invoke_config=lambda ref: AsyncConfig(),
        send_to_destination=Destinations(),
        threads=1,
    )
    moto_lambda.install_invoke(runtime, invoker)()
    invoker.shutdown()
    after = [vars(LambdaResponse)["invoke"], vars(LambdaBackend)["invoke"]]
    after.append(vars(LambdaFunction)["_invoke_lambda"])
    assert after == before


# --- the real save/delete function, calling the local cloud back -----------------------


@pytest.fixture
def moto_server() -> Iterator[str]:
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=5)
        server.stop()


def test_the_deployed_save_delete_function_indexes_an_image(
    moto_server: str, tmp_path: Path
) -> None:
    from imgcli.infra.packaging import build_function_zip
    from imgcli.lambdas.records import TABLE_DEFINITION
    from tests.eventdata import load_event
    from tests.images import image_bytes

    clients = {
        service: boto3.client(service, region_name=REGION, endpoint_url=moto_server)
        for service in ("lambda", "s3", "dynamodb")
    }
    clients["s3"].create_bucket(Bucket="photos")
    clients["s3"].create_bucket(Bucket="thumbs")
    clients["dynamodb"].create_table(TableName="images", **TABLE_DEFINITION)
    key = "summer/beach day.jpg"
    put = clients["s3"].put_object(Bucket="photos", Key=key, Body=image_bytes("JPEG", (64, 48)))
    bundle = build_function_zip("local")
    create_function(
        clients["lambda"],
        "save-delete",
        "lambdas.save_delete.handler",
        bundle.zip_bytes,
        endpoint_url=moto_server,
        Environment={
            "Variables": {
                "TABLE_NAME": "images",
                "BUCKET_NAME": "photos",
                "THUMBNAILS_BUCKET": "thumbs",
            }
        },
    )
    event = load_event("s3_put")
    record = event["Records"][0]["s3"]
    record["bucket"] = {"name": "photos", "arn": "arn:aws:s3:::photos"}
    record["object"].update(
        key="summer/beach+day.jpg", size=len(image_bytes("JPEG", (64, 48))), eTag=put["ETag"]
    )

    runtime = LambdaRuntime(
        workdir=tmp_path / "runtime",
        endpoint_url=moto_server,
        region=REGION,
        credentials=CREDENTIALS,
    )
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: None,
        invoke_config=lambda ref: AsyncConfig(),
        send_to_destination=Destinations(),
        threads=1,
    )
    uninstall = moto_lambda.install_invoke(runtime, invoker)
    try:
        answer = clients["lambda"].invoke(FunctionName="save-delete", Payload=json.dumps(event))
        payload = json.loads(answer["Payload"].read())
    finally:
        uninstall()
        invoker.shutdown()
        runtime.shutdown()

    assert "FunctionError" not in answer, payload
    assert payload == {"active": 1}
    item = clients["dynamodb"].get_item(TableName="images", Key={"key": {"S": key}})["Item"]
    assert item["status"] == {"S": "active"}
    assert (item["width"], item["height"]) == ({"N": "64"}, {"N": "48"})
    made = clients["s3"].list_objects_v2(Bucket="thumbs").get("Contents", [])
    assert sorted(entry["Key"].rsplit("/", 1)[1] for entry in made) == ["1024.webp", "256.webp"]
