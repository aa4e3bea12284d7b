"""The local cloud end to end: a real server process, a bootstrapped stack, plain boto3
clients and signed HTTP calls, as a user (or another tool) would meet them."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.images import image_bytes
from tests.localstack import KEY, SECRET, local_client, local_cloud_env, run_imgcli

HTTP = urllib3.PoolManager()


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local cloud of the module's own, and the environment to reach it."""
    with local_cloud_env(tmp_path_factory.mktemp("localcloud"), "e2e") as env:
        yield env


def imgcli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_imgcli(env, *args)


@pytest.fixture(scope="module")
def stack(local_env: dict[str, str]) -> dict[str, Any]:
    created = run_imgcli(local_env, "bootstrap", "--json")
    assert created.returncode == 0, created.stderr
    assert "started the local cloud" in created.stderr  # nothing else was started first
    description: dict[str, Any] = json.loads(created.stdout)
    assert description["target"] == "local"
    assert description["api_url"].startswith("http://127.0.0.1:")
    return description


def client(stack: dict[str, Any], service: str) -> Any:
    return local_client(stack, service)


def signed_get(url: str, *, secret: str = SECRET, key: str = KEY) -> urllib3.BaseHTTPResponse:
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(key, secret), "execute-api", "us-east-1").add_auth(request)
    return HTTP.request("GET", url, headers=dict(request.headers), retries=False)


def list_images(stack: dict[str, Any], **query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        parameters = {**query, **({"cursor": cursor} if cursor else {})}
        suffix = "?" + urlencode(parameters) if parameters else ""
        response = signed_get(f"{stack['api_url']}/images{suffix}")
        assert response.status == 200, response.data
        page = json.loads(response.data)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


AWKWARD_KEYS = [
    "plain.jpg",
    "with space/and more spaces.png",
    "plus+sign+and%percent.gif",
    "unicodé/日本/猫.webp",
    "deep/nested/prefix/of/folders/photo.bmp",
]
FORMATS = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}


def test_images_put_by_any_client_are_indexed_and_served(stack: dict[str, Any]) -> None:
    s3 = client(stack, "s3")
    for index, key in enumerate(AWKWARD_KEYS):
        fmt = FORMATS[key.rsplit(".", 1)[1]]
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes(fmt, size=(40 + index, 30)))
    eventually(lambda: {i["key"] for i in list_images(stack)} >= set(AWKWARD_KEYS))
    for index, key in enumerate(AWKWARD_KEYS):
        response = signed_get(f"{stack['api_url']}/images/{quote(key, safe='/')}")
        assert response.status == 200, (key, response.data)
        item = json.loads(response.data)
        assert item["key"] == key
        assert item["format"] == FORMATS[key.rsplit(".", 1)[1]]
        assert (item["width"], item["height"]) == (40 + index, 30)

    for key in AWKWARD_KEYS:
        s3.delete_object(Bucket=stack["bucket"], Key=key)
    eventually(lambda: not {i["key"] for i in list_images(stack)} & set(AWKWARD_KEYS))
    response = signed_get(f"{stack['api_url']}/images/{quote(AWKWARD_KEYS[1], safe='/')}")
    assert response.status == 404


def test_two_hundred_concurrent_uploads_are_all_indexed(stack: dict[str, Any]) -> None:
    s3 = client(stack, "s3")
    data = image_bytes("JPEG", size=(16, 16))
    keys = [f"batch/{n:03d}.jpg" for n in range(200)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=stack["bucket"], Key=key, Body=data), keys))

    def all_listed() -> bool:
        return len(list_images(stack, prefix="batch/")) == 200

    eventually(all_listed, timeout_s=60)
    listed = [item["key"] for item in list_images(stack, prefix="batch/")]
    assert sorted(listed) == keys  # none lost; none listed twice


def test_the_api_refuses_unsigned_tampered_and_foreign_requests(stack: dict[str, Any]) -> None:
    url = f"{stack['api_url']}/images"
    assert signed_get(url).status == 200
    assert HTTP.request("GET", url, retries=False).status == 403
    assert signed_get(url, secret="wrong-secret").status == 403
    assert signed_get(url, key="AKIAFOREIGN", secret="x").status == 403
    request = AWSRequest(method="GET", url=url + "?limit=5")
    SigV4Auth(Credentials(KEY, SECRET), "execute-api", "us-east-1").add_auth(request)
    tampered = HTTP.request("GET", url + "?limit=6", headers=dict(request.headers), retries=False)
    assert tampered.status == 403
    assert "message" in json.loads(tampered.data)


def handler_zip(source: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("h.py", source)
    return out.getvalue()


def test_a_failing_async_function_is_retried_then_reported(stack: dict[str, Any]) -> None:
    lam, sqs = client(stack, "lambda"), client(stack, "sqs")
    queue_url = sqs.create_queue(QueueName="e2e-failures")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    iam = client(stack, "iam")
    role = iam.create_role(
        RoleName="e2e-fails", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    # Lambda writes the failure record with the function's role, as on AWS.
    iam.put_role_policy(
        RoleName="e2e-fails",
        PolicyName="report",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}
                ],
            }
        ),
    )
    lam.create_function(
        FunctionName="e2e-fails",
        Runtime="python3.13",
        Role=role,
        Handler="h.handler",
        Code={"ZipFile": handler_zip("def handler(event, context):\n    raise ValueError('no')\n")},
    )
    lam.put_function_event_invoke_config(
        FunctionName="e2e-fails",
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    assert (
        lam.invoke(FunctionName="e2e-fails", InvocationType="Event", Payload=b"{}")["StatusCode"]
        == 202
    )
    messages: list[dict[str, Any]] = []

    def reported() -> bool:
        messages.extend(
            sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        )
        return bool(messages)

    eventually(reported, timeout_s=30)
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_a_function_past_its_timeout_is_stopped(stack: dict[str, Any]) -> None:
    lam = client(stack, "lambda")
    role = client(stack, "iam").create_role(
        RoleName="e2e-slow", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    lam.create_function(
        FunctionName="e2e-slow",
        Runtime="python3.13",
        Role=role,
        Handler="h.handler",
        Timeout=1,
        Code={"ZipFile": handler_zip("import time\ndef handler(e, c):\n    time.sleep(30)\n")},
    )
    started = time.monotonic()
    response = lam.invoke(FunctionName="e2e-slow", Payload=b"{}")
    assert time.monotonic() - started < 10
    assert response["FunctionError"] == "Unhandled"
    assert "timed out" in json.loads(response["Payload"].read())["errorMessage"]


def test_state_survives_stop_start_and_a_kill(
    stack: dict[str, Any], local_env: dict[str, str]
) -> None:
    s3 = client(stack, "s3")
    s3.put_object(Bucket=stack["bucket"], Key="keep/me.png", Body=image_bytes("PNG"))
    eventually(lambda: any(i["key"] == "keep/me.png" for i in list_images(stack)))

    stopped = imgcli(local_env, "local", "stop")
    assert stopped.returncode == 0, stopped.stderr
    started = imgcli(local_env, "local", "start")
    assert started.returncode == 0, started.stderr
    assert s3.get_object(Bucket=stack["bucket"], Key="keep/me.png")["Body"].read()
    assert any(i["key"] == "keep/me.png" for i in list_images(stack))  # same API URL

    s3.put_object(Bucket=stack["bucket"], Key="keep/second.png", Body=image_bytes("PNG"))
    eventually(lambda: any(i["key"] == "keep/second.png" for i in list_images(stack)))
    time.sleep(7)  # past the snapshot interval
    status = json.loads(imgcli(local_env, "local", "status", "--json").stdout)
    os.kill(status["pid"], signal.SIGKILL)
    eventually(
        lambda: not json.loads(imgcli(local_env, "local", "status", "--json").stdout)["running"]
    )
    restarted = imgcli(local_env, "local", "start")
    assert restarted.returncode == 0, restarted.stderr
    assert {i["key"] for i in list_images(stack)} >= {"keep/me.png", "keep/second.png"}


def test_only_this_machines_signed_requests_get_in(stack: dict[str, Any]) -> None:
    endpoint = stack["endpoint_url"]
    # What a web page could send: no signature, another Host (DNS rebinding), an Origin.
    unsigned = HTTP.request("GET", f"{endpoint}/{stack['bucket']}", retries=False)
    assert unsigned.status == 403
    rebound = HTTP.request(
        "GET", f"{endpoint}/{stack['bucket']}", headers={"Host": "evil.example"}, retries=False
    )
    assert rebound.status == 403
    request = AWSRequest(method="GET", url=f"{endpoint}/{stack['bucket']}")
    SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(request)
    signed = HTTP.request("GET", request.url, headers=dict(request.headers), retries=False)
    assert signed.status == 200
    cross_origin = HTTP.request(
        "GET",
        request.url,
        headers={**dict(request.headers), "Origin": "https://evil.example"},
        retries=False,
    )
    assert cross_origin.status == 403


def test_stop_finishes_pending_events_before_it_saves(
    stack: dict[str, Any], local_env: dict[str, str]
) -> None:
    s3 = client(stack, "s3")
    data = image_bytes("JPEG", size=(8, 8))
    keys = [f"pending/{n:03d}.jpg" for n in range(150)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=stack["bucket"], Key=key, Body=data), keys))
    stopped = imgcli(local_env, "local", "stop")  # at once: most events are still queued
    assert stopped.returncode == 0, stopped.stderr
    assert imgcli(local_env, "local", "start").returncode == 0
    assert sorted(i["key"] for i in list_images(stack, prefix="pending/")) == keys
