"""Which keys the index and the bucket disagree on: one pass over two key-sorted streams.

``reconcile`` (``imgcli.reconcile``) reads the bucket's current objects and the API's
records, both in key order, and this module walks them together as a sorted merge (as
``aws s3 sync`` compares two listings): each key is classified once, from one item of
each stream, so memory holds one item per stream however many keys there are.

- an object and no record: ``missing`` (an event was lost, or never sent);
- a record and no object: ``orphaned`` (the object went while its event was lost);
- both, but the record describes another version: ``stale``. A version id is the
  comparison where the bucket gives one (a versioned bucket, which bootstrap makes); an
  object without one (an unversioned bucket, or an object written before versioning,
  whose id S3 spells ``"null"``) is compared by ETag, which is what the save function
  pins such an object to;
- both, the record describes the current object, but was written by an older writer
  (``schema`` below ``records.SCHEMA_VERSION``, e.g. before thumbnails): ``stale`` too,
  so the repair describes the object again and the record gains what the new schema
  holds. ``KeyDrift.older_schema`` says which stale keys are stale only for that;
- both and the same version: ``unchanged``.

Both streams must be strictly increasing by key, compared as Python strings: code point
order is UTF-8 byte order, the order S3 lists in and DynamoDB sorts string keys in. A
stream out of order (or listing a key twice) would make the merge misclassify silently,
so it raises ``UnorderedListing`` instead. The index's two listings (active and invalid
records) are merged first (``merged_records``); one key has one record, so they never
share a key.

Pure: no boto3, no I/O; tested with hypothesis against set arithmetic.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from imgcli.errors import RemoteError
from imgcli.lambdas.records import SCHEMA_VERSION

#: How S3 spells the version id of an object that has none.
NULL_VERSION: Final = "null"


class Drift(enum.StrEnum):
    """How the index stands to one key of the bucket."""

    MISSING = "missing"
    STALE = "stale"
    ORPHANED = "orphaned"
    UNCHANGED = "unchanged"


#: The drifts a repair acts on.
DRIFTED: Final = frozenset({Drift.MISSING, Drift.STALE, Drift.ORPHANED})


@dataclass(frozen=True, slots=True)
class BucketObject:
    """A key's current object: its version id (``None`` when it has none) and unquoted ETag."""

    key: str
    version_id: str | None
    etag: str


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """What the API lists for a key (active or invalid): the version it describes, and
    the schema version of the writer that described it (1 when the API does not say)."""

    key: str
    version_id: str | None
    etag: str | None
    status: str = "active"
    schema: int = 1


@dataclass(frozen=True, slots=True)
class KeyDrift:
    """One key's classification; ``older_schema`` when it is stale only because its
    record was written by an older schema."""

    key: str
    drift: Drift
    older_schema: bool = False


Listed = TypeVar("Listed", BucketObject, IndexRecord)


class UnorderedListing(RemoteError):
    """A listing was not in strictly increasing key order: comparing it would mislead."""


def version_of(version_id: str | None) -> str | None:
    """A version id as the comparison uses it: ``None`` for S3's ``"null"`` or none."""
    return None if not version_id or version_id == NULL_VERSION else version_id


def describes(record: IndexRecord, current: BucketObject) -> bool:
    """Whether ``record`` describes ``current``: the same version id, or without one the
    same ETag."""
    version = version_of(current.version_id)
    if version is not None:
        return version_of(record.version_id) == version
    return record.etag is not None and record.etag.strip('"') == current.etag.strip('"')


def classify(objects: Iterable[BucketObject], records: Iterable[IndexRecord]) -> Iterator[KeyDrift]:
    """Every key of either stream with its drift, in key order; one pass, lazily."""
    object_stream = _increasing(objects, "the bucket's listing")
    record_stream = _increasing(records, "the API's listing")
    current = next(object_stream, None)
    record = next(record_stream, None)
    while current is not None or record is not None:
        if record is None or (current is not None and current.key < record.key):
            assert current is not None
            yield KeyDrift(current.key, Drift.MISSING)
            current = next(object_stream, None)
        elif current is None or record.key < current.key:
            yield KeyDrift(record.key, Drift.ORPHANED)
            record = next(record_stream, None)
        else:
            if not describes(record, current):
                yield KeyDrift(current.key, Drift.STALE)
            elif record.schema < SCHEMA_VERSION:
                yield KeyDrift(current.key, Drift.STALE, older_schema=True)
            else:
                yield KeyDrift(current.key, Drift.UNCHANGED)
            current = next(object_stream, None)
            record = next(record_stream, None)


def merged_records(*listings: Iterable[IndexRecord]) -> Iterator[IndexRecord]:
    """Several key-sorted listings as one, lazily (each must be sorted itself)."""
    checked = [_increasing(listing, "the API's listing") for listing in listings]
    return heapq.merge(*checked, key=lambda record: record.key)


def _increasing(items: Iterable[Listed], what: str) -> Iterator[Listed]:
    previous: str | None = None
    for item in items:
        if previous is not None and item.key <= previous:
            raise UnorderedListing(
                f"{what} is not in key order: {item.key!r} came after {previous!r}",
                hint="nothing was repaired past this point; run reconcile again, and report "
                "it if it persists",
            )
        previous = item.key
        yield item
