"""The save function's repair invocation: make keys' records agree with S3's current objects.

Events get lost (a function failing past its retries, a local cloud crashing, a
notification removed by hand) or forged. ``imgcli reconcile`` finds the keys whose record
and object disagree and asks the save function to repair them, so every write to the
index stays inside the function, as the seed has it. A repair is not an S3 event: it
carries no sequencer and no claim about the object; it reads S3's truth itself.

**The request**, invoked directly and synchronously (``RequestResponse``)::

    {"imgcli": "repair", "version": 1, "bucket": "<the stack's bucket>", "keys": ["a.jpg"]}

At most ``MAX_KEYS`` keys, each as S3 stores it (not form-encoded), a non-empty string of
at most 1,024 UTF-8 bytes; a key named twice is repaired once. The answer has one outcome
per distinct key::

    {"repaired": {"a.jpg": "indexed", "b/c.png": "removed", "d.gif": "failed: ..."}}

* ``indexed`` / ``invalid``: the key's current object was (re)described and written;
* ``removed``: a tombstone was written (no current object, but a live record);
* ``unchanged``: the record already matches S3 (a live record of the current object's
  version, or of its ETag in an unversioned bucket, written under the current
  ``SCHEMA_VERSION``; or no object and no live record);
* ``newer``: the record changed between the repair's read and its write (an S3 event, or
  another repair, wrote it): the repair stands back and leaves it;
* ``failed: <reason>``: a read or write failed, the object kept changing while it was
  read, or the invocation ran out of time first; the other keys are still answered.

Any other payload with an ``imgcli`` field (another version, unknown fields, more than
``MAX_KEYS`` keys, a bad key) fails the invocation with ``InvalidRepairRequest`` naming
the problem, before anything is read or written. A request naming another bucket than
``BUCKET_NAME`` is refused as a foreign S3 record is: one log line, nothing read or
written, answered ``{"refused": "<reason>", "repaired": {}}``.

**Per key**: a consistent ``GetItem`` of the record and a ``HeadObject`` of the key (a
delete marker or a 404 is no object), then the decision above. A live record of the
current object written under an older schema (``schema_version`` below
``SCHEMA_VERSION``: a gallery indexed before thumbnails), or an active one with neither
thumbnails nor ``thumbnail_reason``, does not match: the object is described again
(making its thumbnails) and written like any other repair. Writes remove thumbnails as an
event's do (``save_delete``): those the replaced record pointed at, or, when the write is
refused, those this repair wrote (keys of its own: ``thumbnail_store``). A
current object that does not match is described exactly as an event's is, pinned to the
version (or ETag) the ``HeadObject`` saw; if it changed in between, the key is tried once
more from the start.
Every write is a ``PutItem`` conditional on the record being as read: the stored
``sequencer`` and ``indexed_at`` unchanged (every writer sets both), or
``attribute_not_exists`` when there was none. So a repair never undoes a write that landed
between its read and its write: that write fails its condition and the outcome is
``newer``. Repaired records carry ``repaired_at``; an event's later write drops it.

**The sequencer a repair writes is the lowest there is** (``LOWEST_SEQUENCER``), so every
later real event outranks it, and a record poisoned by a forged sequencer (``"F" * 64``,
which outranks every real event) is cleared. That is safe because the sequencer is not
what stops an event from writing something false; S3 is: a create writes only a
description of the key's current object (its first read is pinned to the event's version
or ETag) and a delete writes a tombstone only if ``HeadObject`` finds no current object.
An event that passes the sequencer condition therefore writes what S3 held when the event
read it. The one exposure is an event that read S3 *before* the change the repair saw and
writes *after* the repair. Its invocation began before that change, so it ends within
Lambda's longest timeout (15 minutes) of it. Hence:

* a record that disagrees with S3 is repaired at once: it was wrong already, such an event
  can only write another stale state, and the change's own event (a greater sequencer)
  or the next reconcile puts it right;
* a record that *agrees* with S3 could only lose by a lower sequencer in that window, so
  its sequencer is lowered (the item rewritten with only ``sequencer`` and ``repaired_at``
  changed; the function may not ``UpdateItem``) only once the record was written, and its
  object last modified, more than ``SETTLE_SECONDS`` ago. ``indexed_at`` is the
  function's own clock, which no event can set, and a record agreeing with an object was
  written after that object was complete (``LastModified`` alone is a multipart upload's
  start). No event that read S3 before either moment can still be running. A younger
  record keeps its sequencer ("unchanged", logged); repair it again later.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
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
from .logs import JsonLogger
from .ranged_reader import FetchFailed
from .records import (
    INDEXED_AT_ATTRIBUTE,
    KEY_ATTRIBUTE,
    REPAIRED_AT_ATTRIBUTE,
    SCHEMA_VERSION,
    SEQUENCER_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    THUMBNAILS_ATTRIBUTE,
    ImageRecord,
    Item,
    to_item,
)
from .s3_events import ObjectEvent
from .thumbnail_store import ThumbnailStore, refused_item

REQUEST: Final = "repair"
VERSION: Final = 1
MAX_KEYS: Final = 100
MAX_KEY_BYTES: Final = 1024
FIELDS: Final = frozenset({"imgcli", "version", "bucket", "keys"})
OUTCOMES: Final = ("indexed", "invalid", "removed", "unchanged", "newer")
FAILED: Final = "failed: "
OUT_OF_TIME: Final = "not attempted: the invocation ran out of time; repair again"
KEPT_CHANGING: Final = "the object kept changing while it was read; repair again"

LOWEST_SEQUENCER: Final = "0" * sequencers.WIDTH
#: Lambda's longest timeout (15 minutes) and a minute for the clocks of S3 and Lambda.
SETTLE_SECONDS: Final = 16 * 60
#: Keys are not started with less than this left of the invocation: one big image's
#: description fits, and the answer still gets out.
TIME_MARGIN_MS: Final = 15_000
REASON_CHARS: Final = 300

_LIVE: Final = frozenset({"active", "invalid"})


class InvalidRepairRequest(ValueError):
    """A payload with an ``imgcli`` field that is not a repair request this function reads."""


class _Changed(Exception):
    """The key's current object changed between the ``HeadObject`` and its description."""


@dataclass(frozen=True)
class RepairRequest:
    bucket: str
    keys: tuple[str, ...]


def repair_request(bucket: str, keys: Sequence[str]) -> dict[str, Any]:
    """The payload asking the save function of ``bucket``'s stack to repair ``keys``."""
    return {"imgcli": REQUEST, "version": VERSION, "bucket": bucket, "keys": list(keys)}


def is_repair_request(payload: Any) -> bool:
    """True for any payload that claims to be imgcli's (an ``imgcli`` field), valid or not."""
    return isinstance(payload, Mapping) and "imgcli" in payload


def read_repair_request(payload: Mapping[str, Any]) -> RepairRequest:
    """The request in ``payload``; ``InvalidRepairRequest`` says what is wrong with it."""
    if payload.get("imgcli") != REQUEST:
        raise InvalidRepairRequest(
            f"unknown imgcli request {str(payload.get('imgcli'))[:40]!r}: this function "
            f"reads {REQUEST!r} requests only"
        )
    unknown = sorted(str(name)[:40] for name in set(payload) - FIELDS)
    if unknown:
        raise InvalidRepairRequest(f"repair request has unknown fields: {', '.join(unknown)}")
    version = payload.get("version")
    if type(version) is not int or version != VERSION:
        raise InvalidRepairRequest(
            f"repair request version {json.dumps(version, default=str)[:20]} is not supported: "
            f"this function reads version {VERSION}"
        )
    bucket = payload.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise InvalidRepairRequest("repair request needs 'bucket', the stack's bucket name")
    keys = payload.get("keys")
    if not isinstance(keys, list):
        raise InvalidRepairRequest("repair request needs 'keys', a list of object keys")
    if len(keys) > MAX_KEYS:
        raise InvalidRepairRequest(
            f"repair request has {len(keys)} keys: at most {MAX_KEYS} per invocation"
        )
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key or not _fits(key):
            raise InvalidRepairRequest(
                f"repair request key {index} is not an object key (a non-empty string "
                f"of at most {MAX_KEY_BYTES} UTF-8 bytes)"
            )
    return RepairRequest(bucket, tuple(dict.fromkeys(keys)))


def _fits(key: str) -> bool:
    try:
        return len(key.encode("utf-8")) <= MAX_KEY_BYTES
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False


@dataclass
class Repairer:
    """Repairs records of ``bucket``'s keys in the index table. Collaborators are injected."""

    s3: Any
    dynamodb: Any
    table_name: str
    bucket: str
    thumbnails: ThumbnailStore
    tombstone_days: int
    full_decode_bytes: int
    clock: Callable[[], float]
    log: JsonLogger

    def run(
        self, request: RepairRequest, remaining_ms: Callable[[], int] | None = None
    ) -> dict[str, Any]:
        """The answer to ``request``: one outcome per key, or the refusal of another bucket."""
        if request.bucket != self.bucket:
            self.log.warning(
                "repair for another bucket: refused",
                bucket=request.bucket,
                own_bucket=self.bucket,
                keys=len(request.keys),
            )
            return {
                "refused": f"bucket {request.bucket!r} is not this function's bucket",
                "repaired": {},
            }
        repaired: dict[str, str] = {}
        for key in request.keys:
            if remaining_ms is not None and remaining_ms() < TIME_MARGIN_MS:
                outcome = FAILED + OUT_OF_TIME
            else:
                outcome = self.repair(key)
            repaired[key] = outcome
            log = self.log.error if outcome.startswith(FAILED) else self.log.info
            log("repair done", bucket=self.bucket, key=key, outcome=outcome)
        return {"repaired": repaired}

    def repair(self, key: str) -> str:
        """Make ``key``'s record agree with S3; the outcome (see the module docstring)."""
        try:
            try:
                return self._attempt(key)
            except _Changed:
                return self._attempt(key)
        except _Changed:
            return FAILED + KEPT_CHANGING
        except (ClientError, BotoCoreError, FetchFailed) as exc:
            return FAILED + _reason(exc)

    def _attempt(self, key: str) -> str:
        read = self._read(key)
        now = self.clock()
        probe = ObjectEvent(
            event_name="ObjectCreated:Repair",
            event_time=iso_time(now),
            bucket=self.bucket,
            key=key,
            sequencer=LOWEST_SEQUENCER,
            size=None,
            etag=None,
            version_id=None,
        )
        current = head_current(self.s3, probe)
        status = _text(read, STATUS_ATTRIBUTE)
        if current is None:
            if read is None or status not in _LIVE:
                since = _text(read, INDEXED_AT_ATTRIBUTE)
                return self._keep(read, _epoch(since) if since else now, now)
            tombstone = ImageRecord(
                key=key,
                status="deleted",
                sequencer=LOWEST_SEQUENCER,
                deleted_at=iso_time(now),
                indexed_at=iso_time(now),
                expires_at=int(now) + self.tombstone_days * 86400,
                repaired_at=iso_time(now),
                schema_version=SCHEMA_VERSION,
            )
            return "removed" if self._put(tombstone, read) else "newer"
        if (
            read is not None
            and status in _LIVE
            and _same_object(read, current)
            and _current_schema(read)
        ):
            since = _text(read, INDEXED_AT_ATTRIBUTE)
            modified = _epoch(current.event_time)
            return self._keep(read, max(_epoch(since), modified) if since else modified, now)
        try:
            record = describe_current(
                self.s3,
                current,
                indexed_at=iso_time(now),
                full_decode_bytes=self.full_decode_bytes,
                log=self.log,
                thumbnails=self.thumbnails,
            )
        except NotCurrent as exc:
            raise _Changed from exc
        except (ClientError, FetchFailed) as exc:
            if error_code(exc) in GONE_CODES | REPLACED_CODES:
                raise _Changed from exc
            raise
        if not self._put(replace(record, repaired_at=iso_time(now)), read):
            return "newer"
        return "indexed" if record.status == "active" else "invalid"

    def _keep(self, read: Item | None, since: float, now: float) -> str:
        """A record that agrees with S3: lower its sequencer once that state has settled."""
        if read is None or _text(read, SEQUENCER_ATTRIBUTE) == LOWEST_SEQUENCER:
            return "unchanged"
        if now - since < SETTLE_SECONDS:
            self.log.info(
                "sequencer kept: the state is too recent to lower it safely; repair again later",
                key=_text(read, KEY_ATTRIBUTE),
                settles_in_s=round(SETTLE_SECONDS - (now - since)),
            )
            return "unchanged"
        lowered = {SEQUENCER_ATTRIBUTE: LOWEST_SEQUENCER, REPAIRED_AT_ATTRIBUTE: iso_time(now)}
        item = {**read, **{name: {"S": value} for name, value in lowered.items()}}
        if not self._put_item(item, read):
            return "newer"
        self.log.info("sequencer lowered", key=_text(read, KEY_ATTRIBUTE))
        return "unchanged"

    def _put(self, record: ImageRecord, read: Item | None) -> bool:
        """Write ``record`` if the record is still as read, removing the thumbnails no
        record points at any more; False if someone wrote since."""
        try:
            response = self.dynamodb.put_item(
                TableName=self.table_name,
                Item=to_item(record),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **_as_read(read),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            self.log.info("record changed since the repair read it", key=record.key)
            if record.thumbnails:
                stored = refused_item(exc, lambda: self._read(record.key))
                self.thumbnails.remove_unused(record, stored)
            return False
        self.thumbnails.remove_replaced(record, response.get("Attributes"))
        return True

    def _put_item(self, item: Item, read: Item | None) -> bool:
        """Write ``item`` (the record as read, otherwise unchanged) if it is still as read."""
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=item, **_as_read(read))
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                self.log.info(
                    "record changed since the repair read it", key=_text(item, KEY_ATTRIBUTE)
                )
                return False
            raise
        return True

    def _read(self, key: str) -> Item | None:
        item: Item | None = self.dynamodb.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item


def _as_read(read: Item | None) -> dict[str, Any]:
    """The condition that the record is as ``read`` (``None``: there was none)."""
    names = {"#key": KEY_ATTRIBUTE}
    if read is None:
        return {
            "ConditionExpression": "attribute_not_exists(#key)",
            "ExpressionAttributeNames": names,
        }
    parts = ["attribute_exists(#key)"]
    values: dict[str, Any] = {}
    for index, attribute in enumerate((SEQUENCER_ATTRIBUTE, INDEXED_AT_ATTRIBUTE)):
        names[f"#a{index}"] = attribute
        if attribute in read:
            parts.append(f"#a{index} = :a{index}")
            values[f":a{index}"] = read[attribute]
        else:
            parts.append(f"attribute_not_exists(#a{index})")
    condition: dict[str, Any] = {
        "ConditionExpression": " AND ".join(parts),
        "ExpressionAttributeNames": names,
    }
    if values:
        condition["ExpressionAttributeValues"] = values
    return condition


def _current_schema(read: Item) -> bool:
    """Whether ``read`` was written under ``SCHEMA_VERSION``, thumbnails settled."""
    version = (read.get("schema_version") or {}).get("N")
    if not (isinstance(version, str) and version.isdigit() and int(version) >= SCHEMA_VERSION):
        return False
    if _text(read, STATUS_ATTRIBUTE) != "active":
        return True
    return THUMBNAILS_ATTRIBUTE in read or _text(read, "thumbnail_reason") is not None


def _same_object(read: Item, current: ObjectEvent) -> bool:
    if current.version_id:
        return _text(read, "version_id") == current.version_id
    return current.etag is not None and _text(read, "etag") == current.etag


def _text(item: Item | None, attribute: str) -> str | None:
    value = (item or {}).get(attribute, {}).get("S")
    return value if isinstance(value, str) else None


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return float("inf")  # unreadable: treated as not settled


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, FetchFailed) and exc.__cause__ else exc
    text = str(cause) or type(cause).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
