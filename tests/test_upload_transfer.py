"""The upload engine's transfers, against moto in process: single-part and multipart
uploads with their hashes, the request budget, the lookahead, the listener's thread,
failures and Ctrl-C."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from imgcli.upload_listing import SHA256_METADATA, multipart_etag
from imgcli.upload_types import FileResult, UploadConfig, UploadInterrupted
from tests.images import image_bytes
from tests.upload_harness import (
    SMALL_PARTS,
    Calls,
    MiB,
    Recorder,
    images_folder,
    object_keys,
    upload,
)


@pytest.fixture
def calls(s3_client: Any) -> Calls:
    return Calls(s3_client)


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
