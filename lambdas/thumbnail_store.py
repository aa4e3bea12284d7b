"""Where the save function keeps an image's thumbnails: their keys, writes and removals.

The thumbnails live in the stack's second bucket (``THUMBNAILS_BUCKET``), which has no
event notification, so the save function's writes there cannot invoke it again; the
gallery bucket stays read-only for it.

What it decided:

* **One key per write**:
  ``<sha256 hex of the image key's UTF-8>/<version tag>/<writer>/<box>.webp``. The
  version tag is the S3 version id (percent-quoted), or ``etag-<etag>`` for an object
  without one (an unversioned bucket, or the version S3 spells ``"null"``, which a later
  upload overwrites); ``writer`` is random, drawn once per description. So no two writers
  ever share a key, and every removal is safe: a writer removes only keys it wrote itself
  (its write was refused, or failed half way) or keys of a record its own write replaced,
  which no other record can name again. Keys shared per version were not: a writer
  replacing a record of that version (or a tombstone of a delete, racing the re-index of
  the version a removed delete marker uncovers) would remove thumbnails another writer of
  the same version was about to name, leaving a record whose thumbnails are gone, which
  reconcile (comparing records with the gallery) never sees. The cost: a duplicate event
  writes its own pair, then removes it. The hash keeps every key short (under 170 bytes,
  far below S3's 1,024) whatever the image key holds; a tag longer than
  ``MAX_TAG_CHARS`` (no real version id or ETag is) is hashed too.
* Objects are written with ``Content-Type: image/webp`` and a year-long ``immutable``
  ``Cache-Control``: a key's bytes never change (same version, same thumbnail). It is
  ``private``: the gallery is, and shared caches must not keep what a presigned URL
  showed once.
* A failed write raises (the event is retried: a 5xx or throttling past botocore's
  retries is transient); the boxes that call already wrote are removed first, best
  effort (they are its own). A failed removal is logged, never raised:
  an orphaned thumbnail is harmless (nothing points at it, and it is not served
  without a record naming it), while failing the event would retry work that is done.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from .logs import JsonLogger
from .records import THUMBNAILS_ATTRIBUTE, ImageRecord, Item, StoredThumbnail
from .thumbnails import CONTENT_TYPE, EXTENSION, Thumbnail, make_thumbnails

#: ``thumbnails.make_thumbnails``, or a test's stand-in.
MakeThumbnails = Callable[[IO[bytes], int], list[Thumbnail]]

CACHE_CONTROL: Final = "private, max-age=31536000, immutable"
#: How S3 spells the version id of an object that has none.
NULL_VERSION: Final = "null"
MAX_TAG_CHARS: Final = 200
#: Random bytes naming one writer's thumbnails (hex: twice as many characters).
WRITER_BYTES: Final = 8


def version_tag(version_id: str | None, etag: str | None) -> str:
    """The part of a thumbnail's key that names the image's object version."""
    if version_id and version_id != NULL_VERSION:
        tag = quote(version_id, safe="")
    elif etag:
        tag = "etag-" + quote(etag.strip('"'), safe="")
    else:
        raise ValueError("an object version needs a version id or an ETag")
    if len(tag) > MAX_TAG_CHARS:
        return "h-" + hashlib.sha256(tag.encode("utf-8")).hexdigest()
    return tag


def new_writer() -> str:
    """A name for one description's thumbnails, shared with no other writer."""
    return secrets.token_hex(WRITER_BYTES)


def thumbnail_key(image_key: str, tag: str, writer: str, box: int) -> str:
    """The key of ``image_key``'s ``box`` thumbnail for the object version ``tag``, as
    ``writer`` wrote it."""
    digest = hashlib.sha256(image_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest}/{tag}/{writer}/{box}.{EXTENSION}"


def thumbnail_keys(item: Item | None) -> frozenset[str]:
    """The thumbnail keys a stored item (as DynamoDB returns it) points at."""
    entries = (item or {}).get(THUMBNAILS_ATTRIBUTE, {}).get("L", ())
    keys = (entry.get("M", {}).get("key", {}).get("S") for entry in entries)
    return frozenset(key for key in keys if isinstance(key, str))


def refused_item(exc: ClientError, read: Callable[[], Item | None]) -> Item | None:
    """The item a conditional write asking ``ReturnValuesOnConditionCheckFailure=ALL_OLD``
    was refused by (none: the item is gone); ``read()`` if the answer does not say."""
    if "Item" in exc.response:
        item: Item | None = exc.response.get("Item") or None
        return item
    return read()


def record_keys(record: ImageRecord) -> frozenset[str]:
    """The thumbnail keys ``record`` points at."""
    return frozenset(t.key for t in record.thumbnails or ())


@dataclass
class ThumbnailStore:
    """Makes thumbnails (``make``), writes and removes them in ``bucket``. Collaborators
    are injected."""

    s3: Any
    bucket: str
    log: JsonLogger
    make: MakeThumbnails = make_thumbnails

    def put(
        self, image_key: str, tag: str, made: Sequence[Thumbnail], *, writer: str | None = None
    ) -> tuple[StoredThumbnail, ...]:
        """Write ``made`` under ``image_key``'s version ``tag`` as a new writer (or
        ``writer``); what the record stores."""
        writer = writer or new_writer()
        stored: list[StoredThumbnail] = []
        for thumbnail in made:
            key = thumbnail_key(image_key, tag, writer, thumbnail.box)
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=thumbnail.data,
                    ContentType=CONTENT_TYPE,
                    CacheControl=CACHE_CONTROL,
                )
            except (ClientError, BotoCoreError):
                self.delete((t.key for t in stored), image_key=image_key)
                raise
            stored.append(
                StoredThumbnail(
                    box=thumbnail.box,
                    key=key,
                    width=thumbnail.width,
                    height=thumbnail.height,
                    size=len(thumbnail.data),
                )
            )
        return tuple(stored)

    def delete(self, keys: Iterable[str], *, image_key: str) -> None:
        """Remove ``keys`` (already gone is fine); a failure is logged, not raised."""
        for key in sorted(set(keys)):
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except (ClientError, BotoCoreError) as exc:
                self.log.warning(
                    "thumbnail not removed: left orphaned",
                    key=image_key,
                    thumbnail=key,
                    error=str(exc),
                )

    def remove_replaced(self, written: ImageRecord, replaced: Item | None) -> None:
        """After ``written`` replaced the item ``replaced``: remove what only it pointed at."""
        self.delete(thumbnail_keys(replaced) - record_keys(written), image_key=written.key)

    def remove_unused(self, refused: ImageRecord, stored: Item | None) -> None:
        """After the write of ``refused`` failed its condition against ``stored``: remove
        the thumbnails this invocation wrote for it (``stored`` names them only if it is
        the very record this writer wrote, as when a retried write had in fact landed)."""
        self.delete(record_keys(refused) - thumbnail_keys(stored), image_key=refused.key)
