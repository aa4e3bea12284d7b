"""The save function's thumbnails against moto: made at indexing, read once, keyed per
version, replaced and removed with their record, and never lost to a racing event.

Repairs (schema version, thumbnails) are in ``test_repair_schema``; the key names and the
store's failure handling in ``test_thumbnail_store``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import replace
from typing import IO, Any

import pytest

from imgcli.lambdas import save_delete
from imgcli.lambdas.records import SCHEMA_VERSION, THUMBNAIL_BOXES
from imgcli.lambdas.save_delete import Indexer, MissingConfiguration, RecordsFailed, process_event
from imgcli.lambdas.thumbnail_store import CACHE_CONTROL, new_writer, thumbnail_key, version_tag
from imgcli.lambdas.thumbnails import Thumbnail, ThumbnailFailed
from tests.eventdata import created, s3_event, stored
from tests.images import damaged_middle, image_bytes, noisy_jpeg
from tests.races import WriteAfter


def thumbnail_objects(s3_client: Any, bucket: str) -> set[str]:
    listing = s3_client.list_objects_v2(Bucket=bucket)
    return {entry["Key"] for entry in listing.get("Contents", ())}


def gets(s3_client: Any) -> list[tuple[str, int]]:
    """Every GetObject from now on: its Range and the bytes it returned."""
    seen: list[tuple[str, int]] = []
    ranges: list[str] = []
    s3_client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **kw: ranges.append(params.get("Range", "")),
    )
    s3_client.meta.events.register(
        "after-call.s3.GetObject",
        lambda parsed, **kw: seen.append((ranges[len(seen)], parsed["ContentLength"])),
    )
    return seen


def logged(log_lines: io.StringIO, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    return [line for line in lines if line["message"] == message]


@pytest.fixture
def versioned_indexer(indexer: Indexer, versioned_bucket: str) -> Indexer:
    return replace(indexer, bucket=versioned_bucket)


def fail_the_second_put(s3_client: Any) -> list[str]:
    """From now on, the client's second PutObject fails with a 500; the keys put, so far."""
    from botocore.exceptions import ClientError

    puts: list[str] = []

    def fail_the_second(params: dict[str, Any], **kwargs: Any) -> None:
        puts.append(params["Key"])
        if len(puts) == 2:
            error = {"Error": {"Code": "InternalError", "Message": "We encountered an error"}}
            raise ClientError(error, "PutObject")

    s3_client.meta.events.register("before-parameter-build.s3.PutObject", fail_the_second)
    return puts


def test_a_created_image_gets_both_thumbnails_and_its_record_names_them(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    key = "trips/sunset at sea.jpg"
    event = created(s3_client, bucket, key, image_bytes("JPEG", (1600, 1200)), "10")
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None and record.schema_version == SCHEMA_VERSION
    assert record.thumbnail_reason is None and record.thumbnails is not None
    etag = s3_client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    digest = hashlib.sha256(key.encode()).hexdigest()
    ((_, _, writer),) = {tuple(t.key.split("/")[:3]) for t in record.thumbnails}
    assert re.fullmatch(r"[0-9a-f]{16}", writer)  # one writer's pair
    assert [(t.box, t.key, t.width, t.height) for t in record.thumbnails] == [
        (256, f"{digest}/etag-{etag}/{writer}/256.webp", 256, 192),
        (1024, f"{digest}/etag-{etag}/{writer}/1024.webp", 1024, 768),
    ]
    for thumbnail in record.thumbnails:
        head = s3_client.head_object(Bucket=thumbnails_bucket, Key=thumbnail.key)
        assert head["ContentType"] == "image/webp"
        assert head["CacheControl"] == CACHE_CONTROL
        assert head["ContentLength"] == thumbnail.size > 0
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}


def test_a_small_image_is_read_with_one_get_for_both_its_check_and_its_thumbnails(
    indexer: Indexer, s3_client: Any, bucket: str, log_lines: io.StringIO
) -> None:
    data = image_bytes("PNG", (300, 200))
    event = created(s3_client, bucket, "small.png", data, "11")
    seen = gets(s3_client)
    assert process_event(event, indexer) == {"active": 1}
    assert seen == [(f"bytes=0-{len(data) - 1}", len(data))]
    (made,) = logged(log_lines, "made thumbnails")
    assert made["bytes_read"] == 0 and made["key"] == "small.png"
    assert made["thumbnail_bytes"] > 0 and made["ms"] >= 0


def test_a_big_image_keeps_its_ranged_check_and_then_reads_only_what_it_lacks_once(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    big = replace(indexer, full_decode_bytes=0)  # a 50 MB photo's path, on a small one
    data = noisy_jpeg(400, 400)
    event = created(s3_client, bucket, "big.jpg", data, "12")
    seen = gets(s3_client)
    assert process_event(event, big) == {"active": 1}
    end = len(data) - 1
    assert seen == [
        ("bytes=0-65535", 65536),  # the check: the head...
        (f"bytes={end - 1}-{end}", 2),  # ... and the JPEG's two-byte end marker
        # What the check did not read, once, for the thumbnails: no byte fetched twice.
        (f"bytes=65536-{end - 2}", len(data) - 65536 - 2),
    ]
    record = stored(dynamodb_client, table_name, "big.jpg")
    assert record is not None and record.thumbnails is not None


def test_the_rest_is_read_pinned_to_the_version_the_check_read(
    versioned_indexer: Indexer, s3_client: Any, versioned_bucket: str
) -> None:
    big = replace(versioned_indexer, full_decode_bytes=0)
    event = created(s3_client, versioned_bucket, "pin.jpg", noisy_jpeg(400, 400), "13")
    version = event["Records"][0]["s3"]["object"]["versionId"]
    pins: list[str | None] = []
    s3_client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **kw: pins.append(params.get("VersionId")),
    )
    assert process_event(event, big) == {"active": 1}
    assert pins == [None, version, version]  # the first read asks for the current object


def test_a_new_version_gets_new_keys_and_the_old_thumbnails_are_removed(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
    thumbnails_bucket: str,
) -> None:
    first = created(s3_client, versioned_bucket, "v.png", image_bytes("PNG", (80, 60)), "20")
    process_event(first, versioned_indexer)
    old = stored(dynamodb_client, table_name, "v.png")
    second = created(s3_client, versioned_bucket, "v.png", image_bytes("GIF", (90, 30)), "21")
    assert process_event(second, versioned_indexer) == {"active": 1}
    new = stored(dynamodb_client, table_name, "v.png")
    assert old is not None and new is not None and old.thumbnails and new.thumbnails
    version = second["Records"][0]["s3"]["object"]["versionId"]
    assert all(f"/{version_tag(version, None)}/" in t.key for t in new.thumbnails)
    assert not {t.key for t in old.thumbnails} & {t.key for t in new.thumbnails}
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in new.thumbnails}
    assert [(t.width, t.height) for t in new.thumbnails] == [(90, 30), (90, 30)]


def test_a_delete_removes_the_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    process_event(created(s3_client, bucket, "d.png", image_bytes("PNG"), "30"), indexer)
    assert len(thumbnail_objects(s3_client, thumbnails_bucket)) == 2
    s3_client.delete_object(Bucket=bucket, Key="d.png")
    removal = s3_event("s3_delete", bucket=bucket, key="d.png", sequencer="31")
    assert process_event(removal, indexer) == {"deleted": 1}
    assert thumbnail_objects(s3_client, thumbnails_bucket) == set()
    tombstone = stored(dynamodb_client, table_name, "d.png")
    assert tombstone is not None and tombstone.status == "deleted"
    assert tombstone.schema_version == SCHEMA_VERSION and tombstone.thumbnails is None


def test_a_stale_create_keeps_the_current_thumbnails_and_removes_its_own(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
    thumbnails_bucket: str,
) -> None:
    older = created(s3_client, versioned_bucket, "race.png", image_bytes("PNG", (50, 50)), "40")

    def newer_version_lands() -> None:
        # The older event has read its object and written its thumbnails; now a newer
        # upload is indexed before the older event's record write.
        newer = created(
            s3_client, versioned_bucket, "race.png", image_bytes("JPEG", (70, 20)), "41"
        )
        assert process_event(newer, versioned_indexer) == {"active": 1}

    racing = replace(
        versioned_indexer, dynamodb=WriteAfter(versioned_indexer.dynamodb, newer_version_lands)
    )
    assert process_event(older, racing) == {"stale": 1}
    current = stored(dynamodb_client, table_name, "race.png")
    assert current is not None and current.format == "JPEG" and current.thumbnails
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in current.thumbnails}


def test_a_duplicate_event_of_the_current_version_keeps_its_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    event = created(s3_client, bucket, "dup.png", image_bytes("PNG"), "50")
    process_event(event, indexer)
    first = stored(dynamodb_client, table_name, "dup.png")
    assert first is not None and first.thumbnails
    assert process_event(event, indexer) == {"stale": 1}
    assert stored(dynamodb_client, table_name, "dup.png") == first
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in first.thumbnails}


def test_an_invalid_image_gets_no_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    data = damaged_middle(image_bytes("PNG", (300, 200)))
    assert process_event(created(s3_client, bucket, "bad.png", data, "60"), indexer) == {
        "invalid": 1
    }
    record = stored(dynamodb_client, table_name, "bad.png")
    assert record is not None and record.schema_version == SCHEMA_VERSION
    assert record.thumbnails is None and record.thumbnail_reason is None
    assert thumbnail_objects(s3_client, thumbnails_bucket) == set()


def test_a_thumbnail_that_cannot_be_made_leaves_the_image_indexed_saying_why(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
    log_lines: io.StringIO,
) -> None:
    def cannot(stream: IO[bytes], size: int) -> list[Thumbnail]:
        raise ThumbnailFailed("too big for a thumbnail")

    failing = replace(indexer, make_thumbnails=cannot)
    event = created(s3_client, bucket, "huge.png", image_bytes("PNG"), "70")
    assert process_event(event, failing) == {"active": 1}
    record = stored(dynamodb_client, table_name, "huge.png")
    assert record is not None and record.status == "active"
    assert record.thumbnails is None and record.thumbnail_reason == "too big for a thumbnail"
    assert record.schema_version == SCHEMA_VERSION
    assert thumbnail_objects(s3_client, thumbnails_bucket) == set()
    (line,) = logged(log_lines, "no thumbnails")
    assert line["reason"] == "too big for a thumbnail"


def test_the_object_s_bytes_are_handed_over_and_released_before_the_writes(
    indexer: Indexer, s3_client: Any, bucket: str
) -> None:
    from imgcli.lambdas.thumbnails import make_thumbnails

    streams: list[IO[bytes]] = []

    def keeping(stream: IO[bytes], size: int) -> list[Thumbnail]:
        streams.append(stream)
        return make_thumbnails(stream, size)

    event = created(s3_client, bucket, "held.png", image_bytes("PNG"), "71")
    assert process_event(event, replace(indexer, make_thumbnails=keeping)) == {"active": 1}
    (stream,) = streams
    assert stream.closed
    with pytest.raises(ValueError):
        stream.read(1)


def test_a_failed_thumbnail_write_fails_the_record_and_a_retry_indexes_it(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    puts = fail_the_second_put(s3_client)
    event = created(s3_client, bucket, "flaky.png", image_bytes("PNG"), "80")
    puts.clear()  # the upload itself
    with pytest.raises(RecordsFailed, match=r"flaky\.png: .*InternalError"):
        process_event(event, indexer)
    assert stored(dynamodb_client, table_name, "flaky.png") is None
    assert thumbnail_objects(s3_client, thumbnails_bucket) == set()  # its own first, removed

    assert process_event(event, indexer) == {"active": 1}  # Lambda's retry
    record = stored(dynamodb_client, table_name, "flaky.png")
    assert record is not None and record.thumbnails
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}


def test_a_missing_thumbnails_bucket_fails_the_record(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    gone = replace(indexer, thumbnails_bucket="imgcli-test-no-such-thumbs")
    event = created(s3_client, bucket, "nowhere.png", image_bytes("PNG"), "81")
    with pytest.raises(RecordsFailed, match="NoSuchBucket"):
        process_event(event, gone)
    assert stored(dynamodb_client, table_name, "nowhere.png") is None


def test_without_thumbnails_bucket_the_function_fails_every_event(
    deployed_save_function: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    monkeypatch.delenv("THUMBNAILS_BUCKET")
    event = created(s3_client, bucket, "half.png", image_bytes("PNG"), "90")
    with pytest.raises(MissingConfiguration, match=r"THUMBNAILS_BUCKET .*run imgcli bootstrap"):
        save_delete.handler(event, None)
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["level"] == "ERROR" and "run imgcli bootstrap" in line["message"]
    assert line["message"].startswith("THUMBNAILS_BUCKET is not set")
    assert dynamodb_client.scan(TableName=table_name)["Items"] == []


def test_the_deployed_function_writes_thumbnails_to_its_thumbnails_bucket(
    deployed_save_function: None,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    event = created(s3_client, bucket, "deployed.png", image_bytes("PNG"), "91")
    assert save_delete.handler(event, None) == {"active": 1}
    record = stored(dynamodb_client, table_name, "deployed.png")
    assert record is not None and record.thumbnails
    assert [t.box for t in record.thumbnails] == list(THUMBNAIL_BOXES)
    tag = version_tag(None, record.etag)
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}
    assert all(f"/{tag}/" in t.key for t in record.thumbnails)


# --- the store: names and failures ---------------------------------------------------------


def test_keys_name_the_image_the_version_the_writer_and_the_box_and_stay_short() -> None:
    digest = hashlib.sha256(b"a/b c.jpg").hexdigest()
    tag = version_tag("v/1+2", "e")
    assert thumbnail_key("a/b c.jpg", tag, "w1", 256) == f"{digest}/v%2F1%2B2/w1/256.webp"
    # The version S3 calls "null" is overwritten by the next upload: its ETag tells them apart.
    assert version_tag("null", '"abc-2"') == version_tag(None, "abc-2") == "etag-abc-2"
    writer = new_writer()
    assert writer != new_writer() and len(writer) == 16
    longest = thumbnail_key("é" * 512, version_tag("v" * 5000, None), writer, 1024)
    assert len(longest.encode()) < 170 and "/h-" in longest
    with pytest.raises(ValueError):
        version_tag(None, None)


def test_a_failed_removal_is_logged_not_raised(s3_client: Any, log_lines: io.StringIO) -> None:
    from botocore.stub import Stubber

    from imgcli.lambdas.logs import JsonLogger
    from imgcli.lambdas.thumbnail_store import ThumbnailStore

    store = ThumbnailStore(s3_client, "thumbs", JsonLogger("save_delete", stream=log_lines))
    with Stubber(s3_client) as stub:
        stub.add_client_error("delete_object", "InternalError", http_status_code=500)
        stub.add_response("delete_object", {}, {"Bucket": "thumbs", "Key": "k2"})
        store.delete(["k2", "k1"], image_key="a.png")
        stub.assert_no_pending_responses()
    (line,) = logged(log_lines, "thumbnail not removed: left orphaned")
    assert (line["level"], line["key"], line["thumbnail"]) == ("WARNING", "a.png", "k1")


def test_a_duplicate_whose_thumbnail_write_fails_leaves_the_live_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    """A redelivered event of the current version failing half way removes what it wrote
    itself, never the live record's thumbnails."""
    event = created(s3_client, bucket, "live.png", image_bytes("PNG"), "80")
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, "live.png")
    assert record is not None and record.thumbnails
    live = {t.key for t in record.thumbnails}
    puts = fail_the_second_put(s3_client)
    # The failure finds the table already past the event: a duplicate, stale.
    assert process_event(event, indexer) == {"stale": 1}
    assert len(puts) == 2
    assert thumbnail_objects(s3_client, thumbnails_bucket) == live
    assert stored(dynamodb_client, table_name, "live.png") == record
