"""A stack whose resources are gone is reported as such, with the command that fixes it.

The stack's record says complete, but its bucket no longer exists (a local cloud reset
before the record was marked, or a bucket removed by hand): ``upload`` and ``delete``
ended with a bare ``NoSuchBucket`` (exit 5). On moto in process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.errors import ExitCode
from imgcli.infra.state import StackState, state_path
from tests.images import image_bytes

runner = CliRunner()


@pytest.fixture
def gone_stack(moto_aws: None) -> str:
    StackState(
        path=state_path("gone", os.environ),
        stack="gone",
        target="aws",
        region="us-east-1",
        account="123456789012",
        outputs={"bucket": "imgcli-gone-123456789012-us-east-1"},
        complete=True,
    ).save()
    return "gone"


def imgcli(*args: str) -> Result:
    return runner.invoke(app, ["--stack", "gone", *args])


def assert_gone(result: Result) -> None:
    assert result.exit_code == ExitCode.NO_STACK, result.output
    assert "stack 'gone' has lost its resources" in result.stderr
    assert "(NoSuchBucket)" in result.stderr
    assert "run 'imgcli --stack gone bootstrap' to create them again" in result.stderr


def test_delete_on_a_stack_whose_bucket_is_gone(gone_stack: str) -> None:
    assert_gone(imgcli("delete", "a.jpg", "--yes"))


def test_upload_to_a_stack_whose_bucket_is_gone(gone_stack: str, tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(image_bytes())
    assert_gone(imgcli("upload", str(photo)))
