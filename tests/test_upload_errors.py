"""upload when something is wrong: a ``--prefix`` no key may have is a usage error before
any request, and a run stopped by an error still ends with its summary, which says what was
sent before it, while the exit code stays the error's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from typer.testing import CliRunner

from imgcli.cli import build_app
from imgcli.commands.upload import summary_line
from imgcli.errors import ExitCode
from imgcli.infra.state import StackState, state_path
from imgcli.upload_transfer import UploadStopped
from imgcli.upload_types import UploadConfig, UploadSummary
from tests.images import image_bytes
from tests.localstack import free_port
from tests.upload_harness import images_folder, object_keys, upload

STACK = "u1"


@pytest.fixture
def unreachable_stack(monkeypatch: pytest.MonkeyPatch) -> str:
    """An aws stack whose endpoint nothing listens on: any request ends in exit 6."""
    StackState(
        path=state_path(STACK),
        stack=STACK,
        target="aws",
        complete=True,
        outputs={"bucket": "imgcli-u1-bucket", "table": "imgcli-u1-images"},
    ).save()
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("IMGCLI_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # one refused connection is enough
    return endpoint


def upload_command(*args: str) -> Any:
    return CliRunner().invoke(build_app(), ["--stack", STACK, "upload", *args])


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes("JPEG"))
    return path


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("trips/\x1b[31mred/", "holds control characters"),
        ("new\nline/", "holds control characters"),
        ("caf\udce9/", "is not valid UTF-8"),  # the byte 0xE9 of a Latin-1 command line
        ("p" * 1025, "is 1025 bytes of UTF-8"),
    ],
)
def test_a_prefix_no_key_may_have_is_a_usage_error_before_any_request(
    unreachable_stack: str, photo: Path, prefix: str, problem: str
) -> None:
    result = upload_command(str(photo), "--prefix", prefix)
    # A request would have ended in exit 6 (nothing listens), or 70 (UnicodeEncodeError).
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "--prefix '" in result.stderr and problem in result.stderr
    assert "\x1b" not in result.stderr and "\udce9" not in result.stderr  # shown escaped


@pytest.mark.parametrize("name", ["new\nline.jpg", "esc\x1b[2J.jpg"])
def test_a_file_named_on_the_command_line_with_control_characters_is_a_usage_error(
    unreachable_stack: str, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(image_bytes("JPEG"))
    result = upload_command(str(path))
    # Its key would be a new key with control characters; in a folder's walk the same
    # file is refused on its own (exit 1) and the others go.
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "its key holds control characters" in result.stderr
    assert "\x1b" not in result.stderr  # shown escaped, never raw


def test_an_empty_prefix_is_still_accepted(unreachable_stack: str, photo: Path) -> None:
    result = upload_command(str(photo), "--prefix", "")
    assert result.exit_code == ExitCode.NETWORK  # it got as far as the request


def test_a_json_run_stopped_by_a_network_error_ends_with_its_summary(
    unreachable_stack: str, photo: Path
) -> None:
    result = upload_command(str(photo), "--json")
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    last = json.loads(result.stdout.splitlines()[-1])
    summary = last["summary"]
    assert (summary["uploaded"], summary["bytes_sent"], summary["interrupted"]) == (0, 0, False)
    assert summary["error"]["exit_code"] == ExitCode.NETWORK
    assert unreachable_stack in summary["error"]["message"]
    assert "error: " in result.stderr  # the error line people read is still there


def test_people_are_told_what_was_sent_before_the_error(
    unreachable_stack: str, photo: Path
) -> None:
    result = upload_command(str(photo))
    assert result.exit_code == ExitCode.NETWORK
    assert "stopped by an error: 0 files (0 B) uploaded before it" in result.stderr
    assert summary_line(UploadSummary(uploaded=2, bytes_sent=2048), stopped=True) == (
        "stopped by an error: 2 files (2.0 KiB) uploaded before it"
    )


def test_the_engine_s_stop_carries_what_was_sent_before_it(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "photos", 5)
    puts = 0

    def network_gone_at_the_third(**_: Any) -> None:
        nonlocal puts
        puts += 1
        if puts == 3:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    s3_client.meta.events.register("before-call.s3.PutObject", network_gone_at_the_third)
    with pytest.raises(UploadStopped) as stopped:
        upload(s3_client, bucket, folder, recursive=True, config=UploadConfig(jobs=1))

    assert isinstance(stopped.value.cause, EndpointConnectionError)
    assert stopped.value.__cause__ is stopped.value.cause
    summary = stopped.value.summary
    assert (summary.uploaded, summary.interrupted) == (2, False)
    assert summary.bytes_sent == sum(
        (folder / key).stat().st_size for key in object_keys(s3_client, bucket)
    )
    assert object_keys(s3_client, bucket) == ["img000.jpg", "img001.png"]
