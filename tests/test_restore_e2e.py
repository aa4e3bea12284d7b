"""``imgcli versions`` and ``imgcli restore`` on a local cloud of this module's own: the
listing a person and a script read, and a restored image indexed by the stack again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.errors import ExitCode
from tests.images import image_bytes
from tests.localstack import api_of, bootstrap, eventually, local_client, local_cloud_env

runner = CliRunner()


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("restore"), "restore", COLUMNS="200") as env:
        yield env


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(stack_env)


def imgcli(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def put_indexed(stack: dict[str, Any], key: str, body: bytes, **extra: Any) -> str:
    """Put ``body`` under ``key`` and wait until the API lists that version; its id."""
    put = local_client(stack, "s3").put_object(Bucket=stack["bucket"], Key=key, Body=body, **extra)
    version = put["VersionId"]
    api = api_of(stack)
    eventually(lambda: (api.get_image(key) or {}).get("version_id") == version)
    return str(version)


def test_versions_lists_the_exact_key_newest_first_with_delete_markers(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    s3 = local_client(stack, "s3")
    bucket = stack["bucket"]
    first = s3.put_object(Bucket=bucket, Key="v/a.jpg", Body=image_bytes("JPEG", size=(8, 8)))
    second = s3.put_object(Bucket=bucket, Key="v/a.jpg", Body=image_bytes("JPEG", size=(9, 9)))
    s3.put_object(Bucket=bucket, Key="v/a.jpg.bak", Body=b"not this key")
    marker = s3.delete_object(Bucket=bucket, Key="v/a.jpg")

    result = imgcli(stack_env, "versions", "v/a.jpg", "--json")

    assert result.exit_code == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["version_id"] for v in listed] == [
        marker["VersionId"],
        second["VersionId"],
        first["VersionId"],
    ]
    assert {v["key"] for v in listed} == {"v/a.jpg"}
    assert [v["delete_marker"] for v in listed] == [True, False, False]
    assert [v["is_latest"] for v in listed] == [True, False, False]
    assert listed[1]["etag"] == second["ETag"]
    assert listed[1]["size"] == len(image_bytes("JPEG", size=(9, 9)))
    assert listed[0]["size"] is None

    table = imgcli(stack_env, "versions", "v/a.jpg")
    assert table.exit_code == 0, table.stderr
    assert "delete marker" in table.stdout
    assert second["VersionId"] in table.stdout


def test_versions_of_a_key_that_never_existed_is_exit_1(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    result = imgcli(stack_env, "versions", "v/never.jpg")

    assert result.exit_code == ExitCode.SOME_FAILED
    assert "no version" in result.stderr


def test_restore_of_a_deleted_image_brings_it_back_into_the_listing(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    key = "r/deleted image.jpg"
    body = image_bytes("JPEG", size=(21, 13))
    sha = hashlib.sha256(body).hexdigest()
    original = put_indexed(
        stack, key, body, ContentType="image/jpeg", Metadata={"imgcli-sha256": sha}
    )
    s3 = local_client(stack, "s3")
    s3.delete_object(Bucket=stack["bucket"], Key=key)
    eventually(lambda: api_of(stack).get_image(key) is None)

    result = imgcli(stack_env, "restore", key, "--wait", "--json")

    assert result.exit_code == 0, result.stderr
    restored = json.loads(result.stdout)
    assert restored["key"] == key
    assert restored["restored_from"] == original
    assert restored["version_id"] not in (None, original)
    listed = imgcli(stack_env, "list", "--prefix", "r/", "--json")
    images = {i["key"]: i for i in map(json.loads, listed.stdout.splitlines())}
    assert images[key]["version_id"] == restored["version_id"]
    assert (images[key]["width"], images[key]["height"]) == (21, 13)
    head = s3.head_object(Bucket=stack["bucket"], Key=key)
    assert head["Metadata"] == {"imgcli-sha256": sha}
    assert head["ContentType"] == "image/jpeg"
    # The history is whole: the deletion is still there, below the restored version.
    kinds = [
        v["delete_marker"]
        for v in map(
            json.loads, imgcli(stack_env, "versions", key, "--json").stdout.split("\n")[:-1]
        )
    ]
    assert kinds == [False, True, False]


def test_restore_of_an_overwritten_image_with_a_version_id_gives_the_old_one(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    key = "r/overwritten.png"
    old_body = image_bytes("PNG", size=(30, 20))
    old = put_indexed(stack, key, old_body)
    put_indexed(stack, key, image_bytes("PNG", size=(50, 40)))

    result = imgcli(stack_env, "restore", key, "--version-id", old, "--wait", "--json")

    assert result.exit_code == 0, result.stderr
    restored = json.loads(result.stdout)
    got = local_client(stack, "s3").get_object(Bucket=stack["bucket"], Key=key)
    assert got["Body"].read() == old_body
    assert got["VersionId"] == restored["version_id"]
    image = api_of(stack).get_image(key)
    assert image is not None
    assert (image["width"], image["height"]) == (30, 20)
    assert image["version_id"] == restored["version_id"]


def test_restore_of_a_live_key_without_a_version_id_is_a_usage_error(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    key = "r/live.jpg"
    body = image_bytes("JPEG", size=(5, 5))
    s3 = local_client(stack, "s3")
    s3.put_object(Bucket=stack["bucket"], Key=key, Body=body)
    s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("JPEG", size=(6, 6)))

    result = imgcli(stack_env, "restore", key)

    assert result.exit_code == ExitCode.USAGE
    assert "imgcli versions" in result.stderr
    assert len(s3.list_object_versions(Bucket=stack["bucket"], Prefix=key)["Versions"]) == 2


def test_restore_dry_run_names_the_version_and_copies_nothing(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    key = "r/dry.jpg"
    s3 = local_client(stack, "s3")
    put = s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("JPEG", size=(5, 5)))
    s3.delete_object(Bucket=stack["bucket"], Key=key)

    result = imgcli(stack_env, "restore", key, "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["restored_from"] == put["VersionId"]
    listing = s3.list_object_versions(Bucket=stack["bucket"], Prefix=key)
    assert len(listing["Versions"]) == 1
    assert listing["DeleteMarkers"][0]["IsLatest"]
