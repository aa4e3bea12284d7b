"""A refused write must not remove thumbnails that another
writer of the same object version is about to name.

A duplicate event of the current version (an S3 redelivery, or ``imgcli events replay``)
refused against a schema-1 record (no thumbnails yet) removes the version's thumbnail keys,
while a repair of the same version, running at the same time, has written those very keys
and then names them in its record: the record points at deleted thumbnails, and reconcile
never repairs it again (it is of the current schema, with thumbnails).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from imgcli.lambdas.records import to_item
from imgcli.lambdas.save_delete import Indexer, process_event
from tests.eventdata import repair_event, s3_event, stored, upload
from tests.images import image_bytes
from tests.races import WriteAfter
from tests.test_save_thumbnails import thumbnail_objects


def test_a_duplicate_refused_during_a_repair_of_its_version_keeps_the_thumbnails(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    put = upload(s3_client, bucket, "race.png", image_bytes("PNG", (400, 300)))
    event = s3_event("s3_put", bucket=bucket, key="race.png", sequencer="10", put=put)
    assert process_event(event, indexer) == {"active": 1}
    record = stored(dynamodb_client, table_name, "race.png")
    assert record is not None and record.thumbnails
    # The record as a writer before thumbnails left it (schema 1), thumbnails not yet made.
    for thumbnail in record.thumbnails:
        s3_client.delete_object(Bucket=thumbnails_bucket, Key=thumbnail.key)
    old = replace(record, schema_version=None, thumbnails=None, thumbnail_reason=None)
    dynamodb_client.put_item(TableName=table_name, Item=to_item(old))

    def the_duplicate_is_refused_meanwhile() -> None:
        assert process_event(event, indexer) == {"stale": 1}

    racing = replace(
        indexer, dynamodb=WriteAfter(indexer.dynamodb, the_duplicate_is_refused_meanwhile)
    )
    assert process_event(repair_event(bucket, "race.png"), racing)["repaired"] == {
        "race.png": "indexed"
    }
    repaired = stored(dynamodb_client, table_name, "race.png")
    assert repaired is not None and repaired.thumbnails
    named = {t.key for t in repaired.thumbnails}
    assert named <= thumbnail_objects(s3_client, thumbnails_bucket), (
        "record names deleted thumbnails"
    )


def test_two_writers_of_one_version_never_share_a_thumbnail_key(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    thumbnails_bucket: str,
) -> None:
    """Keys shared per version let a writer that replaced (or tombstoned) a record of that
    version remove thumbnails another writer of it was about to name: after a delete
    marker is removed, the delete's tombstone and the uncovered version's re-index race
    so. With a key of its own per writer, whatever a writer removes no one else names."""
    put = upload(s3_client, bucket, "same.png", image_bytes("PNG", (300, 200)))
    event = s3_event("s3_put", bucket=bucket, key="same.png", sequencer="10", put=put)
    assert process_event(event, indexer) == {"active": 1}
    first = stored(dynamodb_client, table_name, "same.png")
    # The same object, a later event (a replay, or the re-index after a delete marker went).
    again = s3_event("s3_put", bucket=bucket, key="same.png", sequencer="20", put=put)
    assert process_event(again, indexer) == {"active": 1}
    second = stored(dynamodb_client, table_name, "same.png")
    assert first is not None and first.thumbnails and second is not None and second.thumbnails
    assert first.version_id == second.version_id and first.etag == second.etag
    assert not {t.key for t in first.thumbnails} & {t.key for t in second.thumbnails}
    # The replaced record's pair is gone, the live one is there: nothing else is left.
    assert thumbnail_objects(s3_client, thumbnails_bucket) == {t.key for t in second.thumbnails}
