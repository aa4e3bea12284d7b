"""The bucket's side of an upload: one ``ListObjectsV2`` pass, and the hashes that let its
ETags say whether a key already holds a file's content.

The planner (``imgcli.upload_plan``) reads this listing in step with the sorted walk, like
a sorted merge (as ``aws s3 sync`` does): one pass over the common prefix of the keys,
fetched a page at a time one page ahead of the walk. An ETag answers without another
request when imgcli can reproduce it: the MD5 of the file for a single-part object and, for
a multipart one, the MD5 of the part MD5s with the part size s3transfer would choose
(``multipart_etag``). Every object imgcli sends also carries its SHA-256
(``SHA256_METADATA``), the answer when the ETag is not one of those.

Known limit: listing order is only guaranteed by general purpose buckets, which is what
bootstrap creates.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from imgcli.upload_types import MiB

#: User metadata holding the SHA-256 of the content (``x-amz-meta-imgcli-sha256``).
SHA256_METADATA: Final = "imgcli-sha256"
#: How often a waiting thread looks at the stop flag: the longest a Ctrl-C waits for it.
POLL_S: Final = 0.1

_HASH_CHUNK: Final = 1 * MiB


@dataclass(frozen=True)
class Existing:
    """An object the listing found: its key, size and unquoted ETag."""

    key: str
    size: int
    etag: str


class BucketListing:
    """One ListObjectsV2 pass, read a page at a time in step with the sorted local keys.

    Each page is requested one page ahead, on a thread of its own, so its round trip
    overlaps the checks instead of stalling them: the first page is asked for when the
    listing is made, each next one when the one before it is reached; ``ready`` says
    whether ``find`` would have to wait for one.
    """

    def __init__(
        self, client: Any, bucket: str, prefix: str, start_after: str, stop: threading.Event
    ) -> None:
        arguments = {"Bucket": bucket, "Prefix": prefix}
        self._stop = stop
        if start_after > prefix:
            arguments["StartAfter"] = start_after
        pages = client.get_paginator("list_objects_v2").paginate(**arguments)
        self._upcoming: _NextPage | None = _NextPage(iter(pages))
        # The current page from the first object not below the last key asked for.
        self._objects: list[Existing] = []
        self._index = 0

    def find(self, key: str) -> Existing | None:
        """The object at ``key``; keys must be asked for in increasing order."""
        self._reach(key, wait=True)
        if self._index < len(self._objects) and self._objects[self._index].key == key:
            return self._objects[self._index]
        return None

    def ready(self, key: str) -> bool:
        """Whether ``find(key)`` can answer without waiting for a page."""
        return self._reach(key, wait=False)

    def _reach(self, key: str, *, wait: bool) -> bool:
        while True:
            objects = self._objects
            while self._index < len(objects) and objects[self._index].key < key:
                self._index += 1
            if self._index < len(objects) or self._upcoming is None:
                return True
            if not wait and not self._upcoming.done():
                return False
            page = self._upcoming.result(self._stop)
            self._upcoming = None if page is None else self._upcoming.following()
            self._index = 0
            self._objects = [
                Existing(item["Key"], int(item["Size"]), unquote_etag(item["ETag"]))
                for item in (page or {}).get("Contents", [])
            ]


class _ListingAbandoned(Exception):
    """The upload stopped while the planner waited for a listing page."""


class _NextPage:
    """``next(pages)`` on a daemon thread (a Ctrl-C never waits for a listing request)."""

    def __init__(self, pages: Iterator[Any]) -> None:
        self._pages = pages
        self._page: Any = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._fetch, name="imgcli-upload-listing", daemon=True).start()

    def _fetch(self) -> None:
        try:
            self._page = next(self._pages, None)
        except BaseException as exc:  # noqa: BLE001 - raised again where the page is wanted
            self._error = exc
        finally:
            self._ready.set()

    def done(self) -> bool:
        return self._ready.is_set()

    def result(self, stop: threading.Event) -> Any:
        """The page, ``None`` after the last one; the request's error, raised here;
        ``_ListingAbandoned`` once ``stop`` is set."""
        while not self._ready.wait(POLL_S):
            if stop.is_set():
                raise _ListingAbandoned
        if self._error is not None:
            raise self._error
        return self._page

    def following(self) -> _NextPage:
        """Start fetching the page after this one."""
        return _NextPage(self._pages)


def unquote_etag(value: str) -> str:
    """An ETag as S3 sends it (in double quotes), without the quotes."""
    return value.strip('"')


def multipart_etag(stream: IO[bytes], part_size: int) -> str:
    """The ETag S3 gives a multipart upload of ``stream`` in ``part_size`` parts."""
    digests = []
    while part := stream.read(part_size):
        digests.append(hashlib.md5(part, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def hash_stream(stream: IO[bytes], algorithm: str) -> Any:
    """The ``hashlib`` digest of what is left of ``stream``, read a chunk at a time."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest
