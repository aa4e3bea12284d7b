"""The upload engine's one-listing skip decision, against moto in process: what a second
run sends and lists, listing pages joined with the walk, and content compared by ETag or by
the stored SHA-256."""

from __future__ import annotations

import hashlib
import io
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]

from imgcli.upload_listing import SHA256_METADATA, multipart_etag
from tests.images import image_bytes
from tests.upload_harness import SMALL_PARTS, Calls, MiB, images_folder, upload


@pytest.fixture
def calls(s3_client: Any) -> Calls:
    return Calls(s3_client)


# Existing keys: one listing decides


def test_a_second_run_sends_nothing_and_makes_one_listing(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    folder = images_folder(tmp_path / "photos", 12)
    first, _ = upload(s3_client, bucket, folder, recursive=True, prefix="p/")
    assert first.uploaded == 12
    calls.reset()

    again, found = upload(s3_client, bucket, folder, recursive=True, prefix="p/")

    assert (again.uploaded, again.skipped) == (0, 12)
    assert {result.reason for result in found.results} == {"already uploaded"}
    # No HeadObject or GetObject per file: single-part ETags are MD5s of the content.
    assert calls.counts == Counter({"ListObjectsV2": 1})


def test_the_listing_is_read_a_page_at_a_time(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    for index in range(1005):  # other objects under the prefix, sorting before ours
        s3_client.put_object(Bucket=bucket, Key=f"p/a-{index:04d}", Body=b"x")
    photo = tmp_path / "z.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    calls.reset()

    upload(s3_client, bucket, photo, prefix="p/")

    # A file given directly starts the listing just before its own key.
    assert calls.counts["ListObjectsV2"] == 1


def test_a_listing_of_several_pages_is_joined_with_the_walk(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    for index in range(1001):  # other objects under the prefix, sorting before ours
        s3_client.put_object(Bucket=bucket, Key=f"p/a-{index:04d}", Body=b"x")
    folder = images_folder(tmp_path / "photos", 3)
    upload(s3_client, bucket, folder, recursive=True, prefix="p/")
    calls.reset()

    again, _ = upload(s3_client, bucket, folder, recursive=True, prefix="p/")

    # Our keys are on the second page, fetched while the first one was being read.
    assert (again.uploaded, again.skipped) == (0, 3)
    assert calls.counts == Counter({"ListObjectsV2": 2})


def test_files_are_checked_while_the_listing_is_on_its_way(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "photos", 5)
    upload(s3_client, bucket, folder, recursive=True)
    every_file_opened = threading.Event()
    opened: list[Path] = []

    def open_counted(path: Path) -> Any:
        opened.append(path)
        if len(opened) == 5:
            every_file_opened.set()
        return path.open("rb")

    def answer_once_all_are_checked(**_: Any) -> None:
        # Holding the listing back must not hold back the checks.
        if not every_file_opened.wait(timeout=10):
            raise AssertionError("the checks waited for the listing")

    s3_client.meta.events.register("before-call.s3.ListObjectsV2", answer_once_all_are_checked)
    again, _ = upload(s3_client, bucket, folder, recursive=True, open_file=open_counted)

    assert (again.uploaded, again.skipped) == (0, 5)


def test_files_waiting_for_the_listing_are_hashed_meanwhile(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "photos", 5)
    upload(s3_client, bucket, folder, recursive=True)
    checked_and_hashed = threading.Event()
    opened: list[Path] = []

    def open_counted(path: Path) -> Any:
        opened.append(path)
        if len(opened) == 10:
            checked_and_hashed.set()
        return path.open("rb")

    def answer_once_all_are_hashed(**_: Any) -> None:
        if not checked_and_hashed.wait(timeout=10):
            raise AssertionError("nothing was hashed while the listing was on its way")

    s3_client.meta.events.register("before-call.s3.ListObjectsV2", answer_once_all_are_hashed)
    again, _ = upload(s3_client, bucket, folder, recursive=True, open_file=open_counted)

    assert (again.uploaded, again.skipped) == (0, 5)
    # Each file was opened to be checked, then to be hashed while the listing was held
    # back; comparing it with the listing's ETag took no third opening.
    assert len(opened) == 10


def test_different_content_is_refused_unless_overwrite(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("PNG", size=(30, 30)))
    upload(s3_client, bucket, photo)
    same_size = image_bytes("PNG", size=(30, 30), compress_level=0)
    photo.write_bytes(same_size)
    calls.reset()

    _, refused = upload(s3_client, bucket, photo)

    result = refused.results[0]
    assert result.status == "refused"
    assert result.reason == "already in the bucket with different content: pass --overwrite"
    assert calls.sends() == 0

    summary, replaced = upload(s3_client, bucket, photo, overwrite=True)

    assert summary.replaced == 1
    assert replaced.results[0].replaced is True
    body = s3_client.get_object(Bucket=bucket, Key="photo.png")["Body"].read()
    assert body == same_size


def test_same_size_with_an_etag_imgcli_cannot_reproduce_reads_the_stored_hash(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    data = image_bytes("JPEG")
    digest = hashlib.sha256(data).hexdigest()
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("same.jpg", "other.jpg"):
        (folder / name).write_bytes(data)
        stored = digest if name == "same.jpg" else hashlib.sha256(b"other").hexdigest()
        s3_client.put_object(Bucket=bucket, Key=name, Body=data, Metadata={SHA256_METADATA: stored})
    (folder / "fresh.jpg").write_bytes(data)

    def as_kms_would(parsed: dict[str, Any], **_: Any) -> None:
        # Under SSE-KMS an ETag is not the content's MD5; moto always gives the MD5.
        for item in parsed.get("Contents", []):
            item["ETag"] = '"0123456789abcdef0123456789abcdef"'

    s3_client.meta.events.register("after-call.s3.ListObjectsV2", as_kms_would)
    calls.reset()

    _, found = upload(s3_client, bucket, folder, recursive=True)

    statuses = {result.key: result.status for result in found.results}
    assert statuses == {"fresh.jpg": "uploaded", "other.jpg": "refused", "same.jpg": "skipped"}
    assert calls.counts["HeadObject"] == 2  # the two keys whose ETag proved nothing


# The multipart ETag


def test_transfer_manager_part_size_matches_the_local_etag(
    tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    # The skip decision reproduces s3transfer's part size; check against s3transfer itself.
    data = image_bytes("BMP", size=(1800, 1200))
    with TransferManager(s3_client, TransferConfig(**SMALL_PARTS)) as manager:
        manager.upload(io.BytesIO(data), bucket, "by-s3transfer.bmp").result()
    etag = s3_client.head_object(Bucket=bucket, Key="by-s3transfer.bmp")["ETag"].strip('"')
    assert etag == multipart_etag(io.BytesIO(data), 5 * MiB)
