"""``imgcli.share_links``: expiry parsing, the object check, thumbnail lookup from a record,
temporary credentials and presigning, without a local cloud (moto in process)."""

from __future__ import annotations

import datetime
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from imgcli.aws import AwsClients
from imgcli.config import Flags, resolve_stack
from imgcli.errors import ExitCode, UsageError
from imgcli.lambdas.image_metadata import CONTENT_TYPES
from imgcli.share_links import (
    MAX_EXPIRES_S,
    REINDEX_HINT,
    UNIT_SECONDS,
    NoThumbnail,
    ObjectNotFound,
    check_object,
    parse_expiry,
    presign_get,
    presigning_client,
    response_overrides,
    temporary_credentials,
    thumbnail_key,
    thumbnails_bucket_for,
)

# --- --expires ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1", 1), ("3600", 3600)],
)
def test_documented_durations_parse(text: str, seconds: int) -> None:
    assert parse_expiry(text) == seconds


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from(["", "s", "m", "h", "d"]))
def test_a_number_and_unit_is_accepted_exactly_from_1_s_to_7_days(count: int, unit: str) -> None:
    seconds = count * UNIT_SECONDS[unit or "s"]
    if 1 <= seconds <= MAX_EXPIRES_S:
        assert parse_expiry(f"{count}{unit}") == seconds
    else:
        with pytest.raises(UsageError) as refused:
            parse_expiry(f"{count}{unit}")
        assert refused.value.exit_code == ExitCode.USAGE


@given(st.text())
def test_anything_else_is_a_usage_error_never_a_crash(text: str) -> None:
    try:
        seconds = parse_expiry(text)
    except UsageError:
        return
    assert 1 <= seconds <= MAX_EXPIRES_S


@pytest.mark.parametrize("text", ["", "-5", "1.5h", "1w", "h", "1h30m", "8d", "0", "604801"])
def test_refused_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_expiry(text)


# --- the object check and presigning -------------------------------------------------------


def test_check_object_refuses_missing_keys_deleted_keys_and_delete_marker_versions(
    s3_client: Any, versioned_bucket: str
) -> None:
    put = s3_client.put_object(
        Bucket=versioned_bucket, Key="a.jpg", Body=b"x", ContentType="image/jpeg"
    )
    assert check_object(s3_client, versioned_bucket, "a.jpg") == "image/jpeg"
    assert check_object(s3_client, versioned_bucket, "a.jpg", put["VersionId"]) == "image/jpeg"
    marker = s3_client.delete_object(Bucket=versioned_bucket, Key="a.jpg")["VersionId"]

    for key, version in [
        ("missing.jpg", None),
        ("a.jpg", None),
        ("a.jpg", marker),
        ("a.jpg", "nosuchversion"),
    ]:
        with pytest.raises(ObjectNotFound) as missing:
            check_object(s3_client, versioned_bucket, key, version)
        assert missing.value.exit_code == ExitCode.SOME_FAILED
    check_object(s3_client, versioned_bucket, "a.jpg", put["VersionId"])  # still there


def test_presigned_link_names_the_object_version_and_expiry(
    s3_client: Any, versioned_bucket: str
) -> None:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.UTC)
    settings = resolve_stack(Flags(stack="t", target="aws", region="eu-west-1"), os.environ)
    s3 = presigning_client(AwsClients(settings))

    link = presign_get(
        s3,
        versioned_bucket,
        "a b.jpg",
        90,
        stored_content_type="image/jpeg",
        version_id="v1",
        now=lambda: now,
    )

    query = parse_qs(urlsplit(link.url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # never botocore's SigV2 default
    assert query["X-Amz-Expires"] == ["90"]
    assert query["versionId"] == ["v1"]
    # An image is signed as stored, inline: the link stays an image whatever the key holds.
    assert query["response-content-type"] == ["image/jpeg"]
    assert query["response-content-disposition"] == ["inline"]
    assert urlsplit(link.url).path.endswith("/a%20b.jpg")
    assert link.as_json() == {
        "url": link.url,
        "expires_at": "2026-01-02T03:05:35Z",
        "key": "a b.jpg",
        "image_key": "a b.jpg",
        "bucket": versioned_bucket,
        "version_id": "v1",
    }


@pytest.mark.parametrize("content_type", sorted(set(CONTENT_TYPES.values())))
def test_an_accepted_image_type_is_signed_as_stored_and_inline(content_type: str) -> None:
    # Signed, not left to the object: the key may hold a page by the time the link is opened.
    assert response_overrides(content_type) == {
        "ResponseContentType": content_type,
        "ResponseContentDisposition": "inline",
    }


@pytest.mark.parametrize(
    "stored",
    [
        "text/html",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/html; image/png",
        "image/png; charset=utf-8",
        "IMAGE/PNG",
        "binary/octet-stream",
        "",
        None,
    ],
)
def test_anything_else_is_signed_as_a_download(stored: str | None) -> None:
    assert response_overrides(stored) == {
        "ResponseContentType": "application/octet-stream",
        "ResponseContentDisposition": "attachment",
    }


def test_a_link_to_a_page_is_signed_as_a_download() -> None:
    settings = resolve_stack(Flags(stack="t", target="aws", region="eu-west-1"), os.environ)
    s3 = presigning_client(AwsClients(settings))

    link = presign_get(
        s3, "thumbs", "abc/v1/256.webp", 60, stored_content_type="text/html", image_key="a.jpg"
    )

    query = parse_qs(urlsplit(link.url).query)
    assert query["response-content-type"] == ["application/octet-stream"]
    assert query["response-content-disposition"] == ["attachment"]
    assert (link.as_json()["key"], link.as_json()["image_key"]) == ("abc/v1/256.webp", "a.jpg")


def test_temporary_credentials_are_the_ones_with_a_session_token() -> None:
    assert temporary_credentials(Credentials("ASIAX", "secret", "token"))
    assert not temporary_credentials(Credentials("AKIAX", "secret"))
    assert not temporary_credentials(None)


# --- thumbnails from the record ------------------------------------------------------------

RECORD = {
    "key": "a.jpg",
    "status": "active",
    "thumbnails": {
        "256": {"key": "abc/v1/256.webp", "width": 256, "height": 192, "size": 9000},
        "1024": {"key": "abc/v1/1024.webp", "width": 1024, "height": 768, "size": 90000},
    },
    "thumbnail_reason": None,
}


def test_thumbnail_key_comes_from_the_record() -> None:
    assert thumbnail_key(RECORD, 256) == "abc/v1/256.webp"
    assert thumbnail_key(RECORD, 1024) == "abc/v1/1024.webp"


def test_an_image_without_thumbnails_says_why() -> None:
    failed = {"key": "b.jpg", "status": "active", "thumbnails": None, "thumbnail_reason": "too big"}
    with pytest.raises(NoThumbnail, match="too big") as because:
        thumbnail_key(failed, 256)
    assert because.value.exit_code == ExitCode.SOME_FAILED

    older = {"key": "c.jpg", "status": "active", "schema_version": 1}
    with pytest.raises(NoThumbnail) as before:
        thumbnail_key(older, 1024)
    assert before.value.hint == REINDEX_HINT

    invalid = {"key": "d.jpg", "status": "invalid", "reason": "not an image"}
    with pytest.raises(NoThumbnail, match="not an image"):
        thumbnail_key(invalid, 256)


class _Names:
    thumbnails_bucket = "imgcli-s-thumbs-123-eu-west-1"


class _Environment:
    names = _Names()


class _Settings:
    def __init__(self, records: dict[str, str]) -> None:
        self.records = records

    def record(self, key: str) -> str:
        return self.records[key]


class _Run:
    """The part of an ``Invocation`` ``thumbnails_bucket_for`` reads."""

    def __init__(self, records: dict[str, str]) -> None:
        self.settings = _Settings(records)
        self.environments = 0

    def stack_environment(self) -> _Environment:
        self.environments += 1
        return _Environment()


def test_thumbnails_bucket_is_the_recorded_one_else_the_derived_name() -> None:
    recorded = _Run({"bucket": "b", "thumbnails_bucket": "recorded-thumbs"})
    assert thumbnails_bucket_for(recorded) == "recorded-thumbs"  # type: ignore[arg-type]
    assert recorded.environments == 0  # no STS call when the record has it

    older = _Run({"bucket": "b"})  # a stack recorded before the field existed
    assert thumbnails_bucket_for(older) == "imgcli-s-thumbs-123-eu-west-1"  # type: ignore[arg-type]
