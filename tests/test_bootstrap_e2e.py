"""imgcli bootstrap and destroy as a user runs them, against a plain moto server.

The CLI runs in subprocesses with ``--target aws`` and ``AWS_ENDPOINT_URL`` pointing at a
moto server on 127.0.0.1: the standard AWS environment, nothing imgcli-specific, which is
how the stack is proven without an AWS account.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]
IMGCLI = [sys.executable, "-m", "imgcli"]


@pytest.fixture
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def imgcli(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "IMGCLI_STACK": "s1"}
    return subprocess.run(
        [*IMGCLI, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_bootstrap_then_destroy_leaves_nothing_behind(moto_server: str) -> None:
    created = imgcli(moto_server, "bootstrap", "--target", "aws", "--json")
    assert created.returncode == 0, created.stderr
    stack = json.loads(created.stdout)
    assert stack["target"] == "aws" and stack["stack"] == "s1" and stack["complete"]
    assert stack["bucket"] and stack["api_url"] and stack["functions"]
    assert "+ create bucket" in created.stderr

    again = imgcli(moto_server, "bootstrap")
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr

    described = imgcli(moto_server, "stack", "--json")
    assert json.loads(described.stdout) == stack

    # (A bucket holding images is covered in test_bootstrap.py: moto applies the TLS-only
    # bucket policy without its condition, so over plain HTTP it refuses object requests.)
    s3 = boto3.client("s3", endpoint_url=moto_server)
    destroyed = imgcli(moto_server, "destroy", "--yes", "--delete-images")
    assert destroyed.returncode == 0, destroyed.stderr
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == []
    lam = boto3.client("lambda", endpoint_url=moto_server)
    assert lam.list_functions()["Functions"] == []
    iam = boto3.client("iam", endpoint_url=moto_server)
    assert [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("imgcli-")] == []
    assert boto3.client("dynamodb", endpoint_url=moto_server).list_tables()["TableNames"] == []
    assert boto3.client("apigatewayv2", endpoint_url=moto_server).get_apis()["Items"] == []
    assert boto3.client("sqs", endpoint_url=moto_server).list_queues().get("QueueUrls", []) == []
    logs = boto3.client("logs", endpoint_url=moto_server)
    assert logs.describe_log_groups()["logGroups"] == []

    again = imgcli(moto_server, "destroy", "--yes", "--delete-images")
    assert again.returncode == 0, again.stderr
    assert "nothing to destroy" in again.stderr

    gone = imgcli(moto_server, "stack")
    assert gone.returncode == 3
