"""The index table: its schema and the mapping between an image record and a DynamoDB item.

One module owns the table's shape so the save function, the retrieve function, bootstrap
and the tests cannot drift apart. Items are written with the low-level client's attribute
value format (``{"S": ...}``), mapped by hand for our fixed schema, so this stays pure and
needs neither ``boto3.dynamodb.types`` nor Decimal.

Schema decisions:

* The partition key is the S3 object key (``key``), so one item per image and every write
  can be conditional on that item's stored sequencer.
* A delete leaves a tombstone (``status="deleted"``, an ``expires_at`` TTL) instead of
  removing the item: a late, out-of-order create event then finds a newer sequencer and
  cannot resurrect the image.
* Listing uses the global secondary index ``STATUS_INDEX`` (hash ``status``, range ``key``):
  a Query on ``status = "active"`` reads only live images, sorted by key, with ``begins_with``
  on the key for prefixes. Tombstones and invalid images sit in other partitions of the index
  and cost the listing nothing.
* Records carry ``schema_version`` (``SCHEMA_VERSION``): what a writer of that version
  stores. Version 2 added thumbnails; a record without the field is version 1, written
  before them. ``imgcli reconcile`` treats an older version as stale and has the save
  function describe the object again, so a gallery indexed before gets its thumbnails.
* ``thumbnails`` is a list attribute of maps, one per size (``StoredThumbnail``): where the
  save function wrote each in the stack's thumbnails bucket, and its dimensions and bytes.
  An active image without them has ``thumbnail_reason`` saying why; an invalid image or a
  tombstone has neither.
* Known limit: all active images share one partition of that index. A GSI partition
  takes roughly 1,000 writes per second, so indexing faster than that for long would
  throttle the index and, by back-pressure, the table. A gallery fed by people and scripts
  stays far below it; sharding the status (``active#0..N``) would lift the limit at the
  cost of merging N sorted listings per page, which is not worth it yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Literal

Status = Literal["active", "invalid", "deleted"]
STATUSES: Final[tuple[Status, ...]] = ("active", "invalid", "deleted")

KEY_ATTRIBUTE: Final = "key"
STATUS_ATTRIBUTE: Final = "status"
SEQUENCER_ATTRIBUTE: Final = "sequencer"
EXPIRY_ATTRIBUTE: Final = "expires_at"
INDEXED_AT_ATTRIBUTE: Final = "indexed_at"
REPAIRED_AT_ATTRIBUTE: Final = "repaired_at"
STATUS_INDEX: Final = "status-key-index"
THUMBNAILS_ATTRIBUTE: Final = "thumbnails"

#: What the writers of this version store; a record without ``schema_version`` is 1.
SCHEMA_VERSION: Final = 2
#: The thumbnails' sizes: the longest side each is fitted into (grid, viewer).
THUMBNAIL_BOXES: Final = (256, 1024)

#: Arguments for ``create_table`` shared by bootstrap and the tests (add ``TableName``).
TABLE_DEFINITION: Final[dict[str, Any]] = {
    "AttributeDefinitions": [
        {"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"},
        {"AttributeName": STATUS_ATTRIBUTE, "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
    "GlobalSecondaryIndexes": [
        {
            "IndexName": STATUS_INDEX,
            "KeySchema": [
                {"AttributeName": STATUS_ATTRIBUTE, "KeyType": "HASH"},
                {"AttributeName": KEY_ATTRIBUTE, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


@dataclass(frozen=True)
class StoredThumbnail:
    """One thumbnail of an image: its object in the thumbnails bucket and its size."""

    box: int
    key: str
    width: int
    height: int
    size: int


@dataclass(frozen=True)
class ImageRecord:
    """What the index knows about one key. ``None`` fields are not stored."""

    key: str
    status: Status
    sequencer: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    content_type: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    frames: int | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int | None = None
    uploaded_at: str | None = None
    indexed_at: str | None = None
    deleted_at: str | None = None
    reason: str | None = None
    expires_at: int | None = None
    #: Set when a repair (not an S3 event) wrote the record; an event's write drops it.
    repaired_at: str | None = None
    schema_version: int | None = None
    thumbnails: tuple[StoredThumbnail, ...] | None = None
    thumbnail_reason: str | None = None

    @property
    def schema(self) -> int:
        """The record's schema version; 1 for a record written before the field existed."""
        return self.schema_version or 1


_INT_FIELDS: Final = frozenset(
    {"size", "width", "height", "frames", "orientation", "expires_at", "schema_version"}
)
_THUMBNAIL_INT_FIELDS: Final = ("box", "width", "height", "size")

#: Fields that describe the index's bookkeeping, not the image; not shown to API clients.
_INTERNAL_FIELDS: Final = frozenset({"sequencer", "expires_at", "deleted_at", "repaired_at"})


def to_item(record: ImageRecord) -> Item:
    """The DynamoDB item for ``record``, omitting fields that are ``None``."""
    item: Item = {}
    for f in fields(record):
        name, value = f.name, getattr(record, f.name)
        if value is None:
            continue
        if name == THUMBNAILS_ATTRIBUTE:
            item[name] = {"L": [_thumbnail_item(thumbnail) for thumbnail in value]}
        elif name in _INT_FIELDS:
            item[name] = {"N": str(int(value))}
        else:
            item[name] = {"S": str(value)}
    return item


def from_item(item: Item) -> ImageRecord:
    """The record stored in ``item``; unknown attributes are ignored (forward compatible)."""
    values: dict[str, Any] = {}
    for f in fields(ImageRecord):
        attribute = item.get(f.name)
        if attribute is None:
            continue
        if f.name == THUMBNAILS_ATTRIBUTE:
            values[f.name] = tuple(_thumbnail_of(entry) for entry in attribute.get("L", ()))
        elif "N" in attribute:
            values[f.name] = int(attribute["N"])
        elif "S" in attribute:
            values[f.name] = attribute["S"]
    status = values.get("status")
    if status not in STATUSES:
        raise ValueError(f"item for {values.get('key')!r} has unknown status {status!r}")
    return ImageRecord(**values)


def _thumbnail_item(thumbnail: StoredThumbnail) -> AttributeValue:
    entry: Item = {name: {"N": str(getattr(thumbnail, name))} for name in _THUMBNAIL_INT_FIELDS}
    entry["key"] = {"S": thumbnail.key}
    return {"M": entry}


def _thumbnail_of(attribute: AttributeValue) -> StoredThumbnail:
    entry = attribute["M"]
    numbers = {name: int(entry[name]["N"]) for name in _THUMBNAIL_INT_FIELDS}
    return StoredThumbnail(key=entry["key"]["S"], **numbers)


def is_expired(record: ImageRecord, now: int) -> bool:
    """True once ``expires_at`` has passed: DynamoDB's TTL removes such items days late."""
    return record.expires_at is not None and record.expires_at <= now


def to_public_json(record: ImageRecord) -> dict[str, Any]:
    """The record as the retrieve API shows it: every image field, ``null`` when unknown.

    ``thumbnails`` is an object keyed by size (``"256"``, ``"1024"``), each with the
    thumbnail's ``key`` in the thumbnails bucket, ``width``, ``height`` and ``size``;
    ``schema_version`` is always a number (1 for a record older than the field).
    """
    shown = {k: v for k, v in asdict(record).items() if k not in _INTERNAL_FIELDS}
    shown["schema_version"] = record.schema
    if record.thumbnails is not None:
        shown[THUMBNAILS_ATTRIBUTE] = {
            str(t.box): {"key": t.key, "width": t.width, "height": t.height, "size": t.size}
            for t in record.thumbnails
        }
    return shown
