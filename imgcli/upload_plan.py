"""The planner: the thread of an upload that walks the selection, checks each file and
decides what becomes of it, reporting each decision to the dispatcher
(``imgcli.upload_transfer``) as an event: a result (skipped, refused, would upload) or a
``Send`` for the transfers.

**Existing keys.** The walks of several paths are merged with ``heapq.merge``, so the keys
of the whole selection come in S3's order and one pass of the bucket listing
(``imgcli.upload_listing``) answers for all of them. No key means upload. A different size
means different content. Same size: the listing's ETag decides without another request
when it is one imgcli can reproduce. Only when it is not (SSE-KMS, another tool's part
size) is the object's ``x-amz-meta-imgcli-sha256`` read with a HEAD; content it cannot
prove the same counts as different. Same content is *skipped*; different content is
*refused* unless ``overwrite``. So a second run of the same upload sends nothing and makes
one listing pass.
"""

from __future__ import annotations

import heapq
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from s3transfer.utils import ChunksizeAdjuster  # type: ignore[import-untyped]

from imgcli.upload_listing import (
    POLL_S,
    SHA256_METADATA,
    BucketListing,
    Existing,
    hash_stream,
    multipart_etag,
)
from imgcli.upload_types import FileResult, Status, UploadConfig
from imgcli.upload_walk import Candidate, Root, Selection, candidates, check_file, is_selected

# Checked files that may wait for the bucket listing to reach their keys: a page's worth.
_CHECKED_AHEAD: Final = 1000


@dataclass(frozen=True)
class Send:
    """A checked file to send."""

    candidate: Candidate
    key: str
    size: int
    content_type: str
    replaces: bool
    multipart: bool
    #: Requests it may have in flight at once: one, or one per part up to ``jobs``.
    slots: int


@dataclass(frozen=True)
class Decided:
    """A file whose outcome the planner decided: nothing to send."""

    result: FileResult


@dataclass(frozen=True)
class PlannerEnded:
    """The planner's last event: files the filters left out, or the error that stopped it."""

    excluded: int
    error: BaseException | None = None


#: What the planner tells the dispatcher.
PlanEvent = Send | Decided | PlannerEnded


class Planner:
    """The planner of one ``Uploader.upload`` call; ``run`` is its thread.

    ``emit`` hands an event to the dispatcher; ``stop`` ends the planning early; ``room``
    counts decided files not yet finished (at most ``UploadConfig.lookahead``): the planner
    takes one before each ``Send`` and the dispatcher gives it back when the file finishes.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        config: UploadConfig,
        open_file: Callable[[Path], IO[bytes]],
        selection: Selection,
        roots: list[Root],
        overwrite: bool,
        dry_run: bool,
        *,
        emit: Callable[[PlanEvent], None],
        stop: threading.Event,
        room: threading.BoundedSemaphore,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.config = config
        self.open_file = open_file
        self.selection = selection
        self.roots = roots
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.emit = emit
        self.stop = stop
        self.room = room
        # MD5s of files hashed while the listing was awaited.
        self._md5s: dict[str, str | None] = {}
        self._chunks = ChunksizeAdjuster()

    def run(self) -> None:
        """Plan every file, then emit ``PlannerEnded``."""
        excluded = 0
        error: BaseException | None = None
        try:
            excluded = self._plan_files()
        except BaseException as exc:  # noqa: BLE001 - raised again on the dispatcher's thread
            error = exc
        self.emit(PlannerEnded(excluded, error))

    def _plan_files(self) -> int:
        selection = self.selection
        floors = [root.key_floor for root in self.roots]
        lowest = min(floors, default="")
        # StartAfter is exclusive; a proper prefix of the lowest key sorts just before it.
        # Keys, not paths: the character-wise common prefix is the one wanted.
        common = os.path.commonprefix(floors)  # noqa: RUF071
        listing = BucketListing(self.client, self.bucket, common, lowest[:-1], self.stop)
        streams = [candidates(root, selection.prefix) for root in self.roots]
        excluded = 0
        previous: Candidate | None = None
        # Checked files wait here until the listing can answer for them without waiting for
        # a page, so the checks go on while a page is on its way.
        waiting: deque[tuple[Candidate, str, int, str]] = deque()
        for candidate in heapq.merge(*streams, key=lambda found: found.sort_key):
            if self.stop.is_set():
                break
            if not is_selected(candidate.relative, selection.filters):
                excluded += 1
            elif candidate.problem is not None or candidate.key is None:
                self._decided(candidate, "refused", candidate.problem)
            elif previous is not None and previous.key == candidate.key:
                self._decided(candidate, "refused", f"same key as {previous.shown}")
            else:
                previous = candidate
                checked = check_file(candidate.path, candidate.key, self.config, self.open_file)
                if isinstance(checked, str):
                    self._decided(candidate, "refused", checked)
                else:
                    waiting.append((candidate, candidate.key, *checked))
            # After every file, whatever became of it: a page may have arrived meanwhile.
            while waiting and (len(waiting) > _CHECKED_AHEAD or listing.ready(waiting[0][1])):
                self._plan_file(*waiting.popleft(), listing)
        # The walk is done: while the listing is still on its way, hash the files waiting for
        # it (what comparing with a single-part object takes) instead of idling.
        for candidate, key, size, _ in waiting:
            if self.stop.is_set() or listing.ready(waiting[0][1]):
                break
            if size < self.config.multipart_threshold:
                self._md5s[key] = self._md5_of(candidate.path)
        while waiting and not self.stop.is_set():
            self._plan_file(*waiting.popleft(), listing)
        return excluded

    def _plan_file(
        self, candidate: Candidate, key: str, size: int, content_type: str, listing: BucketListing
    ) -> None:
        existing = listing.find(key)
        replaces = existing is not None
        md5 = self._md5s.pop(key, None)
        if existing is not None:
            if self._same_content(candidate.path, size, existing, md5):
                self._decided(candidate, "skipped", "already uploaded", size, content_type)
                return
            if not self.overwrite:
                refusal = "already in the bucket with different content: pass --overwrite"
                self._decided(candidate, "refused", refusal, size, content_type)
                return
        if self.dry_run:
            replacing = "would replace different content" if replaces else None
            self._decided(candidate, "would_upload", replacing, size, content_type)
            return
        multipart = size >= self.config.multipart_threshold
        parts = math.ceil(size / self._part_size(size)) if multipart else 1
        send = Send(
            candidate, key, size, content_type, replaces, multipart, min(parts, self.config.jobs)
        )
        while not self.room.acquire(timeout=POLL_S):
            if self.stop.is_set():
                return
        self.emit(send)

    def _decided(
        self,
        candidate: Candidate,
        status: Status,
        reason: str | None,
        size: int = 0,
        content_type: str | None = None,
    ) -> None:
        result = FileResult(
            candidate.shown, candidate.key, status, reason, size, content_type=content_type
        )
        self.emit(Decided(result))

    def _same_content(
        self, path: Path, size: int, existing: Existing, md5: str | None = None
    ) -> bool:
        if existing.size != size:
            return False
        if md5 is not None and md5 == existing.etag:
            return True  # hashed while the listing was on its way
        try:
            with self.open_file(path) as stream:
                if "-" in existing.etag:
                    local = multipart_etag(stream, self._part_size(size))
                else:
                    local = hash_stream(stream, "md5").hexdigest()
                if local == existing.etag:
                    return True
                # An ETag imgcli cannot reproduce: ask for the hash it stored, this key only.
                head = self.client.head_object(Bucket=self.bucket, Key=existing.key)
                stored = head.get("Metadata", {}).get(SHA256_METADATA)
                stream.seek(0)
                return stored is not None and hash_stream(stream, "sha256").hexdigest() == stored
        except OSError:
            return False  # the upload then reports what is wrong with the file

    def _md5_of(self, path: Path) -> str | None:
        try:
            with self.open_file(path) as stream:
                return str(hash_stream(stream, "md5").hexdigest())
        except OSError:
            return None  # compared the usual way, which reports the problem

    def _part_size(self, size: int) -> int:
        return int(self._chunks.adjust_chunksize(self.config.multipart_chunksize, size))
