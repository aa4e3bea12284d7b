"""A Lambda policy takes each statement id once (``moto_lambda_policy``), as AWS's does.

Against a started local cloud (``tests.localstack``) with plain boto3: a second
``AddPermission`` with a taken statement id is ``ResourceConflictException`` (409), also
when many arrive at once (two ``imgcli bootstrap`` runs at once left duplicates), and the
id is free again once its statement is removed. moto 5.2.5 alone accepts the duplicate.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from imgcli.config import LOCAL_REGION
from imgcli.localcloud import MotoInternalsChanged, moto_lambda_policy, process
from tests.lambda_runtime import handler_zip
from tests.localstack import KEY, SECRET, local_cloud_env

ACCOUNT = "123456789012"
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


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as base, local_cloud_env(Path(base), "perm") as env:
        status, _ = process.start(int(env["IMGCLI_LOCAL_PORT"]), env)
        yield f"http://127.0.0.1:{status.port}"


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, max_pool_connections=16),
    )


def _function(endpoint: str, name: str) -> Any:
    """A new function named ``name``; its Lambda client."""
    role = _client(endpoint, "iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(TRUST)
    )["Role"]["Arn"]
    functions = _client(endpoint, "lambda")
    functions.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="h.echo",
        Code={"ZipFile": handler_zip()},
    )
    return functions


def _allow(functions: Any, name: str, statement_id: str = "s3-invoke") -> Any:
    return functions.add_permission(
        FunctionName=name,
        StatementId=statement_id,
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::some-bucket",
        SourceAccount=ACCOUNT,
    )


def _statement_ids(functions: Any, name: str) -> list[str]:
    policy = json.loads(functions.get_policy(FunctionName=name)["Policy"])
    return [statement["Sid"] for statement in policy["Statement"]]


def test_a_taken_statement_id_is_a_conflict(endpoint: str) -> None:
    functions = _function(endpoint, "perm-twice")
    _allow(functions, "perm-twice")

    with pytest.raises(ClientError) as raised:
        _allow(functions, "perm-twice")

    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert error["Error"]["Code"] == "ResourceConflictException"
    assert error["Error"]["Message"] == (
        "The statement id (s3-invoke) provided already exists. Please provide a new "
        "statement id, or remove the existing statement."
    )
    assert _statement_ids(functions, "perm-twice") == ["s3-invoke"]


def test_concurrent_adds_of_one_id_leave_one_statement(endpoint: str) -> None:
    functions = _function(endpoint, "perm-race")

    def add(_: int) -> str:
        try:
            _allow(functions, "perm-race")
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "added"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = sorted(pool.map(add, range(12)))

    assert outcomes == ["ResourceConflictException"] * 11 + ["added"]
    assert _statement_ids(functions, "perm-race") == ["s3-invoke"]


def test_other_ids_are_free_and_a_removed_id_is_free_again(endpoint: str) -> None:
    functions = _function(endpoint, "perm-free")
    _allow(functions, "perm-free", "first")
    _allow(functions, "perm-free", "second")
    functions.remove_permission(FunctionName="perm-free", StatementId="first")
    _allow(functions, "perm-free", "first")

    assert sorted(_statement_ids(functions, "perm-free")) == ["first", "second"]


def test_a_moved_policy_internal_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.policy import Policy

    moto_lambda_policy.check_moto_internals()

    def add_statement(self: Any, raw: str) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(Policy, "add_statement", add_statement)
    with pytest.raises(MotoInternalsChanged, match="add_statement"):
        moto_lambda_policy.check_moto_internals()
    monkeypatch.undo()

    def add_permission(self: Any, function_name: str, qualifier: str, raw: str) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(LambdaBackend, "add_permission", add_permission)
    with pytest.raises(MotoInternalsChanged, match="add_permission"):
        moto_lambda_policy.check_moto_internals()


def test_install_is_undone_and_not_doubled() -> None:
    from moto.awslambda.policy import Policy

    before = vars(Policy)["add_statement"]
    uninstall = moto_lambda_policy.install()
    try:
        with pytest.raises(RuntimeError, match="already installed"):
            moto_lambda_policy.install()
    finally:
        uninstall()
    assert vars(Policy)["add_statement"] is before
