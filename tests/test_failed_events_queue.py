"""``imgcli.failed_events`` on an SQS queue of moto's (in process), with a recording double
of the save function: listing leaves the queue as it was, replay deletes only what
succeeded and waits for messages another reader holds, purge deletes what it counted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from imgcli.failed_events import (
    FailedEventsQueue,
    FunctionFailed,
    QueueWalk,
    count_messages,
    list_failed_events,
    purge_messages,
    replay_failed_events,
    replay_summary,
)
from tests.eventdata import load_event, s3_event

SAVE = "imgcli-test-save-delete"


@dataclass
class SaveDouble:
    """The save function: fails for the keys in ``failing``, records every payload."""

    name: str = SAVE
    failing: set[str] = field(default_factory=set)
    payloads: list[Any] = field(default_factory=list)
    raises: Exception | None = None

    def timeout_s(self) -> int:
        return 60

    def invoke(self, payload: Any) -> FunctionFailed | None:
        if self.raises is not None:
            raise self.raises
        self.payloads.append(payload)
        key = payload["Records"][0]["s3"]["object"]["key"]
        if key in self.failing:
            return FunctionFailed("RecordsFailed", f"{key}: AccessDeniedException")
        return None


@dataclass
class FakeTime:
    """A clock that moves only when the walk sleeps."""

    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def sqs(moto_aws: None) -> Any:
    return boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs: Any) -> FailedEventsQueue:
    url = sqs.create_queue(QueueName="imgcli-test-failed-events")["QueueUrl"]
    return FailedEventsQueue(sqs, url, receive_wait_s=0)


def failed_event(key: str, function: str = SAVE) -> str:
    record = load_event("destination_retries_exhausted")
    record["requestPayload"] = s3_event("s3_put", bucket="b", key=key, sequencer="01")
    record["requestContext"]["functionArn"] = (
        f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST"
    )
    return json.dumps(record)


def send(queue: FailedEventsQueue, body: str) -> str:
    return str(queue.sqs.send_message(QueueUrl=queue.url, MessageBody=body)["MessageId"])


def all_visible(queue: FailedEventsQueue, count: int) -> None:
    depth = queue.depth()
    assert (depth.visible, depth.in_flight) == (count, 0)


def walk(queue: FailedEventsQueue, time: FakeTime | None = None, **kwargs: Any) -> QueueWalk:
    time = time or FakeTime()
    return QueueWalk(queue, sleep=time.sleep, clock=time.clock, **kwargs)


def test_a_listing_shows_each_message_once_and_leaves_all_visible(
    queue: FailedEventsQueue,
) -> None:
    ids = [send(queue, failed_event(f"k{n}.png")) for n in range(25)]  # more than a page
    send_ids = set(ids)
    listed = list(list_failed_events(walk(queue)))
    assert sorted(event.message_id for event in listed) == sorted(send_ids)
    assert {event.record.keys for event in listed if event.record} == {
        (f"k{n}.png",) for n in range(25)
    }
    assert all(event.age_s(event.sent_at_ms or 0) == 0 for event in listed)
    all_visible(queue, 25)


def test_a_limited_or_abandoned_listing_leaves_all_visible(queue: FailedEventsQueue) -> None:
    for n in range(12):
        send(queue, failed_event(f"k{n}.png"))
    assert len(list(list_failed_events(walk(queue), limit=3))) == 3
    all_visible(queue, 12)
    events = list_failed_events(walk(queue))
    next(events)
    events.close()  # the reader stopped (a closed pipe, Ctrl-C)
    all_visible(queue, 12)


def test_a_listing_counts_what_another_reader_holds(queue: FailedEventsQueue) -> None:
    for n in range(3):
        send(queue, failed_event(f"k{n}.png"))
    queue.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    listing = walk(queue)
    assert len(list(list_failed_events(listing))) == 2
    assert listing.held_elsewhere == 1


def test_a_message_that_is_no_record_is_listed_with_why(queue: FailedEventsQueue) -> None:
    send(queue, "hello")
    (event,) = list_failed_events(walk(queue))
    assert event.record is None
    assert event.as_json(0)["error_message"] == "not a failed event: the body is not JSON " + (
        "(Expecting value: line 1 column 1 (char 0))"
    )


def test_replay_deletes_what_succeeded_and_keeps_what_failed_again(
    queue: FailedEventsQueue,
) -> None:
    good = send(queue, failed_event("good.png"))
    bad = send(queue, failed_event("bad.png"))
    foreign = send(queue, failed_event("other.png", function="someone-elses"))
    junk = send(queue, "{}")
    save = SaveDouble(failing={"bad.png"})
    replay = walk(queue, wait_for_others=True)
    outcomes = {o.message_id: o for o in replay_failed_events(replay, save)}
    assert {i: o.status for i, o in outcomes.items()} == {
        good: "replayed",
        bad: "failed",
        foreign: "unreadable",
        junk: "unreadable",
    }
    assert outcomes[bad].error_message == "bad.png: AccessDeniedException"
    assert outcomes[bad].keys == ("bad.png",)
    assert [p["Records"][0]["s3"]["object"]["key"] for p in save.payloads] == [
        "good.png",
        "bad.png",
    ]  # each invoked once, with the original event; the foreign one never
    assert replay_summary(outcomes.values(), replay.held_elsewhere) == {
        "total": 4,
        "replayed": 1,
        "failed": 1,
        "unreadable": 2,
        "missing": 0,
        "held_elsewhere": 0,
    }
    all_visible(queue, 3)
    assert {e.message_id for e in list_failed_events(walk(queue))} == {bad, foreign, junk}


def test_replay_by_id_touches_only_those_and_reports_unknown_ids(
    queue: FailedEventsQueue,
) -> None:
    ids = [send(queue, failed_event(f"k{n}.png")) for n in range(15)]
    save = SaveDouble()
    wanted = [ids[3], ids[12], "no-such-id"]
    outcomes = list(replay_failed_events(walk(queue, wait_for_others=True), save, wanted))
    assert {(o.message_id, o.status) for o in outcomes} == {
        (ids[3], "replayed"),
        (ids[12], "replayed"),
        ("no-such-id", "missing"),
    }
    assert len(save.payloads) == 2
    all_visible(queue, 13)


def test_replay_waits_for_messages_a_listing_holds(queue: FailedEventsQueue) -> None:
    first = send(queue, failed_event("first.png"))
    held = send(queue, failed_event("held.png"))
    # A concurrent `events list` has the second message hidden for its read.
    received = queue.sqs.receive_message(
        QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=30
    )["Messages"]
    handle = next(m["ReceiptHandle"] for m in received if m["MessageId"] == held)
    queue.sqs.change_message_visibility(
        QueueUrl=queue.url,
        ReceiptHandle=next(m["ReceiptHandle"] for m in received if m["MessageId"] == first),
        VisibilityTimeout=0,
    )
    waited: list[int] = []

    def listing_ends(others: int) -> None:
        waited.append(others)
        queue.sqs.change_message_visibility(
            QueueUrl=queue.url, ReceiptHandle=handle, VisibilityTimeout=0
        )

    replay = walk(queue, wait_for_others=True, on_waiting=listing_ends)
    outcomes = list(replay_failed_events(replay, SaveDouble()))
    assert sorted(o.message_id for o in outcomes if o.status == "replayed") == sorted([first, held])
    assert waited == [1]
    assert replay.held_elsewhere == 0
    all_visible(queue, 0)


def test_replay_gives_up_on_a_message_held_elsewhere_and_says_so(
    queue: FailedEventsQueue,
) -> None:
    send(queue, failed_event("a.png"))
    send(queue, failed_event("b.png"))
    queue.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    time = FakeTime()
    replay = walk(queue, time, wait_for_others=True, others_wait_s=5, poll_s=1)
    outcomes = list(replay_failed_events(replay, SaveDouble()))
    assert [o.status for o in outcomes] == ["replayed"]
    assert replay.held_elsewhere == 1
    assert time.now == 5  # bounded: it waited, then stopped
    assert replay_summary(outcomes, replay.held_elsewhere)["held_elsewhere"] == 1


def test_a_replay_that_breaks_leaves_every_message_visible(queue: FailedEventsQueue) -> None:
    for n in range(3):
        send(queue, failed_event(f"k{n}.png"))
    save = SaveDouble(raises=RuntimeError("the endpoint went away"))
    with pytest.raises(RuntimeError):
        list(replay_failed_events(walk(queue, wait_for_others=True), save))
    all_visible(queue, 3)


def test_purge_deletes_exactly_what_it_counted(queue: FailedEventsQueue) -> None:
    for n in range(12):
        send(queue, failed_event(f"k{n}.png"))
    ids = count_messages(walk(queue, wait_for_others=True))
    assert len(ids) == 12
    all_visible(queue, 12)
    arrived = send(queue, failed_event("late.png"))  # while the person was asked
    assert purge_messages(walk(queue, wait_for_others=True), ids) == 12
    all_visible(queue, 1)
    assert [e.message_id for e in list_failed_events(walk(queue))] == [arrived]
