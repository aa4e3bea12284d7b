"""``imgcli list``, ``show`` and ``delete`` end to end, and the delete services underneath.

The end-to-end half runs against a local cloud of this module's own (a subprocess, its own
data dir, config file and port) with a stack bootstrapped by ``imgcli bootstrap``, as a
user would. Images are put with plain boto3, as any S3 client would, and the stack indexes
them. Commands run in process through ``CliRunner`` with the stack's environment (fast,
and stdin is not a terminal, as in a script); the confirmation refusal also runs as a real
subprocess with no terminal.

The services underneath (request budgets, S3's per-key answers, ``--wait``) are tested in
``tests/test_gallery_deletion.py``; what these commands print for hostile keys, output
modes and ``--all`` in ``tests/test_gallery_output.py``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.credentials import Credentials
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.commands.gallery import CSV_COLUMNS
from imgcli.config import LOCAL_REGION
from imgcli.errors import ExitCode
from imgcli.gallery_api import GalleryApi
from tests.images import image_bytes
from tests.localstack import KEY, SECRET, bootstrap, local_client, local_cloud_env, run_imgcli

#: key: (format, width) -- every image is 30 pixels high.
GALLERY = {
    "g/plain.jpg": ("JPEG", 40),
    "g/with space.png": ("PNG", 41),
    "g/plus+and%percent.gif": ("GIF", 42),
    "g/unicodé/日本 猫.webp": ("WEBP", 43),
    "g/dots/../up.bmp": ("BMP", 44),
}
MANY = [f"many/{n:03d}.jpg" for n in range(5)]
NOT_AN_IMAGE = "bad/not-an-image.jpg"
TO_DELETE = ["del/with space.jpg", "del/plus+sign%.png", "del/unicodé 猫.gif", "del/a/../dots.jpg"]
PARTLY_MISSING = ["miss/present.jpg"]
UNDER_PREFIX = ["pfx/1.jpg", "pfx/sub/2.jpg", "pfx/3 three.jpg"]
DRY_RUN = ["dry/1.jpg", "dry/2.jpg"]
KEEP = ["keep/1.jpg", "keep/2.jpg"]

runner = CliRunner()


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a local cloud and stack of this module's own."""
    # COLUMNS: rich tables as wide as a person's terminal, so rows do not wrap.
    with local_cloud_env(tmp_path_factory.mktemp("gallery"), "gallery", COLUMNS="200") as env:
        yield env


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(stack_env)


def s3_client(stack: dict[str, Any]) -> Any:
    return local_client(stack, "s3")


def api_of(stack: dict[str, Any]) -> GalleryApi:
    return GalleryApi(stack["api_url"], Credentials(KEY, SECRET), LOCAL_REGION)


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture(scope="module")
def gallery(stack: dict[str, Any]) -> dict[str, Any]:
    """Every image the module's tests read or delete, put once and indexed."""
    s3 = s3_client(stack)
    jpeg = image_bytes("JPEG", size=(16, 16))
    for key, (fmt, width) in GALLERY.items():
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes(fmt, size=(width, 30)))
    others = [*MANY, *TO_DELETE, *PARTLY_MISSING, *UNDER_PREFIX, *DRY_RUN, *KEEP]
    for key in others:
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=jpeg)
    s3.put_object(Bucket=stack["bucket"], Key=NOT_AN_IMAGE, Body=b"hello, not an image")
    api = api_of(stack)
    expected = {*GALLERY, *others}
    eventually(lambda: {item["key"] for item in api.list_images()} >= expected)
    eventually(lambda: api.get_image(NOT_AN_IMAGE) is not None)
    return stack


def imgcli(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def keys_in_bucket(stack: dict[str, Any], prefix: str) -> list[str]:
    listed = s3_client(stack).list_objects_v2(Bucket=stack["bucket"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", ())]


# --- list ----------------------------------------------------------------------------------


def test_list_prints_a_table_of_key_format_dimensions_size_uploaded(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--prefix", "g/", "--output", "table")

    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "key" in line)
    for column in ("key", "format", "dimensions", "size", "uploaded"):
        assert column in header
    row = next(line for line in result.stdout.splitlines() if "g/plain.jpg" in line)
    assert "JPEG" in row
    assert "40x30" in row
    assert " B " in row or "KiB" in row
    assert "many/" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--json"],
        ["--json", "list"],
        ["list", "--output", "json"],
    ],
    ids=["--json", "global --json", "--output json"],
)
def test_list_json_is_one_object_per_line_with_every_field(
    stack_env: dict[str, str], gallery: dict[str, Any], args: list[str]
) -> None:
    result = imgcli(stack_env, *args, "--prefix", "g/")

    assert result.exit_code == 0, result.stderr
    images = {image["key"]: image for image in json_lines(result.stdout)}
    assert set(images) == set(GALLERY)
    for key, (fmt, width) in GALLERY.items():
        assert set(images[key]) >= set(CSV_COLUMNS)
        assert (images[key]["format"], images[key]["width"], images[key]["height"]) == (
            fmt,
            width,
            30,
        )
        assert images[key]["status"] == "active"
        assert images[key]["size"] > 0


def test_list_csv_has_a_header_and_a_row_per_image(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--prefix", "g/", "--output", "csv")

    assert result.exit_code == 0, result.stderr
    reader = csv.DictReader(io.StringIO(result.stdout))
    rows = list(reader)
    assert reader.fieldnames == list(CSV_COLUMNS)
    assert {row["key"]: row["width"] for row in rows} == {
        key: str(width) for key, (_, width) in GALLERY.items()
    }


def test_list_limit_stops_after_n_in_key_order(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--prefix", "many/", "--limit", "2", "--json")

    assert result.exit_code == 0, result.stderr
    assert [image["key"] for image in json_lines(result.stdout)] == MANY[:2]


def test_an_unreadable_object_is_listed_only_with_invalid(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    active = imgcli(stack_env, "list", "--prefix", "bad/", "--json")
    invalid = imgcli(stack_env, "list", "--prefix", "bad/", "--invalid", "--json")
    table = imgcli(stack_env, "list", "--invalid", "--prefix", "bad/", "--output", "table")
    text = imgcli(stack_env, "list", "--invalid", "--prefix", "bad/")

    assert active.exit_code == 0, active.stderr
    assert active.stdout == ""
    assert invalid.exit_code == 0, invalid.stderr
    (image,) = json_lines(invalid.stdout)
    assert (image["key"], image["status"]) == (NOT_AN_IMAGE, "invalid")
    assert image["reason"]
    assert "reason" in table.stdout
    assert NOT_AN_IMAGE in table.stdout
    # key, size, uploaded_at, reason
    assert text.stdout.split("\t")[0] == NOT_AN_IMAGE
    assert text.stdout.rstrip("\n").split("\t")[1:] == [
        str(image["size"]),
        image["uploaded_at"],
        image["reason"],
    ]


def test_list_of_nothing_says_so_on_stderr(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--prefix", "nothing-here/")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "no images under 'nothing-here/'" in result.stderr


def test_json_and_another_output_format_are_a_usage_error(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "list", "--json", "--output", "csv")

    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""


def test_a_stack_never_bootstrapped_exits_3_without_starting_anything(
    stack_env: dict[str, str],
) -> None:
    env = {**stack_env, "IMGCLI_STACK": "never-bootstrapped"}
    for args in (["list"], ["show", "a.jpg"], ["delete", "a.jpg"]):
        result = imgcli(env, *args)
        assert result.exit_code == ExitCode.NO_STACK, (args, result.stderr)
        assert "bootstrap" in result.stderr


# --- show ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(GALLERY))
def test_show_prints_one_images_details(
    stack_env: dict[str, str], gallery: dict[str, Any], key: str
) -> None:
    as_json = imgcli(stack_env, "show", key, "--json")
    as_table = imgcli(stack_env, "show", key)

    assert as_json.exit_code == 0, as_json.stderr
    image = json.loads(as_json.stdout)
    assert (image["key"], image["format"], image["width"]) == (key, *GALLERY[key])
    assert as_table.exit_code == 0, as_table.stderr
    assert "width" in as_table.stdout
    assert str(GALLERY[key][1]) in as_table.stdout


def test_show_of_an_unknown_key_exits_1(stack_env: dict[str, str], gallery: dict[str, Any]) -> None:
    result = imgcli(stack_env, "show", "g/no such image.jpg")

    assert result.exit_code == ExitCode.SOME_FAILED
    assert result.stdout == ""
    assert "no image with key 'g/no such image.jpg'" in result.stderr


# --- delete --------------------------------------------------------------------------------


def test_delete_awkward_keys_and_wait_until_the_api_forgets_them(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", *TO_DELETE, "--json", "--wait")

    assert result.exit_code == 0, result.stderr
    *outcomes, summary = json_lines(result.stdout)
    assert outcomes == [{"key": key, "status": "deleted", "reason": None} for key in TO_DELETE]
    assert summary["summary"]["deleted"] == len(TO_DELETE)
    assert keys_in_bucket(gallery, "del/") == []
    api = api_of(gallery)
    assert [key for key in TO_DELETE if api.get_image(key) is not None] == []


def test_a_missing_key_is_reported_and_exits_1_while_the_others_go(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", *PARTLY_MISSING, "miss/absent.jpg", "--json")

    assert result.exit_code == ExitCode.SOME_FAILED
    *outcomes, summary = json_lines(result.stdout)
    assert {outcome["key"]: outcome["status"] for outcome in outcomes} == {
        "miss/present.jpg": "deleted",
        "miss/absent.jpg": "missing",
    }
    assert summary["summary"]["missing"] == 1
    assert "1 of 2 keys not deleted" in result.stderr
    assert keys_in_bucket(gallery, "miss/") == []


def test_delete_by_prefix_refuses_to_ask_without_a_terminal(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = run_imgcli(stack_env, "delete", "--prefix", "keep/")

    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "2 objects under 'keep/'" in result.stderr
    assert "--yes" in result.stderr
    assert keys_in_bucket(gallery, "keep/") == KEEP


def test_delete_by_prefix_with_yes_deletes_everything_under_it(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", "--prefix", "pfx/", "--yes", "--wait")

    assert result.exit_code == 0, result.stderr
    assert "3 objects under 'pfx/'" in result.stderr
    assert "deleted 3, 0 missing, 0 failed" in result.stderr
    for key in UNDER_PREFIX:
        assert key in result.stdout
    assert keys_in_bucket(gallery, "pfx/") == []
    assert list(api_of(gallery).list_images(prefix="pfx/")) == []


def test_an_empty_prefix_deletes_nothing_and_says_so(
    stack_env: dict[str, str], gallery: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "delete", "--prefix", "nothing-here/")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "0 objects under 'nothing-here/'" in result.stderr


def test_a_dry_run_deletes_nothing(stack_env: dict[str, str], gallery: dict[str, Any]) -> None:
    by_prefix = imgcli(stack_env, "delete", "--prefix", "dry/", "--dry-run", "--json")
    by_key = imgcli(stack_env, "delete", DRY_RUN[0], "dry/absent.jpg", "--dry-run", "--json")

    assert by_prefix.exit_code == 0, by_prefix.stderr
    *outcomes, summary = json_lines(by_prefix.stdout)
    assert [(o["key"], o["status"]) for o in outcomes] == [(k, "would_delete") for k in DRY_RUN]
    assert summary["summary"]["dry_run"] is True
    assert by_key.exit_code == ExitCode.SOME_FAILED
    assert [o["status"] for o in json_lines(by_key.stdout)[:-1]] == ["missing", "would_delete"]
    assert keys_in_bucket(gallery, "dry/") == DRY_RUN


def test_delete_without_keys_or_prefix_is_a_usage_error(stack_env: dict[str, str]) -> None:
    result = imgcli(stack_env, "delete")

    assert result.exit_code == ExitCode.USAGE
    assert "nothing to delete" in result.stderr
