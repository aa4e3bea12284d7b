"""The stack's failed-events queue: read it, replay its events, empty it.

Events the save function could not apply past its retries land, as Lambda's invocation
records (``imgcli.failed_event_records``), in the stack's on-failure SQS queue
(``failed_events_queue`` in the stack's record). This module serves ``imgcli events
list|replay|purge`` on any SQS queue, on AWS as on the local cloud.

Decisions:

* **Reading without consuming.** SQS has no "peek": a receive hides a message for its
  visibility timeout. A listing receives with a short timeout (``READ_HOLD_S``), and makes
  every message it received visible again (``ChangeMessageVisibility 0``) as soon as it
  ends, on failure too; a listing that dies mid-way hides nothing for longer than
  ``READ_HOLD_S``. Messages are told apart by id: one received twice in a pass (its hold
  ran out while the pass went on) is shown once. Each receive does count towards a
  message's ``ApproximateReceiveCount``, which matters only with a redrive policy, and the
  stack's queue has none.
* **A listing does not hide messages from a concurrent replay (or purge).** When a replay's
  pass finds the queue empty, it asks how many messages are in flight, subtracts the ones
  it holds itself (held again first, so the count is exact), and if other readers hold
  some it waits for them to come back, up to ``OTHERS_WAIT_S`` (longer than a listing's
  hold), polling every ``POLL_S``. Messages still held elsewhere after that (another
  replay invoking them) are counted in the summary (``held_elsewhere``) and make the exit
  code 1: run the replay again. SQS's counts are approximate on AWS, so this is a best
  effort there; on the local cloud they are exact.
* **Replay.** Each message is held for the function's timeout plus ``INVOKE_MARGIN_S``
  before its invocation (so no other reader takes it meanwhile), the save function is
  invoked synchronously (``RequestResponse``) with the record's ``requestPayload``, and the
  message is deleted only once the invocation answered without ``FunctionError``. A message
  that fails again, or is not a record of the stack's save function, stays, hidden until
  the replay ends so one pass tries each message once, then visible again. The save
  function's writes are conditional on S3's sequencer, so replaying an event that a newer
  one has overtaken changes nothing: a replay is always safe.
* **Purge deletes what it counted.** ``count`` reads the queue and returns its message ids;
  ``purge`` deletes exactly those, so a failure that arrives while the person is asked is
  not deleted unseen (SQS's ``PurgeQueue`` would take it too, and runs once a minute).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from imgcli.failed_event_records import (
    FailedInvocation,
    NotADestinationRecord,
    read_destination_record,
)

if TYPE_CHECKING:
    from imgcli.invocation import Invocation

#: How long a read (list, purge, a replay's look at the next messages) hides a message.
READ_HOLD_S: Final = 30
#: Added to the save function's timeout to hold a message while it is replayed.
INVOKE_MARGIN_S: Final = 30
#: How long a replay or purge waits for messages other readers hold to come back.
OTHERS_WAIT_S: Final = READ_HOLD_S + 5
POLL_S: Final = 1.0
#: Long polling on each receive: it asks every SQS server, so an empty answer means empty.
RECEIVE_WAIT_S: Final = 1
SQS_BATCH: Final = 10


@dataclass
class HeldMessage:
    """A message this run received, with the receipt handle of its latest receive."""

    message_id: str
    receipt_handle: str
    body: str
    sent_at_ms: int | None
    receive_count: int | None


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int


class FailedEventsQueue:
    """The SQS calls the commands make on one queue (``sqs`` is a boto3 SQS client)."""

    def __init__(self, sqs: Any, queue_url: str, *, receive_wait_s: int = RECEIVE_WAIT_S):
        self.sqs = sqs
        self.url = queue_url
        self.receive_wait_s = receive_wait_s

    def receive(self, max_messages: int, hold_s: int) -> list[HeldMessage]:
        answer = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            VisibilityTimeout=hold_s,
            WaitTimeSeconds=self.receive_wait_s,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        )
        return [_held(message) for message in answer.get("Messages", [])]

    def hold(self, messages: Sequence[HeldMessage], seconds: int) -> set[str]:
        """Sets the messages' visibility timeout to ``seconds`` from now; returns the ids of
        those whose receipt handle no longer holds them (visible again, or another reader's)."""
        lost: set[str] = set()
        for start in range(0, len(messages), SQS_BATCH):
            batch = messages[start : start + SQS_BATCH]
            answer = self.sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                    for n, m in enumerate(batch)
                ],
            )
            lost.update(batch[int(failed["Id"])].message_id for failed in answer.get("Failed", []))
        return lost

    def release(self, messages: Sequence[HeldMessage]) -> None:
        """Makes the messages visible again at once (those still held by this run)."""
        self.hold(messages, 0)

    def delete(self, message: HeldMessage) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)

    def depth(self) -> QueueDepth:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return QueueDepth(
            int(attributes.get("ApproximateNumberOfMessages", 0)),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        )


def _held(message: dict[str, Any]) -> HeldMessage:
    attributes = message.get("Attributes") or {}
    sent = attributes.get("SentTimestamp")
    count = attributes.get("ApproximateReceiveCount")
    return HeldMessage(
        message_id=str(message["MessageId"]),
        receipt_handle=str(message["ReceiptHandle"]),
        body=str(message.get("Body") or ""),
        sent_at_ms=int(sent) if sent and str(sent).isdigit() else None,
        receive_count=int(count) if count and str(count).isdigit() else None,
    )


@dataclass
class QueueWalk:
    """One pass over a queue that meets each message once and leaves none hidden.

    ``messages()`` yields each message not met yet, held for ``hold_s``; a consumer that
    deletes one calls ``deleted``. With ``wait_for_others``, a pass that finds the queue
    empty waits (``OTHERS_WAIT_S`` at most) for messages other readers hold, and counts
    those that never came back in ``held_elsewhere``. ``close`` makes every message still
    held visible again; ``messages()`` calls it when it ends or is closed.
    """

    queue: FailedEventsQueue
    hold_s: int = READ_HOLD_S
    wait_for_others: bool = False
    others_wait_s: float = OTHERS_WAIT_S
    poll_s: float = POLL_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    on_waiting: Callable[[int], None] = lambda held: None
    held_elsewhere: int = 0
    seen: set[str] = field(default_factory=set)
    ours: dict[str, HeldMessage] = field(default_factory=dict)

    def messages(self) -> Generator[HeldMessage, None, None]:
        try:
            waiting_since: float | None = None
            while True:
                yield from self._pass()
                if not self.wait_for_others:
                    return
                others = self.others_holding()
                if others == 0:
                    self.held_elsewhere = 0
                    return
                now = self.clock()
                waiting_since = now if waiting_since is None else waiting_since
                if now - waiting_since >= self.others_wait_s:
                    self.held_elsewhere = others
                    return
                self.on_waiting(others)
                self.sleep(self.poll_s)
        finally:
            self.close()

    def _pass(self) -> Iterator[HeldMessage]:
        # Each receive hides what it returns, so receives move through the queue until an
        # empty answer. Messages met before come back once their hold ran out (a long pass):
        # after as many receives with nothing new as it takes to meet them all again, every
        # message there is has been met.
        idle = 0
        while idle <= len(self.seen) // SQS_BATCH + 1:
            batch = self.queue.receive(SQS_BATCH, self.hold_s)
            if not batch:
                return
            idle += 1
            for message in batch:  # all held now, whenever the consumer stops
                # The latest handle holds it; the body is not kept (up to 256 KiB each).
                self.ours[message.message_id] = replace(message, body="")
            for message in batch:
                if message.message_id not in self.seen:
                    self.seen.add(message.message_id)
                    idle = 0
                    yield message

    def keep(self, message: HeldMessage, seconds: int) -> bool:
        """Holds ``message`` for ``seconds`` more; False if this run no longer holds it (it
        is then forgotten, to be met again if it comes back)."""
        if self.queue.hold([message], seconds):
            self.ours.pop(message.message_id, None)
            self.seen.discard(message.message_id)
            return False
        return True

    def deleted(self, message: HeldMessage) -> None:
        self.ours.pop(message.message_id, None)

    def others_holding(self) -> int:
        """Messages in flight that this run does not hold (after holding its own again)."""
        mine = list(self.ours.values())
        for lost in self.queue.hold(mine, self.hold_s):
            self.ours.pop(lost, None)
        return max(self.queue.depth().in_flight - len(self.ours), 0)

    def close(self) -> None:
        held, self.ours = list(self.ours.values()), {}
        if held:
            self.queue.release(held)


# Listing


@dataclass(frozen=True)
class QueuedEvent:
    """One message of the queue, read: its invocation record, or why it is not one."""

    message_id: str
    sent_at_ms: int | None
    record: FailedInvocation | None
    problem: str | None = None

    @classmethod
    def read(cls, message: HeldMessage) -> QueuedEvent:
        try:
            return cls(
                message.message_id, message.sent_at_ms, read_destination_record(message.body)
            )
        except NotADestinationRecord as exc:
            return cls(message.message_id, message.sent_at_ms, None, f"not a failed event: {exc}")

    def age_s(self, now_ms: int) -> int | None:
        return None if self.sent_at_ms is None else max(now_ms - self.sent_at_ms, 0) // 1000

    def as_json(self, now_ms: int) -> dict[str, Any]:
        record = self.record
        return {
            "id": self.message_id,
            "keys": list(record.keys) if record else [],
            "event_time": record.event_time if record else None,
            "condition": record.condition if record else None,
            "error_type": record.error_type if record else None,
            "error_message": record.error_message if record else self.problem,
            "attempts": record.attempts if record else None,
            "sent_at": _iso_ms(self.sent_at_ms),
            "age_s": self.age_s(now_ms),
            "function": record.function_name if record else None,
            "request_id": record.request_id if record else None,
        }


def list_failed_events(
    walk: QueueWalk, limit: int | None = None
) -> Generator[QueuedEvent, None, None]:
    """Every message of the queue (``limit`` at most), read and left in the queue."""
    shown = 0
    messages = walk.messages()
    try:
        for message in messages:
            yield QueuedEvent.read(message)
            shown += 1
            if limit is not None and shown >= limit:
                return
        # Not hidden by this listing, and not shown: someone else is reading them.
        walk.held_elsewhere = walk.others_holding()
    finally:
        messages.close()


# Replay


@dataclass(frozen=True)
class FunctionFailed:
    """What an invocation that answered with ``FunctionError`` said."""

    error_type: str | None
    error_message: str | None


class SaveFunction(Protocol):
    """The stack's save function, as replay invokes it."""

    name: str

    def timeout_s(self) -> int: ...

    def invoke(self, payload: Any) -> FunctionFailed | None:
        """Invoke synchronously with ``payload``; None when it answered without error."""


class LambdaSaveFunction:
    """The save function through a boto3 Lambda client."""

    def __init__(self, lambda_client: Any, name: str) -> None:
        self.client = lambda_client
        self.name = name

    def timeout_s(self) -> int:
        configuration = self.client.get_function_configuration(FunctionName=self.name)
        return int(configuration.get("Timeout") or 3)

    def invoke(self, payload: Any) -> FunctionFailed | None:
        answer = self.client.invoke(
            FunctionName=self.name,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
        body = answer["Payload"].read()
        if not answer.get("FunctionError"):
            return None
        try:
            error = json.loads(body)
        except ValueError:
            error = body.decode("utf-8", errors="replace")
        if isinstance(error, dict):
            return FunctionFailed(_str(error.get("errorType")), _str(error.get("errorMessage")))
        return FunctionFailed(str(answer["FunctionError"]), str(error)[:500] or None)


@dataclass(frozen=True)
class ReplayOutcome:
    """What happened to one message: ``replayed`` (and deleted), ``failed`` (the function
    failed again; kept), ``unreadable`` (not a failed event of this function; kept) or
    ``missing`` (an id asked for that the queue does not hold)."""

    message_id: str
    status: str
    keys: tuple[str, ...] = ()
    error_type: str | None = None
    error_message: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "status": self.status,
            "keys": list(self.keys),
            "error_type": self.error_type,
            "error_message": self.error_message,
        }


REPLAY_STATUSES: Final = ("replayed", "failed", "unreadable", "missing")


def replay_failed_events(
    walk: QueueWalk, save: SaveFunction, wanted: Sequence[str] = ()
) -> Iterator[ReplayOutcome]:
    """Replays every message (or those whose ids are ``wanted``), one outcome each; ids
    asked for and not found end the run as ``missing``."""
    remaining = dict.fromkeys(wanted)
    invoke_hold_s = save.timeout_s() + INVOKE_MARGIN_S
    messages = walk.messages()
    try:
        for message in messages:
            if wanted:
                if message.message_id not in remaining:
                    continue  # not asked for: left as it is (released when the walk ends)
                del remaining[message.message_id]
            if not walk.keep(message, invoke_hold_s):
                if wanted:
                    remaining[message.message_id] = None
                continue  # taken by another reader meanwhile; met again if it comes back
            outcome = _replay_one(walk, save, message)
            yield outcome
            if wanted and not remaining:
                return
    finally:
        messages.close()
    for message_id in remaining:
        yield ReplayOutcome(message_id, "missing", error_message="no such message in the queue")


def _replay_one(walk: QueueWalk, save: SaveFunction, message: HeldMessage) -> ReplayOutcome:
    event = QueuedEvent.read(message)
    record = event.record
    if record is None:
        return ReplayOutcome(message.message_id, "unreadable", error_message=event.problem)
    if record.function_name and record.function_name != save.name:
        return ReplayOutcome(
            message.message_id,
            "unreadable",
            record.keys,
            error_message=f"a failed event of function {record.function_name}, "
            f"not of the stack's save function {save.name}",
        )
    failed = save.invoke(record.request_payload)
    if failed is not None:
        return ReplayOutcome(
            message.message_id, "failed", record.keys, failed.error_type, failed.error_message
        )
    walk.queue.delete(message)
    walk.deleted(message)
    return ReplayOutcome(message.message_id, "replayed", record.keys)


def replay_summary(outcomes: Iterable[ReplayOutcome], held_elsewhere: int) -> dict[str, int]:
    counts = dict.fromkeys(("total", *REPLAY_STATUSES, "held_elsewhere"), 0)
    for outcome in outcomes:
        counts["total"] += 1
        counts[outcome.status] += 1
    counts["held_elsewhere"] = held_elsewhere
    return counts


# Purge


def count_messages(walk: QueueWalk) -> list[str]:
    """The ids of every message the queue holds now (left in the queue)."""
    return [message.message_id for message in walk.messages()]


def purge_messages(walk: QueueWalk, ids: Iterable[str]) -> int:
    """Deletes the messages with these ids (others are left); how many were deleted."""
    remaining = set(ids)
    deleted = 0
    messages = walk.messages()
    try:
        for message in messages:
            if message.message_id not in remaining:
                continue
            walk.queue.delete(message)
            walk.deleted(message)
            remaining.discard(message.message_id)
            deleted += 1
            if not remaining:
                return deleted
    finally:
        messages.close()
    return deleted


# Wiring


def failed_events_queue_for(run: Invocation) -> FailedEventsQueue:
    """The selected stack's failed-events queue."""
    sqs = run.aws().client("sqs")
    name = run.settings.record("failed_events_queue")
    return FailedEventsQueue(sqs, sqs.get_queue_url(QueueName=name)["QueueUrl"])


def save_function_for(run: Invocation) -> LambdaSaveFunction:
    """The selected stack's save function."""
    return LambdaSaveFunction(run.aws().client("lambda"), run.settings.record("save_function"))


def now_ms() -> int:
    return int(time.time() * 1000)


def human_age(seconds: int | None) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``: the age of a message at a glance."""
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
