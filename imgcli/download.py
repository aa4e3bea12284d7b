"""The download engine: objects of the gallery bucket to local files, safely, in parallel.

Built like the upload engine (``imgcli.upload``): collaborators come in through the
constructor (the S3 client, a ``DownloadConfig``, a clock), progress goes out through a
``DownloadListener`` called on the caller's thread, and nothing here knows about typer,
rich or the terminal. S3 is the source of truth: keys need not be indexed.

The parts: ``imgcli.download_types`` (configuration and results), ``imgcli.download_paths``
(key to path, refusals, collisions: pure), ``imgcli.download_files`` (folders, temporary
files, placing) and ``imgcli.download_transfer`` (one object, fetched and verified: the
seam issue 16's shared engine replaces).

**Pipeline.** The caller's thread (the *dispatcher*) reads the source (the keys named, or
``ListObjectsV2`` of the prefix a page at a time, never collected), places each key
(``landing`` and ``Claims``, serial so the first key to claim a path keeps it), reports
refusals at once, and hands the rest to ``jobs`` worker threads, at most
``DownloadConfig.queued`` ahead of them. Workers fetch; their bytes and outcomes come back
through a queue, so every listener call happens on the dispatcher's thread. Memory is a
listing page, ``jobs`` chunks, the queue, and the claims (one entry per path placed).

**Stops.** A failure that concerns every object (credentials refused, the endpoint
unreachable, the bucket gone, a bug) stops the run after the fetches in flight have ended,
as ``DownloadStopped`` with the summary so far. **Ctrl-C** (``KeyboardInterrupt`` on the
dispatcher's thread) sets the stop flag, which every worker reads between chunks: no new
fetch starts, fetches in flight end at their next chunk as ``failed`` "interrupted", every
temporary file is removed (also on a second Ctrl-C, from ``finally``), and
``DownloadInterrupted`` carries the summary. Nothing partial is left at a final name:
files only get there complete and verified.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from imgcli.download_files import PartFiles, current_umask
from imgcli.download_paths import (
    Claims,
    UnsafeKey,
    folder_of,
    folds_names,
    landing,
    local_path,
    relative_key,
)
from imgcli.download_transfer import Fetcher, FetchStopped, Planned
from imgcli.download_types import (
    DownloadConfig,
    DownloadInterrupted,
    DownloadListener,
    DownloadResult,
    DownloadStopped,
    DownloadSummary,
)
from imgcli.errors import ExitCode, describe_failure
from imgcli.upload_listing import unquote_etag

# Failures that would repeat for every object: stop rather than fail each in turn.
_BATCH_FAILURES: Final = frozenset(
    {ExitCode.AUTH, ExitCode.NETWORK, ExitCode.INTERNAL, ExitCode.NO_STACK}
)


@dataclass(frozen=True)
class DownloadRequest:
    """What to download: ``keys`` (each lands as its file name) or every object under
    ``prefix`` (at its path relative to it); ``version_id`` with exactly one key."""

    target: Path
    keys: tuple[str, ...] = ()
    prefix: str | None = None
    version_id: str | None = None

    def __post_init__(self) -> None:
        if bool(self.keys) == (self.prefix is not None):
            raise ValueError("give keys or a prefix, not both or neither")
        if self.version_id is not None and len(self.keys) != 1:
            raise ValueError("a version id needs exactly one key")


@dataclass(frozen=True)
class _Bytes:
    amount: int


@dataclass(frozen=True)
class _Done:
    result: DownloadResult
    fatal: Exception | None = None


class _Silent:
    def queued(self, size: int) -> None:
        return None

    def received(self, amount: int) -> None:
        return None

    def finished(self, result: DownloadResult) -> None:
        return None


class Downloader:
    """Downloads from ``bucket`` with ``client`` (a botocore S3 client whose pool holds
    ``config.pool_connections``)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        config: DownloadConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.config = config if config is not None else DownloadConfig()
        self.clock = clock

    def download(
        self,
        request: DownloadRequest,
        *,
        overwrite: bool = False,
        dry_run: bool = False,
        listener: DownloadListener | None = None,
    ) -> DownloadSummary:
        """Download what ``request`` names; the summary. Raises ``DownloadInterrupted`` on
        Ctrl-C and ``DownloadStopped`` when a failure concerning every object stopped it."""
        return _Run(self, request, overwrite, dry_run, listener or _Silent()).run()


class _Run:
    """One ``Downloader.download`` call: the dispatcher and its workers."""

    def __init__(
        self,
        downloader: Downloader,
        request: DownloadRequest,
        overwrite: bool,
        dry_run: bool,
        listener: DownloadListener,
    ) -> None:
        config = downloader.config
        self.client = downloader.client
        self.bucket = downloader.bucket
        self.config = config
        self.request = request
        self.listener = listener
        self.clock = downloader.clock
        self.dry_run = dry_run
        self.summary = DownloadSummary(dry_run=dry_run)
        self.windows = config.windows if config.windows is not None else os.name == "nt"
        fold = config.fold_names if config.fold_names is not None else folds_names()
        self.claims = Claims(fold=fold)
        self.events: queue.SimpleQueue[_Bytes | _Done] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.parts = PartFiles()
        self.in_flight = 0
        target = request.target
        if not dry_run:
            target.mkdir(parents=True, exist_ok=True)
        self.root = os.path.realpath(target)
        self.fetcher = Fetcher(
            self.client,
            self.bucket,
            self.root,
            parts=self.parts,
            stop=self.stop,
            umask=current_umask(),
            chunk_size=config.chunk_size,
            overwrite=overwrite,
            dry_run=dry_run,
            clock=self.clock,
        )

    def run(self) -> DownloadSummary:
        started = self.clock()
        failure: BaseException | None = None
        try:
            with ThreadPoolExecutor(self.config.jobs, thread_name_prefix="imgcli-download") as pool:
                try:
                    self._dispatch(pool)
                except BaseException:
                    # Before the pool is joined: workers end at their next chunk.
                    self.stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        except BaseException as exc:  # noqa: BLE001 - raised again below, after the report
            failure = exc
        finally:
            self.stop.set()
            self.parts.remove_all()
            self._report_late_finishes()
            self.summary.seconds = self.clock() - started
        if isinstance(failure, KeyboardInterrupt):
            self.summary.interrupted = True
            raise DownloadInterrupted(self.summary) from None
        if isinstance(failure, Exception):
            raise DownloadStopped(failure, self.summary) from failure
        if failure is not None:
            raise failure
        return self.summary

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        for planned in self._placed():
            while self.in_flight >= self.config.queued:
                self._handle(self.events.get())
            self.in_flight += 1
            # A key named on the command line counts as 0 bytes until its fetch reports.
            self.listener.queued(planned.size or 0)
            pool.submit(self._work, planned)
        while self.in_flight:
            self._handle(self.events.get())

    def _placed(self) -> Iterator[Planned]:
        """The source's objects that have a place; refusals are reported on the way."""
        request = self.request
        folder = None if request.prefix is None else folder_of(request.prefix)
        for key, size, etag in self._source(folder):
            relative = relative_key(key, folder)
            if relative is None:
                self.summary.folders += 1
                continue
            try:
                segments = landing(relative, windows=self.windows)
            except UnsafeKey as unsafe:
                self._report(DownloadResult(key, None, "refused", f"the key {unsafe.reason}"))
                continue
            path = local_path(self.root, segments)
            reason = self.claims.claim(segments, key)
            if reason is not None:
                self._report(DownloadResult(key, path, "refused", reason, bytes=size or 0))
                continue
            yield Planned(key, segments, path, size, etag, request.version_id)

    def _source(self, folder: str | None) -> Iterator[tuple[str, int | None, str | None]]:
        if folder is None:
            # One cheap request first: a missing bucket or refused credentials stop the run
            # with their own exit code (a HeadObject's 404 could not tell them from a key).
            self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            for key in self.request.keys:
                yield key, None, None
            return
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"], int(item["Size"]), unquote_etag(item["ETag"])

    def _work(self, planned: Planned) -> None:
        fatal: Exception | None = None
        try:
            result = self.fetcher.fetch(planned, lambda amount: self.events.put(_Bytes(amount)))
        except FetchStopped:
            result = DownloadResult(planned.key, planned.path, "failed", "interrupted")
        except Exception as exc:  # noqa: BLE001 - every outcome goes to the dispatcher
            if self.stop.is_set():
                reason = "interrupted"
            else:
                failure = describe_failure(exc)
                reason = failure.message
                if failure.exit_code in _BATCH_FAILURES:
                    fatal = exc
            result = DownloadResult(planned.key, planned.path, "failed", reason)
        self.events.put(_Done(result, fatal))

    def _handle(self, event: _Bytes | _Done) -> None:
        if isinstance(event, _Bytes):
            self.listener.received(event.amount)
            return
        self.in_flight -= 1
        self._report(event.result)
        if event.fatal is not None:
            raise event.fatal

    def _report(self, result: DownloadResult) -> None:
        self.summary.add(result)
        self.listener.finished(result)

    def _report_late_finishes(self) -> None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _Done):
                self._report(event.result)
