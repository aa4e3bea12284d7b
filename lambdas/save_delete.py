"""The save/delete function: keeps the index table in step with the bucket.

S3 invokes it (asynchronously) for every ``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*``
event. S3 delivers at least once and in any order, so every step is written to be safe
when repeated or reordered:

* Each record's ``sequencer`` orders events on its key. Every write is a conditional
  ``PutItem`` that succeeds only if the stored sequencer is older; a duplicate or stale
  event fails the condition and is logged as a no-op. That condition is the only ordering
  check an event needs, so a create costs two calls: the pinned read and the write. The
  table is read first (a consistent ``GetItem`` of the stored sequencer) only where that
  saves work a stale event could not otherwise skip cheaply: before the ``HeadObject`` of
  a version removal. A stale create is not checked first: in an unversioned bucket its
  pinned read fails at once (the object was deleted or replaced since); in a versioned
  one (every stack's bucket) the old version is still there to read, so a duplicate or
  late create reads and describes it before its write is refused. That costs a rare
  event one read; checking first would cost every new image a call.
* A created object is read back pinned to the event's version (``VersionId``) or, in an
  unversioned bucket, to its ETag (``If-Match``): if it was deleted (404) or replaced (412)
  since, a later event describes what is there now, so this one is a logged no-op. The
  outcome then says which: ``stale`` if the table already holds a newer event (one
  ``GetItem``, on this rare path only), else ``gone`` or ``replaced``.
* The image is read through a ``RangedReader``. An object small enough to be decoded in
  full (``image_metadata.FULL_DECODE_BYTES``) is fetched with one GET; for a bigger one the
  first request asks for the head only, and Pillow pulls further ranges only when it
  needs them (see ``image_metadata``). A read that fails (timeout, 5xx) never marks the
  image invalid: it fails the record for Lambda to retry, unless the table already holds
  a newer event, which makes this one stale whatever its object holds.
* A bad image (not an accepted format, corrupt, truncated, a decompression bomb) is stored
  with ``status="invalid"`` and a reason, and the event succeeds: retrying cannot fix it.
* A removal writes a tombstone (``status="deleted"``, an ``expires_at`` TTL) rather than
  deleting the item, so a create event that arrives late cannot resurrect the image. One
  exception: ``ObjectRemoved:Delete`` with a ``versionId`` permanently removed one version
  of a versioned key, which may leave the key with a current object (a noncurrent version
  deleted, or a delete marker removed to recover an image). A ``HeadObject`` tells; if an
  object is current, it is indexed under this event's sequencer instead.
* Unexpected failures (throttling past botocore's retries, a malformed record) do not stop
  the other records; the invocation fails at the end so Lambda's bounded async retries and
  the on-failure destination see it. Retrying is safe because every write is conditional.

The function only reads S3 (``GetObject``, ``HeadObject``): it never writes there, so it
cannot trigger itself. Its role needs ``s3:GetObject`` and ``s3:GetObjectVersion`` on the
bucket's objects and ``s3:ListBucket`` on the bucket: without ``ListBucket`` S3 answers a
missing key with 403 instead of 404, and a vanished object would look like a permission
failure. Clients are created once per warm runtime, on first use.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any, Final, cast

from botocore.exceptions import BotoCoreError, ClientError

from . import sequencer as sequencers
from .image_metadata import FULL_DECODE_BYTES, InvalidImage, describe_image
from .logs import JsonLogger
from .ranged_reader import DEFAULT_MIN_FETCH, FetchFailed, RangedReader
from .records import (
    KEY_ATTRIBUTE,
    SEQUENCER_ATTRIBUTE,
    ImageRecord,
    to_item,
)
from .s3_events import MalformedRecord, ObjectEvent, object_events

#: How long a tombstone outlives its delete: far longer than S3's delivery delays and the
#: function's maximum event age, so no late create can outlive it.
DEFAULT_TOMBSTONE_DAYS: Final = 7
HEAD_BYTES: Final = DEFAULT_MIN_FETCH

_GONE_CODES: Final = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_REPLACED_CODES: Final = frozenset({"PreconditionFailed", "412"})

logger = JsonLogger("save_delete")


class RecordsFailed(Exception):
    """Some records of the event could not be processed; Lambda should retry the event."""


@dataclass
class Indexer:
    """Applies S3 object events to the index table. Collaborators are injected."""

    s3: Any
    dynamodb: Any
    table_name: str
    tombstone_days: int = DEFAULT_TOMBSTONE_DAYS
    full_decode_bytes: int = FULL_DECODE_BYTES
    clock: Callable[[], float] = time.time
    log: JsonLogger = logger

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
        except (ClientError, BotoCoreError, FetchFailed) as exc:
            # Whatever failed, an event the table has moved past is stale: retrying it could
            # only be refused again (a duplicate, or a late create in a versioned bucket).
            if not self._is_newer(event):
                return "stale"
            code = _error_code(exc)
            if code in _GONE_CODES:
                return "gone"
            if code in _REPLACED_CODES:
                return "replaced"
            raise
        return record.status if self._write(record) else "stale"

    def _remove(self, event: ObjectEvent) -> str:
        if event.version_id and not event.is_delete_marker:
            if not self._is_newer(event):
                return "stale"  # skips the HeadObject
            current = self._current_object(event)
            if current is not None:
                return self._index(current)
        now = self.clock()
        tombstone = ImageRecord(
            key=event.key,
            status="deleted",
            sequencer=sequencers.normalise(event.sequencer),
            version_id=event.version_id,
            deleted_at=event.event_time,
            indexed_at=_iso(now),
            expires_at=int(now) + self.tombstone_days * 86400,
        )
        return "deleted" if self._write(tombstone) else "stale"

    def _current_object(self, event: ObjectEvent) -> ObjectEvent | None:
        """The key's current object as a created event under ``event``'s sequencer, if any."""
        try:
            head = self.s3.head_object(Bucket=event.bucket, Key=event.key)
        except ClientError as exc:
            if _error_code(exc) in _GONE_CODES:
                return None
            raise
        if head.get("DeleteMarker"):
            return None
        modified = head.get("LastModified")
        return replace(
            event,
            event_name="ObjectCreated:Restored",
            event_time=_iso(modified.timestamp()) if modified else event.event_time,
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")).strip('"') or None,
            version_id=head.get("VersionId") or None,
        )

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

    def _describe(self, event: ObjectEvent) -> ImageRecord:
        """Read the object's head (and more only if needed) and describe it."""
        started = time.perf_counter()
        pin: dict[str, str] = {"Bucket": event.bucket, "Key": event.key}
        if event.version_id:
            pin["VersionId"] = event.version_id
        elif event.etag:
            pin["IfMatch"] = f'"{event.etag.strip(chr(34))}"'
        base = ImageRecord(
            key=event.key,
            status="invalid",
            sequencer=sequencers.normalise(event.sequencer),
            size=event.size,
            etag=event.etag,
            version_id=event.version_id,
            uploaded_at=event.event_time,
            indexed_at=_iso(self.clock()),
        )
        if event.size == 0:
            return replace(base, reason="empty file")

        def fetch(start: int, end: int) -> bytes:
            body: bytes = self.s3.get_object(**pin, Range=f"bytes={start}-{end}")["Body"].read()
            return body

        small = event.size is not None and event.size <= self.full_decode_bytes
        first_bytes = event.size if small and event.size else HEAD_BYTES
        first = self.s3.get_object(**pin, Range=f"bytes=0-{first_bytes - 1}")
        head = first["Body"].read()
        size = _total_size(first, fallback=len(head))
        base = replace(base, size=size, content_type=first.get("ContentType"))
        reader = RangedReader(fetch, size, initial=head)
        try:
            # RawIOBase is a binary file in all but typeshed's class hierarchy.
            details = describe_image(
                cast(IO[bytes], reader), size, full_decode_bytes=self.full_decode_bytes
            )
        except InvalidImage as exc:
            record = replace(base, reason=exc.reason)
        else:
            record = replace(
                base,
                status="active",
                content_type=details.content_type,
                format=details.format,
                width=details.width,
                height=details.height,
                mode=details.mode,
                frames=details.frames,
                taken_at=details.taken_at,
                camera_make=details.camera_make,
                camera_model=details.camera_model,
                orientation=details.orientation,
            )
        self.log.info(
            "described object",
            key=event.key,
            status=record.status,
            reason=record.reason,
            size=size,
            bytes_read=reader.bytes_fetched,
            requests=reader.fetches + 1,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return record

    def _write(self, record: ImageRecord) -> bool:
        """Store ``record`` unless a newer event already did; False means stale."""
        try:
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(#key) OR #seq < :seq",
                ExpressionAttributeNames={"#key": KEY_ATTRIBUTE, "#seq": SEQUENCER_ATTRIBUTE},
                ExpressionAttributeValues={":seq": {"S": record.sequencer}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                self.log.info(
                    "stale or duplicate event", key=record.key, sequencer=record.sequencer
                )
                return False
            raise
        return True


def process_event(event: Mapping[str, Any], indexer: Indexer) -> dict[str, int]:
    """Apply every record of an S3 event; raise ``RecordsFailed`` after the rest if any failed."""
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    for item in object_events(event):
        if isinstance(item, MalformedRecord):
            indexer.log.error("malformed record", error=str(item))
            failures.append(str(item))
            continue
        try:
            outcome = indexer.apply(item)
        except (ClientError, BotoCoreError, FetchFailed, sequencers.InvalidSequencer) as exc:
            indexer.log.error("record failed", key=item.key, error=str(exc))
            failures.append(f"{item.key}: {exc}")
            continue
        outcomes[outcome] += 1
        indexer.log.info("record done", key=item.key, event_name=item.event_name, outcome=outcome)
    if failures:
        raise RecordsFailed(f"{len(failures)} record(s) failed: " + "; ".join(failures[:5]))
    return dict(outcomes)


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


def handler(event: Mapping[str, Any], context: Any) -> dict[str, int]:
    logger.request_id = getattr(context, "aws_request_id", None)
    indexer = Indexer(
        s3=_client("s3"),
        dynamodb=_client("dynamodb"),
        table_name=os.environ["TABLE_NAME"],
        tombstone_days=int(os.environ.get("TOMBSTONE_DAYS", DEFAULT_TOMBSTONE_DAYS)),
    )
    return process_event(event, indexer)


def _error_code(exc: Exception) -> str:
    """The AWS error code of ``exc``, or of the ``ClientError`` a failed ranged read wraps."""
    cause = exc.__cause__ if isinstance(exc, FetchFailed) else exc
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _total_size(response: Mapping[str, Any], fallback: int) -> int:
    """The object's full size from a ranged GET's ``Content-Range: bytes a-b/total``."""
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else fallback
