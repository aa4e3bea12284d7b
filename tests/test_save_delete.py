"""The save/delete function against moto: real S3 objects, real table, real event shapes."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import pytest

from imgcli.lambdas import save_delete
from imgcli.lambdas.save_delete import Indexer, RecordsFailed, process_event
from tests.conftest import INDEXER_NOW
from tests.eventdata import created, load_event, s3_event, stored, upload
from tests.images import (
    animated_gif,
    damaged_middle,
    image_bytes,
    jpeg_with_exif,
    noisy_jpeg,
    png_header_only,
)


@pytest.fixture
def versioned_indexer(indexer: Indexer, versioned_bucket: str) -> Indexer:
    return replace(indexer, bucket=versioned_bucket)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("JPEG", "RGB"),
        ("PNG", "RGBA"),
        ("GIF", "P"),
        ("WEBP", "RGB"),
        ("TIFF", "RGB"),
        ("BMP", "RGB"),
    ],
)
def test_every_accepted_format_is_indexed(
    fmt: str,
    mode: str,
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    key = f"formats/sample.{fmt.lower()}"
    data = image_bytes(fmt, size=(120, 80))
    assert process_event(created(s3_client, bucket, key, data, "0A"), indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None
    assert record.status == "active"
    assert (record.format, record.width, record.height, record.mode) == (fmt, 120, 80, mode)
    assert record.content_type == f"image/{fmt.lower()}"
    assert record.size == len(data)
    assert record.frames == 1
    assert record.etag and record.uploaded_at and record.indexed_at
    assert record.reason is None


def test_fixture_event_with_awkward_key_indexes_the_decoded_key(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    key = "photos/2026/summer holiday/beach day +1 é.jpg"
    put = upload(s3_client, bucket, key, jpeg_with_exif())
    event = load_event("s3_put")
    event["Records"][0]["s3"]["object"]["eTag"] = put["ETag"].strip('"')
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None
    assert record.taken_at == "2026-07-14T09:30:15+02:00"
    assert (record.camera_make, record.camera_model, record.orientation) == ("Fujifilm", "X-T5", 6)
    assert record.uploaded_at == "2026-11-27T02:00:00.000Z"


@pytest.mark.parametrize(
    ("fixture", "key", "data"),
    [
        ("s3_complete_multipart", "raw/100% crop.png", image_bytes("PNG")),
        ("s3_copy", "copies/日本/猫.gif", animated_gif(frames=3)),
    ],
)
def test_multipart_and_copy_fixtures(
    fixture: str,
    key: str,
    data: bytes,
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    put = upload(s3_client, bucket, key, data)
    event = load_event(fixture)
    event["Records"][0]["s3"]["object"]["eTag"] = put["ETag"].strip('"')
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None and record.status == "active"
    if fixture == "s3_copy":
        assert record.frames == 3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"just some text, not a picture\n", "not an image"),
        (image_bytes("JPEG", size=(300, 200))[:700], "truncated"),
        (png_header_only(10_000, 10_000), "pixel limit"),
        (png_header_only(20_000, 20_000), "pixel limit"),
    ],
    ids=["text", "truncated-jpeg", "bomb-warning-band", "bomb"],
)
def test_bad_images_become_invalid_items_and_the_event_succeeds(
    data: bytes,
    reason: str,
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    assert process_event(created(s3_client, bucket, "bad/file.jpg", data, "0B"), indexer) == {
        "invalid": 1
    }
    record = stored(dynamodb_client, table_name, "bad/file.jpg")
    assert record is not None
    assert record.status == "invalid"
    assert record.reason and reason in record.reason
    assert record.size == len(data)


def test_empty_object_is_invalid_without_reading_it(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    calls: list[str] = []
    s3_client.meta.events.register("before-call.s3.GetObject", lambda **kw: calls.append("get"))
    process_event(created(s3_client, bucket, "empty.png", b"", "0C"), indexer)
    record = stored(dynamodb_client, table_name, "empty.png")
    assert record is not None and record.reason == "empty file"
    assert calls == []


def test_large_image_is_described_from_a_few_ranged_reads_then_read_once_for_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    data = noisy_jpeg(6000, 4300, quality=100)
    assert len(data) > 50_000_000
    fetched: list[int] = []
    ranges: list[str] = []
    s3_client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **kw: ranges.append(params.get("Range", "")),
    )
    s3_client.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **kw: fetched.append(parsed["ContentLength"])
    )
    process_event(created(s3_client, bucket, "big.jpg", data, "0D"), indexer)
    record = stored(dynamodb_client, table_name, "big.jpg")
    assert record is not None and record.status == "active"
    assert (record.width, record.height) == (6000, 4300)
    head = 65536
    # The head, the two-byte trailer, then what lies between once, only for the thumbnails.
    assert ranges == [
        "bytes=0-65535",
        f"bytes={len(data) - 2}-{len(data) - 1}",
        f"bytes={head}-{len(data) - 3}",
    ]
    assert fetched == [head, 2, len(data) - head - 2]
    logged = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    (line,) = [d for d in logged if d["message"] == "described object"]
    assert line["bytes_read"] == head + 2 <= len(data) // 100
    assert line["requests"] == 2
    (made,) = [d for d in logged if d["message"] == "made thumbnails"]
    assert made["bytes_read"] == len(data) - head - 2
    assert record.thumbnails is not None and len(record.thumbnails) == 2
    assert made["thumbnail_bytes"] == sum(t.size for t in record.thumbnails)


def test_duplicate_delivery_is_a_no_op(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    event = created(s3_client, bucket, "dup.png", image_bytes("PNG"), "0E")
    assert process_event(event, indexer) == {"active": 1}
    first = stored(dynamodb_client, table_name, "dup.png")
    assert process_event(event, indexer) == {"stale": 1}
    assert stored(dynamodb_client, table_name, "dup.png") == first
    assert "stale or duplicate event" in log_lines.getvalue()


def test_create_and_delete_delivered_in_reverse(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    create = created(s3_client, bucket, "rev.png", image_bytes("PNG"), "0055AED6DCD90281E5")
    s3_client.delete_object(Bucket=bucket, Key="rev.png")
    delete = s3_event("s3_delete", bucket=bucket, key="rev.png", sequencer="0055AED6DCD90281E6")
    assert process_event(delete, indexer) == {"deleted": 1}
    assert process_event(create, indexer) == {"stale": 1}
    record = stored(dynamodb_client, table_name, "rev.png")
    assert record is not None
    assert record.status == "deleted"
    assert record.expires_at == int(INDEXER_NOW) + 7 * 86400


def test_late_create_cannot_resurrect_even_when_its_read_races_the_delete(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    # The create passed its sequencer check before the tombstone landed: the conditional
    # write is what stops it.
    create = created(s3_client, bucket, "race.png", image_bytes("PNG"), "10")
    record = indexer._describe(next(iter(_events(create))))  # the read half of the create
    s3_client.delete_object(Bucket=bucket, Key="race.png")
    delete = s3_event("s3_delete", bucket=bucket, key="race.png", sequencer="11")
    process_event(delete, indexer)
    assert indexer._write(record) is False
    assert stored(dynamodb_client, table_name, "race.png").status == "deleted"  # type: ignore[union-attr]


def _events(event: dict[str, Any]) -> Any:
    from imgcli.lambdas.s3_events import object_events

    return object_events(event)


def test_delete_then_recreate(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "again.gif", image_bytes("GIF"), "20"), indexer)
    s3_client.delete_object(Bucket=bucket, Key="again.gif")
    process_event(s3_event("s3_delete", bucket=bucket, key="again.gif", sequencer="21"), indexer)
    assert stored(dynamodb_client, table_name, "again.gif").status == "deleted"  # type: ignore[union-attr]
    process_event(created(s3_client, bucket, "again.gif", image_bytes("BMP"), "22"), indexer)
    record = stored(dynamodb_client, table_name, "again.gif")
    assert record is not None
    assert (record.status, record.format, record.expires_at) == ("active", "BMP", None)


def test_object_already_gone_is_a_no_op(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = created(s3_client, bucket, "brief.png", image_bytes("PNG"), "30")
    s3_client.delete_object(Bucket=bucket, Key="brief.png")
    assert process_event(event, indexer) == {"gone": 1}
    assert stored(dynamodb_client, table_name, "brief.png") is None


def test_object_replaced_since_the_event_is_left_to_the_newer_event(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    old = created(s3_client, bucket, "swap.png", image_bytes("PNG"), "40")
    upload(s3_client, bucket, "swap.png", image_bytes("JPEG"))
    assert process_event(old, indexer) == {"replaced": 1}
    assert stored(dynamodb_client, table_name, "swap.png") is None


def test_a_versioned_create_indexes_only_the_current_version(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    first = created(s3_client, versioned_bucket, "v.png", image_bytes("PNG", size=(10, 10)), "50")
    second = created(s3_client, versioned_bucket, "v.png", image_bytes("JPEG", (20, 20)), "51")
    # The older version is still there, but no longer the key's image: left to the newer event.
    assert process_event(first, versioned_indexer) == {"replaced": 1}
    assert stored(dynamodb_client, table_name, "v.png") is None
    assert process_event(second, versioned_indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, "v.png")
    assert record is not None
    assert (record.format, record.width) == ("JPEG", 20)
    assert record.version_id == second["Records"][0]["s3"]["object"]["versionId"]


def test_delete_marker_then_recovery_by_removing_the_marker(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    key = "photos/a+b=c&d.jpg"
    process_event(
        created(s3_client, versioned_bucket, key, image_bytes("JPEG"), "60"), versioned_indexer
    )
    marker = s3_client.delete_object(Bucket=versioned_bucket, Key=key)
    event = load_event("s3_delete_marker")
    event["Records"][0]["s3"]["object"]["versionId"] = marker["VersionId"]
    event["Records"][0]["s3"]["object"]["sequencer"] = "61"
    assert process_event(event, versioned_indexer) == {"deleted": 1}
    assert stored(dynamodb_client, table_name, key).status == "deleted"  # type: ignore[union-attr]

    # Recovering the image: permanently delete the marker; the previous version is current.
    s3_client.delete_object(Bucket=versioned_bucket, Key=key, VersionId=marker["VersionId"])
    removal = s3_event(
        "s3_delete",
        bucket=versioned_bucket,
        key=key,
        sequencer="62",
        version_id=marker["VersionId"],
    )
    assert process_event(removal, versioned_indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None and record.status == "active" and record.format == "JPEG"


def test_deleting_a_noncurrent_version_keeps_the_image(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    old = upload(s3_client, versioned_bucket, "keep.png", image_bytes("PNG"))
    process_event(
        created(s3_client, versioned_bucket, "keep.png", image_bytes("GIF"), "70"),
        versioned_indexer,
    )
    s3_client.delete_object(Bucket=versioned_bucket, Key="keep.png", VersionId=old["VersionId"])
    removal = s3_event(
        "s3_delete",
        bucket=versioned_bucket,
        key="keep.png",
        sequencer="71",
        version_id=old["VersionId"],
    )
    process_event(removal, versioned_indexer)
    record = stored(dynamodb_client, table_name, "keep.png")
    assert record is not None and (record.status, record.format) == ("active", "GIF")


def test_test_event_is_ignored(indexer: Indexer, dynamodb_client: Any, table_name: str) -> None:
    assert process_event(load_event("s3_test_event"), indexer) == {"ignored": 1}
    assert dynamodb_client.scan(TableName=table_name)["Count"] == 0


def test_multi_record_event_handles_every_record(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = load_event("s3_multi_record")
    for record, data in zip(
        event["Records"][:2], [image_bytes("JPEG"), image_bytes("PNG")], strict=True
    ):
        key = record["s3"]["object"]["key"].replace("+", " ")
        record["s3"]["object"]["eTag"] = upload(s3_client, bucket, key, data)["ETag"].strip('"')
    assert process_event(event, indexer) == {"active": 2, "deleted": 1}
    assert stored(dynamodb_client, table_name, "batch/two words.png").format == "PNG"  # type: ignore[union-attr]
    assert stored(dynamodb_client, table_name, "batch/gone.gif").status == "deleted"  # type: ignore[union-attr]


def test_a_malformed_record_fails_the_event_after_the_others_are_done(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = load_event("s3_multi_record")
    event["Records"][0]["s3"]["object"]["sequencer"] = "not hex!"
    del event["Records"][1]["s3"]["object"]["key"]
    with pytest.raises(RecordsFailed, match="2 record"):
        process_event(event, indexer)
    assert stored(dynamodb_client, table_name, "batch/gone.gif").status == "deleted"  # type: ignore[union-attr]


def test_log_lines_are_json(
    indexer: Indexer, s3_client: Any, bucket: str, log_lines: io.StringIO
) -> None:
    process_event(created(s3_client, bucket, "log.png", image_bytes("PNG"), "80"), indexer)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    assert lines and all(line["function"] == "save_delete" for line in lines)
    assert {"time", "level", "message"} <= set(lines[-1])


def test_handler_builds_its_clients_lazily_and_once(
    deployed_save_function: None,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    context = type("Context", (), {"aws_request_id": "req-1"})()
    event = created(s3_client, bucket, "h.png", image_bytes("PNG"), "90")
    assert save_delete.handler(event, context) == {"active": 1}
    clients = dict(save_delete._clients)
    assert set(clients) == {"s3", "dynamodb"}
    save_delete.handler(load_event("s3_test_event"), context)
    assert save_delete._clients == clients
    assert stored(dynamodb_client, table_name, "h.png").status == "active"  # type: ignore[union-attr]


def test_small_objects_are_read_with_one_get_and_decoded(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    ranges: list[str] = []
    s3_client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **kw: ranges.append(params.get("Range", "")),
    )
    data = damaged_middle(image_bytes("PNG", size=(300, 200)))
    assert process_event(created(s3_client, bucket, "dmg.png", data, "A0"), indexer) == {
        "invalid": 1
    }
    assert ranges == [f"bytes=0-{len(data) - 1}"]
    assert "corrupt" in (stored(dynamodb_client, table_name, "dmg.png").reason or "")  # type: ignore[union-attr]


@pytest.mark.parametrize("failing_call", [1, 2], ids=["first-read", "later-read"])
def test_a_read_timeout_fails_the_record_and_a_retry_indexes_it(
    failing_call: int,
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    from botocore.exceptions import ReadTimeoutError

    big_object_indexer = replace(indexer, full_decode_bytes=0)  # head first, then the tail
    data = noisy_jpeg(400, 400)
    assert len(data) > 65536  # so there is a second, tail read
    event = created(s3_client, bucket, "slow.jpg", data, "B0")
    calls: list[int] = []

    def time_out_once(**kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == failing_call:
            raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com/slow.jpg")

    s3_client.meta.events.register("before-call.s3.GetObject", time_out_once)
    with pytest.raises(RecordsFailed, match=r"slow\.jpg"):
        process_event(event, big_object_indexer)
    assert stored(dynamodb_client, table_name, "slow.jpg") is None

    assert process_event(event, big_object_indexer) == {"active": 1}  # Lambda's retry
    assert stored(dynamodb_client, table_name, "slow.jpg").status == "active"  # type: ignore[union-attr]


def test_other_event_types_are_ignored(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = created(s3_client, bucket, "tagged.png", image_bytes("PNG"), "C0")
    event["Records"][0]["eventName"] = "ObjectTagging:Put"
    assert process_event(event, indexer) == {"ignored": 1}
    assert stored(dynamodb_client, table_name, "tagged.png") is None


def _record_calls(*clients: Any) -> list[str]:
    """Every AWS operation the clients make from now on, in order."""
    calls: list[str] = []
    for client in clients:
        client.meta.events.register("before-call.*.*", lambda model, **kw: calls.append(model.name))
    return calls


def test_a_new_image_costs_one_read_its_thumbnails_and_one_conditional_write(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = created(s3_client, bucket, "calls/new.jpg", noisy_jpeg(150, 110), "D0")
    calls = _record_calls(s3_client, dynamodb_client)
    assert process_event(event, indexer) == {"active": 1}
    assert calls == ["GetObject", "PutObject", "PutObject", "PutItem"]


def test_a_duplicate_is_refused_by_the_conditional_write(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    event = created(s3_client, bucket, "calls/dup.png", image_bytes("PNG"), "D1")
    process_event(event, indexer)
    first = stored(dynamodb_client, table_name, "calls/dup.png")
    calls = _record_calls(s3_client, dynamodb_client)
    assert process_event(event, indexer) == {"stale": 1}
    # A duplicate of a current object reads and describes it (checking first would cost
    # every new image a call), writes a pair of thumbnails of its own and, refused, removes it:
    # the refused write returns the stored item, so no read is needed to know.
    assert calls == [
        "GetObject",
        "PutObject",
        "PutObject",
        "PutItem",
        "DeleteObject",
        "DeleteObject",
    ]
    assert stored(dynamodb_client, table_name, "calls/dup.png") == first


def test_a_stale_create_whose_object_is_gone_reads_the_table_to_say_so(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    create = created(s3_client, bucket, "calls/late.png", image_bytes("PNG"), "D2")
    s3_client.delete_object(Bucket=bucket, Key="calls/late.png")
    delete = s3_event("s3_delete", bucket=bucket, key="calls/late.png", sequencer="D3")
    calls = _record_calls(s3_client, dynamodb_client)
    assert process_event(delete, indexer) == {"deleted": 1}
    assert calls == ["HeadObject", "PutItem"]  # S3 confirms the key is empty
    calls.clear()
    assert process_event(create, indexer) == {"stale": 1}
    assert calls == ["GetObject", "GetItem"]  # the read fails at once: nothing was fetched
    assert stored(dynamodb_client, table_name, "calls/late.png").status == "deleted"  # type: ignore[union-attr]


def test_a_late_create_in_a_versioned_bucket_reads_nothing_and_is_stale(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    # The old version is still there, but the first read asks for the current one.
    late = created(s3_client, versioned_bucket, "calls/v.png", image_bytes("PNG"), "E1")
    newer = created(s3_client, versioned_bucket, "calls/v.png", image_bytes("JPEG"), "E2")
    process_event(newer, versioned_indexer)
    indexed = stored(dynamodb_client, table_name, "calls/v.png")
    calls = _record_calls(s3_client, dynamodb_client)

    assert process_event(late, versioned_indexer) == {"stale": 1}
    assert calls == ["GetObject", "GetItem"]
    assert stored(dynamodb_client, table_name, "calls/v.png") == indexed


def test_a_failed_read_of_an_event_the_table_moved_past_is_stale_not_a_failure(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    from botocore.exceptions import ReadTimeoutError

    event = created(s3_client, versioned_bucket, "calls/dup.jpg", image_bytes("JPEG"), "E3")
    process_event(event, versioned_indexer)

    def time_out(**kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com/calls/dup.jpg")

    s3_client.meta.events.register("before-call.s3.GetObject", time_out)
    calls = _record_calls(s3_client, dynamodb_client)
    # A redelivery: retrying it could only be refused again, so it does not fail.
    assert process_event(event, versioned_indexer) == {"stale": 1}
    assert calls == ["GetObject", "GetItem"]
    assert stored(dynamodb_client, table_name, "calls/dup.jpg").status == "active"  # type: ignore[union-attr]


def test_a_stale_version_removal_skips_the_head_request(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    old = upload(s3_client, versioned_bucket, "calls/v.png", image_bytes("PNG"))
    newer = created(s3_client, versioned_bucket, "calls/v.png", image_bytes("GIF"), "D5")
    process_event(newer, versioned_indexer)
    removal = s3_event(
        "s3_delete",
        bucket=versioned_bucket,
        key="calls/v.png",
        sequencer="D4",
        version_id=old["VersionId"],
    )
    calls = _record_calls(s3_client, dynamodb_client)
    assert process_event(removal, versioned_indexer) == {"stale": 1}
    assert calls == ["GetItem"]
    assert stored(dynamodb_client, table_name, "calls/v.png").format == "GIF"  # type: ignore[union-attr]


def test_a_malformed_sequencer_fails_the_record_before_any_call(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, bucket: str
) -> None:
    event = created(s3_client, bucket, "calls/bad.png", image_bytes("PNG"), "D6")
    event["Records"][0]["s3"]["object"]["sequencer"] = "not hex!"
    calls = _record_calls(s3_client, dynamodb_client)
    with pytest.raises(RecordsFailed, match=r"bad\.png"):
        process_event(event, indexer)
    assert calls == []
