"""Typed, decoded views of S3 event notifications.

Object keys arrive form-encoded (a space is ``+``, a literal ``+`` is ``%2B``, UTF-8 is
percent-encoded). Powertools' S3 data class hands the raw key back and leaves decoding to
each caller, a known source of bugs; here the one accessor returns the decoded key, so no
caller can forget.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

TEST_EVENT: Final = "s3:TestEvent"


class MalformedRecord(ValueError):
    """A record lacks a field every S3 object event has."""


def decode_key(raw_key: str) -> str:
    """The object key as S3 stores it, from its form-encoded form in an event."""
    return unquote_plus(raw_key, encoding="utf-8", errors="strict")


@dataclass(frozen=True)
class ObjectEvent:
    """One record of an S3 object event, with the key decoded."""

    event_name: str
    event_time: str
    bucket: str
    key: str
    sequencer: str
    size: int | None
    etag: str | None
    version_id: str | None

    @property
    def is_created(self) -> bool:
        return self.event_name.startswith("ObjectCreated:")

    @property
    def is_removed(self) -> bool:
        return self.event_name.startswith("ObjectRemoved:")

    @property
    def is_delete_marker(self) -> bool:
        return self.event_name == "ObjectRemoved:DeleteMarkerCreated"


def is_test_event(event: Mapping[str, Any]) -> bool:
    """S3 sends ``s3:TestEvent`` (no ``Records``) when a notification is configured."""
    return event.get("Event") == TEST_EVENT


def object_events(event: Mapping[str, Any]) -> Iterator[ObjectEvent | MalformedRecord]:
    """Every record of ``event``, decoded; a record that cannot be read yields its error.

    Errors are yielded, not raised, so one bad record cannot hide the good ones beside it.
    """
    if is_test_event(event):
        return
    for index, record in enumerate(event.get("Records") or ()):
        yield read_record(record, index)


def read_record(record: Any, index: int) -> ObjectEvent | MalformedRecord:
    """Record number ``index`` of an S3 event, decoded, or what is wrong with it."""
    try:
        return _object_event(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return MalformedRecord(f"record {index}: {type(exc).__name__}: {exc}")


def _object_event(record: Mapping[str, Any]) -> ObjectEvent:
    s3 = record["s3"]
    obj = s3["object"]
    size = obj.get("size")
    return ObjectEvent(
        event_name=str(record["eventName"]).removeprefix("s3:"),
        event_time=str(record["eventTime"]),
        bucket=str(s3["bucket"]["name"]),
        key=decode_key(obj["key"]),
        sequencer=str(obj["sequencer"]),
        size=int(size) if size is not None else None,
        etag=obj.get("eTag") or None,
        version_id=obj.get("versionId") or None,
    )
