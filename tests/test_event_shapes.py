"""Reading whatever the save function is invoked with: every shape AWS documents, and junk.

Pure tests of ``lambdas.event_shapes`` on the fixtures in ``tests/events/`` (shapes from the
S3 and Lambda guides); what the function then does with each is in ``test_event_handling``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgcli.lambdas.event_shapes import MAX_DEPTH, S3Record, Unapplied, read_invocation
from imgcli.lambdas.s3_events import ObjectEvent, read_record
from tests.eventdata import in_sqs, load_event


def only(payload: Any) -> S3Record | Unapplied:
    (unit,) = read_invocation(payload).units
    return unit


def test_a_direct_s3_event_is_its_records() -> None:
    units = read_invocation(load_event("s3_multi_record")).units
    assert [type(u) for u in units] == [S3Record] * 3
    assert all(isinstance(u, S3Record) and u.envelope == "S3 event" for u in units)
    assert not read_invocation(load_event("s3_multi_record")).is_sqs_batch


@pytest.mark.parametrize(
    ("fixture", "envelope", "message_id"),
    [
        ("s3_sqs_put", "SQS message", "2e1424d4-f796-459a-8184-9c92662be6da"),
        ("s3_sns_sqs_put", "SNS notification in an SQS message", "059f36b4-87a3-44ab-83d2"),
        ("s3_sns_put", "SNS notification", "7a0b6d2e-1f4c-5e8a-9b3d-2c1e0f9a8b7c"),
    ],
)  # fmt: skip
def test_s3_events_in_envelopes_are_unwrapped(fixture: str, envelope: str, message_id: str) -> None:
    unit = only(load_event(fixture))
    assert isinstance(unit, S3Record)
    assert unit.envelope == envelope
    assert unit.message_id and unit.message_id.startswith(message_id)
    event = read_record(unit.record, unit.index)
    assert isinstance(event, ObjectEvent)
    assert (event.key, event.event_name) == ("queued/sunset at sea.jpg", "ObjectCreated:Put")
    assert read_invocation(load_event(fixture)).is_sqs_batch == fixture.endswith("sqs_put")


def test_an_sqs_batch_names_every_message_and_keeps_their_order() -> None:
    batch = in_sqs(load_event("s3_put"), load_event("s3_test_event"), load_event("s3_delete"))
    invocation = read_invocation(batch)
    assert invocation.message_ids == ("message-0", "message-1", "message-2")
    kinds = [u.shape if isinstance(u, Unapplied) else u.message_id for u in invocation.units]
    assert kinds == ["message-0", "s3:TestEvent", "message-2"]


@pytest.mark.parametrize(
    ("fixture", "shape", "words"),
    [
        ("s3_test_event", "s3:TestEvent", "S3 test event"),
        ("s3_sqs_test_event", "s3:TestEvent", "S3 test event"),
        ("eventbridge_object_created", "EventBridge S3 event", "does not route EventBridge"),
        ("eventbridge_object_deleted", "EventBridge S3 event", "does not route EventBridge"),
        ("s3_object_lambda", "S3 Object Lambda request", "not served"),
        ("s3_batch_operations", "S3 Batch Operations job", "not run"),
        ("apigw_list_images", "unrecognised event", "unrecognised event"),
    ],
)
def test_other_shapes_are_named_not_applied(fixture: str, shape: str, words: str) -> None:
    unit = only(load_event(fixture))
    assert isinstance(unit, Unapplied)
    assert unit.shape == shape
    assert words in unit.message


def test_shape_fields_say_what_was_let_go() -> None:
    bridge = only(load_event("eventbridge_object_created"))
    assert isinstance(bridge, Unapplied)
    assert bridge.fields["bucket"] == "imgcli-test-bucket"
    assert bridge.fields["key"] == "photos/bridge.jpg"
    assert bridge.fields["detail_type"] == "Object Created"
    batch = only(load_event("s3_batch_operations"))
    assert isinstance(batch, Unapplied)
    assert batch.fields["tasks"] == 2
    queued_test = only(load_event("s3_sqs_test_event"))
    assert isinstance(queued_test, Unapplied)
    assert queued_test.fields["message_id"] == "c80e8021-a70a-42c7-a470-796e1186f753"


@pytest.mark.parametrize(
    "body",
    ["not json {", "[1, 2]", '"a string"', '{"hello": "world"}', "null", "[" * 200_000],
    ids=["not-json", "array", "string", "object", "null", "nested-too-deep"],
)
def test_a_malformed_sqs_body_is_one_unit_naming_the_message(body: str) -> None:
    batch = load_event("s3_sqs_put")
    batch["Records"][0]["body"] = body
    unit = only(batch)
    assert isinstance(unit, Unapplied)
    assert unit.shape == "malformed SQS message"
    assert "SQS message" in unit.message
    assert "2e1424d4-f796-459a-8184-9c92662be6da" in unit.message
    assert unit.fields["message_id"] == "2e1424d4-f796-459a-8184-9c92662be6da"


def test_records_from_other_sources_are_named() -> None:
    unit = only({"Records": [{"eventSource": "aws:dynamodb", "dynamodb": {}}]})
    assert isinstance(unit, Unapplied)
    assert "aws:dynamodb" in unit.message


def test_envelopes_nest_only_so_deep() -> None:
    payload: Any = load_event("s3_put")
    for _ in range(MAX_DEPTH + 2):
        payload = in_sqs(payload)
    unit = only(payload)
    assert isinstance(unit, Unapplied) and unit.shape == "malformed SQS message"
    assert "nested more than" in unit.message


def test_a_record_without_a_source_is_still_s3s_so_a_broken_one_fails_loudly() -> None:
    assert isinstance(only({"Records": [{}]}), S3Record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["Records", "eventSource", "body", "Event", "detail-type", "source", "Type",
             "Message", "getObjectContext", "tasks", "invocationSchemaVersion", "s3", "x"]
        ),
        inner,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip


@given(json_values)
def test_any_json_is_read_without_raising(payload: Any) -> None:
    for unit in read_invocation(payload).units:
        if isinstance(unit, Unapplied):
            json.dumps(dict(unit.fields))  # every field can be logged


@given(json_values)
def test_any_json_in_an_sqs_body_is_read_without_raising(payload: Any) -> None:
    read_invocation(in_sqs(payload))


@pytest.mark.parametrize("envelope", ["SQS message", "SNS notification"])
def test_a_repair_request_in_an_envelope_is_named_and_not_run(envelope: str) -> None:
    request = load_event("repair")
    if envelope == "SQS message":
        payload = in_sqs(request)
    else:
        payload = load_event("s3_sns_put")
        payload["Records"][0]["Sns"]["Message"] = json.dumps(request)
    unit = only(payload)
    assert isinstance(unit, Unapplied)
    assert unit.shape == "imgcli repair request"
    assert unit.fields["envelope"] == envelope
    assert unit.fields["request"] == "repair"
