"""``imgcli url`` on a local cloud of this module's own: the link opens with a plain HTTP
client (no signing of its own) until it expires, and not after (signed in the past, so no
test waits for it); an object not stored as an image opens as a download.

Thumbnail links and ``show --preview`` need the save function's thumbnails: they are in
``tests/test_preview_e2e.py``."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
import urllib3
from botocore.config import Config
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.config import LOCAL_REGION
from imgcli.errors import ExitCode
from imgcli.share_links import presign_get
from tests.images import image_bytes
from tests.localstack import KEY, SECRET, bootstrap, local_client, local_cloud_env

HTTP = urllib3.PoolManager(retries=False)
runner = CliRunner()


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with local_cloud_env(tmp_path_factory.mktemp("share"), "share") as env:
        yield env


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, str]) -> dict[str, Any]:
    return bootstrap(stack_env)


def imgcli(env: dict[str, str], *args: str) -> Result:
    return runner.invoke(app, list(args), env=env)


def presigner(stack: dict[str, Any]) -> Any:
    """An S3 client of the stack's local cloud that presigns with SigV4, as imgcli's does."""
    return boto3.client(
        "s3",
        endpoint_url=stack["endpoint_url"],
        region_name=LOCAL_REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(signature_version="s3v4"),
    )


def test_a_link_opens_with_a_plain_http_client(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    body = image_bytes("PNG", size=(12, 7))
    local_client(stack, "s3").put_object(
        Bucket=stack["bucket"], Key="s/a b+c.png", Body=body, ContentType="image/png"
    )

    result = imgcli(stack_env, "url", "s/a b+c.png", "--expires", "90s")

    assert result.exit_code == 0, result.stderr
    url = result.stdout.strip()
    assert result.stdout == url + "\n"  # stdout is the URL alone: $(imgcli url k) works
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["90"]
    opened = HTTP.request("GET", url)
    assert opened.status == 200
    assert opened.data == body
    assert opened.headers["Content-Type"] == "image/png"  # an image is served as stored
    assert opened.headers["Content-Disposition"] == "inline"

    # The link names no version: a page uploaded over the key later still opens as an image.
    page = b"<script>alert(document.domain)</script>"
    local_client(stack, "s3").put_object(
        Bucket=stack["bucket"], Key="s/a b+c.png", Body=page, ContentType="text/html"
    )
    reopened = HTTP.request("GET", url)
    assert reopened.status == 200 and reopened.data == page
    assert reopened.headers["Content-Type"] == "image/png"


@pytest.mark.parametrize(("lifetime_s", "status"), [(600, 200), (60, 403)])
def test_a_link_works_until_it_expires_and_not_after(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, lifetime_s: int, status: int
) -> None:
    local_client(stack, "s3").put_object(Bucket=stack["bucket"], Key="s/old.png", Body=b"x")
    signed_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    # Signed five minutes ago: the 600 s link still works, the 60 s one expired 4 minutes ago.
    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda *_, **__: signed_at.replace(tzinfo=None)
    )
    link = presign_get(
        presigner(stack), stack["bucket"], "s/old.png", lifetime_s, stored_content_type=None
    )
    monkeypatch.undo()

    opened = HTTP.request("GET", link.url)

    assert opened.status == status
    if status == 403:
        assert b"expired" in opened.data


def test_an_object_stored_as_a_page_is_linked_as_a_download(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    page = b"<html><script>alert(document.domain)</script></html>"
    local_client(stack, "s3").put_object(
        Bucket=stack["bucket"], Key="s/page.jpg", Body=page, ContentType="text/html"
    )

    result = imgcli(stack_env, "url", "s/page.jpg", "--json")

    assert result.exit_code == 0, result.stderr
    opened = HTTP.request("GET", json.loads(result.stdout)["url"])
    assert opened.status == 200
    assert opened.data == page
    assert opened.headers["Content-Type"] == "application/octet-stream"
    assert opened.headers["Content-Disposition"] == "attachment"


def test_json_names_the_url_bucket_key_and_expiry(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    s3 = local_client(stack, "s3")
    old = s3.put_object(Bucket=stack["bucket"], Key="s/v.png", Body=b"old bytes")
    s3.put_object(Bucket=stack["bucket"], Key="s/v.png", Body=b"new bytes")

    result = imgcli(stack_env, "url", "s/v.png", "--version-id", old["VersionId"], "--json")

    assert result.exit_code == 0, result.stderr
    link = json.loads(result.stdout)
    assert (link["bucket"], link["key"], link["image_key"], link["version_id"]) == (
        stack["bucket"],
        "s/v.png",
        "s/v.png",
        old["VersionId"],
    )
    assert link["expires_at"].endswith("Z")
    assert HTTP.request("GET", link["url"]).data == b"old bytes"


def test_a_key_not_in_the_bucket_is_exit_1_and_a_bad_expiry_exit_2(
    stack_env: dict[str, str], stack: dict[str, Any]
) -> None:
    missing = imgcli(stack_env, "url", "s/never.png")
    assert missing.exit_code == ExitCode.SOME_FAILED
    assert missing.stdout == ""

    too_long = imgcli(stack_env, "url", "s/never.png", "--expires", "8d")
    assert too_long.exit_code == ExitCode.USAGE
