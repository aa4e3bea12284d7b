"""Fixtures every test shares.

The autouse ``fake_aws_environment`` fixture is the promise that no test reaches a real AWS
account: it sets fake credentials and a region, clears profiles and endpoint overrides, and
points imgcli's config file into the test's temporary directory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.lambdas import save_delete
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.save_delete import Indexer

FAKE_REGION = "us-east-1"

_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture(autouse=True)
def fake_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("IMGCLI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", FAKE_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", FAKE_REGION)
    # Empty files, not missing ones: a developer's ~/.aws must not leak into a test.
    aws_dir = tmp_path / "aws-config"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("")
    (aws_dir / "credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("IMGCLI_CONFIG", str(tmp_path / "imgcli-config" / "config.toml"))
    monkeypatch.setenv("IMGCLI_DATA_DIR", str(tmp_path / "imgcli-data"))


@pytest.fixture
def moto_aws() -> Iterator[None]:
    """All AWS calls in the test go to moto, in process."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def s3_client(moto_aws: None) -> Any:
    import boto3

    return boto3.client("s3", region_name=FAKE_REGION)


@pytest.fixture
def dynamodb_client(moto_aws: None) -> Any:
    import boto3

    return boto3.client("dynamodb", region_name=FAKE_REGION)


@pytest.fixture
def table_name(dynamodb_client: Any) -> str:
    """An index table created from the one schema the stack uses."""
    from imgcli.lambdas.records import TABLE_DEFINITION

    name = "imgcli-test-images"
    dynamodb_client.create_table(TableName=name, **TABLE_DEFINITION)
    return name


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = "imgcli-test-bucket"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def versioned_bucket(s3_client: Any) -> str:
    name = "imgcli-test-versioned"
    s3_client.create_bucket(Bucket=name)
    s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def thumbnails_bucket(s3_client: Any) -> str:
    """The stack's second bucket, where the save function writes thumbnails."""
    name = "imgcli-test-thumbs"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def deployed_save_function(
    monkeypatch: pytest.MonkeyPatch, table_name: str, bucket: str, thumbnails_bucket: str
) -> None:
    """The save function's ``handler`` as Lambda runs it: no clients made yet, and the
    environment bootstrap gives it (its table, its bucket and its thumbnails bucket)."""
    monkeypatch.setattr(save_delete, "_clients", {})
    monkeypatch.setenv("TABLE_NAME", table_name)
    monkeypatch.setenv("BUCKET_NAME", bucket)
    monkeypatch.setenv("THUMBNAILS_BUCKET", thumbnails_bucket)


#: The save function's clock in its tests (``indexer``): tombstones expire from here.
INDEXER_NOW = 1_795_000_000.0


@pytest.fixture
def log_lines() -> io.StringIO:
    """What the ``indexer`` fixture's function logged, one JSON object per line."""
    return io.StringIO()


@pytest.fixture
def indexer(
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
    log_lines: io.StringIO,
) -> Indexer:
    """The save function's ``Indexer`` on moto's S3 and DynamoDB, for ``bucket``."""
    return Indexer(
        s3=s3_client,
        dynamodb=dynamodb_client,
        table_name=table_name,
        bucket=bucket,
        thumbnails_bucket=thumbnails_bucket,
        clock=lambda: INDEXER_NOW,
        log=JsonLogger("save_delete", stream=log_lines),
    )
