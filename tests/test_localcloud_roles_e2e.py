"""Functions run as their roles, end to end: a real local cloud, a bootstrapped stack.

A small probe function makes one AWS call (chosen by its event) and reports what the
local cloud answered; it is deployed with different roles, including the stack's own
retrieve role. Then the stack's own functions index an upload and list it under their
real policies (``infra.policies``), which proves those policies by running them.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from imgcli.infra import policies
from imgcli.infra.names import StackNames
from tests.images import image_bytes
from tests.localstack import bootstrap, local_client, local_cloud_env, run_imgcli

STACK = "roles"
NAMES = StackNames(STACK, "123456789012", "us-east-1")
PROBE = """
import json, os
import boto3
from botocore.exceptions import ClientError

CALLS = {
    "list_tables": lambda event: boto3.client("dynamodb").list_tables(),
    "scan": lambda event: boto3.client("dynamodb").scan(TableName=event["table"]),
    "put_object": lambda event: boto3.client("s3").put_object(
        Bucket=event["bucket"], Key="probe.txt", Body=b"x"
    ),
    "list_roles": lambda event: boto3.client("iam").list_roles(),
    "list_functions": lambda event: boto3.client("lambda").list_functions(),
    "whoami": lambda event: boto3.client("sts").get_caller_identity(),
}


def handler(event, context):
    try:
        answer = CALLS[event["call"]](event)
    except ClientError as error:
        return {"ok": False, "code": error.response["Error"]["Code"],
                "message": error.response["Error"]["Message"]}
    return {"ok": True, "arn": answer.get("Arn"), "home": os.path.expanduser("~"),
            "key": os.environ["AWS_ACCESS_KEY_ID"]}
"""


def probe_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", PROBE)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("roles"), STACK) as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def create_role(stack: dict[str, Any], name: str, document: dict[str, Any] | None) -> str:
    iam = local_client(stack, "iam")
    trust = json.dumps(policies.lambda_trust_policy(NAMES))
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"])
    if document is not None:
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(document))
    return arn


def deploy_probe(stack: dict[str, Any], name: str, role_arn: str) -> None:
    local_client(stack, "lambda").create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role_arn,
        Handler="probe.handler",
        Code={"ZipFile": probe_zip()},
        Timeout=10,
    )


def invoke(stack: dict[str, Any], name: str, **event: str) -> dict[str, Any]:
    answer = local_client(stack, "lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    payload: dict[str, Any] = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return payload


def test_a_role_without_dynamodb_access_is_refused_until_its_role_allows_it(
    stack: dict[str, Any],
) -> None:
    deploy_probe(stack, "probe", create_role(stack, "probe-nothing", None))
    refused = invoke(stack, "probe", call="list_tables")
    assert refused["ok"] is False and refused["code"] == "AccessDeniedException"
    assert "assumed-role/probe-nothing/probe" in refused["message"]

    may_list = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:ListTables", "Resource": "*"}],
    }
    role = create_role(stack, "probe-may-list", may_list)
    local_client(stack, "lambda").update_function_configuration(FunctionName="probe", Role=role)
    allowed = invoke(stack, "probe", call="list_tables")
    assert allowed["ok"] is True
    # Its credentials are a role session's, and its HOME is its own.
    assert allowed["key"].startswith("ASIA")
    assert allowed["home"] != os.path.expanduser("~")
    assert invoke(stack, "probe", call="whoami")["arn"] == (
        f"arn:aws:sts::{NAMES.account}:assumed-role/probe-may-list/probe"
    )


def test_the_retrieve_role_may_not_write_or_look_around(stack: dict[str, Any]) -> None:
    deploy_probe(stack, "probe-as-retrieve", NAMES.role_arn(NAMES.retrieve_role))
    for event, code in [
        ({"call": "put_object", "bucket": NAMES.bucket}, "AccessDenied"),
        ({"call": "scan", "table": NAMES.table}, "AccessDeniedException"),
        ({"call": "list_roles"}, "AccessDenied"),
        ({"call": "list_functions"}, "AccessDeniedException"),
    ]:
        answer = invoke(stack, "probe-as-retrieve", **event)
        assert (answer["ok"], answer.get("code")) == (False, code), event
    with pytest.raises(ClientError):
        local_client(stack, "s3").head_object(Bucket=NAMES.bucket, Key="probe.txt")


def test_the_stacks_functions_still_index_and_list_under_their_real_policies(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "beach.jpg").write_bytes(image_bytes("JPEG", (64, 48)))
    env = stack["env"]
    uploaded = run_imgcli(env, "upload", str(tmp_path / "beach.jpg"), "--prefix", "r/", "--wait")
    assert uploaded.returncode == 0, uploaded.stderr
    listed = run_imgcli(env, "list", "--prefix", "r/", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["key"] for row in rows] == ["r/beach.jpg"]
    # The save function's log lines are in its log group, written with its role.
    logs = local_client(stack, "logs")
    group = NAMES.log_group(NAMES.save_function)
    deadline = time.monotonic() + 10
    while not logs.filter_log_events(logGroupName=group)["events"]:
        assert time.monotonic() < deadline, "no log events in " + group
        time.sleep(0.1)


def test_another_buckets_notification_to_the_save_function_is_refused(
    stack: dict[str, Any],
) -> None:
    s3 = local_client(stack, "s3")
    s3.create_bucket(Bucket="someone-elses-bucket")
    with pytest.raises(ClientError) as raised:
        s3.put_bucket_notification_configuration(
            Bucket="someone-elses-bucket",
            NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {
                        "LambdaFunctionArn": NAMES.function_arn(NAMES.save_function),
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )
    assert raised.value.response["Error"]["Code"] == "InvalidArgument"
