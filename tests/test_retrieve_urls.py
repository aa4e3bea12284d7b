"""The retrieve function's presigned URLs: which keys, which buckets, how long, signed how.

Every item of both routes carries ``urls`` (``image``; ``"256"`` and ``"1024"`` when the
record has thumbnails) and ``urls_expire_at``. Each URL must be exactly what botocore would
presign for the same credentials, time and expiry (``tests/test_presign.py`` proves the
signer over generated keys; here the bucket and key each URL names are the point).
Whether the URLs open the objects is ``tests/test_links_e2e.py``'s.
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Callable
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.config import Config

from imgcli.lambdas import retrieve
from imgcli.lambdas.item_links import (
    DEFAULT_URL_EXPIRES_S,
    DOWNLOAD,
    IMAGE_TYPES,
    THUMBNAIL_TYPE,
    ItemLinks,
    Overrides,
    SignedLinks,
    links_from_environment,
    response_overrides,
)
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.presign import BucketEndpoint, Credentials, Presigner
from imgcli.lambdas.records import StoredThumbnail
from tests.retrievedata import AWKWARD_KEYS, NOW, Api, get_event, image, list_event, put

BUCKET = "imgcli-main-123456789012-us-east-1"
THUMBS = "imgcli-main-thumbs-123456789012-us-east-1"
ROLE = Credentials("ASIAROLESESSION00001", "role/secret+key", "FwoGZXIvYXdzE" + "x" * 600)


@pytest.fixture(autouse=True)
def frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: frozen)


def s3_for(credentials: Credentials, endpoint: str | None = None) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=Config(signature_version="s3v4"),
    )


def botocore_url(bucket: str, key: str, expires: int = DEFAULT_URL_EXPIRES_S, **params: str) -> str:
    url: str = s3_for(ROLE, "http://127.0.0.1:4566").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key, **params}, ExpiresIn=expires
    )
    return url


def image_url(key: str, content_type: str = "image/jpeg") -> str:
    """The URL of an active image: served as the type the save function detected."""
    return botocore_url(
        BUCKET, key, ResponseContentType=content_type, ResponseContentDisposition="inline"
    )


def download_url(key: str) -> str:
    """The URL of anything not known to be an image: a download, never a page."""
    return botocore_url(
        BUCKET,
        key,
        ResponseContentType="application/octet-stream",
        ResponseContentDisposition="attachment",
    )


def thumbnail_url(key: str) -> str:
    return botocore_url(THUMBS, key, ResponseContentType="image/webp")


def thumbnails_of(key: str) -> tuple[StoredThumbnail, ...]:
    return tuple(
        StoredThumbnail(box, f"{len(key):064x}/v1/{box}.webp", box, box * 3 // 4, 999)
        for box in (256, 1024)
    )


@pytest.fixture
def api(dynamodb_client: Any, table_name: str) -> Api:
    links = SignedLinks(
        s3_for(ROLE, "http://127.0.0.1:4566"),
        lambda: ROLE,
        bucket=BUCKET,
        thumbnails_bucket=THUMBS,
    )
    return Api(dynamodb_client, table_name, links=links.at(NOW))


def test_every_listed_item_has_its_image_and_thumbnail_urls(api: Api) -> None:
    put(api.dynamodb, api.table, [image(k, thumbnails=thumbnails_of(k)) for k in AWKWARD_KEYS])
    items = [item for page in api.pages(limit="4") for item in page["items"]]
    assert len(items) == len(AWKWARD_KEYS)
    for item in items:
        thumbnails = thumbnails_of(item["key"])
        assert item["urls"] == {
            "image": image_url(item["key"]),
            "256": thumbnail_url(thumbnails[0].key),
            "1024": thumbnail_url(thumbnails[1].key),
        }
        assert item["urls_expire_at"] == "2025-06-15T15:21:40Z"  # NOW + 900 s


def test_one_image_carries_the_same_urls(api: Api) -> None:
    key = AWKWARD_KEYS[0]
    put(api.dynamodb, api.table, [image(key, thumbnails=thumbnails_of(key))])
    found = api.body(get_event(key))
    assert found["urls"]["image"] == image_url(key)
    assert found["urls"]["1024"] == thumbnail_url(thumbnails_of(key)[1].key)
    assert "X-Amz-Security-Token=" in found["urls"]["image"]
    assert "/imgcli-main-123456789012-us-east-1/" in found["urls"]["image"]  # path-style


def test_an_image_without_thumbnails_has_its_image_url_only(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [
            image("bad.jpg", status="invalid", reason="truncated file"),
            image("huge.png", thumbnail_reason="over the pixel budget"),
            image("old.jpg"),  # indexed before thumbnails (schema 1)
        ],
    )
    (invalid,) = api.body(list_event({"status": "invalid"}))["items"]
    assert invalid["urls"] == {"image": download_url("bad.jpg")}
    active = api.body(list_event())["items"]
    for item in active:
        assert item["urls"] == {"image": image_url(item["key"])}
    for item in [invalid, *active]:
        assert item["urls_expire_at"]


def test_an_image_link_serves_the_detected_type_never_the_uploaders(api: Api) -> None:
    put(
        api.dynamodb,
        api.table,
        [
            # The uploader's Content-Type: the save function keeps it on an invalid record.
            image("page.html", status="invalid", reason="not an image", content_type="text/html"),
            image("poly.png", content_type="image/png", format="PNG"),
            image("no-type.jpg", content_type=None),  # should not happen: a download
            image("odd.jpg", content_type="text/html"),  # not a type the check detects
        ],
    )
    shown = {key: api.body(get_event(key))["urls"]["image"] for key in ("page.html", "poly.png")}
    assert shown["page.html"] == download_url("page.html")
    assert "response-content-type=application%2Foctet-stream&" in shown["page.html"]
    assert "response-content-disposition=attachment&" in shown["page.html"]
    assert shown["poly.png"] == image_url("poly.png", "image/png")
    for key in ("no-type.jpg", "odd.jpg"):
        assert api.body(get_event(key))["urls"]["image"] == download_url(key)


def test_the_types_an_image_link_serves_are_the_ones_the_check_detects() -> None:
    from imgcli.lambdas import image_metadata, thumbnails

    assert set(image_metadata.CONTENT_TYPES.values()) == IMAGE_TYPES
    assert thumbnails.CONTENT_TYPE == THUMBNAIL_TYPE


def test_a_response_builds_one_signer_per_kind_of_image_link() -> None:
    endpoint = BucketEndpoint("https://b.example", "b.example", "/", "us-east-1")
    presigner = Presigner(ROLE)
    built: list[Overrides] = []

    def image_signer(overrides: Overrides) -> Callable[[str], str]:
        built.append(overrides)
        return presigner.signing(endpoint, now=NOW, expires_s=60, parameters=overrides)

    links = ItemLinks(image_signer, lambda key: key, "2025-06-15T15:21:40Z")
    found = [image(f"{n}.x", content_type=t) for n, t in enumerate(["image/png", "image/gif"] * 5)]
    found += [image(f"bad{n}", status="invalid", reason="r") for n in range(3)]
    urls = [links.image(record) for record in found]
    assert len(set(urls)) == len(found)
    assert sorted(built) == sorted(response_overrides(r) for r in (*found[:2], found[-1]))
    assert DOWNLOAD in built


def test_a_refreshed_session_signs_with_its_new_keys() -> None:
    current = [ROLE]
    links = SignedLinks(s3_for(ROLE), lambda: current[0], bucket=BUCKET, thumbnails_bucket=THUMBS)
    first = links.at(NOW).image(image("a.jpg"))
    current[0] = Credentials("ASIAROLESESSION00002", "other", "token2")
    second = links.at(NOW).image(image("a.jpg"))
    assert "ASIAROLESESSION00001" in first and "ASIAROLESESSION00002" in second
    assert "X-Amz-Security-Token=token2" in second


def test_urls_are_virtual_hosted_at_aws_endpoints() -> None:
    links = SignedLinks(s3_for(ROLE), lambda: ROLE, bucket=BUCKET, thumbnails_bucket=THUMBS)
    url = links.at(NOW).image(image("a b.jpg"))
    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/a%20b.jpg?")


def environment(**values: str) -> dict[str, str]:
    return {"TABLE_NAME": "t", "BUCKET_NAME": BUCKET, "THUMBNAILS_BUCKET": THUMBS, **values}


@pytest.mark.parametrize("missing", ["BUCKET_NAME", "THUMBNAILS_BUCKET"])
def test_without_a_bucket_name_items_go_without_urls_and_it_is_said(missing: str) -> None:
    environ = environment()
    del environ[missing]
    links, warnings = links_from_environment(environ, lambda: s3_for(ROLE), lambda: ROLE)
    assert links is None
    (warning,) = warnings
    assert missing in warning and "imgcli bootstrap" in warning


@pytest.mark.parametrize(
    ("text", "expires"),
    [(None, 900), ("60", 60), ("604800", 604_800), ("0", 900), ("15m", 900), ("604801", 900)],
)
def test_the_expiry_comes_from_url_expires_s(text: str | None, expires: int) -> None:
    environ = environment(**({"URL_EXPIRES_S": text} if text is not None else {}))
    links, warnings = links_from_environment(environ, lambda: s3_for(ROLE), lambda: ROLE)
    assert links is not None and links.expires_s == expires
    assert bool(warnings) is (text is not None and expires == 900)
    assert f"X-Amz-Expires={expires}&" in links.at(NOW).image(image("k"))


def test_the_handler_signs_with_the_functions_credentials(
    table_name: str,
    dynamodb_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environment(TABLE_NAME=table_name, URL_EXPIRES_S="120").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ROLE.access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "role-session-token")
    retrieve._runtime.cache_clear()
    try:
        put(dynamodb_client, table_name, [image("a.jpg")])
        body = json.loads(retrieve.handler(list_event(), None)["body"])
    finally:
        retrieve._runtime.cache_clear()
    url = body["items"][0]["urls"]["image"]
    assert f"X-Amz-Credential={ROLE.access_key}%2F" in url
    assert "X-Amz-Security-Token=role-session-token&" in url
    assert "X-Amz-Expires=120&" in url
    assert "WARNING" not in capsys.readouterr().out


def test_the_handler_warns_on_each_request_without_buckets(
    table_name: str,
    dynamodb_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TABLE_NAME", table_name)
    retrieve._runtime.cache_clear()
    try:
        put(dynamodb_client, table_name, [image("a.jpg")])
        for _ in range(2):
            response = retrieve.handler(list_event(), None)
            assert response["statusCode"] == 200
            assert "urls" not in json.loads(response["body"])["items"][0]
    finally:
        retrieve._runtime.cache_clear()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["level"] for line in lines] == ["WARNING", "INFO", "WARNING", "INFO"]
    assert "BUCKET_NAME and THUMBNAILS_BUCKET" in lines[0]["message"]


def test_a_page_of_items_with_urls_stays_in_the_body_budget(api: Api) -> None:
    keys = [f"{'k' * 1000}{n:04d}" for n in range(700)]
    put(api.dynamodb, api.table, [image(k, thumbnails=thumbnails_of(k)) for k in keys])
    log = io.StringIO()
    response = retrieve.respond(
        list_event({"limit": "1000"}),
        api.dynamodb,
        api.table,
        secret=api.secret,
        now=NOW,
        logger=JsonLogger("retrieve", stream=log),
        links=api.links,
    )
    body = response["body"].encode()
    assert len(body) <= retrieve.MAX_BODY_BYTES
    assert json.loads(body)["next_cursor"] is not None
