"""The save function's repair invocation against moto: each outcome, and the requests it refuses.

Races with real events and poisoned sequencers are in ``test_repair_races``.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from typing import Any

import pytest

from imgcli.lambdas import repair, save_delete
from imgcli.lambdas.repair import (
    LOWEST_SEQUENCER,
    MAX_KEYS,
    InvalidRepairRequest,
    read_repair_request,
    repair_request,
)
from imgcli.lambdas.save_delete import Indexer, process_event
from tests.conftest import INDEXER_NOW
from tests.eventdata import created, load_event, repair_event, s3_event, stored, upload
from tests.images import image_bytes


def repaired(indexer: Indexer, *keys: str, **options: Any) -> dict[str, str]:
    answer = process_event(repair_event(indexer.bucket, *keys), indexer, **options)
    assert set(answer) == {"repaired"}
    outcomes: dict[str, str] = answer["repaired"]
    return outcomes


def record_calls(*clients: Any) -> list[str]:
    """Every AWS operation the clients make from now on, in order."""
    calls: list[str] = []
    for client in clients:
        client.meta.events.register("before-call.*.*", lambda model, **kw: calls.append(model.name))
    return calls


@pytest.fixture
def versioned_indexer(indexer: Indexer, versioned_bucket: str) -> Indexer:
    return replace(indexer, bucket=versioned_bucket)


def test_the_fixture_is_the_documented_shape() -> None:
    event = load_event("repair")
    assert event == repair_request("imgcli-test-bucket", ["a.jpg", "b/c.png"])
    request = read_repair_request(event)
    assert (request.bucket, request.keys) == ("imgcli-test-bucket", ("a.jpg", "b/c.png"))


def test_an_object_with_no_record_is_indexed_under_the_lowest_sequencer(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    put = upload(s3_client, bucket, "lost/event.png", image_bytes("PNG", (30, 20)))
    assert repaired(indexer, "lost/event.png") == {"lost/event.png": "indexed"}
    record = stored(dynamodb_client, table_name, "lost/event.png")
    assert record is not None
    assert (record.status, record.format, record.width, record.height) == ("active", "PNG", 30, 20)
    assert record.etag == put["ETag"].strip('"')
    assert record.sequencer == LOWEST_SEQUENCER
    assert record.repaired_at == record.indexed_at is not None
    assert record.uploaded_at and record.uploaded_at.endswith("Z")


def test_a_record_of_an_older_version_is_reindexed(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    key = "v/photo.jpg"
    first = created(s3_client, versioned_bucket, key, image_bytes("JPEG", (10, 10)), "40")
    assert process_event(first, versioned_indexer) == {"active": 1}
    newer = upload(s3_client, versioned_bucket, key, image_bytes("GIF", (20, 20)))  # event lost
    assert repaired(versioned_indexer, key) == {key: "indexed"}
    record = stored(dynamodb_client, table_name, key)
    assert record is not None
    assert (record.version_id, record.format, record.width) == (newer["VersionId"], "GIF", 20)
    assert record.sequencer == LOWEST_SEQUENCER


def test_a_record_of_an_older_object_is_reindexed_by_its_etag(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "e.png", image_bytes("PNG"), "41"), indexer)
    newer = upload(s3_client, bucket, "e.png", image_bytes("BMP"))
    assert repaired(indexer, "e.png") == {"e.png": "indexed"}
    record = stored(dynamodb_client, table_name, "e.png")
    assert record is not None and (record.etag, record.format) == (newer["ETag"][1:-1], "BMP")


def test_a_record_with_no_object_is_removed(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "gone.gif", image_bytes("GIF"), "42"), indexer)
    s3_client.delete_object(Bucket=bucket, Key="gone.gif")  # its event lost
    assert repaired(indexer, "gone.gif") == {"gone.gif": "removed"}
    record = stored(dynamodb_client, table_name, "gone.gif")
    assert record is not None
    assert (record.status, record.sequencer) == ("deleted", LOWEST_SEQUENCER)
    assert record.expires_at == int(INDEXER_NOW) + 7 * 86400
    assert record.repaired_at is not None


def test_a_record_behind_a_delete_marker_is_removed(
    versioned_indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
) -> None:
    event = created(s3_client, versioned_bucket, "m.png", image_bytes("PNG"), "43")
    process_event(event, versioned_indexer)
    s3_client.delete_object(Bucket=versioned_bucket, Key="m.png")
    assert repaired(versioned_indexer, "m.png") == {"m.png": "removed"}


def test_a_matching_record_and_an_absent_one_are_unchanged_without_a_write(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "ok.png", image_bytes("PNG"), "44"), indexer)
    before = stored(dynamodb_client, table_name, "ok.png")
    calls = record_calls(s3_client, dynamodb_client)
    assert repaired(indexer, "ok.png", "never.png") == {
        "ok.png": "unchanged",
        "never.png": "unchanged",
    }
    assert calls == ["GetItem", "HeadObject"] * 2
    assert stored(dynamodb_client, table_name, "ok.png") == before
    assert stored(dynamodb_client, table_name, "never.png") is None


def test_a_tombstone_with_no_object_is_unchanged(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key="t.png", Body=b"x")
    s3_client.delete_object(Bucket=bucket, Key="t.png")
    process_event(s3_event("s3_delete", bucket=bucket, key="t.png", sequencer="45"), indexer)
    before = stored(dynamodb_client, table_name, "t.png")
    assert repaired(indexer, "t.png") == {"t.png": "unchanged"}
    assert stored(dynamodb_client, table_name, "t.png") == before


def test_invalid_bytes_are_stored_invalid(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    upload(s3_client, bucket, "notes.jpg", b"not a picture at all\n")
    assert repaired(indexer, "notes.jpg") == {"notes.jpg": "invalid"}
    record = stored(dynamodb_client, table_name, "notes.jpg")
    assert record is not None and record.status == "invalid" and record.reason


def test_a_second_repair_finds_nothing_to_do(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    upload(s3_client, bucket, "a.png", image_bytes("PNG"))
    process_event(created(s3_client, bucket, "b.png", image_bytes("PNG"), "46"), indexer)
    s3_client.delete_object(Bucket=bucket, Key="b.png")
    assert repaired(indexer, "a.png", "b.png") == {"a.png": "indexed", "b.png": "removed"}
    calls = record_calls(dynamodb_client)
    assert repaired(indexer, "a.png", "b.png") == {"a.png": "unchanged", "b.png": "unchanged"}
    assert "PutItem" not in calls


def test_a_key_named_twice_is_repaired_once(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, bucket: str
) -> None:
    upload(s3_client, bucket, "twice.png", image_bytes("PNG"))
    calls = record_calls(dynamodb_client)
    assert repaired(indexer, "twice.png", "twice.png") == {"twice.png": "indexed"}
    assert calls.count("PutItem") == 1


def test_a_failed_read_fails_that_key_and_the_others_are_answered(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    from botocore.exceptions import ClientError

    upload(s3_client, bucket, "fine.png", image_bytes("PNG"))
    upload(s3_client, bucket, "denied.png", image_bytes("PNG"))

    def deny(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("Key") == "denied.png":
            error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
            raise ClientError(error, "HeadObject")

    s3_client.meta.events.register("before-parameter-build.s3.HeadObject", deny)
    outcomes = repaired(indexer, "denied.png", "fine.png")
    assert outcomes["fine.png"] == "indexed"
    assert outcomes["denied.png"].startswith("failed: ")
    assert "AccessDenied" in outcomes["denied.png"]
    assert stored(dynamodb_client, table_name, "denied.png") is None


def test_an_object_replaced_while_it_is_read_is_tried_again(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    upload(s3_client, bucket, "moving.png", image_bytes("PNG"))
    replaced: list[dict[str, Any]] = []

    def replace_once(**kwargs: Any) -> None:
        if not replaced:  # between the HeadObject and the pinned GetObject
            replaced.append(upload(s3_client, bucket, "moving.png", image_bytes("BMP")))

    s3_client.meta.events.register("before-call.s3.GetObject", replace_once)
    assert repaired(indexer, "moving.png") == {"moving.png": "indexed"}
    record = stored(dynamodb_client, table_name, "moving.png")
    assert record is not None and record.format == "BMP"
    assert record.etag == replaced[0]["ETag"].strip('"')


def test_keys_left_when_time_runs_out_are_failed_not_attempted(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    upload(s3_client, bucket, "first.png", image_bytes("PNG"))
    upload(s3_client, bucket, "second.png", image_bytes("PNG"))
    left = iter([60_000, 1_000])
    outcomes = repaired(indexer, "first.png", "second.png", remaining_ms=lambda: next(left))
    assert outcomes["first.png"] == "indexed"
    assert outcomes["second.png"].startswith("failed: not attempted")
    assert stored(dynamodb_client, table_name, "second.png") is None


def test_another_bucket_is_refused_with_a_log_line_and_nothing_read_or_written(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    upload(s3_client, bucket, "mine.png", image_bytes("PNG"))
    calls = record_calls(s3_client, dynamodb_client)
    answer = process_event(repair_event("someone-elses", "mine.png"), indexer)
    assert answer == {
        "refused": "bucket 'someone-elses' is not this function's bucket",
        "repaired": {},
    }
    assert calls == []
    (line,) = [json.loads(text) for text in log_lines.getvalue().splitlines()]
    assert line["message"] == "repair for another bucket: refused"
    assert (line["bucket"], line["own_bucket"], line["level"]) == (
        "someone-elses",
        bucket,
        "WARNING",
    )
    assert stored(dynamodb_client, table_name, "mine.png") is None


def _with(**fields: Any) -> dict[str, Any]:
    return {**repair_request("imgcli-test-bucket", ["a.png"]), **fields}


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (_with(keys=[f"k{n}.png" for n in range(MAX_KEYS + 1)]), "101 keys: at most 100"),
        (_with(imgcli="reindex"), "unknown imgcli request 'reindex'"),
        (_with(version=2), "version 2 is not supported"),
        (_with(version=True), "version true is not supported"),
        (_with(version="1"), 'version "1" is not supported'),
        (_with(extra=1), "unknown fields: extra"),
        (_with(bucket=""), "needs 'bucket'"),
        (_with(keys="a.png"), "needs 'keys'"),
        (_with(keys=["a.png", ""]), "key 1 is not an object key"),
        (_with(keys=[7]), "key 0 is not an object key"),
        (_with(keys=["x" * 1025]), "key 0 is not an object key"),
        (_with(keys=["\ud800"]), "key 0 is not an object key"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_malformed_request_is_a_clear_error_and_nothing_is_touched(
    payload: dict[str, Any], problem: str, indexer: Indexer, s3_client: Any, dynamodb_client: Any
) -> None:
    calls = record_calls(s3_client, dynamodb_client)
    with pytest.raises(InvalidRepairRequest, match=re.escape(problem)):
        process_event(payload, indexer)
    assert calls == []


def test_at_most_max_keys_are_accepted() -> None:
    keys = [f"k{n}.png" for n in range(MAX_KEYS)]
    assert len(read_repair_request(repair_request("b", keys)).keys) == MAX_KEYS


def test_the_handler_answers_a_repair_with_its_clients_and_time(
    deployed_save_function: None, s3_client: Any, dynamodb_client: Any, bucket: str
) -> None:
    upload(s3_client, bucket, "h.png", image_bytes("PNG"))
    context = type(
        "Context",
        (),
        {"aws_request_id": "req-1", "get_remaining_time_in_millis": lambda self: 1_000},
    )()
    answer = save_delete.handler(repair_event(bucket, "h.png"), context)
    assert answer == {"repaired": {"h.png": "failed: " + repair.OUT_OF_TIME}}
    context.get_remaining_time_in_millis = lambda: 60_000
    assert save_delete.handler(repair_event(bucket, "h.png"), context) == {
        "repaired": {"h.png": "indexed"}
    }
