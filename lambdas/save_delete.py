"""The save/delete function: keeps the index table in step with the bucket.

S3 invokes it (asynchronously) for every ``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*``
event of the stack's bucket. Whatever else it is invoked with (S3 events in SQS or SNS
envelopes, EventBridge, Object Lambda, Batch Operations, anything) is read by
``event_shapes``: envelopes are unwrapped, the rest is logged as one JSON line and
acknowledged.

**Its own bucket only.** The table is keyed by object key alone, so a record for another
bucket would overwrite or tombstone this stack's image of the same key. The function acts
only on records naming ``BUCKET_NAME`` (its environment, set by bootstrap); any other is
logged (bucket, key, event name) and acknowledged, never retried. A function whose
configuration predates the variable (a stack not bootstrapped since) fails every
invocation with a log line saying to run ``imgcli bootstrap``: its events are retried and
then kept in the failed-events queue, to replay once bootstrap has set it, rather than
indexed without knowing which records are foreign.

**Who may invoke it may write the index.** ``lambda:InvokeFunction`` on this function is
write access to the index: an event is not signed, so a forged one is believed as far as
S3 confirms it. Two checks against S3 make that as far as cheaply possible: a delete
writes its tombstone only if S3 has no current object for the key, and a create indexes
only the key's current object (below). A forged event with an inflated sequencer for a key
whose object *is* current is still applied, and then outranks every real event on that
key until a repair (below) lowers it. A cap on the sequencer's length would not help: 18
``F`` digits outrank every real sequencer as surely as 64.

**Repairs.** A payload with an ``imgcli`` field is not an S3 event but a repair request
(``{"imgcli": "repair", "version": 1, "bucket": ..., "keys": [...]}``), which ``repair``
reads and answers: each key's record is made to agree with S3's current object, under the
lowest sequencer, with writes conditional on the record being as the repair read it. Its
docstring gives the shape, the outcomes and why that ordering is safe.

S3 delivers at least once and in any order, so every step is written to be safe when
repeated or reordered:

* Each record's ``sequencer`` orders events on its key. Every write is a conditional
  ``PutItem`` that succeeds only if the stored sequencer is older; a duplicate or stale
  event fails the condition and is logged as a no-op. That condition is the only ordering
  check an event needs, so a create costs two calls besides its thumbnails' writes: the
  pinned read and the record's write. The table is read first (a consistent ``GetItem`` of
  the stored sequencer) only where that saves work a stale event could not otherwise skip
  cheaply: before the ``HeadObject`` of a version removal. A stale create is not checked
  first: if its object was deleted or replaced since, its first read fails at once
  (below); only a duplicate of a create whose object is still current reads and describes
  it (and writes its thumbnails, under the keys the stored record already names) before
  its write is refused. That costs a rare event one read; checking first would cost every
  new image a call. A delete costs two calls too, besides removing thumbnails: the
  ``HeadObject`` below and the write.
* A created object is read back (``current_object``) only if it is still the key's
  current object: the first read asks for the current object, pinned to the event's ETag
  (``If-Match``) in an unversioned bucket, and compared with the event's ``versionId``
  in a versioned one; later ranges pin that version. If the object was deleted (404) or
  replaced (412, or another version) since, a later event describes what is there now,
  so this one is a logged no-op. The outcome then says which: ``stale`` if the table
  already holds a newer event (one ``GetItem``, on this rare path only), else ``gone`` or
  ``replaced``. Reading an older version instead would let a late (or forged) create list
  an image that has since been deleted.
* The image is read through a ``RangedReader``. An object small enough to be decoded in
  full (``image_metadata.FULL_DECODE_BYTES``) is fetched with one GET; for a bigger one the
  first request asks for the head only, and Pillow pulls further ranges only when it
  needs them (see ``image_metadata``). A read that fails (timeout, 5xx) never marks the
  image invalid: it fails the record for Lambda to retry, unless the table already holds
  a newer event, which makes this one stale whatever its object holds.
* A bad image (not an accepted format, corrupt, truncated, a decompression bomb) is stored
  with ``status="invalid"`` and a reason, and the event succeeds: retrying cannot fix it.
* A removal writes a tombstone (``status="deleted"``, an ``expires_at`` TTL) rather than
  deleting the item, so a create event that arrives late cannot resurrect the image. It
  asks S3 first (``HeadObject``): if the key has a current object again, a later create
  describes it and the removal is the no-op ``recreated``. S3's reads are strongly
  consistent, so a real removal always finds the key empty unless it was written since;
  a forged one cannot hide a live image. One
  exception: ``ObjectRemoved:Delete`` with a ``versionId`` permanently removed one version
  of a versioned key, which may leave the key with a current object (a noncurrent version
  deleted, or a delete marker removed to recover an image). A ``HeadObject`` tells; if an
  object is current, it is indexed under this event's sequencer instead.
* Unexpected failures (throttling past botocore's retries, a malformed record) do not stop
  the other records; the invocation fails at the end so Lambda's bounded async retries and
  the on-failure destination see it. Retrying is safe because every write is conditional.
  That holds for S3 events in an SQS batch too: the whole batch is retried. With an SQS
  trigger whose mapping has ``ReportBatchItemFailures``, ``{"batchItemFailures": [...]}``
  naming the failed messages would retry only those; but returned to a mapping without
  that setting, or to an asynchronous invocation (this stack's path), it counts as success
  and the failed records are lost. So failures raise, naming the messages; a batch that
  succeeds answers ``"batchItemFailures": []`` beside its outcomes, as such a mapping
  expects.

**Thumbnails.** A valid image's thumbnails are made and written to the thumbnails bucket
(``THUMBNAILS_BUCKET``) before its record (``current_object``, ``thumbnail_store``), under
keys no other writer uses (the image, its version, a random name per writer), so no
writer ever removes or overwrites thumbnails another may name. The record write returns
the item it replaced (``ReturnValues="ALL_OLD"``, no extra read), and the thumbnails that
item pointed at are then removed; a tombstone removes its image's the same way. A write
refused by its condition returns the stored item
(``ReturnValuesOnConditionCheckFailure="ALL_OLD"``, no extra read either), and the
thumbnails this invocation wrote are removed unless that item names them (it is this
writer's own, from a retried write that had landed). Removal failures are logged, not
raised: an orphaned thumbnail is harmless. A failed thumbnail write fails the record
(retried: a 5xx is transient; what it wrote is removed first). A
function whose configuration lacks ``THUMBNAILS_BUCKET`` fails every invocation as one
without ``BUCKET_NAME`` does: it must not write records of this schema without
thumbnails.

The function reads the gallery bucket (``GetObject``, ``HeadObject``) and never writes
there; it writes only the thumbnails bucket (``PutObject``, ``DeleteObject``), which has
no event notification, so it cannot trigger itself. Its role needs ``s3:GetObject`` and
``s3:GetObjectVersion`` on the bucket's objects and ``s3:ListBucket`` on the bucket:
without ``ListBucket`` S3 answers a missing key with 403 instead of 404, and a vanished
object would look like a permission failure. Clients are created once per warm runtime,
on first use.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from . import sequencer as sequencers
from .current_object import (
    GONE_CODES,
    REPLACED_CODES,
    NotCurrent,
    describe_current,
    error_code,
    head_current,
    iso_time,
)
from .event_shapes import Invocation, S3Record, Unapplied, read_invocation
from .image_metadata import FULL_DECODE_BYTES
from .logs import JsonLogger
from .ranged_reader import FetchFailed
from .records import (
    KEY_ATTRIBUTE,
    SCHEMA_VERSION,
    SEQUENCER_ATTRIBUTE,
    ImageRecord,
    Item,
    to_item,
)
from .repair import Repairer, is_repair_request, read_repair_request
from .s3_events import MalformedRecord, ObjectEvent, read_record
from .thumbnail_store import MakeThumbnails, ThumbnailStore, refused_item
from .thumbnails import make_thumbnails

#: How long a tombstone outlives its delete: far longer than S3's delivery delays and the
#: function's maximum event age, so no late create can outlive it.
DEFAULT_TOMBSTONE_DAYS: Final = 7

logger = JsonLogger("save_delete")


class RecordsFailed(Exception):
    """Some records of the event could not be processed; Lambda should retry the event."""


class MissingConfiguration(RuntimeError):
    """The function's environment lacks a variable bootstrap sets; the event is retried."""


@dataclass
class Indexer:
    """Applies S3 object events of ``bucket`` to the index table. Collaborators are injected."""

    s3: Any
    dynamodb: Any
    table_name: str
    bucket: str
    thumbnails_bucket: str
    tombstone_days: int = DEFAULT_TOMBSTONE_DAYS
    full_decode_bytes: int = FULL_DECODE_BYTES
    clock: Callable[[], float] = time.time
    log: JsonLogger = logger
    make_thumbnails: MakeThumbnails = make_thumbnails

    @property
    def thumbnails(self) -> ThumbnailStore:
        """How this indexer's thumbnails are made, written and removed."""
        return ThumbnailStore(self.s3, self.thumbnails_bucket, self.log, self.make_thumbnails)

    def apply(self, event: ObjectEvent) -> str:
        """Apply one event; returns what happened (``indexed``, ``stale``, ``gone``...)."""
        if event.is_created:
            return self._index(event)
        if event.is_removed:
            return self._remove(event)
        self.log.warning("ignored event type", key=event.key, event_name=event.event_name)
        return "ignored"

    def _index(self, event: ObjectEvent) -> str:
        sequencers.normalise(event.sequencer)  # a malformed record fails before any call
        try:
            record = self._describe(event)
        except (ClientError, BotoCoreError, FetchFailed, NotCurrent) as exc:
            # Whatever failed, an event the table has moved past is stale: retrying it could
            # only be refused again (a duplicate, or a late create in a versioned bucket).
            if not self._is_newer(event):
                return "stale"
            if isinstance(exc, NotCurrent):
                return "replaced"
            code = error_code(exc)
            if code in GONE_CODES:
                return "gone"
            if code in REPLACED_CODES:
                return "replaced"
            raise
        return record.status if self._write(record) else "stale"

    def _remove(self, event: ObjectEvent) -> str:
        sequencers.normalise(event.sequencer)  # a malformed record fails before any call
        if event.version_id and not event.is_delete_marker:
            if not self._is_newer(event):
                return "stale"  # skips the HeadObject
            current = self._current_object(event)
            if current is not None:
                return self._index(current)
        elif self._current_object(event) is not None:
            return "recreated"
        now = self.clock()
        tombstone = ImageRecord(
            key=event.key,
            status="deleted",
            sequencer=sequencers.normalise(event.sequencer),
            version_id=event.version_id,
            deleted_at=event.event_time,
            indexed_at=iso_time(now),
            expires_at=int(now) + self.tombstone_days * 86400,
            schema_version=SCHEMA_VERSION,
        )
        return "deleted" if self._write(tombstone) else "stale"

    def _current_object(self, event: ObjectEvent) -> ObjectEvent | None:
        return head_current(self.s3, event)

    def _is_newer(self, event: ObjectEvent) -> bool:
        response = self.dynamodb.get_item(
            TableName=self.table_name,
            Key={KEY_ATTRIBUTE: {"S": event.key}},
            ConsistentRead=True,
            ProjectionExpression="#seq",
            ExpressionAttributeNames={"#seq": SEQUENCER_ATTRIBUTE},
        )
        stored = response.get("Item", {}).get(SEQUENCER_ATTRIBUTE, {}).get("S")
        if sequencers.is_later(event.sequencer, stored):
            return True
        self.log.info("stale or duplicate event", key=event.key, sequencer=event.sequencer)
        return False

    def _stored(self, key: str) -> Item | None:
        item: Item | None = self.dynamodb.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item

    def _describe(self, event: ObjectEvent) -> ImageRecord:
        return describe_current(
            self.s3,
            event,
            indexed_at=iso_time(self.clock()),
            full_decode_bytes=self.full_decode_bytes,
            log=self.log,
            thumbnails=self.thumbnails,
        )

    def _write(self, record: ImageRecord) -> bool:
        """Store ``record`` unless a newer event already did; False means stale. Either way,
        thumbnails no record points at any more are removed (see the module docstring)."""
        try:
            response = self.dynamodb.put_item(
                TableName=self.table_name,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(#key) OR #seq < :seq",
                ExpressionAttributeNames={"#key": KEY_ATTRIBUTE, "#seq": SEQUENCER_ATTRIBUTE},
                ExpressionAttributeValues={":seq": {"S": record.sequencer}},
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                self.log.info(
                    "stale or duplicate event", key=record.key, sequencer=record.sequencer
                )
                if record.thumbnails:
                    stored = refused_item(exc, lambda: self._stored(record.key))
                    self.thumbnails.remove_unused(record, stored)
                return False
            raise
        self.thumbnails.remove_replaced(record, response.get("Attributes"))
        return True


def process_event(
    event: Any, indexer: Indexer, remaining_ms: Callable[[], int] | None = None
) -> dict[str, Any]:
    """Apply every S3 record the invocation carries to ``indexer``'s bucket; log the rest.

    Returns the count of each outcome (plus ``batchItemFailures: []`` for an SQS batch);
    raises ``RecordsFailed`` after the other records if any record failed. A repair
    request is answered as ``repair`` describes (``remaining_ms``: the invocation's time).
    """
    if is_repair_request(event):
        return repairer(indexer).run(read_repair_request(event), remaining_ms)
    invocation = read_invocation(event)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    failed_messages: dict[str, None] = {}
    for unit in invocation.units:
        if isinstance(unit, Unapplied):
            log = indexer.log.info if unit.level == "info" else indexer.log.warning
            log(unit.message, shape=unit.shape, **unit.fields)
            outcomes["ignored"] += 1
            continue
        failure = _apply_record(unit, indexer, outcomes)
        if failure is not None:
            failures.append(failure)
            if unit.message_id is not None:
                failed_messages[unit.message_id] = None
    if failures:
        raise RecordsFailed(_failure_message(failures, invocation, list(failed_messages)))
    result: dict[str, Any] = dict(outcomes)
    if invocation.is_sqs_batch:
        result["batchItemFailures"] = []
    return result


def repairer(indexer: Indexer) -> Repairer:
    """The repairs of ``indexer``'s bucket, with its clients, table and settings."""
    return Repairer(
        s3=indexer.s3,
        dynamodb=indexer.dynamodb,
        table_name=indexer.table_name,
        bucket=indexer.bucket,
        thumbnails=indexer.thumbnails,
        tombstone_days=indexer.tombstone_days,
        full_decode_bytes=indexer.full_decode_bytes,
        clock=indexer.clock,
        log=indexer.log,
    )


def _apply_record(unit: S3Record, indexer: Indexer, outcomes: Counter[str]) -> str | None:
    """Apply one record, counting its outcome; what failed, if it did."""
    context = {"envelope": unit.envelope, "message_id": unit.message_id} if unit.message_id else {}
    item = read_record(unit.record, unit.index)
    if isinstance(item, MalformedRecord):
        indexer.log.error("malformed record", error=str(item), **context)
        return f"{unit.envelope} {unit.message_id}, {item}" if unit.message_id else str(item)
    fields = {"bucket": item.bucket, "key": item.key, "event_name": item.event_name, **context}
    if item.bucket != indexer.bucket:
        indexer.log.warning(
            "record for another bucket: not indexed", own_bucket=indexer.bucket, **fields
        )
        outcomes["other_bucket"] += 1
        return None
    if not (item.is_created or item.is_removed):
        indexer.log.warning("event type not indexed", **fields)
        outcomes["ignored"] += 1
        return None
    try:
        outcome = indexer.apply(item)
    except (ClientError, BotoCoreError, FetchFailed, sequencers.InvalidSequencer) as exc:
        indexer.log.error("record failed", error=str(exc), **fields)
        return f"{unit.where()}, {item.key}: {exc}" if unit.message_id else f"{item.key}: {exc}"
    outcomes[outcome] += 1
    indexer.log.info("record done", outcome=outcome, **fields)
    return None


def _failure_message(failures: list[str], invocation: Invocation, messages: list[str]) -> str:
    text = f"{len(failures)} record(s) failed: " + "; ".join(failures[:5])
    if invocation.is_sqs_batch:
        # Raised, not returned: see the module docstring.
        shape = json.dumps({"batchItemFailures": [{"itemIdentifier": m} for m in messages]})
        text += f" (failing the whole SQS batch; with ReportBatchItemFailures: {shape})"
    return text


_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    if service not in _clients:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=30,
        )
        _clients[service] = boto3.client(service, config=config)
    return _clients[service]


def _configured(name: str, feature: str) -> str:
    """The environment variable ``name``; a function deployed before ``feature`` lacks it."""
    value = os.environ.get(name)
    if not value:
        logger.error(
            f"{name} is not set: this function's configuration predates {feature};"
            " run imgcli bootstrap to update it, then replay the failed events",
            table=os.environ.get("TABLE_NAME"),
        )
        raise MissingConfiguration(f"{name} is not set: run imgcli bootstrap")
    return value


def handler(event: Any, context: Any) -> dict[str, Any]:
    logger.request_id = getattr(context, "aws_request_id", None)
    bucket = _configured("BUCKET_NAME", "its bucket check")
    thumbnails_bucket = _configured("THUMBNAILS_BUCKET", "thumbnails")
    indexer = Indexer(
        s3=_client("s3"),
        dynamodb=_client("dynamodb"),
        table_name=os.environ["TABLE_NAME"],
        bucket=bucket,
        thumbnails_bucket=thumbnails_bucket,
        tombstone_days=int(os.environ.get("TOMBSTONE_DAYS", DEFAULT_TOMBSTONE_DAYS)),
    )
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return process_event(event, indexer, remaining)
