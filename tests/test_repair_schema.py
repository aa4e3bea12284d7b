"""Repairs and thumbnails against moto: a record of an older schema is described again and
gets its thumbnails; a current one is left alone; repairs remove thumbnails as events do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from imgcli.lambdas.records import SCHEMA_VERSION, ImageRecord, to_item
from imgcli.lambdas.repair import LOWEST_SEQUENCER
from imgcli.lambdas.save_delete import Indexer, process_event
from tests.eventdata import created, repair_event, stored, upload
from tests.images import damaged_middle, image_bytes
from tests.races import WriteAfter
from tests.test_save_thumbnails import thumbnail_objects


def repaired(indexer: Indexer, key: str, before_write: Callable[[], None] | None = None) -> str:
    if before_write is not None:
        indexer = replace(indexer, dynamodb=WriteAfter(indexer.dynamodb, before_write))
    outcome: str = process_event(repair_event(indexer.bucket, key), indexer)["repaired"][key]
    return outcome


def record_calls(*clients: Any) -> list[str]:
    calls: list[str] = []
    for client in clients:
        client.meta.events.register("before-call.*.*", lambda model, **kw: calls.append(model.name))
    return calls


def rewrite(dynamodb_client: Any, table_name: str, record: ImageRecord) -> None:
    dynamodb_client.put_item(TableName=table_name, Item=to_item(record))


def indexed_before_thumbnails(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, key: str, data: bytes
) -> ImageRecord:
    """``key`` indexed as a writer of schema 1 left it: no version, no thumbnails."""
    process_event(created(s3_client, indexer.bucket, key, data, "10"), indexer)
    record = stored(dynamodb_client, indexer.table_name, key)
    assert record is not None
    for thumbnail in record.thumbnails or ():
        s3_client.delete_object(Bucket=indexer.thumbnails_bucket, Key=thumbnail.key)
    old = replace(record, schema_version=None, thumbnails=None, thumbnail_reason=None)
    rewrite(dynamodb_client, indexer.table_name, old)
    assert old.schema == 1
    return old


def test_a_schema_1_record_of_the_current_object_is_indexed_with_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    thumbnails_bucket: str,
) -> None:
    data = image_bytes("PNG", (400, 300))
    indexed_before_thumbnails(indexer, s3_client, dynamodb_client, "old.png", data)
    assert repaired(indexer, "old.png") == "indexed"
    record = stored(dynamodb_client, table_name, "old.png")
    assert record is not None and record.schema_version == SCHEMA_VERSION
    assert record.thumbnails is not None and record.repaired_at is not None
    assert [(t.width, t.height) for t in record.thumbnails] == [(256, 192), (400, 300)]
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}


def test_a_schema_1_invalid_record_is_described_again(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str
) -> None:
    data = damaged_middle(image_bytes("PNG", (300, 200)))
    indexed_before_thumbnails(indexer, s3_client, dynamodb_client, "bad.png", data)
    assert repaired(indexer, "bad.png") == "invalid"
    record = stored(dynamodb_client, table_name, "bad.png")
    assert record is not None and record.schema_version == SCHEMA_VERSION
    assert record.thumbnails is None


def test_a_current_schema_record_is_unchanged_and_nothing_is_written(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "now.png", image_bytes("PNG"), "20"), indexer)
    before = stored(dynamodb_client, table_name, "now.png")
    calls = record_calls(s3_client, dynamodb_client)
    assert repaired(indexer, "now.png") == "unchanged"
    assert calls == ["GetItem", "HeadObject"]
    assert stored(dynamodb_client, table_name, "now.png") == before


def test_an_active_record_without_thumbnails_or_reason_is_indexed(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "lost.png", image_bytes("PNG"), "30"), indexer)
    record = stored(dynamodb_client, table_name, "lost.png")
    assert record is not None and record.thumbnails
    rewrite(dynamodb_client, table_name, replace(record, thumbnails=None))
    assert repaired(indexer, "lost.png") == "indexed"
    again = stored(dynamodb_client, table_name, "lost.png")
    assert again is not None and again.thumbnails
    # A pair of its own (keys are per writer), of the same sizes, in the bucket.
    assert [(t.box, t.width, t.height) for t in again.thumbnails] == [
        (t.box, t.width, t.height) for t in record.thumbnails
    ]
    assert not {t.key for t in again.thumbnails} & {t.key for t in record.thumbnails}
    for thumbnail in again.thumbnails:
        s3_client.head_object(Bucket=indexer.thumbnails_bucket, Key=thumbnail.key)


def test_an_active_record_whose_thumbnails_failed_is_unchanged(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "why.png", image_bytes("PNG"), "31"), indexer)
    record = stored(dynamodb_client, table_name, "why.png")
    assert record is not None
    failed = replace(record, thumbnails=None, thumbnail_reason="too big for a thumbnail")
    rewrite(dynamodb_client, table_name, failed)
    assert repaired(indexer, "why.png") == "unchanged"
    assert stored(dynamodb_client, table_name, "why.png") == failed


def test_a_repair_of_a_replaced_object_removes_the_old_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    process_event(created(s3_client, bucket, "r.png", image_bytes("PNG"), "40"), indexer)
    upload(s3_client, bucket, "r.png", image_bytes("BMP"))  # its event lost
    assert repaired(indexer, "r.png") == "indexed"
    record = stored(dynamodb_client, table_name, "r.png")
    assert record is not None and record.format == "BMP" and record.thumbnails
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}


def test_a_repair_tombstone_removes_the_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    process_event(created(s3_client, bucket, "gone.png", image_bytes("PNG"), "50"), indexer)
    s3_client.delete_object(Bucket=bucket, Key="gone.png")  # its event lost
    assert repaired(indexer, "gone.png") == "removed"
    tombstone = stored(dynamodb_client, table_name, "gone.png")
    assert tombstone is not None and tombstone.status == "deleted"
    assert tombstone.schema_version == SCHEMA_VERSION
    assert thumbnail_objects(s3_client, thumbnails_bucket) == set()


def test_a_refused_repair_removes_its_own_thumbnails_and_keeps_the_winner_s(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    upload(s3_client, bucket, "two.png", image_bytes("PNG"))  # events lost from here on

    def an_upload_is_indexed() -> None:
        newer = created(s3_client, bucket, "two.png", image_bytes("GIF"), "60")
        assert process_event(newer, indexer) == {"active": 1}

    assert repaired(indexer, "two.png", an_upload_is_indexed) == "newer"
    record = stored(dynamodb_client, table_name, "two.png")
    assert record is not None and record.format == "GIF" and record.thumbnails
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}


def test_an_event_after_a_repair_of_the_same_version_keeps_the_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    # The event arrives late, after a repair indexed the same object under the lowest
    # sequencer: its write replaces the repair's record, whose own thumbnails then go.
    event = created(s3_client, bucket, "late.png", image_bytes("PNG"), "70")
    assert repaired(indexer, "late.png") == "indexed"
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, "late.png")
    assert record is not None and record.sequencer != LOWEST_SEQUENCER and record.thumbnails
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in record.thumbnails}
