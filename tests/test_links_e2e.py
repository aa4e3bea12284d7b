"""The API's presigned URLs on a bootstrapped local stack, opened by a plain HTTP client.

``imgcli list --json`` and ``imgcli show --json`` (the signed API, as a user calls it) give
each image ``urls``; urllib3, with no AWS signing of its own, GETs them: the image URL
gives the bytes uploaded (SHA-256), the ``256`` and ``1024`` URLs give WebP thumbnails of
those sizes. The URLs are signed with the retrieve function's role session, so this also
proves that role may read both buckets' objects. A URL for one key opens no other.

What a link serves is the index's word, not the uploader's: an object stored as
``text/html`` that is no image is served as a download (``application/octet-stream``,
``attachment``), and a PNG/HTML polyglot stored as ``text/html`` with ``attachment;
filename="….html"`` is served as ``image/png``, inline. This also proves the local cloud
honours ``response-content-type`` and ``response-content-disposition`` on presigned GETs.

Expiry is checked without waiting: the same ``SignedLinks.at`` code path the function
runs, with the local cloud owner's key and a ``now`` in the past, gives links that are
refused at once (and, dated now, open), while the API's own links carry the stack's
``URL_EXPIRES_S``.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
import urllib3
from botocore.config import Config
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from imgcli.config import LOCAL_REGION
from imgcli.lambdas.item_links import SignedLinks
from imgcli.lambdas.presign import Credentials
from imgcli.lambdas.records import ImageRecord, StoredThumbnail
from tests.images import image_bytes
from tests.localstack import KEY as OWNER_KEY
from tests.localstack import SECRET as OWNER_SECRET
from tests.localstack import bootstrap, local_client, local_cloud_env, run_imgcli

KEY = "links e2e/naïve café+100% #1.jpg"
BODY = image_bytes("JPEG", (1600, 1200))
PAGE = "links e2e/page.html"
PAGE_BODY = b"<!doctype html><title>x</title><script>document.title='owned'</script>"
POLYGLOT = "links e2e/polyglot.png"
_SCRIPT = PngInfo()
_SCRIPT.add_text("Comment", "<html><script>document.title='owned'</script></html>")
POLYGLOT_BODY = image_bytes("PNG", (320, 240), pnginfo=_SCRIPT)
DOTS = "links e2e/dots/../evil.jpg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("links"), "links") as env:
        description = bootstrap(env)
        description["env"] = env
        s3 = local_client(description, "s3")
        bucket = description["bucket"]
        s3.put_object(Bucket=bucket, Key=KEY, Body=BODY)
        s3.put_object(Bucket=bucket, Key=PAGE, Body=PAGE_BODY, ContentType="text/html")
        s3.put_object(
            Bucket=bucket,
            Key=POLYGLOT,
            Body=POLYGLOT_BODY,
            ContentType="text/html",
            ContentDisposition='attachment; filename="polyglot.html"',
        )
        s3.put_object(Bucket=bucket, Key=DOTS, Body=BODY, ContentType="image/jpeg")
        for key in (KEY, POLYGLOT, DOTS, PAGE):
            ready = "key" if key == PAGE else "thumbnails"  # the page is indexed invalid
            wait_for(partial(indexed, description, key, ready), f"{key}: {ready}")
        yield description


@pytest.fixture(scope="module")
def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False, timeout=10)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)
    return found


def indexed(stack: dict[str, Any], key: str, field: str) -> Any:
    return shown(stack, key).get(field)


def shown(stack: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    done = run_imgcli(stack["env"], "show", key, "--json")
    if done.returncode != 0:
        return {}
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def listed(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    done = run_imgcli(stack["env"], "list", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {line["key"]: line for line in lines if "key" in line}


def test_the_listing_links_open_the_image_and_its_thumbnails(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    item = listed(stack)[KEY]
    urls = item["urls"]
    assert set(urls) == {"image", "256", "1024"}
    assert "X-Amz-Security-Token=" in urls["image"]  # the function's role session signed it
    assert item["urls_expire_at"].endswith("Z")

    image = http.request("GET", urls["image"])
    assert image.status == 200, image.data[:300]
    assert hashlib.sha256(image.data).hexdigest() == hashlib.sha256(BODY).hexdigest()
    assert image.headers["Content-Type"] == "image/jpeg"
    for box in ("256", "1024"):
        thumbnail = http.request("GET", urls[box])
        assert thumbnail.status == 200, thumbnail.data[:300]
        assert thumbnail.headers["Content-Type"] == "image/webp"
        assert thumbnail.data[:4] == b"RIFF" and thumbnail.data[8:12] == b"WEBP"
        with Image.open(io.BytesIO(thumbnail.data)) as opened:
            assert max(opened.size) == int(box)
            assert opened.size == (int(box), int(box) * 3 // 4)


def test_one_image_has_the_same_links_and_they_open_only_their_object(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    urls = shown(stack)["urls"]
    assert http.request("GET", urls["image"]).status == 200
    other = urls["image"].replace(quote(KEY, safe="/~"), "links%20e2e/other.jpg")
    assert other != urls["image"]
    assert http.request("GET", other).status == 403
    thumbnail_as_image = urls["256"].replace(stack["thumbnails_bucket"], stack["bucket"])
    assert http.request("GET", thumbnail_as_image).status == 403


def test_an_html_object_is_served_as_a_download_never_as_a_page(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    item = shown(stack, PAGE)
    assert item["status"] == "invalid"
    assert set(item["urls"]) == {"image"}  # the link is kept: a download
    served = http.request("GET", item["urls"]["image"])
    assert served.status == 200, served.data[:300]
    assert served.data == PAGE_BODY
    assert served.headers["Content-Type"] == "application/octet-stream"
    assert served.headers["Content-Disposition"] == "attachment"


def test_a_polyglot_stored_as_html_is_served_as_the_image_it_is(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    item = shown(stack, POLYGLOT)
    assert item["status"] == "active" and item["content_type"] == "image/png"
    served = http.request("GET", item["urls"]["image"])
    assert served.status == 200, served.data[:300]
    assert served.data == POLYGLOT_BODY
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"] == "inline"  # not the stored "….html"
    # Without the signed overrides S3 answers with what the uploader stored.
    stored = local_client(stack, "s3").head_object(Bucket=stack["bucket"], Key=POLYGLOT)
    assert stored["ContentType"] == "text/html"


def test_a_key_with_dot_segments_opens_only_for_a_client_that_keeps_the_path(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    url = shown(stack, DOTS)["urls"]["image"]
    parts = urlsplit(url)
    assert "/dots/../evil.jpg?" in url  # signed for the key exactly as stored
    connection = http_connection(parts.netloc)
    connection.request("GET", f"{parts.path}?{parts.query}")  # http.client keeps the path
    kept = connection.getresponse()
    assert (kept.status, kept.read()) == (200, BODY)
    # What browsers and curl send (dot segments removed) names another path: refused.
    normalised = url.replace("/dots/../", "/")
    assert http.request("GET", normalised).status == 403


def http_connection(netloc: str) -> HTTPConnection:
    host, _, port = netloc.rpartition(":")
    return HTTPConnection(host, int(port), timeout=10)


def test_the_apis_links_carry_the_stacks_expiry(stack: dict[str, Any]) -> None:
    functions = local_client(stack, "lambda")
    configuration = functions.get_function_configuration(
        FunctionName=stack["functions"]["retrieve"]
    )
    expires_s = int(configuration["Environment"]["Variables"]["URL_EXPIRES_S"])
    item = shown(stack)
    expires_at = calendar.timegm(time.strptime(item["urls_expire_at"], "%Y-%m-%dT%H:%M:%SZ"))
    for url in item["urls"].values():
        query = dict(pair.split("=", 1) for pair in urlsplit(url).query.split("&"))
        assert query["X-Amz-Expires"] == str(expires_s)
        signed_at = calendar.timegm(time.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
        assert expires_at == signed_at + expires_s


def test_a_link_past_its_expiry_is_refused(
    stack: dict[str, Any], http: urllib3.PoolManager
) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=stack["endpoint_url"],
        region_name=LOCAL_REGION,
        aws_access_key_id=OWNER_KEY,
        aws_secret_access_key=OWNER_SECRET,
        config=Config(signature_version="s3v4"),
    )
    links = SignedLinks(
        s3,
        lambda: Credentials(OWNER_KEY, OWNER_SECRET),
        bucket=stack["bucket"],
        thumbnails_bucket=stack["thumbnails_bucket"],
        expires_s=60,
    )
    item = shown(stack)
    record = ImageRecord(
        key=KEY,
        status="active",
        sequencer="0",
        content_type=item["content_type"],
        thumbnails=tuple(
            StoredThumbnail(int(box), t["key"], t["width"], t["height"], t["size"])
            for box, t in item["thumbnails"].items()
        ),
    )
    now = int(time.time())
    current = links.at(now).add_to({}, record)["urls"]
    expired = links.at(now - 120).add_to({}, record)["urls"]  # expired a minute ago
    assert set(current) == set(expired) == {"image", "256", "1024"}
    for name in current:
        opened = http.request("GET", current[name])
        assert opened.status == 200, (name, opened.data[:300])
        refused = http.request("GET", expired[name])
        assert refused.status == 403, (name, refused.data[:300])
        assert b"expired" in refused.data.lower(), refused.data[:300]
