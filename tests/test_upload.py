"""The upload engine against moto in process: keys, filters, every refusal, the one-listing
skip decision, multipart, dry runs, records, Ctrl-C, the request budget and --wait."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]

from imgcli.errors import UsageError
from imgcli.upload import (
    SHA256_METADATA,
    FileResult,
    PathFilter,
    Selection,
    UploadConfig,
    Uploader,
    UploadInterrupted,
    UploadSummary,
    is_selected,
    multipart_etag,
    wait_until_indexed,
)
from tests.images import image_bytes, png_header_only

MiB = 1024 * 1024
# s3transfer's smallest part size, so the smallest threshold that really goes multipart.
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB}


class Recorder:
    """An UploadListener that keeps everything it hears, and on which thread."""

    def __init__(self) -> None:
        self.results: list[FileResult] = []
        self.queued_sizes: list[int] = []
        self.sent_amounts: list[int] = []
        self.threads: set[str] = set()

    def queued(self, size: int) -> None:
        self.threads.add(threading.current_thread().name)
        self.queued_sizes.append(size)

    def sent(self, amount: int) -> None:
        self.threads.add(threading.current_thread().name)
        self.sent_amounts.append(amount)

    def finished(self, result: FileResult) -> None:
        self.threads.add(threading.current_thread().name)
        self.results.append(result)

    def by_key(self) -> dict[str | None, FileResult]:
        return {result.key: result for result in self.results}

    def by_name(self) -> dict[str, FileResult]:
        return {Path(result.path).name: result for result in self.results}


class Calls:
    """S3 operations the client made, counted with botocore's event hooks."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        self._in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _after(self, **_: Any) -> None:
        with self._lock:
            self._in_flight -= 1

    def reset(self) -> None:
        self.counts.clear()

    def sends(self) -> int:
        return sum(
            self.counts[name]
            for name in ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject")
        )


@pytest.fixture
def calls(s3_client: Any) -> Calls:
    return Calls(s3_client)


def upload(
    s3_client: Any,
    bucket: str,
    *paths: Path,
    config: UploadConfig | None = None,
    listener: Recorder | None = None,
    open_file: Callable[[Path], Any] | None = None,
    **options: Any,
) -> tuple[UploadSummary, Recorder]:
    selection_options = {
        k: options.pop(k) for k in ("prefix", "recursive", "filters") if k in options
    }
    found = listener or Recorder()
    uploader = Uploader(s3_client, bucket, config)
    if open_file is not None:
        uploader = Uploader(s3_client, bucket, config, open_file=open_file)
    summary = uploader.upload(Selection(paths, **selection_options), listener=found, **options)
    return summary, found


def images_folder(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    formats = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"]
    extensions = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif"}
    for index in range(count):
        fmt = formats[index % len(formats)]
        name = f"img{index:03d}.{extensions.get(fmt, fmt.lower())}"
        (root / name).write_bytes(image_bytes(fmt, size=(20 + index, 10 + index)))
    return root


def object_keys(s3_client: Any, bucket: str) -> list[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return [item["Key"] for item in listed]


# Keys


def test_keys_are_the_prefix_plus_the_path_under_the_folder_or_the_name(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "trip"
    (folder / "day 1").mkdir(parents=True)
    (folder / "top.jpg").write_bytes(image_bytes("JPEG"))
    (folder / "day 1" / "beach.png").write_bytes(image_bytes("PNG"))
    single = tmp_path / "elsewhere" / "single.gif"
    single.parent.mkdir()
    single.write_bytes(image_bytes("GIF"))

    summary, found = upload(
        s3_client, bucket, folder, single, prefix="albums/2024/", recursive=True
    )

    assert summary.uploaded == 3
    assert sorted(object_keys(s3_client, bucket)) == [
        "albums/2024/day 1/beach.png",
        "albums/2024/single.gif",
        "albums/2024/top.jpg",
    ]
    assert found.by_key()["albums/2024/day 1/beach.png"].path == str(folder / "day 1" / "beach.png")


def test_the_walk_yields_keys_in_s3_listing_order(
    tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    # '.' (0x2E) < '/' (0x2F) < '0' (0x30): a folder's keys sort between "a.jpg" and "a0.jpg".
    folder = tmp_path / "order"
    (folder / "a").mkdir(parents=True)
    for name in ("a.jpg", "a/b.jpg", "a0.jpg", "Z.jpg", "é.jpg", "a/ü.jpg"):
        (folder / name).write_bytes(image_bytes("JPEG"))

    _, found = upload(s3_client, bucket, folder, recursive=True, dry_run=True)

    keys = [result.key for result in found.results]
    assert keys == sorted(keys, key=lambda key: key.encode("utf-8"))  # type: ignore[union-attr]
    assert len(keys) == 6


def test_a_folder_needs_recursive_and_a_missing_path_is_a_usage_error(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="is a folder"):
        upload(s3_client, bucket, tmp_path)
    with pytest.raises(UsageError, match="no such file or folder"):
        upload(s3_client, bucket, tmp_path / "missing.jpg")


# Filters


@pytest.mark.parametrize(
    ("relative", "filters", "selected"),
    [
        ("a.jpg", [], True),
        ("raw/a.jpg", [("-", "raw/*")], False),
        ("deep/er/x.tmp", [("-", "*.tmp")], False),  # '*' crosses '/'
        ("raw/keep/a.jpg", [("-", "raw/*"), ("+", "raw/keep/*")], True),  # later wins
        ("raw/keep/a.jpg", [("+", "raw/keep/*"), ("-", "raw/*")], False),
        ("a.png", [("+", "*.png")], True),
        ("a.jpg", [("+", "*.png")], False),  # a first --include means "only these"
        ("a.jpg", [("-", "*"), ("+", "*.png")], False),  # the aws s3 idiom works too
        ("a.png", [("-", "*"), ("+", "*.png")], True),
        ("A.PNG", [("+", "*.png")], False),  # case-sensitive, like keys
    ],
)
def test_filters_later_ones_win(
    relative: str, filters: list[tuple[str, str]], selected: bool
) -> None:
    parsed = [PathFilter(pattern, sign == "+") for sign, pattern in filters]
    assert is_selected(relative, parsed) is selected


def test_excluded_files_are_counted_not_reported(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "f", 6)
    (folder / "notes.txt").write_text("not an image, but excluded")
    filters = (PathFilter("*", False), PathFilter("*.png", True), PathFilter("*.gif", True))

    summary, found = upload(s3_client, bucket, folder, recursive=True, filters=filters)

    assert sorted(found.by_name()) == ["img001.png", "img002.gif"]
    assert (summary.uploaded, summary.excluded, summary.refused) == (2, 5, 0)


# Refusals


def test_every_bad_file_is_refused_by_name_with_its_reason_and_the_others_go(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = image_bytes("JPEG", size=(120, 80))
    (folder / "good.jpg").write_bytes(good)
    (folder / "text.jpg").write_bytes(b"this is not an image at all")
    (folder / "truncated.jpg").write_bytes(good[: len(good) * 3 // 4])  # header intact
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (folder / "huge.bmp").write_bytes(image_bytes("BMP", size=(200, 200)))
    (folder / "broken.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    (folder / "sub").mkdir()
    (folder / "sub" / "back-up").symlink_to(folder)  # a folder that contains itself
    os.mkfifo(folder / "pipe.jpg")  # opening it would block: it must not be opened
    (folder / os.fsdecode(b"latin1-\xe9.jpg")).write_bytes(good)

    summary, found = upload(
        s3_client, bucket, folder, recursive=True, config=UploadConfig(max_size=100_000)
    )

    reasons = {name: result.reason or "" for name, result in found.by_name().items()}
    statuses = {name: result.status for name, result in found.by_name().items()}
    assert statuses.pop("good.jpg") == "uploaded"
    assert set(statuses.values()) == {"refused"}
    assert "not an image in an accepted format" in reasons["text.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["empty.jpg"] == "empty file"
    assert "over the pixel limit" in reasons["bomb.png"]
    assert reasons["huge.bmp"].startswith("too large: 120054 bytes")
    assert reasons["broken.jpg"] == "broken symlink: its target does not exist"
    assert reasons["loop-a.jpg"].startswith("symlink loop")
    assert reasons["loop-b.jpg"].startswith("symlink loop")
    assert reasons["back-up"].startswith("symlink loop")
    assert found.by_name()["back-up"].key is None  # a folder has no key
    assert reasons["pipe.jpg"] == "not a regular file"
    assert "not valid UTF-8" in reasons[os.fsdecode(b"latin1-\xe9.jpg")]
    assert object_keys(s3_client, bucket) == ["good.jpg"]
    assert (summary.uploaded, summary.refused, summary.not_uploaded) == (1, 11, 11)


def test_content_type_comes_from_the_content_not_the_name(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    disguised = tmp_path / "really-a-png.jpg"
    disguised.write_bytes(image_bytes("PNG"))
    upload(s3_client, bucket, disguised)
    head = s3_client.head_object(Bucket=bucket, Key="really-a-png.jpg")
    assert head["ContentType"] == "image/png"


def test_a_key_over_1024_bytes_is_refused(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    _, found = upload(s3_client, bucket, photo, prefix="é" * 510)  # 1,020 bytes + 9
    assert found.results[0].status == "refused"
    assert found.results[0].reason == "key too long: 1029 bytes of UTF-8 (S3's limit is 1024)"


def test_an_unreadable_file_is_refused(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    def refuse_to_open(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    photo = tmp_path / "locked.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    _, found = upload(s3_client, bucket, photo, open_file=refuse_to_open)
    assert (found.results[0].status, found.results[0].reason) == (
        "refused",
        "unreadable: permission denied",
    )


def test_a_file_without_read_permission_is_refused(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    photo = tmp_path / "locked.jpg"
    photo.write_bytes(image_bytes("JPEG"))
    photo.chmod(0)
    try:
        if os.access(photo, os.R_OK):
            pytest.skip("this user (root?) reads files without read permission")
        _, found = upload(s3_client, bucket, photo)
    finally:
        photo.chmod(0o644)
    assert found.results[0].reason == "unreadable: permission denied"


def test_two_files_with_one_key_the_second_is_refused(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(image_bytes("JPEG"))
    first, second = tmp_path / "one" / "same.jpg", tmp_path / "two" / "same.jpg"
    _, found = upload(s3_client, bucket, first, second)
    outcomes = {result.path: (result.status, result.reason) for result in found.results}
    assert outcomes == {
        str(first): ("uploaded", None),
        str(second): ("refused", f"same key as {first}"),
    }


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


# Transfers


def test_single_part_uploads_carry_the_sha256_as_metadata_and_checksum(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    sent: list[dict[str, Any]] = []
    s3_client.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: sent.append(dict(params))
    )
    photo = tmp_path / "photo.webp"
    data = image_bytes("WEBP")
    photo.write_bytes(data)

    _, found = upload(s3_client, bucket, photo)

    digest = hashlib.sha256(data)
    assert sent[0]["Metadata"] == {SHA256_METADATA: digest.hexdigest()}
    assert sent[0]["ChecksumSHA256"] == base64.b64encode(digest.digest()).decode()
    assert sent[0]["ContentType"] == "image/webp"
    assert found.results[0].etag == hashlib.md5(data).hexdigest()
    assert sum(found.sent_amounts) == len(data)


def test_large_files_go_multipart_with_the_content_hash_and_are_skipped_next_time(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    big = tmp_path / "scan.bmp"
    data = image_bytes("BMP", size=(1800, 1200))  # 6.5 MB: two 5 MiB parts
    big.write_bytes(data)
    small = tmp_path / "small.png"
    small.write_bytes(image_bytes("PNG"))
    config = UploadConfig(**SMALL_PARTS)

    summary, found = upload(s3_client, bucket, big, small, config=config)

    assert summary.uploaded == 2
    assert calls.counts["CreateMultipartUpload"] == 1
    assert calls.counts["UploadPart"] == 2
    assert calls.counts["PutObject"] == 1
    head = s3_client.head_object(Bucket=bucket, Key="scan.bmp")
    assert head["Metadata"] == {SHA256_METADATA: hashlib.sha256(data).hexdigest()}
    assert head["ContentType"] == "image/bmp"
    result = found.by_key()["scan.bmp"]
    assert result.etag == head["ETag"].strip('"') == multipart_etag(io.BytesIO(data), 5 * MiB)
    assert sum(found.sent_amounts) == len(data) + small.stat().st_size
    calls.reset()

    again, _ = upload(s3_client, bucket, big, small, config=config)

    assert again.skipped == 2
    # The multipart ETag is reproduced locally: no HEAD either.
    assert calls.counts == Counter({"ListObjectsV2": 1})


def test_concurrent_requests_stay_within_jobs(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    folder = images_folder(tmp_path / "many", 40)
    config = UploadConfig(jobs=3)
    assert config.pool_connections == 5  # the jobs, the listing and the planner's HeadObject

    summary, _ = upload(s3_client, bucket, folder, recursive=True, config=config)

    assert summary.uploaded == 40
    assert 1 < calls.max_in_flight <= config.pool_connections


def test_the_walk_runs_at_most_lookahead_files_ahead(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "many", 30)
    waiting: list[int] = []

    class Watching(Recorder):
        def queued(self, size: int) -> None:
            super().queued(size)
            finished = sum(result.status == "uploaded" for result in self.results)
            waiting.append(len(self.queued_sizes) - finished)

    watching = Watching()
    upload(
        s3_client,
        bucket,
        folder,
        recursive=True,
        config=UploadConfig(jobs=1, lookahead=3),
        listener=watching,
    )

    assert max(waiting) <= 3


def test_the_listener_hears_everything_on_the_calling_thread(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    folder = images_folder(tmp_path / "few", 5)
    (folder / "bad.jpg").write_bytes(b"nope")
    _, found = upload(s3_client, bucket, folder, recursive=True)
    assert found.threads == {threading.current_thread().name}


# Dry run and records


def test_a_dry_run_lists_and_sends_nothing(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    folder = images_folder(tmp_path / "photos", 4)
    upload(s3_client, bucket, folder / "img000.jpg")
    (folder / "bad.jpg").write_bytes(b"")
    calls.reset()

    summary, found = upload(s3_client, bucket, folder, recursive=True, dry_run=True)

    assert calls.sends() == 0
    assert calls.counts["ListObjectsV2"] == 1
    assert {result.key: result.status for result in found.results} == {
        "bad.jpg": "refused",
        "img000.jpg": "skipped",
        "img001.png": "would_upload",
        "img002.gif": "would_upload",
        "img003.webp": "would_upload",
    }
    assert summary.as_json()["dry_run"] is True
    assert summary.would_upload == 3


def test_records_and_summary_are_json(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    folder = images_folder(tmp_path / "photos", 2)
    (folder / "empty.jpg").write_bytes(b"")
    summary, found = upload(s3_client, bucket, folder, recursive=True, prefix="j/")

    records = [json.loads(json.dumps(result.as_json())) for result in found.results]
    uploaded = next(record for record in records if record["key"] == "j/img000.jpg")
    assert uploaded["status"] == "uploaded"
    assert uploaded["path"] == str(folder / "img000.jpg")
    assert uploaded["bytes"] == (folder / "img000.jpg").stat().st_size
    assert uploaded["content_type"] == "image/jpeg"
    assert isinstance(uploaded["seconds"], float)
    assert set(uploaded) >= {"path", "key", "status", "reason", "bytes", "seconds"}
    refused = next(record for record in records if record["key"] == "j/empty.jpg")
    assert (refused["status"], refused["reason"]) == ("refused", "empty file")
    document = json.loads(json.dumps(summary.as_json()))
    assert document["files"] == 3
    assert (document["uploaded"], document["refused"]) == (2, 1)
    assert document["bytes_sent"] == sum(r["bytes"] for r in records if r["status"] == "uploaded")


# Failures and Ctrl-C


def test_ctrl_c_aborts_multipart_uploads_in_flight_and_reports_what_finished(
    s3_client: Any, bucket: str, tmp_path: Path, calls: Calls
) -> None:
    small = tmp_path / "a-small.jpg"
    small.write_bytes(image_bytes("JPEG"))
    big = tmp_path / "b-big.bmp"
    big.write_bytes(image_bytes("BMP", size=(2600, 2600)))  # 20 MB: four 5 MiB parts

    class CtrlC(Recorder):
        def sent(self, amount: int) -> None:
            super().sent(amount)
            if self.by_key().get("a-small.jpg") is not None:
                raise KeyboardInterrupt  # as if pressed while the big file is under way

    interrupting = CtrlC()

    with pytest.raises(UploadInterrupted) as stopped:
        upload(
            s3_client,
            bucket,
            small,
            big,
            config=UploadConfig(jobs=1, **SMALL_PARTS),
            listener=interrupting,
        )

    assert isinstance(stopped.value, KeyboardInterrupt)  # exit code 130 in the CLI frame
    summary = stopped.value.summary
    assert summary.interrupted is True
    assert (summary.uploaded, summary.failed) == (1, 1)
    failed = interrupting.by_key()["b-big.bmp"]
    assert failed.reason == "interrupted (multipart upload aborted)"
    assert calls.counts["CreateMultipartUpload"] == 1
    assert calls.counts["AbortMultipartUpload"] == 1
    assert calls.counts["UploadPart"] < 4
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert object_keys(s3_client, bucket) == ["a-small.jpg"]


def test_ctrl_c_while_the_bucket_listing_hangs_leaves_no_planner_waiting_for_it(
    s3_client: Any, bucket: str, tmp_path: Path
) -> None:
    (tmp_path / "a-fine.jpg").write_bytes(image_bytes("JPEG"))
    (tmp_path / "b-broken.jpg").write_bytes(b"not an image")
    listing_started, listing_released = threading.Event(), threading.Event()

    def hang(**kwargs: Any) -> None:  # a value returned here would be taken as the answer
        listing_started.set()
        listing_released.wait(30)

    s3_client.meta.events.register("before-call.s3.ListObjectsV2", hang)

    class CtrlC(Recorder):
        def finished(self, result: FileResult) -> None:
            super().finished(result)
            listing_started.wait(5)
            time.sleep(0.5)  # the planner, done with the walk, now waits for the listing
            raise KeyboardInterrupt  # pressed while the listing is still on its way

    try:
        with pytest.raises(UploadInterrupted):
            upload(s3_client, bucket, tmp_path, recursive=True, listener=CtrlC())
        planners = [t for t in threading.enumerate() if t.name == "imgcli-upload-planner"]
        assert [t for t in planners if t.is_alive()] == []
    finally:
        listing_released.set()
    assert object_keys(s3_client, bucket) == []


def test_a_missing_bucket_stops_the_batch_before_sending(
    s3_client: Any, tmp_path: Path, calls: Calls
) -> None:
    folder = images_folder(tmp_path / "photos", 3)
    with pytest.raises(Exception, match="NoSuchBucket"):
        upload(s3_client, "no-such-bucket-here", folder, recursive=True)
    assert calls.sends() == 0


def test_a_failed_put_fails_that_file_only(s3_client: Any, bucket: str, tmp_path: Path) -> None:
    folder = images_folder(tmp_path / "photos", 4)

    def fail_one(params: dict[str, Any], **_: Any) -> Any:
        if params["url_path"].endswith("/img001.png"):
            error = {"Error": {"Code": "InternalError", "Message": "try again"}}
            return AWSResponse("", 500, {}, None), error  # botocore skips the request
        return None

    s3_client.meta.events.register("before-call.s3.PutObject", fail_one)
    summary, found = upload(s3_client, bucket, folder, recursive=True)

    failed = found.by_key()["img001.png"]
    assert failed.status == "failed"
    assert failed.reason is not None and "PutObject" in failed.reason
    assert (summary.uploaded, summary.failed) == (3, 1)


# --wait


class FakeApi:
    """The gallery API as --wait sees it: answers scripted per round."""

    def __init__(self, rounds: list[dict[str, dict[str, Any]]]) -> None:
        self.rounds = rounds
        self.round = 0
        self.gets: list[str] = []
        self.listings: list[tuple[str | None, bool]] = []

    def _now(self) -> dict[str, dict[str, Any]]:
        return self.rounds[min(self.round, len(self.rounds) - 1)]

    def get_image(self, key: str) -> dict[str, Any] | None:
        self.gets.append(key)
        return self._now().get(key)

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]:
        self.listings.append((prefix, invalid))
        wanted = "invalid" if invalid else "active"
        for key, image in sorted(self._now().items()):
            if image.get("status", "active") == wanted and key.startswith(prefix or ""):
                yield image


class FakeTime:
    def __init__(self, api: FakeApi) -> None:
        self.now = 0.0
        self.api = api

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.api.round += 1


def image(key: str, etag: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "etag": etag, "status": "active", **fields}


def test_wait_until_the_new_etag_is_listed() -> None:
    old = {"a.jpg": image("a.jpg", "old")}
    new = {"a.jpg": image("a.jpg", "new"), "b.jpg": image("b.jpg", "b1")}
    api = FakeApi([{}, old, new])
    fake = FakeTime(api)

    waited = wait_until_indexed(
        api, {"a.jpg": "new", "b.jpg": "b1"}, sleep=fake.sleep, clock=fake.clock
    )

    assert (waited.listed, waited.pending, dict(waited.invalid)) == (2, frozenset(), {})
    assert api.round == 2  # the old details did not end the wait
    assert api.listings == []


def test_wait_lists_the_common_prefix_when_many_keys_are_pending() -> None:
    keys = {f"batch/{n:03d}.jpg": f"e{n}" for n in range(60)}
    listed = {key: image(key, etag) for key, etag in keys.items()}
    listed["batch/007.jpg"] = image("batch/007.jpg", "e7", status="invalid", reason="bad")
    api = FakeApi([listed])
    fake = FakeTime(api)

    waited = wait_until_indexed(api, keys, sleep=fake.sleep, clock=fake.clock)

    assert api.gets == []
    assert api.listings == [("batch/0", False), ("batch/0", True)]  # their common prefix
    assert waited.listed == 59
    assert dict(waited.invalid) == {"batch/007.jpg": "bad"}


def test_wait_gives_up_at_the_timeout() -> None:
    api = FakeApi([{}])
    fake = FakeTime(api)
    waited = wait_until_indexed(
        api, {"a.jpg": "x"}, timeout_s=3, sleep=fake.sleep, clock=fake.clock
    )
    assert waited.pending == frozenset({"a.jpg"})
    assert fake.now == pytest.approx(3)


# Configuration


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="jobs"):
        UploadConfig(jobs=0)
    assert UploadConfig().jobs == 16
    assert UploadConfig().multipart_threshold == 8 * MiB


def test_transfer_manager_part_size_matches_the_local_etag(
    tmp_path: Path, s3_client: Any, bucket: str
) -> None:
    # The skip decision reproduces s3transfer's part size; check against s3transfer itself.
    data = image_bytes("BMP", size=(1800, 1200))
    with TransferManager(s3_client, TransferConfig(**SMALL_PARTS)) as manager:
        manager.upload(io.BytesIO(data), bucket, "by-s3transfer.bmp").result()
    etag = s3_client.head_object(Bucket=bucket, Key="by-s3transfer.bmp")["ETag"].strip('"')
    assert etag == multipart_etag(io.BytesIO(data), 5 * MiB)
