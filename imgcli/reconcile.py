"""``imgcli reconcile``'s work: list the bucket and the index, classify, repair in batches.

Three parts, each streaming, so memory holds pages, never a listing (100,000 keys take
what 1,000 do):

- **The bucket** (``bucket_objects``): ``ListObjectVersions``, keeping the entries marked
  ``IsLatest`` (a key whose latest entry is a delete marker has no current object; markers
  come in a list of their own and are not read). It is the one listing that gives version
  ids: ``ListObjectsV2`` has none, and a ``HeadObject`` per key would cost 100,000
  requests where this costs one per 1,000 versions, at the same price per request. It
  also lists noncurrent versions, which bootstrap's lifecycle rule expires after the
  stack's ``noncurrent-days``, so that overhead is a month of overwrites and deletes at
  most. (On the local cloud, moto copies every version of the bucket for each page it
  answers, so there a listing costs time quadratic in the bucket's size.)
- **The index** (``index_records``): the API's active and invalid listings, each in key
  order, merged (``imgcli.reconcile_drift.merged_records``). Reading goes through the
  API, as ``list`` does: the table has one reader contract and one writer.
- **Repairs** (``reconcile``): the keys that drifted, in batches of up to
  ``MAX_REPAIR_KEYS``, sent to the save function (``imgcli.reconcile_repair``) by a few
  threads, at most ``concurrency`` batches in flight; while they run, the main thread
  reads on. Reports come out batch by batch in the order the keys were found.

Each listing reads one page ahead on a thread of its own (``read_ahead``), so the two
listings' round trips overlap each other and the classification.

The two listings are read at slightly different moments, so a key written during the
run may show as drifted when it is not: its repair then finds the record right
(``unchanged``) or the event's write newer (``newer``), both successes. A second run
finds nothing: every repair leaves the record describing the key's current object, or
no live record where there is no object.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar, cast

from imgcli.errors import RemoteError
from imgcli.reconcile_drift import (
    DRIFTED,
    BucketObject,
    Drift,
    IndexRecord,
    KeyDrift,
    merged_records,
    version_of,
)
from imgcli.reconcile_repair import MAX_REPAIR_KEYS, failed, repaired
from imgcli.upload_listing import unquote_etag

#: Batches of repairs in flight at once.
DEFAULT_CONCURRENCY: Final = 4
#: The outcome a dry run reports for a key a repair would be sent for.
WOULD_REPAIR: Final = "would_repair"

T = TypeVar("T")
Repair = Callable[[Sequence[str]], dict[str, str]]


class ImageListing(Protocol):
    """What ``index_records`` reads: ``imgcli.gallery_api.GalleryApi.list_pages``."""

    def list_pages(
        self, *, prefix: str | None = None, invalid: bool = False, page_size: int = ...
    ) -> Iterator[list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class KeyReport:
    """One drifted key and what became of it (``WOULD_REPAIR`` in a dry run)."""

    key: str
    drift: Drift
    outcome: str

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "drift": str(self.drift), "outcome": self.outcome}


@dataclass
class ReconcileSummary:
    """Counts so far: keys per drift, repairs that worked and that failed."""

    dry_run: bool = False
    missing: int = 0
    stale: int = 0
    orphaned: int = 0
    unchanged: int = 0
    repaired: int = 0
    failed: int = 0
    #: Of the stale keys, those stale only because an older schema wrote their record.
    older_schema: int = 0

    def count(self, item: KeyDrift) -> None:
        setattr(self, str(item.drift), getattr(self, str(item.drift)) + 1)
        self.older_schema += item.older_schema

    @property
    def compared(self) -> int:
        return self.missing + self.stale + self.orphaned + self.unchanged

    @property
    def drifted(self) -> int:
        return self.missing + self.stale + self.orphaned

    def as_json(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "stale": self.stale,
            "orphaned": self.orphaned,
            "unchanged": self.unchanged,
            "repaired": self.repaired,
            "failed": self.failed,
            "older_schema": self.older_schema,
            "dry_run": self.dry_run,
        }


def bucket_objects(s3: Any, bucket: str, prefix: str = "") -> Iterator[BucketObject]:
    """The current object of every key under ``prefix``, in key order, page by page."""
    arguments = {"Bucket": bucket, **({"Prefix": prefix} if prefix else {})}
    pages = s3.get_paginator("list_object_versions").paginate(**arguments)
    for page in read_ahead(iter(pages)):
        for version in page.get("Versions", ()):
            if version.get("IsLatest"):
                yield BucketObject(
                    version["Key"],
                    version_of(version.get("VersionId")),
                    unquote_etag(version.get("ETag", "")),
                )


def index_records(api: ImageListing, prefix: str = "") -> Iterator[IndexRecord]:
    """Every active and invalid record under ``prefix``, in key order, page by page."""
    listings = (
        _records(read_ahead(api.list_pages(prefix=prefix or None, invalid=invalid)))
        for invalid in (False, True)
    )
    return merged_records(*listings)


def reconcile(
    drifts: Iterable[KeyDrift],
    repair: Repair | None,
    summary: ReconcileSummary,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    batch_size: int = MAX_REPAIR_KEYS,
    on_compared: Callable[[KeyDrift], None] | None = None,
) -> Iterator[KeyReport]:
    """Count every key into ``summary`` and repair the drifted ones (``repair=None``: a
    dry run), yielding a report per drifted key.

    An exception from ``repair`` (not a key's failure, which is an outcome) stops the run:
    no further batch is sent, batches already running finish, and it is raised here.
    """
    if concurrency < 1 or not 1 <= batch_size <= MAX_REPAIR_KEYS:
        raise ValueError("concurrency must be positive and batch_size 1 to 100")
    in_flight: collections.deque[tuple[list[KeyDrift], Future[dict[str, str]]]] = (
        collections.deque()
    )
    batch: list[KeyDrift] = []
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="imgcli-repair")
    try:
        for item in drifts:
            summary.count(item)
            if on_compared is not None:
                on_compared(item)
            if item.drift not in DRIFTED:
                continue
            if repair is None:
                yield KeyReport(item.key, item.drift, WOULD_REPAIR)
                continue
            batch.append(item)
            if len(batch) < batch_size:
                continue
            if len(in_flight) >= concurrency:
                yield from _settled(*in_flight.popleft(), summary)
            in_flight.append((batch, pool.submit(repair, [each.key for each in batch])))
            batch = []
            while in_flight and in_flight[0][1].done():
                yield from _settled(*in_flight.popleft(), summary)
        if batch:
            assert repair is not None
            in_flight.append((batch, pool.submit(repair, [each.key for each in batch])))
        while in_flight:
            yield from _settled(*in_flight.popleft(), summary)
    finally:
        # Stopped early (an error, Ctrl-C, the reader gone): send nothing more, and let
        # the batches already running finish rather than leave them unreported.
        pool.shutdown(wait=True, cancel_futures=True)


def _settled(
    batch: list[KeyDrift], future: Future[dict[str, str]], summary: ReconcileSummary
) -> Iterator[KeyReport]:
    outcomes = future.result()
    for item in batch:
        outcome = outcomes.get(item.key) or failed("no outcome was reported for this key")
        if repaired(outcome):
            summary.repaired += 1
        else:
            summary.failed += 1
        yield KeyReport(item.key, item.drift, outcome)


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each fetched on a thread while the one before it is used."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcli-listing") as pool:
        upcoming = pool.submit(next, items, end)
        while (item := upcoming.result()) is not end:
            upcoming = pool.submit(next, items, end)
            yield cast(T, item)


def _records(pages: Iterable[list[dict[str, Any]]]) -> Iterator[IndexRecord]:
    for page in pages:
        for item in page:
            key = item.get("key")
            if not isinstance(key, str) or not key:
                raise RemoteError("the stack's API listed a record without a key")
            yield IndexRecord(
                key,
                _text(item.get("version_id")),
                _text(item.get("etag")),
                _text(item.get("status")) or "active",
                _schema(item.get("schema_version")),
            )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _schema(value: object) -> int:
    """A record's schema version as the API gives it; 1 (before the field) when absent."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RemoteError(f"the stack's API listed a record with schema_version {value!r}")
    return value
