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
from .records import ImageRecord
from .s3_events import ObjectEvent

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
) -> ImageRecord:
    """Read the event's object's head (and more only if needed) and describe it."""
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
    )
    if event.size == 0:
        return replace(base, reason="empty file")

    def fetch(start: int, end: int) -> bytes:
        body: bytes = s3.get_object(**pin, Range=f"bytes={start}-{end}")["Body"].read()
        return body

    small = event.size is not None and event.size <= full_decode_bytes
    first_bytes = event.size if small and event.size else HEAD_BYTES
    first = s3.get_object(**current, Range=f"bytes=0-{first_bytes - 1}")
    if event.version_id and first.get("VersionId") != event.version_id:
        first["Body"].close()
        raise NotCurrent(event.version_id)
    head = first["Body"].read()
    size = _total_size(first, fallback=len(head))
    base = replace(base, size=size, content_type=first.get("ContentType"))
    reader = RangedReader(fetch, size, initial=head)
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
    return record


def _total_size(response: Mapping[str, Any], fallback: int) -> int:
    """The object's full size from a ranged GET's ``Content-Range: bytes a-b/total``."""
    content_range = str(response.get("ContentRange") or "")
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else fallback
