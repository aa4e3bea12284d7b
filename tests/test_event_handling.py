"""What the save function does with each shape it may be invoked with, against moto.

Records of the stack's own bucket are applied, however they are wrapped (S3 direct, in SQS,
in SNS); records of any other bucket, and every shape the function does not apply, are
logged as one JSON line and acknowledged: no table write, no exception (so no retry). The
forged-event tests replay the issue's findings: a delete with sequencer ``F`` x 64 hid a
live image, and a create with it listed a deleted one.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from imgcli.infra.names import StackNames
from imgcli.infra.resources import FunctionCode, Kind, StackOptions, desired_stack
from imgcli.lambdas import save_delete
from imgcli.lambdas.logs import JsonLogger
from imgcli.lambdas.save_delete import Indexer, MissingConfiguration, RecordsFailed, process_event
from tests.eventdata import created, in_sqs, load_event, s3_event, stored, upload
from tests.images import image_bytes

FORGED: str = "F" * 64
OTHER_BUCKET = "someone-elses-bucket"


def logged(lines: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.getvalue().splitlines()]


def table_items(dynamodb_client: Any, table_name: str) -> list[dict[str, Any]]:
    return list(dynamodb_client.scan(TableName=table_name)["Items"])


# --- other buckets -----------------------------------------------------------------------


def test_records_of_another_bucket_change_nothing_and_say_so(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    process_event(created(s3_client, bucket, "same/key.png", image_bytes("PNG"), "10"), indexer)
    ours = stored(dynamodb_client, table_name, "same/key.png")
    s3_client.create_bucket(Bucket=OTHER_BUCKET)
    theirs = created(s3_client, OTHER_BUCKET, "same/key.png", image_bytes("GIF"), "20")
    s3_client.delete_object(Bucket=OTHER_BUCKET, Key="same/key.png")
    removed = s3_event("s3_delete", bucket=OTHER_BUCKET, key="same/key.png", sequencer="30")
    log_lines.truncate(0)
    log_lines.seek(0)

    assert process_event(theirs, indexer) == {"other_bucket": 1}
    assert process_event(removed, indexer) == {"other_bucket": 1}

    assert stored(dynamodb_client, table_name, "same/key.png") == ours
    lines = logged(log_lines)
    assert [(line["bucket"], line["key"], line["event_name"]) for line in lines] == [
        (OTHER_BUCKET, "same/key.png", "ObjectCreated:Put"),
        (OTHER_BUCKET, "same/key.png", "ObjectRemoved:Delete"),
    ]
    assert all(line["message"] == "record for another bucket: not indexed" for line in lines)


def test_a_foreign_record_is_acknowledged_even_when_it_is_broken(
    indexer: Indexer, dynamodb_client: Any, table_name: str
) -> None:
    event = s3_event("s3_delete", bucket=OTHER_BUCKET, key="x.png", sequencer="not hex!")
    assert process_event(event, indexer) == {"other_bucket": 1}
    assert table_items(dynamodb_client, table_name) == []


def test_the_stack_gives_the_save_function_its_bucket() -> None:
    names = StackNames("demo", "123456789012", "eu-west-1")
    functions = {
        r.name: r.settings["environment"]
        for r in desired_stack(names, StackOptions(), FunctionCode(b"zip", "sha", "python3.12"))
        if r.kind is Kind.FUNCTION
    }
    assert functions[names.save_function] == {
        "TABLE_NAME": names.table,
        "BUCKET_NAME": names.bucket,
        "THUMBNAILS_BUCKET": names.thumbnails_bucket,
    }
    retrieve = functions[names.retrieve_function]
    assert {"TABLE_NAME", "BUCKET_NAME", "THUMBNAILS_BUCKET"} <= set(retrieve)


def test_without_its_bucket_the_function_fails_loudly_and_writes_nothing(
    deployed_save_function: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    # A function deployed before BUCKET_NAME existed: its events go to the failed queue.
    monkeypatch.delenv("BUCKET_NAME")
    event = created(s3_client, bucket, "old-stack.png", image_bytes("PNG"), "40")
    with pytest.raises(MissingConfiguration, match="run imgcli bootstrap"):
        save_delete.handler(event, None)
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["level"] == "ERROR" and "run imgcli bootstrap" in line["message"]
    assert table_items(dynamodb_client, table_name) == []


# --- envelopes ---------------------------------------------------------------------------


def _put_wrapped_like(fixture: str, s3_client: Any, bucket: str) -> dict[str, Any]:
    """The fixture ``fixture`` (an S3 event in envelopes) rewritten for a real object."""
    inner = created(s3_client, bucket, "queued/sunset at sea.jpg", image_bytes("JPEG"), "50")
    wrapped = load_event(fixture)
    text = json.dumps(inner)
    record = wrapped["Records"][0]
    if "Sns" in record:
        record["Sns"]["Message"] = text
    elif fixture == "s3_sns_sqs_put":
        body = json.loads(record["body"])
        body["Message"] = text
        record["body"] = json.dumps(body)
    else:
        record["body"] = text
    return wrapped


@pytest.mark.parametrize(
    ("fixture", "answer"),
    [
        ("s3_sqs_put", {"active": 1, "batchItemFailures": []}),
        ("s3_sns_sqs_put", {"active": 1, "batchItemFailures": []}),
        ("s3_sns_put", {"active": 1}),
    ],
)
def test_s3_events_in_envelopes_are_indexed(
    fixture: str,
    answer: dict[str, Any],
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
) -> None:
    assert process_event(_put_wrapped_like(fixture, s3_client, bucket), indexer) == answer
    record = stored(dynamodb_client, table_name, "queued/sunset at sea.jpg")
    assert record is not None and record.status == "active" and record.format == "JPEG"


def test_a_failed_record_in_an_sqs_batch_fails_the_batch_naming_its_message(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    good = created(s3_client, bucket, "ok.png", image_bytes("PNG"), "60")
    bad = created(s3_client, bucket, "bad.png", image_bytes("PNG"), "61")
    bad["Records"][0]["s3"]["object"]["sequencer"] = "not hex!"
    with pytest.raises(RecordsFailed) as failed:
        process_event(in_sqs(good, bad), indexer)
    message = str(failed.value)
    assert "SQS message message-1" in message and "bad.png" in message
    assert '{"batchItemFailures": [{"itemIdentifier": "message-1"}]}' in message
    assert stored(dynamodb_client, table_name, "ok.png").status == "active"  # type: ignore[union-attr]


def test_a_malformed_sqs_message_is_logged_with_its_id_and_acknowledged(
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    batch = in_sqs(created(s3_client, bucket, "fine.png", image_bytes("PNG"), "70"))
    broken = dict(batch["Records"][0], messageId="message-broken", body="{not json")
    batch["Records"].append(broken)
    assert process_event(batch, indexer) == {"active": 1, "ignored": 1, "batchItemFailures": []}
    (line,) = [line for line in logged(log_lines) if line["level"] == "WARNING"]
    assert line["shape"] == "malformed SQS message"
    assert line["message_id"] == "message-broken"
    assert "SQS message message-broken" in line["message"]


# --- shapes that are not applied ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "shape"),
    [
        ("s3_test_event", "s3:TestEvent"),
        ("s3_sqs_test_event", "s3:TestEvent"),
        ("eventbridge_object_created", "EventBridge S3 event"),
        ("eventbridge_object_deleted", "EventBridge S3 event"),
        ("s3_object_lambda", "S3 Object Lambda request"),
        ("s3_batch_operations", "S3 Batch Operations job"),
        ("apigw_get_image", "unrecognised event"),
    ],
)
def test_each_other_shape_is_one_log_line_and_acknowledged(
    fixture: str,
    shape: str,
    indexer: Indexer,
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    bucket: str,
    log_lines: io.StringIO,
) -> None:
    # The keys these shapes name exist in the bucket: nothing may index them.
    for key in ("photos/bridge.jpg", "photos/a.jpg", "photos/b.jpg"):
        upload(s3_client, bucket, key, image_bytes("JPEG"))
    answer = process_event(load_event(fixture), indexer)
    assert answer["ignored"] == 1
    (line,) = logged(log_lines)
    assert line["shape"] == shape
    assert table_items(dynamodb_client, table_name) == []


@pytest.mark.parametrize("payload", [{}, {"hello": "world"}, [], "text", 7, None])
def test_anything_else_is_one_log_line_and_acknowledged(
    payload: Any, indexer: Indexer, log_lines: io.StringIO
) -> None:
    assert process_event(payload, indexer) == {"ignored": 1}
    (line,) = logged(log_lines)
    assert line["shape"] == "unrecognised event"


def test_an_unknown_event_name_is_one_log_line_with_bucket_key_and_name(
    indexer: Indexer, s3_client: Any, bucket: str, log_lines: io.StringIO
) -> None:
    event = created(s3_client, bucket, "tagged.png", image_bytes("PNG"), "80")
    event["Records"][0]["eventName"] = "ObjectRestore:Completed"
    assert process_event(event, indexer) == {"ignored": 1}
    (line,) = logged(log_lines)
    assert (line["bucket"], line["key"], line["event_name"]) == (
        bucket,
        "tagged.png",
        "ObjectRestore:Completed",
    )


# --- forged events -----------------------------------------------------------------------


def test_a_forged_delete_cannot_hide_a_live_image(
    indexer: Indexer, s3_client: Any, dynamodb_client: Any, table_name: str, bucket: str
) -> None:
    process_event(created(s3_client, bucket, "live.png", image_bytes("PNG"), "90"), indexer)
    forged = s3_event("s3_delete", bucket=bucket, key="live.png", sequencer=FORGED)
    assert process_event(forged, indexer) == {"recreated": 1}
    assert stored(dynamodb_client, table_name, "live.png").status == "active"  # type: ignore[union-attr]


def test_a_forged_create_cannot_list_a_deleted_image(
    s3_client: Any,
    dynamodb_client: Any,
    table_name: str,
    versioned_bucket: str,
    thumbnails_bucket: str,
) -> None:
    indexer = Indexer(
        s3=s3_client,
        dynamodb=dynamodb_client,
        table_name=table_name,
        bucket=versioned_bucket,
        thumbnails_bucket=thumbnails_bucket,
        log=JsonLogger("save_delete", stream=io.StringIO()),
    )
    create = created(s3_client, versioned_bucket, "gone.png", image_bytes("PNG"), "A0")
    process_event(create, indexer)
    marker = s3_client.delete_object(Bucket=versioned_bucket, Key="gone.png")
    deleted = load_event("s3_delete_marker")
    deleted["Records"][0]["s3"]["bucket"]["name"] = versioned_bucket
    deleted["Records"][0]["s3"]["object"].update(
        key="gone.png", versionId=marker["VersionId"], sequencer="A1"
    )
    assert process_event(deleted, indexer) == {"deleted": 1}

    # The old version is still in the bucket: a forged create naming it reads nothing.
    create["Records"][0]["s3"]["object"]["sequencer"] = FORGED
    assert process_event(create, indexer) == {"gone": 1}
    assert stored(dynamodb_client, table_name, "gone.png").status == "deleted"  # type: ignore[union-attr]
