"""``imgcli.versions`` without a local cloud: listing (exact key, paging, order), which
version ``restore`` picks, the copy (in parts past CopyObject's limit) and ``--wait``."""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Mapping
from typing import Any

import pytest

from imgcli.errors import ExitCode, UsageError
from imgcli.versions import (
    NoVersions,
    ObjectVersion,
    list_versions,
    restore_source,
    restore_version,
    wait_until_version_indexed,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def at(seconds: int) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def version(vid: str, seconds: int, *, latest: bool = False, marker: bool = False) -> ObjectVersion:
    return ObjectVersion("a.jpg", vid, at(seconds), latest, marker, None if marker else 1, None)


# --- listing -------------------------------------------------------------------------------


def test_only_the_exact_key_newest_first_with_delete_markers(
    s3_client: Any, versioned_bucket: str
) -> None:
    put = [
        s3_client.put_object(Bucket=versioned_bucket, Key="a.jpg", Body=b"1" * n) for n in (1, 2)
    ]
    s3_client.put_object(Bucket=versioned_bucket, Key="a.jpg.bak", Body=b"other")
    marker = s3_client.delete_object(Bucket=versioned_bucket, Key="a.jpg")

    versions = list_versions(s3_client, versioned_bucket, "a.jpg")

    assert [(v.version_id, v.is_latest, v.delete_marker, v.size) for v in versions] == [
        (marker["VersionId"], True, True, None),
        (put[1]["VersionId"], False, False, 2),
        (put[0]["VersionId"], False, False, 1),
    ]
    assert list_versions(s3_client, versioned_bucket, "a.jp") == []


class PagedListing:
    """ListObjectVersions as S3 pages it: a recording double."""

    def __init__(self, pages: list[Mapping[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []

    def list_object_versions(self, **params: Any) -> Mapping[str, Any]:
        self.calls.append(params)
        return self.pages[len(self.calls) - 1]


def entry(key: str, vid: str, seconds: int, latest: bool = False) -> dict[str, Any]:
    return {"Key": key, "VersionId": vid, "LastModified": at(seconds), "IsLatest": latest}


def test_pages_are_followed_and_listing_stops_at_the_first_other_key() -> None:
    s3 = PagedListing(
        [
            {
                "Versions": [entry("a.jpg", "v3", 3, True), entry("a.jpg", "v2", 2)],
                "IsTruncated": True,
                "NextKeyMarker": "a.jpg",
                "NextVersionIdMarker": "v2",
            },
            {
                "Versions": [entry("a.jpg", "v1", 1), entry("a.jpg.bak", "b1", 9, True)],
                "DeleteMarkers": [entry("a.jpg", "m1", 1)],
                "IsTruncated": True,
                "NextKeyMarker": "a.jpg.bak",
                "NextVersionIdMarker": "b1",
            },
            {"Versions": [entry("a.jpg.bak2", "c1", 1)], "IsTruncated": False},
        ]
    )

    versions = list_versions(s3, "bucket", "a.jpg")

    # A marker of the same second as a version goes first (module docstring).
    assert [v.version_id for v in versions] == ["v3", "v2", "m1", "v1"]
    assert s3.calls == [
        {"Bucket": "bucket", "Prefix": "a.jpg"},
        {"Bucket": "bucket", "Prefix": "a.jpg", "KeyMarker": "a.jpg", "VersionIdMarker": "v2"},
    ]


# --- which version restore brings back ------------------------------------------------------


def test_a_deleted_key_gets_its_newest_image_version() -> None:
    versions = [
        version("m2", 5, latest=True, marker=True),
        version("m1", 4, marker=True),
        version("v2", 3),
        version("v1", 1),
    ]
    assert restore_source(versions, "a.jpg", None).version_id == "v2"
    assert restore_source(versions, "a.jpg", "v1").version_id == "v1"


def test_a_live_key_needs_a_version_id() -> None:
    versions = [version("v2", 3, latest=True), version("v1", 1)]

    with pytest.raises(UsageError, match="needs the version") as refused:
        restore_source(versions, "a.jpg", None)

    assert refused.value.exit_code == ExitCode.USAGE
    assert "imgcli versions" in (refused.value.hint or "")
    assert restore_source(versions, "a.jpg", "v1").version_id == "v1"


AWKWARD = "holiday/sunset at sea's end.jpg"


@pytest.mark.parametrize(
    ("versions", "asked"),
    [
        ([version("v2", 3, latest=True), version("v1", 1)], None),  # live: needs a version
        ([version("v1", 1, latest=True)], "v9"),  # no such version
        ([version("v2", 2, latest=True), version("m1", 1, marker=True)], "m1"),  # a marker
    ],
)
def test_hints_quote_the_key_for_the_shell(
    versions: list[ObjectVersion], asked: str | None
) -> None:
    with pytest.raises((UsageError, NoVersions)) as refused:
        restore_source(versions, AWKWARD, asked)

    commands = re.findall(r"`([^`]*)`", refused.value.hint or "")
    assert commands
    for command in commands:
        words = shlex.split(command)
        assert words[:2] in (["imgcli", "versions"], ["imgcli", "restore"])
        assert words[2] == AWKWARD


@pytest.mark.parametrize(
    ("versions", "asked", "error"),
    [
        ([], None, NoVersions),
        ([version("v1", 1, latest=True)], "v9", NoVersions),
        ([version("m1", 2, latest=True, marker=True)], None, NoVersions),
        ([version("v2", 2, latest=True), version("m1", 1, marker=True)], "m1", UsageError),
        ([version("v2", 2, latest=True)], "v2", UsageError),
    ],
)
def test_refusals(versions: list[ObjectVersion], asked: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        restore_source(versions, "a.jpg", asked)


# --- the copy ------------------------------------------------------------------------------


@pytest.mark.parametrize("copy_limit", [None, 1])
def test_restore_copies_bytes_metadata_and_content_type_as_a_new_version(
    s3_client: Any, versioned_bucket: str, copy_limit: int | None
) -> None:
    # 6 MiB + 1: two parts of 5 MiB and the rest when the limit forces a multipart copy.
    body = bytes(range(256)) * (6 * 4096) + b"!"
    old = s3_client.put_object(
        Bucket=versioned_bucket,
        Key="a.jpg",
        Body=body,
        ContentType="image/jpeg",
        Metadata={"imgcli-sha256": "abc"},
    )
    s3_client.put_object(Bucket=versioned_bucket, Key="a.jpg", Body=b"new", ContentType="text/x")
    source = next(
        v
        for v in list_versions(s3_client, versioned_bucket, "a.jpg")
        if v.version_id == old["VersionId"]
    )
    limits = {} if copy_limit is None else {"copy_limit": copy_limit, "part_size": 5 * 1024**2}

    restored = restore_version(s3_client, versioned_bucket, source, **limits)

    got = s3_client.get_object(Bucket=versioned_bucket, Key="a.jpg")
    assert got["Body"].read() == body
    assert got["VersionId"] == restored.version_id != old["VersionId"]
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"imgcli-sha256": "abc"}
    assert restored.as_json()["restored_from"] == old["VersionId"]
    uploads = s3_client.list_multipart_uploads(Bucket=versioned_bucket).get("Uploads", [])
    assert uploads == []


# --- --wait --------------------------------------------------------------------------------


class Records:
    """The API's answers to GetImage, one per call, the last one repeated."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    def get_image(self, key: str) -> dict[str, Any] | None:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_returns_once_the_record_carries_the_new_version() -> None:
    clock = Clock()
    api = Records(None, {"version_id": "old"}, {"version_id": "new", "status": "active"})

    found = wait_until_version_indexed(api, "a.jpg", "new", sleep=clock.sleep, clock=clock)

    assert found == {"version_id": "new", "status": "active"}
    assert api.calls == 3


def test_wait_gives_up_after_its_timeout() -> None:
    clock = Clock()
    api = Records({"version_id": "old"})

    found = wait_until_version_indexed(
        api, "a.jpg", "new", timeout_s=5, sleep=clock.sleep, clock=clock
    )

    assert found is None
    assert clock.now == 5
