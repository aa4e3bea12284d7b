"""What ``list``, ``show`` and ``delete`` print, end to end: hostile keys shown escaped and
still reachable, keys checked before any request, output modes for people and scripts,
``delete --all``, prompts that take Enter, and a ``--json`` summary that ends every delete.

A local cloud of this module's own (``tests.localstack``) with two stacks: ``hostile``,
whose bucket holds keys with ESC sequences, tabs, a carriage return and a bidi override
(put with plain boto3, as any S3 client could), and ``everything``, which ``delete --all``
empties. Commands run in process through ``CliRunner`` (stdout is not a terminal, as in a
script), or with a ``Streams`` of the test's own where a terminal must answer a prompt, or
as real subprocesses where the bytes of the command line or a shell pipe matter.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO, cast

import pytest
from botocore.credentials import Credentials
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.config import LOCAL_REGION
from imgcli.errors import ExitCode
from imgcli.gallery_api import GalleryApi
from imgcli.localcloud import process
from imgcli.output import Streams
from imgcli.terminal_text import visible
from tests.images import image_bytes
from tests.localstack import (
    KEY,
    REPO,
    SECRET,
    bootstrap,
    local_client,
    local_cloud_env,
    run_imgcli,
)

#: Keys S3 accepts and a terminal must never see raw. (A newline in a key is left out: the
#: local cloud refuses such a PUT today.)
HOSTILE = [
    "h/\x1b[31mred\x1b[0m.jpg",
    "h/\x1b]0;owned\x07title.jpg",
    "h/tab\there.jpg",
    "h/cr\rreturn.jpg",
    "h/\u202egpj.exe.jpg",
]
LONG = "long/trips/2024/summer-holiday-in-the-mountains/day-03/very-long-file-name-000123.jpg"
FIRST = ["first/1.jpg", "first/2.jpg", "first/3.jpg"]
TO_DELETE = ["x/\x1b[2Jclear.jpg", "x/cr\rreturn.jpg", "x/plain.jpg"]
UNDER_PREFIX = ["y/\x1b[5mblink.jpg", "y/ok.jpg"]
KEEP = ["keep/1.jpg", "keep/2.jpg"]
PART_WAY = ["pw/1.jpg", "pw/2.jpg"]
EVERYTHING = ["a.jpg", "b/c.jpg", "d/e/f.jpg"]
RAW_CONTROL = "\x1b\r\x07\u202e"

runner = CliRunner()


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("gallery-output"), "hostile") as env:
        yield env


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


def put_indexed(stack: dict[str, Any], keys: list[str]) -> None:
    s3 = local_client(stack, "s3")
    for key in keys:
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("JPEG", size=(8, 8)))
    api = GalleryApi(stack["api_url"], Credentials(KEY, SECRET), LOCAL_REGION)
    eventually(lambda: {image["key"] for image in api.list_images()} >= set(keys))


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str]) -> dict[str, Any]:
    description = bootstrap(stack_env)
    put_indexed(description, [*HOSTILE, LONG, *FIRST, *TO_DELETE, *UNDER_PREFIX, *KEEP, *PART_WAY])
    return description


@pytest.fixture(scope="module")
def everything(stack_env: dict[str, str], stack: dict[str, Any]) -> dict[str, Any]:
    """A second stack on the same local cloud, for ``delete --all``."""
    env = {**stack_env, "IMGCLI_STACK": "everything"}
    description = bootstrap(env)
    put_indexed(description, EVERYTHING)
    return {**description, "env": env}


def imgcli(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def on_terminal(env: dict[str, str], answer: str, *args: str) -> tuple[int, str, str]:
    """``imgcli ARGS`` with a terminal on stdin that types ``answer``: (code, out, err)."""
    stdin = io.StringIO(answer)
    stdout, stderr = io.StringIO(), io.StringIO()
    streams = Streams(stdin=stdin, stdout=stdout, stderr=stderr, stdin_isatty=True)
    result = runner.invoke(app, list(args), env=env, obj=streams)
    return result.exit_code, stdout.getvalue(), stderr.getvalue()


def keys_in_bucket(stack: dict[str, Any], prefix: str = "") -> list[str]:
    listed = local_client(stack, "s3").list_objects_v2(Bucket=stack["bucket"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", ())]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def assert_no_raw_control(text: str) -> None:
    assert not any(char in text for char in RAW_CONTROL), repr(text)


# --- list ----------------------------------------------------------------------------------


def test_list_piped_prints_one_escaped_tab_separated_line_per_image(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--prefix", "h/")

    assert result.exit_code == 0, result.stderr
    assert_no_raw_control(result.stdout)
    lines = result.stdout.splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(map(visible, HOSTILE))
    for line in lines:  # key, format, width, height, size, uploaded_at
        fields = line.split("\t")
        assert fields[1:4] == ["JPEG", "8", "8"]
        assert int(fields[4]) > 0
        assert fields[5].startswith("20")


def test_list_table_shows_keys_escaped_and_whole_when_piped(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    hostile = imgcli(stack_env, "list", "--prefix", "h/", "--output", "table")
    long = imgcli(stack_env, "list", "--prefix", "long/", "--output", "table")

    assert hostile.exit_code == 0, hostile.stderr
    assert_no_raw_control(hostile.stdout)
    for key in HOSTILE:
        assert visible(key) in hostile.stdout
    assert long.exit_code == 0, long.stderr
    assert "…" not in long.stdout
    assert any(LONG in line and "JPEG" in line for line in long.stdout.splitlines())


def test_list_json_and_csv_keep_keys_unchanged(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    as_json = imgcli(stack_env, "list", "--prefix", "h/", "--json")
    as_csv = imgcli(stack_env, "list", "--prefix", "h/", "--output", "csv")

    assert sorted(image["key"] for image in json_lines(as_json.stdout)) == sorted(HOSTILE)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout, newline="")))
    assert sorted(row["key"] for row in rows) == sorted(HOSTILE)


def test_list_piped_into_head_prints_the_first_image(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    shell = f"'{sys.executable}' -m imgcli list --prefix first/ | head -1"
    result = subprocess.run(
        ["sh", "-c", shell],
        cwd=REPO,
        env=stack_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.split("\t")[0] == FIRST[0]


def test_an_empty_prefix_still_lists(stack_env: dict[str, str], stack: dict[str, Any]) -> None:
    result = imgcli(stack_env, "list", "--prefix", "", "--limit", "1", "--json")

    assert result.exit_code == 0, result.stderr
    assert len(json_lines(result.stdout)) == 1


# --- keys on the command line --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--prefix", "h/\x1b[31m"],
        ["list", "--prefix", "two\nlines/"],
        ["delete", "--prefix", "h/\x1b"],
        ["list", "--prefix", "k" * 1025],
    ],
    ids=["list ESC", "list newline", "delete ESC", "list too long"],
)
def test_a_bad_prefix_is_a_usage_error_before_any_request(
    stack_env: dict[str, str], args: list[str]
) -> None:
    # A stack never bootstrapped would exit 3 at its first request: 2 comes before it.
    result = imgcli({**stack_env, "IMGCLI_STACK": "never-bootstrapped"}, *args)

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "--prefix" in result.stderr
    assert_no_raw_control(result.stderr)
    assert len(result.stderr) < 400


@pytest.mark.parametrize(
    "args",
    [["show", b"h/\xff.jpg"], ["delete", b"h/\xff.jpg"], ["list", "--prefix", b"h/\xff"]],
    ids=["show", "delete", "list --prefix"],
)
def test_command_line_bytes_that_are_not_utf8_are_a_usage_error(
    stack_env: dict[str, str], stack: dict[str, Any], args: list[str | bytes]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imgcli", *args],
        cwd=REPO,
        env=stack_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )

    stderr = result.stderr.decode("utf-8")
    assert result.returncode == ExitCode.USAGE, stderr
    assert "not valid UTF-8" in stderr
    assert "\\xff" in stderr


def test_show_of_a_key_longer_than_s3_allows_is_a_short_usage_error(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "show", "k" * 3000)

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "3000 bytes" in result.stderr
    assert len(result.stderr) < 400


# --- show ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", HOSTILE)
def test_show_reaches_a_hostile_key_and_prints_it_escaped(
    stack_env: dict[str, str], stack: dict[str, Any], key: str
) -> None:
    table = imgcli(stack_env, "show", key)
    as_json = imgcli(stack_env, "show", key, "--json")

    assert table.exit_code == 0, table.stderr
    assert_no_raw_control(table.stdout)
    assert table.stdout.count(visible(key)) == 2  # the title and the key row
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)["key"] == key


def test_show_of_a_missing_hostile_key_names_it_escaped(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "show", "h/\x1b[2Jnot-there.jpg")

    assert result.exit_code == ExitCode.SOME_FAILED
    assert_no_raw_control(result.stderr)
    assert "no image with key 'h/\\x1b[2Jnot-there.jpg'" in result.stderr


# --- delete --------------------------------------------------------------------------------


def test_delete_reaches_hostile_keys_by_name_and_prints_them_escaped(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", *TO_DELETE, "--wait")

    assert result.exit_code == 0, result.stderr
    assert_no_raw_control(result.stdout + result.stderr)
    for key in TO_DELETE:
        assert visible(key) in result.stdout
    assert "deleted 3, 0 missing, 0 failed" in result.stderr
    assert keys_in_bucket(stack, "x/") == []


def test_delete_by_prefix_reports_hostile_keys_escaped(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    people = imgcli(stack_env, "delete", "--prefix", "y/", "--yes", "--dry-run")
    as_json = imgcli(stack_env, "delete", "--prefix", "y/", "--yes", "--json")

    assert people.exit_code == 0, people.stderr
    assert_no_raw_control(people.stdout + people.stderr)
    assert visible(UNDER_PREFIX[0]) in people.stdout
    assert as_json.exit_code == 0, as_json.stderr
    *outcomes, summary = json_lines(as_json.stdout)
    assert sorted(o["key"] for o in outcomes) == sorted(UNDER_PREFIX)
    assert summary["summary"]["deleted"] == 2
    assert keys_in_bucket(stack, "y/") == []


def test_the_prompt_names_the_count_and_takes_enter_as_no(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    code, out, err = on_terminal(stack_env, "\n", "delete", "--prefix", "keep/")

    assert code == 0, err
    assert "Delete 2 images under 'keep/' from stack 'hostile'? [y/N]" in err
    assert "nothing was deleted" in err
    assert out == ""
    assert keys_in_bucket(stack, "keep/") == KEEP


def test_a_json_delete_with_no_match_still_ends_with_its_summary(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", "--prefix", "zzz/", "--yes", "--json")

    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout) == [
        {
            "summary": {
                "total": 0,
                "deleted": 0,
                "missing": 0,
                "failed": 0,
                "would_delete": 0,
                "dry_run": False,
            }
        }
    ]


def test_a_json_delete_that_fails_still_ends_with_its_summary(
    stack_env: dict[str, str],
) -> None:
    result = imgcli(
        {**stack_env, "IMGCLI_STACK": "never-bootstrapped"}, "delete", "a.jpg", "--json"
    )

    assert result.exit_code == ExitCode.NO_STACK
    (line,) = json_lines(result.stdout)
    assert line["summary"]["total"] == 0


def test_a_json_delete_stopped_part_way_reports_how_far_it_got(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    port = int(stack_env["IMGCLI_LOCAL_PORT"])

    class StopsTheCloud:
        """A person who answers y just as the local cloud goes away."""

        def readline(self) -> str:
            process.stop(port, stack_env)
            return "y\n"

    stdout, stderr = io.StringIO(), io.StringIO()
    stdin = cast(TextIO, StopsTheCloud())
    streams = Streams(stdin=stdin, stdout=stdout, stderr=stderr, stdin_isatty=True)
    args = ["delete", "pw/absent.jpg", "--prefix", "pw/", "--json"]
    try:
        result = runner.invoke(app, args, env=stack_env, obj=streams)
    finally:
        started = run_imgcli(stack_env, "local", "start")
        assert started.returncode == 0, started.stderr

    assert result.exit_code == ExitCode.NETWORK, stderr.getvalue()
    *outcomes, summary = json_lines(stdout.getvalue())
    assert outcomes == [
        {"key": "pw/absent.jpg", "status": "missing", "reason": "no such key in the bucket"}
    ]
    assert summary["summary"] | {"dry_run": None} == {
        "total": 1,
        "deleted": 0,
        "missing": 1,
        "failed": 0,
        "would_delete": 0,
        "dry_run": None,
    }
    assert keys_in_bucket(stack, "pw/") == PART_WAY


# --- delete --all --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["delete", "--prefix", "", "--yes"], "--all"),
        (["delete", "--all", "a.jpg", "--yes"], "--all"),
        (["delete", "--all", "--prefix", "b/", "--yes"], "--all"),
        (["delete"], "--all"),
    ],
    ids=["empty prefix", "--all with a key", "--all with --prefix", "nothing"],
)
def test_deleting_everything_takes_all_and_nothing_else(
    everything: dict[str, Any], args: list[str], says: str
) -> None:
    result = imgcli(everything["env"], *args)

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert says in result.stderr
    assert sorted(keys_in_bucket(everything)) == sorted(EVERYTHING)


def test_delete_all_asks_naming_the_count_and_deletes_everything_with_yes(
    everything: dict[str, Any],
) -> None:
    env = everything["env"]
    refused = imgcli(env, "delete", "--all")
    declined_code, _, declined = on_terminal(env, "n\n", "delete", "--all")
    deleted = imgcli(env, "delete", "--all", "--yes", "--json")

    assert refused.exit_code == ExitCode.USAGE
    assert "Delete all 3 images from stack 'everything'?" in refused.stderr
    assert "--yes" in refused.stderr
    assert declined_code == 0
    assert "Delete all 3 images from stack 'everything'? [y/N]" in declined
    assert deleted.exit_code == 0, deleted.stderr
    *outcomes, summary = json_lines(deleted.stdout)
    assert sorted(o["key"] for o in outcomes) == sorted(EVERYTHING)
    assert summary["summary"]["deleted"] == 3
    assert keys_in_bucket(everything) == []
