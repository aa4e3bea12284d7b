"""Reading a key's current object from S3: its head, and its description pinned to it.

Both ways the save function writes the index need this: an S3 event (``save_delete``) and
a repair (``repair``). It lives apart from both so the repair needs nothing of the event
path and the event path can dispatch to the repair without an import cycle.

What it decided (the reasons are in ``save_delete``'s docstring):

* ``describe_current`` reads the key's *current* object only: the first read is pinned to
  the event's ETag (``If-Match``) in an unversioned bucket and compared with its
  ``versionId`` in a versioned one (``NotCurrent`` otherwise); later ranges pin that
  version. A small object is fetched with one GET, a big one head first, through a
  ``RangedReader``. A failed read raises (never marks the image invalid); a bad image is
  returned as an ``invalid`` record with its reason.
* ``head_current`` asks which object is current (``HeadObject``): a delete marker or a
  404 means none.
* An image found valid gets its thumbnails here, so events and repairs make them alike.
  They are made from the object's whole bytes, read once: a small object's single GET
  already holds them; a big one keeps its ranged metadata read and then fetches what the
  check did not (usually one GET, pinned like every range), only for the thumbnails,
  through the same reader, so no byte is fetched or held twice. They are written
  (``thumbnail_store``) before the record that names them; the caller removes them if
  that write is refused. A thumbnail that cannot be made (``ThumbnailFailed``) leaves the
  image indexed with ``thumbnail_reason``; a failed read or thumbnail write raises
  (retried). Every record described here carries ``schema_version=SCHEMA_VERSION``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, Any, Final, cast

from botocore.exceptions import ClientError

from . import sequencer as sequencers
from .image_metadata import InvalidImage, describe_image
from .logs import JsonLogger
from .ranged_reader import DEFAULT_MIN_FETCH, FetchFailed, RangedReader
from .records import SCHEMA_VERSION, ImageRecord
from .s3_events import ObjectEvent
from .sized_stream import SizedStream
from .thumbnail_store import MakeThumbnails, ThumbnailStore, version_tag
from .thumbnails import Thumbnail, ThumbnailFailed

HEAD_BYTES: Final = DEFAULT_MIN_FETCH

#: S3's answers meaning the object (or that version) is not there.
GONE_CODES: Final = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
#: S3's answers meaning the key holds another object than the one asked for.
REPLACED_CODES: Final = frozenset({"PreconditionFailed", "412"})


class NotCurrent(Exception):
    """The event's object version is no longer the key's current object."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of ``exc``, or of the ``ClientError`` a failed ranged read wraps."""
    cause = exc.__cause__ if isinstance(exc, FetchFailed) else exc
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def iso_time(timestamp: float) -> str:
    """``timestamp`` in the records' time format: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def head_current(s3: Any, event: ObjectEvent) -> ObjectEvent | None:
    """The key's current object as a created event under ``event``'s sequencer, if any."""
    try:
        head = s3.head_object(Bucket=event.bucket, Key=event.key)
    except ClientError as exc:
        if error_code(exc) in GONE_CODES:
            return None
        raise
    if head.get("DeleteMarker"):
        return None
    modified = head.get("LastModified")
    return replace(
        event,
        event_name="ObjectCreated:Restored",
        event_time=iso_time(modified.timestamp()) if modified else event.event_time,
        size=int(head["ContentLength"]),
        etag=str(head.get("ETag", "")).strip('"') or None,
        version_id=head.get("VersionId") or None,
    )


def describe_current(
    s3: Any,
    event: ObjectEvent,
    *,
    indexed_at: str,
    full_decode_bytes: int,
    log: JsonLogger,
    thumbnails: ThumbnailStore,
) -> ImageRecord:
    """Read the event's object's head (and more only if needed), describe it and, if it is
    a valid image, make and store its thumbnails."""
    started = time.perf_counter()
    # The first read asks for the key's current object; later ranges pin its version.
    current: dict[str, str] = {"Bucket": event.bucket, "Key": event.key}
    pin = dict(current)
    if event.version_id:
        pin["VersionId"] = event.version_id
    elif event.etag:
        current["IfMatch"] = pin["IfMatch"] = f'"{event.etag.strip(chr(34))}"'
    base = ImageRecord(
        key=event.key,
        status="invalid",
        sequencer=sequencers.normalise(event.sequencer),
        size=event.size,
        etag=event.etag,
        version_id=event.version_id,
        uploaded_at=event.event_time,
        indexed_at=indexed_at,
        schema_version=SCHEMA_VERSION,
    )
    if event.size == 0:
        return replace(base, reason="empty file")

    # What has been fetched, as (start, end) spans: the thumbnails need only the rest.
    spans: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        body: bytes = s3.get_object(**pin, Range=f"bytes={start}-{end}")["Body"].read()
        spans.append((start, start + len(body)))
        return body

    small = event.size is not None and event.size <= full_decode_bytes
    first_bytes = event.size if small and event.size else HEAD_BYTES
    first = s3.get_object(**current, Range=f"bytes=0-{first_bytes - 1}")
    if event.version_id and first.get("VersionId") != event.version_id:
        first["Body"].close()
        raise NotCurrent(event.version_id)
    if "VersionId" not in pin and "IfMatch" not in pin and first.get("ETag"):
        pin["IfMatch"] = str(first["ETag"])  # an event without an ETag: pin what was read
    head = first["Body"].read()
    spans.append((0, len(head)))
    size = _total_size(first, fallback=len(head))
    etag = str(first.get("ETag") or "").strip('"') or event.etag
    version_id = first.get("VersionId") or event.version_id
    base = replace(base, size=size, content_type=first.get("ContentType"))
    reader = RangedReader(fetch, size, initial=head)
    del head, first  # the reader holds the bytes; nothing else may keep a second copy
    try:
        # RawIOBase is a binary file in all but typeshed's class hierarchy.
        details = describe_image(cast(IO[bytes], reader), size, full_decode_bytes=full_decode_bytes)
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
    log.info(
        "described object",
        key=event.key,
        status=record.status,
        reason=record.reason,
        size=size,
        bytes_read=reader.bytes_fetched,
        requests=reader.fetches + 1,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    if record.status != "active":
        return record
    thumbnailing = time.perf_counter()
    before = reader.bytes_fetched
    for start, stop in _gaps(spans, size):
        # One GET per stretch the check did not read (usually one: between a JPEG's head
        # and its tail), exactly that stretch, pinned like every range; the reader keeps
        # it, so no byte is fetched or held twice.
        reader.fill(start, stop)
    bytes_read = reader.bytes_fetched - before
    stream = HandedOver(reader)
    del reader  # from here the stream holds the only reference to the object's bytes
    made, reason = _make(thumbnails.make, stream, size)
    stored = thumbnails.put(event.key, version_tag(version_id, etag), made) if made else None
    log.info(
        "made thumbnails" if stored else "no thumbnails",
        key=event.key,
        reason=reason,
        bytes_read=bytes_read,
        thumbnail_bytes=sum(t.size for t in stored or ()),
        ms=round((time.perf_counter() - thumbnailing) * 1000, 1),
    )
    return replace(record, thumbnails=stored, thumbnail_reason=reason)


def _make(
    make: MakeThumbnails, stream: HandedOver, size: int
) -> tuple[list[Thumbnail], str | None]:
    """The thumbnails of the image in ``stream`` (then released), or why there are none."""
    try:
        # A FetchFailed here is a failed read: it propagates and the event is retried.
        with stream:
            return make(cast(IO[bytes], stream), size), None
    except ThumbnailFailed as exc:
        return [], exc.reason


class HandedOver(SizedStream):
    """``reader`` as a stream that lets go of it (the object's bytes) when closed:
    ``make_thumbnails`` closes it once the image is decoded, before it encodes, and they
    are gone before the thumbnails are written in any case."""

    def __init__(self, reader: RangedReader) -> None:
        super().__init__(reader.size)
        self._reader: RangedReader | None = reader

    def read(self, size: int | None = -1) -> bytes:
        if self._reader is None:
            raise ValueError("read of a closed stream")
        self._reader.seek(self._position)
        data = self._reader.read(size)
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        self._reader = None
        super().close()


def _gaps(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` stretches of ``size`` bytes that no span fetched."""
    gaps: list[tuple[int, int]] = []
    covered = 0
    for start, stop in sorted(spans):
        if start > covered:
            gaps.append((covered, start))
        covered = max(covered, stop)
    if covered < size:
        gaps.append((covered, size))
    return gaps


def _total_size(response: Mapping[str, Any], fallback: int) -> int:
    """The object's full size from a ranged GET's ``Content-Range: bytes a-b/total``."""
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else fallback
