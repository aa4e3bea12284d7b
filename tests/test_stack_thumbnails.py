"""The thumbnails bucket as users and the stack's functions see it: ``imgcli stack`` and
``bootstrap --url-expiry`` (moto, in process), doctor's resources check, and on a real
local cloud the save role writing there and only there."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from imgcli.cli import app
from imgcli.config import Flags
from imgcli.doctor import RESOURCES, Status, fixes
from imgcli.doctor_checks import LiveStackChecks
from imgcli.infra import deploy
from imgcli.infra.names import StackNames
from imgcli.invocation import Invocation
from imgcli.output import Output, Streams
from tests.localstack import bootstrap, local_client, local_cloud_env
from tests.test_localcloud_roles_e2e import deploy_probe, invoke

runner = CliRunner()
AWS = StackNames("c1", "123456789012", "us-east-1")


def imgcli(*args: str) -> Any:
    return runner.invoke(app, ["--stack", "c1", *args])


def retrieve_environment() -> dict[str, str]:
    configuration = boto3.client("lambda").get_function_configuration(
        FunctionName=AWS.retrieve_function
    )
    return dict(configuration["Environment"]["Variables"])


def test_stack_json_names_both_buckets_and_url_expiry_is_an_option(moto_aws: None) -> None:
    created = imgcli("bootstrap", "--target", "aws", "--url-expiry", "3600", "--json")
    assert created.exit_code == 0, created.stderr
    shown = imgcli("--json", "stack")
    description = json.loads(shown.stdout)
    assert description == json.loads(created.stdout)
    assert description["bucket"] == "imgcli-c1-123456789012-us-east-1"
    assert description["thumbnails_bucket"] == "imgcli-c1-thumbs-123456789012-us-east-1"
    assert "imgcli-c1-thumbs-123456789012-us-east-1" in imgcli("stack").stdout
    assert retrieve_environment()["URL_EXPIRES_S"] == "3600"

    again = imgcli("bootstrap")
    assert again.exit_code == 0 and "is up to date" in again.stderr
    assert retrieve_environment()["URL_EXPIRES_S"] == "3600"


@pytest.mark.parametrize("seconds", ["59", "43201", "soon"])
def test_a_url_expiry_outside_a_minute_to_twelve_hours_is_a_usage_error(
    moto_aws: None, seconds: str
) -> None:
    refused = imgcli("bootstrap", "--target", "aws", "--url-expiry", seconds)
    assert refused.exit_code == 2
    assert "--url-expiry" in refused.stderr
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_doctor_finds_a_missing_thumbnails_bucket_and_names_bootstrap(moto_aws: None) -> None:
    assert imgcli("bootstrap", "--target", "aws").exit_code == 0
    streams = Streams(stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO())
    run = Invocation(Output(streams), Flags(stack="c1"), os.environ)
    checks = LiveStackChecks(run, deploy.describe("c1"))
    assert checks.resources().status is Status.OK

    boto3.client("s3").delete_bucket(Bucket=AWS.thumbnails_bucket)
    check = checks.resources()
    assert check.status is Status.PROBLEM
    assert check.detail == f"1 drift: create thumbnails bucket {AWS.thumbnails_bucket}"
    assert check.fix == fixes("c1")[RESOURCES] and "bootstrap" in check.fix


# On the local cloud, which runs functions under their roles and enforces the policies.

LOCAL = StackNames("thumbs", "123456789012", "us-east-1")


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("thumbs"), LOCAL.stack) as env:
        yield bootstrap(env)


def test_on_the_local_cloud_the_save_role_writes_thumbnails_and_nothing_else(
    local_stack: dict[str, Any],
) -> None:
    assert local_stack["thumbnails_bucket"] == LOCAL.thumbnails_bucket
    s3 = local_client(local_stack, "s3")
    assert s3.get_bucket_versioning(Bucket=LOCAL.thumbnails_bucket).get("Status") is None

    deploy_probe(local_stack, "probe-as-save", LOCAL.role_arn(LOCAL.save_role))
    wrote = invoke(local_stack, "probe-as-save", call="put_object", bucket=LOCAL.thumbnails_bucket)
    assert wrote["ok"] is True, wrote
    assert s3.get_object(Bucket=LOCAL.thumbnails_bucket, Key="probe.txt")["Body"].read() == b"x"
    refused = invoke(local_stack, "probe-as-save", call="put_object", bucket=LOCAL.bucket)
    assert (refused["ok"], refused["code"]) == (False, "AccessDenied")
    assert "Contents" not in s3.list_objects_v2(Bucket=LOCAL.bucket)

    deploy_probe(local_stack, "probe-as-retrieve", LOCAL.role_arn(LOCAL.retrieve_role))
    read_only = invoke(
        local_stack, "probe-as-retrieve", call="put_object", bucket=LOCAL.thumbnails_bucket
    )
    assert (read_only["ok"], read_only["code"]) == (False, "AccessDenied")
