"""Repairs racing real events, and repairs clearing forged sequencers, against moto.

A race is injected through a DynamoDB client that runs a real event (or another repair)
just before the repair's write, after its reads: the repair must stand back (``newer``)
and leave the record as that event wrote it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from imgcli.lambdas.records import ImageRecord
from imgcli.lambdas.repair import LOWEST_SEQUENCER, SETTLE_SECONDS
from imgcli.lambdas.save_delete import Indexer, process_event
from tests.eventdata import created, repair_event, s3_event, stored, upload
from tests.images import image_bytes
from tests.races import WriteAfter

FORGED = "F" * 64


def repaired(indexer: Indexer, key: str, before_write: Callable[[], None] | None = None) -> str:
    if before_write is not None:
        indexer = replace(indexer, dynamodb=WriteAfter(indexer.dynamodb, before_write))
    answer = process_event(repair_event(indexer.bucket, key), indexer)
    outcome: str = answer["repaired"][key]
    return outcome


def at(indexer: Indexer, timestamp: float) -> Indexer:
    return replace(indexer, clock=lambda: timestamp)


def last_modified(s3_client: Any, bucket: str, key: str) -> float:
    return float(s3_client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp())


@pytest.fixture
def versioned_indexer(indexer: Indexer, versioned_bucket: str) -> Indexer:
    return replace(indexer, bucket=versioned_bucket)


def test_a_create_of_a_newer_version_between_read_and_write_wins(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    upload(s3_client, versioned_bucket, "r.png", image_bytes("PNG"))  # its event lost

    def newer_version_lands() -> None:
        put = upload(s3_client, versioned_bucket, "r.png", image_bytes("GIF"))
        event = s3_event("s3_put", bucket=versioned_bucket, key="r.png", sequencer="70", put=put)
        assert process_event(event, versioned_indexer) == {"active": 1}

    assert repaired(versioned_indexer, "r.png", newer_version_lands) == "newer"
    record = stored(dynamodb_client, table_name, "r.png")
    assert record is not None
    assert (record.format, record.sequencer[:2], record.repaired_at) == ("GIF", "70", None)


def test_a_delete_between_read_and_write_wins(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    upload(s3_client, bucket, "d.png", image_bytes("PNG"))  # its event lost

    def delete_lands() -> None:
        s3_client.delete_object(Bucket=bucket, Key="d.png")
        event = s3_event("s3_delete", bucket=bucket, key="d.png", sequencer="71")
        assert process_event(event, indexer) == {"deleted": 1}

    assert repaired(indexer, "d.png", delete_lands) == "newer"
    record = stored(dynamodb_client, table_name, "d.png")
    assert record is not None and (record.status, record.sequencer[:2]) == ("deleted", "71")


def test_a_create_between_a_removal_s_read_and_write_wins(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    # The record was there when the repair read it: its condition is the stored sequencer.
    process_event(created(s3_client, bucket, "c.png", image_bytes("PNG"), "72"), indexer)
    s3_client.delete_object(Bucket=bucket, Key="c.png")  # its event lost

    def upload_lands() -> None:
        assert process_event(created(s3_client, bucket, "c.png", image_bytes("BMP"), "73"), indexer)

    assert repaired(indexer, "c.png", upload_lands) == "newer"
    record = stored(dynamodb_client, table_name, "c.png")
    assert record is not None and (record.status, record.format) == ("active", "BMP")


def test_a_repair_between_another_repair_s_read_and_write_wins(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    # Both read a repaired record (the lowest sequencer): indexed_at tells them apart.
    upload(s3_client, bucket, "two.png", image_bytes("PNG"))
    assert repaired(at(indexer, 1_000.0), "two.png") == "indexed"
    upload(s3_client, bucket, "two.png", image_bytes("GIF"))  # events lost from here on

    def second_repair() -> None:
        upload(s3_client, bucket, "two.png", image_bytes("BMP"))
        assert repaired(at(indexer, 3_000.0), "two.png") == "indexed"

    assert repaired(at(indexer, 2_000.0), "two.png", second_repair) == "newer"
    record = stored(dynamodb_client, table_name, "two.png")
    assert record is not None and record.format == "BMP"


def test_a_forged_sequencer_on_a_live_key_is_cleared_and_a_real_delete_then_applies(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    forged = created(s3_client, bucket, "p.png", image_bytes("PNG"), FORGED)
    assert process_event(forged, indexer) == {"active": 1}  # S3 confirms the object
    s3_client.delete_object(Bucket=bucket, Key="p.png")
    delete = s3_event("s3_delete", bucket=bucket, key="p.png", sequencer="0055AED6DCD90281E6")
    assert process_event(delete, indexer) == {"stale": 1}  # the poison at work
    upload(s3_client, bucket, "p.png", image_bytes("GIF"))  # its event refused the same way
    just_now = last_modified(s3_client, bucket, "p.png") + 1

    # A record that disagrees with S3 is repaired at once, however recent the object.
    assert repaired(at(indexer, just_now), "p.png") == "indexed"
    record = stored(dynamodb_client, table_name, "p.png")
    assert record is not None and record.sequencer == LOWEST_SEQUENCER

    s3_client.delete_object(Bucket=bucket, Key="p.png")
    delete = s3_event("s3_delete", bucket=bucket, key="p.png", sequencer="0055AED6DCD90281E7")
    assert process_event(delete, indexer) == {"deleted": 1}
    assert stored(dynamodb_client, table_name, "p.png").status == "deleted"  # type: ignore[union-attr]


def test_a_forged_sequencer_on_a_matching_record_is_lowered_once_settled(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    forged = created(s3_client, bucket, "m.png", image_bytes("PNG"), FORGED)
    assert process_event(forged, indexer) == {"active": 1}
    before = stored(dynamodb_client, table_name, "m.png")
    modified = last_modified(s3_client, bucket, "m.png")

    # Too recent: an event that read S3 before this object could still be running.
    assert repaired(at(indexer, modified + 60), "m.png") == "unchanged"
    assert stored(dynamodb_client, table_name, "m.png") == before

    settled = modified + SETTLE_SECONDS + 1
    assert repaired(at(indexer, settled), "m.png") == "unchanged"
    record = stored(dynamodb_client, table_name, "m.png")
    assert record is not None and before is not None
    assert record.sequencer == LOWEST_SEQUENCER and record.repaired_at is not None
    assert replace(record, sequencer=before.sequencer, repaired_at=None) == before

    s3_client.delete_object(Bucket=bucket, Key="m.png")
    delete = s3_event("s3_delete", bucket=bucket, key="m.png", sequencer="0055AED6DCD90281E8")
    assert process_event(delete, indexer) == {"deleted": 1}


def test_a_forged_tombstone_is_lowered_and_a_real_upload_then_applies(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    delete = s3_event("s3_delete", bucket=bucket, key="t.png", sequencer=FORGED)
    assert process_event(delete, indexer) == {"deleted": 1}  # no object: S3 agrees
    written = indexer.clock()
    assert repaired(at(indexer, written + SETTLE_SECONDS + 1), "t.png") == "unchanged"
    assert stored(dynamodb_client, table_name, "t.png").sequencer == LOWEST_SEQUENCER  # type: ignore[union-attr]
    event = created(s3_client, bucket, "t.png", image_bytes("PNG"), "0055AED6DCD90281E9")
    assert process_event(event, indexer) == {"active": 1}


def test_a_recent_healthy_record_keeps_its_sequencer_against_a_stale_event_in_flight(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    # A delete that found the key empty just before this upload, and writes only now: the
    # record's real sequencer must still refuse it, so a fresh record is not lowered.
    process_event(
        created(s3_client, bucket, "f.png", image_bytes("PNG"), "0055AED6DCD90281F0"), indexer
    )
    modified = last_modified(s3_client, bucket, "f.png")
    assert repaired(at(indexer, modified + 5), "f.png") == "unchanged"
    late_tombstone = ImageRecord(
        key="f.png", status="deleted", sequencer="0055AED6DCD90281E0".ljust(64, "0")
    )
    assert indexer._write(late_tombstone) is False
    assert stored(dynamodb_client, table_name, "f.png").status == "active"  # type: ignore[union-attr]


def test_a_record_written_recently_keeps_its_sequencer_however_old_its_object(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    # LastModified is when a multipart upload began: only the record's own write time
    # proves that no event which read S3 before the object was complete is still running.
    event = created(s3_client, bucket, "mp.png", image_bytes("PNG"), FORGED)
    written = last_modified(s3_client, bucket, "mp.png") + SETTLE_SECONDS
    assert process_event(event, at(indexer, written)) == {"active": 1}
    assert repaired(at(indexer, written + 60), "mp.png") == "unchanged"
    assert stored(dynamodb_client, table_name, "mp.png").sequencer == FORGED  # type: ignore[union-attr]
    assert repaired(at(indexer, written + SETTLE_SECONDS + 1), "mp.png") == "unchanged"
    assert stored(dynamodb_client, table_name, "mp.png").sequencer == LOWEST_SEQUENCER  # type: ignore[union-attr]
