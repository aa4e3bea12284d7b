"""What the save function was invoked with: S3 records to apply, or a shape to name and let go.

The stack sends S3's events to the function directly, but the function meets more than
that: S3 events wrapped in SQS messages (S3 -> SQS -> Lambda, a common way to buffer them)
or in SNS notifications, S3 events delivered by EventBridge, S3 Object Lambda requests,
S3 Batch Operations jobs, and whatever a direct ``lambda invoke`` carries. Each used to
return ``{}`` without a word, or fail with ``KeyError`` and be retried into the failed
queue. Here every payload is read into a flat list of *units*:

* ``S3Record``: one record of an S3 event notification, to apply, with the envelope it
  came in (for the log lines and the failure message).
* ``Unapplied``: anything else, named (``shape``) with the fields a reader needs, for the
  function to log as one JSON line and acknowledge. Retrying cannot change what a payload
  is, so reading never fails an invocation; only applying a record can, as before.

Decisions:

* A record is S3's when its ``eventSource`` says ``aws:s3``, or says nothing (today's
  path: a broken S3 record still fails loudly rather than being waved through).
  ``aws:sqs`` and ``aws:sns`` records are unwrapped: an SQS message's body, an SNS
  notification's ``Message``, each read again as a payload, at most ``MAX_DEPTH`` levels
  deep (SNS inside SQS is the deepest real nesting), so a crafted payload cannot recurse
  without bound. A body that is not JSON, or JSON in no known shape, is a malformed SQS
  message, logged with its message id.
* EventBridge's S3 events are recognised but not applied: the stack does not route them
  to the function, and an event the stack did not ask for is not a reason to write.
* A repair request (an ``imgcli`` field, see ``repair``) is run only when it is the whole
  payload of a direct invocation (``save_delete`` dispatches it before reading units):
  inside an SQS message or an SNS notification it is named and not run, since its answer
  would reach no one.
* An Object Lambda request gets no ``WriteGetObjectResponse`` and a Batch Operations job
  no task results: S3 reports both as failed, which is true; the log line says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .s3_events import is_test_event

#: How many envelopes deep a payload is read: SQS -> SNS -> S3 is the deepest real nesting.
MAX_DEPTH: Final = 3
#: Top-level keys an unrecognised payload is logged with, at most; each shortened.
LOGGED_KEYS: Final = 20
SHORT: Final = 100

DIRECT: Final = "S3 event"
SQS: Final = "SQS message"


@dataclass(frozen=True)
class S3Record:
    """One record of an S3 event notification, as the invocation carried it."""

    record: Any
    index: int
    envelope: str = DIRECT
    message_id: str | None = None

    def where(self) -> str:
        """The record's place, for messages: ``record 0`` or ``SQS message <id>, record 0``."""
        if self.message_id is None:
            return f"record {self.index}"
        return f"{self.envelope} {self.message_id}, record {self.index}"


@dataclass(frozen=True)
class Unapplied:
    """A payload (or part of one) the function names in its log and acknowledges."""

    shape: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    level: Literal["info", "warning"] = "warning"


Unit = S3Record | Unapplied


@dataclass(frozen=True)
class Invocation:
    """Everything one invocation carried, in order; ``message_ids`` for an SQS batch."""

    units: tuple[Unit, ...]
    message_ids: tuple[str, ...] = ()

    @property
    def is_sqs_batch(self) -> bool:
        return bool(self.message_ids)


def read_invocation(payload: Any) -> Invocation:
    """The units of ``payload``, whatever its shape; never raises."""
    units = tuple(_read(payload, DIRECT, None, 0))
    message_ids: tuple[str, ...] = ()
    records = payload.get("Records") if isinstance(payload, Mapping) else None
    if isinstance(records, list):
        message_ids = tuple(
            str(record.get("messageId"))
            for record in records
            if isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs"
        )
    return Invocation(units, message_ids)


def _read(payload: Any, envelope: str, message_id: str | None, depth: int) -> Iterator[Unit]:
    context = {"envelope": envelope, "message_id": message_id} if message_id else {}
    if depth > MAX_DEPTH:
        yield _unrecognised(payload, f"nested more than {MAX_DEPTH} envelopes deep", context)
        return
    if not isinstance(payload, Mapping):
        yield _unrecognised(payload, f"a JSON {_json_type(payload)}, not an object", context)
        return
    if is_test_event(payload):
        yield Unapplied(
            "s3:TestEvent",
            "S3 test event (sent when a notification is configured): nothing to index",
            {**context, "bucket": _short(payload.get("Bucket"))},
            level="info",
        )
        return
    if "imgcli" in payload:
        yield Unapplied(
            "imgcli repair request",
            "repair request not run: repairs are invoked directly and synchronously, "
            "not through an envelope",
            {**context, "request": _short(payload.get("imgcli"))},
        )
        return
    records = payload.get("Records")
    if isinstance(records, list):
        for index, record in enumerate(records):
            yield from _record(record, index, envelope, message_id, depth)
        return
    if "detail-type" in payload and "source" in payload:
        yield _eventbridge(payload, context)
        return
    if "getObjectContext" in payload:
        configuration = payload.get("configuration")
        access_point = (
            configuration.get("accessPointArn") if isinstance(configuration, Mapping) else None
        )
        yield Unapplied(
            "S3 Object Lambda request",
            "S3 Object Lambda request not served: this function indexes images, it does "
            "not answer GetObject requests (S3 reports the request as failed)",
            {
                **context,
                "access_point": _short(access_point),
                "request_id": _short(payload.get("xAmzRequestId")),
            },
        )
        return
    if "invocationSchemaVersion" in payload and "tasks" in payload:
        tasks = payload.get("tasks")
        job = payload.get("job")
        yield Unapplied(
            "S3 Batch Operations job",
            "S3 Batch Operations job not run: this function indexes images from S3's own "
            "events and returns no task results (S3 reports the tasks as failed)",
            {
                **context,
                "job_id": _short(job.get("id") if isinstance(job, Mapping) else None),
                "tasks": len(tasks) if isinstance(tasks, list) else None,
            },
        )
        return
    if payload.get("Type") == "Notification" and isinstance(payload.get("Message"), str):
        inner_id = message_id or _short(payload.get("MessageId")) or "(no id)"
        inner = "SNS notification" if envelope == DIRECT else f"SNS notification in an {envelope}"
        yield from _decoded(payload["Message"], inner, inner_id, depth + 1)
        return
    yield _unrecognised(
        payload, "no S3, SQS, SNS, EventBridge, Object Lambda or Batch Operations fields", context
    )


def _record(
    record: Any, index: int, envelope: str, message_id: str | None, depth: int
) -> Iterator[Unit]:
    source = None
    if isinstance(record, Mapping):
        source = record.get("eventSource") or record.get("EventSource")
    if source == "aws:sqs":
        msg_id = _short(record.get("messageId")) or f"(no id, record {index})"
        yield from _decoded(record.get("body"), SQS, msg_id, depth + 1)
    elif source == "aws:sns":
        sns = record.get("Sns")
        yield from _read(sns, envelope, message_id, depth + 1)
    elif source in (None, "aws:s3"):
        yield S3Record(record, index, envelope, message_id)
    else:
        context = {"envelope": envelope, "message_id": message_id} if message_id else {}
        yield Unapplied(
            "record from another source",
            f"a record from {_short(source)} is not an S3 event: not applied",
            {**context, "event_source": _short(source), "index": index},
        )


def _decoded(body: Any, envelope: str, message_id: str, depth: int) -> Iterator[Unit]:
    """The units of an envelope's JSON text; a body that is none is one malformed message."""
    if not isinstance(body, str):
        yield _malformed(envelope, message_id, f"its body is a JSON {_json_type(body)}, not text")
        return
    try:
        payload = json.loads(body)
    except ValueError as exc:
        yield _malformed(envelope, message_id, f"its body is not JSON ({exc})")
        return
    except RecursionError:
        # json nests by recursion: '[' x 200,000 would otherwise fail every retry.
        yield _malformed(envelope, message_id, "its body is JSON nested too deep to read")
        return
    for unit in _read(payload, envelope, message_id, depth):
        if isinstance(unit, Unapplied) and unit.shape == "unrecognised event":
            yield _malformed(envelope, message_id, f"its body is {unit.fields.get('problem')}")
        else:
            yield unit


def _malformed(envelope: str, message_id: str, problem: str) -> Unapplied:
    kind = "SQS message" if envelope.endswith(SQS) else envelope
    return Unapplied(
        f"malformed {kind}",
        f"malformed {envelope} {message_id}: {problem}; acknowledged, retrying cannot fix it",
        {"envelope": envelope, "message_id": message_id},
    )


def _eventbridge(payload: Mapping[str, Any], context: Mapping[str, Any]) -> Unapplied:
    detail = payload.get("detail")
    detail = detail if isinstance(detail, Mapping) else {}
    bucket = detail.get("bucket")
    obj = detail.get("object")
    fields = {
        **context,
        "detail_type": _short(payload.get("detail-type")),
        "source": _short(payload.get("source")),
        "bucket": _short(bucket.get("name") if isinstance(bucket, Mapping) else None),
        "key": obj.get("key") if isinstance(obj, Mapping) else None,
    }
    if payload.get("source") != "aws.s3":
        return Unapplied(
            "EventBridge event", "EventBridge event from another source: not applied", fields
        )
    return Unapplied(
        "EventBridge S3 event",
        "EventBridge S3 event not applied: the stack sends S3 events to this function "
        "directly and does not route EventBridge events to it",
        fields,
    )


def _unrecognised(payload: Any, problem: str, context: Mapping[str, Any]) -> Unapplied:
    keys = (
        sorted(_short(k) or "" for k in payload)[:LOGGED_KEYS]
        if isinstance(payload, Mapping)
        else None
    )
    return Unapplied(
        "unrecognised event",
        "unrecognised event: not an S3 event or any shape this function knows; not applied",
        {**context, "problem": problem, "keys": keys},
    )


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "number" if isinstance(value, int | float) else type(value).__name__


def _short(value: Any) -> str | None:
    """``value`` as text of at most ``SHORT`` characters, for a log field."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"
