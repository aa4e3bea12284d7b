"""Reading Lambda's invocation records (``imgcli.failed_event_records``) on the documented
shapes: ``tests/events/destination_*.json`` follow AWS's "Capturing records of Lambda
asynchronous invocations" (``destination_process_exited`` is its own example)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgcli.failed_event_records import (
    MAX_BODY_CHARS,
    MAX_ERROR_CHARS,
    NotADestinationRecord,
    read_destination_record,
)
from tests.eventdata import in_sqs, load_event, s3_event

S3_PUT_KEY = "photos/2026/summer holiday/beach day +1 é.jpg"


def body(record: Any) -> str:
    return json.dumps(record)


def test_a_record_of_retries_exhausted_gives_keys_error_and_attempts() -> None:
    record = load_event("destination_retries_exhausted")
    read = read_destination_record(body(record))
    assert read.keys == (S3_PUT_KEY,)  # decoded as the save function decodes it
    assert read.event_time == "2026-11-27T02:00:00.000Z"
    assert read.condition == "RetriesExhausted"
    assert read.error_type == "RecordsFailed"
    assert read.error_message is not None and "AccessDeniedException" in read.error_message
    assert read.error.startswith("RecordsFailed: 1 record(s) failed")
    assert read.attempts == 3
    assert read.function_name == "imgcli-test-save-delete"
    assert read.request_id == "e4b46cbf-b738-xmpl-8880-a18cdf61200e"
    assert read.recorded_at == "2026-11-27T02:03:05.568Z"
    assert read.request_payload == record["requestPayload"]


def test_a_record_of_an_event_too_old_shows_its_condition() -> None:
    read = read_destination_record(body(load_event("destination_event_age_exceeded")))
    assert read.keys == (S3_PUT_KEY,)
    assert (read.error_type, read.error_message) == (None, None)
    assert read.error == "EventAgeExceeded"
    assert read.attempts == 0


def test_awss_own_example_reads_without_keys_and_with_its_message() -> None:
    read = read_destination_record(body(load_event("destination_process_exited")))
    assert read.keys == ()
    assert read.event_time is None
    assert read.error_type is None
    assert read.error == (
        "RequestId: e4b46cbf-b738-xmpl-8880-a18cdf61200e Process exited before completing request"
    )
    assert read.function_name == "my-function"


def test_every_record_of_an_event_gives_its_key_once() -> None:
    record = load_event("destination_retries_exhausted")
    first = s3_event("s3_put", bucket="b", key="a b.png", sequencer="01")
    second = s3_event("s3_delete", bucket="b", key="c+d.png", sequencer="02")
    again = s3_event("s3_put", bucket="b", key="a b.png", sequencer="03")
    record["requestPayload"] = {"Records": first["Records"] + second["Records"] + again["Records"]}
    assert read_destination_record(body(record)).keys == ("a b.png", "c+d.png")


def test_an_s3_event_wrapped_in_sqs_shows_its_keys() -> None:
    record = load_event("destination_retries_exhausted")
    record["requestPayload"] = in_sqs(
        s3_event("s3_put", bucket="b", key="x/y z.gif", sequencer="1")
    )
    assert read_destination_record(body(record)).keys == ("x/y z.gif",)


def test_a_malformed_s3_record_adds_no_key_and_does_not_fail() -> None:
    record = load_event("destination_retries_exhausted")
    record["requestPayload"]["Records"].append({"eventSource": "aws:s3", "s3": {}})
    assert read_destination_record(body(record)).keys == (S3_PUT_KEY,)


def test_a_long_error_message_is_shortened() -> None:
    record = load_event("destination_retries_exhausted")
    record["responsePayload"]["errorMessage"] = "x" * 10_000
    message = read_destination_record(body(record)).error_message
    assert message is not None and len(message) == MAX_ERROR_CHARS + 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"Records": []}), "no requestContext"),
        (json.dumps({"requestContext": "x", "requestPayload": {}}), "no requestContext"),
        (json.dumps({"requestContext": {}}), "no requestPayload"),
        (json.dumps({"requestContext": {}, "requestPayload": None}), "no requestPayload"),
        ("x" * (MAX_BODY_CHARS + 1), "too long"),
    ],
)
def test_a_message_that_is_no_invocation_record_is_refused(text: str, reason: str) -> None:
    with pytest.raises(NotADestinationRecord, match=reason):
        read_destination_record(text)


def test_odd_field_types_read_as_unknown() -> None:
    record = load_event("destination_retries_exhausted")
    record["requestContext"].update(approximateInvokeCount=True, functionArn="not-an-arn")
    record["responsePayload"] = "a plain text answer"
    read = read_destination_record(body(record))
    assert read.attempts is None
    assert read.function_name is None
    assert read.error == "a plain text answer"
