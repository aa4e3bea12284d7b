"""The transfers of an upload: the dispatcher, on the caller's thread, starts them and
hears every outcome; worker threads send. ``Batch`` is one ``Uploader.upload`` call: it
runs the planner (``imgcli.upload_plan``) on a thread of its own and dispatches the
``Send`` events it decides on.

**Transfers.** Files below ``multipart_threshold`` are one ``PutObject`` each, from a pool
of ``jobs`` threads; the response carries the ETag that ``--wait`` looks for. Larger files
go through s3transfer's ``TransferManager`` (multipart, parts in parallel, the upload
aborted if it fails or is cancelled), then one HEAD for the final ETag. Both paths share
one budget of ``jobs`` concurrent requests (a multipart file takes one slot per part it
can run in parallel), so the client's connection pool sized to
``UploadConfig.pool_connections`` (``jobs`` plus one for the listing) is never exceeded.
Every object carries its SHA-256 in ``x-amz-meta-imgcli-sha256``; single-part uploads also
send it as ``ChecksumSHA256``, so S3 itself rejects a body that is not what was hashed.
Retries for throttling and transient errors are botocore's (``standard`` mode, set where
the client is made). Refused and failed files do not stop the others; a failure that
concerns every file (credentials refused, endpoint unreachable, the bucket gone) stops the
batch instead of failing each file in turn, and a rerun resumes cheaply because finished
files are skipped. Such a stop raises ``UploadStopped``, which carries that failure and the
summary of what finished before it, so a script still gets its summary; the caller raises
the failure itself again, which keeps its exit code.

**Ctrl-C** (``KeyboardInterrupt`` on the dispatcher's thread): no new transfer starts,
in-flight multipart uploads are cancelled and aborted (``AbortMultipartUpload``), in-flight
single PUTs finish and are reported, and ``UploadInterrupted`` (a ``KeyboardInterrupt``)
carries the summary of what finished. s3transfer 0.19's ``TransferManager.shutdown(cancel=
True)`` passes its arguments in the wrong order and raises ``TypeError``, so the manager is
cancelled through its context-manager exit, the path a ``with`` block takes.

Known limit: a file that changes between its check and its upload is sent as it is then
(a single-part upload hashes what it sends and S3 verifies it, so its stored SHA-256 stays
true; a multipart one is hashed just before s3transfer reads it).
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]
from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]

from imgcli.errors import ExitCode, ImgcliError, describe_failure
from imgcli.upload_listing import SHA256_METADATA, hash_stream, unquote_etag
from imgcli.upload_plan import Decided, Planner, PlannerEnded, Send
from imgcli.upload_types import (
    FileResult,
    Status,
    UploadConfig,
    UploadInterrupted,
    UploadListener,
    UploadSummary,
)
from imgcli.upload_walk import Root, Selection


@dataclass(frozen=True)
class _Sent:
    amount: int


@dataclass(frozen=True)
class _Finished:
    send: Send
    result: FileResult
    #: A failure that concerns the whole batch: it stops it.
    fatal: BaseException | None = None


_Event = Send | Decided | _Sent | _Finished | PlannerEnded

# Failures that would repeat for every file: stop rather than fail each in turn.
_BATCH_FAILURES: Final = frozenset({ExitCode.AUTH, ExitCode.NETWORK, ExitCode.INTERNAL})


class UploadStopped(Exception):
    """A failure that concerns the whole batch stopped the upload (``UploadInterrupted`` is
    its Ctrl-C twin). ``cause`` is that failure as botocore or imgcli raised it (also the
    exception's ``__cause__``); ``summary`` says what finished before it."""

    def __init__(self, cause: Exception, summary: UploadSummary) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.summary = summary


class _ChangedFile(ImgcliError):
    """The file is not the one that was checked; it fails alone."""

    exit_code = ExitCode.SOME_FAILED


class Batch:
    """One ``Uploader.upload`` call: the planner thread, the dispatcher and the workers."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        config: UploadConfig,
        selection: Selection,
        roots: list[Root],
        *,
        overwrite: bool,
        dry_run: bool,
        listener: UploadListener,
        clock: Callable[[], float],
        open_file: Callable[[Path], IO[bytes]],
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.config = config
        self.listener = listener
        self.clock = clock
        self.open_file = open_file
        self.summary = UploadSummary(dry_run=dry_run)
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.stop_reason = "interrupted"
        # Only the dispatcher touches these.
        self._free_slots = self.config.jobs
        self._waiting: deque[Send] = deque()
        self._in_flight = 0
        self._planning = True
        self._manager: TransferManager | None = None
        # Files decided but not finished: the planner waits for room.
        self._room = threading.BoundedSemaphore(self.config.queued_files)
        self._planner = Planner(
            client,
            bucket,
            config,
            open_file,
            selection,
            roots,
            overwrite,
            dry_run,
            emit=self.events.put,
            stop=self.stop,
            room=self._room,
        )

    # Dispatcher (the caller's thread)

    def run(self) -> UploadSummary:
        started = self.clock()
        planner = threading.Thread(
            target=self._planner.run, name="imgcli-upload-planner", daemon=True
        )
        failure: BaseException | None = None
        try:
            with contextlib.ExitStack() as resources:
                pool = resources.enter_context(
                    ThreadPoolExecutor(self.config.jobs, thread_name_prefix="imgcli-upload")
                )
                # Exits before the pool is joined, so workers waiting on a multipart upload
                # see its cancellation.
                resources.push(self._exit_manager)
                planner.start()
                self._dispatch(pool)
        except BaseException as exc:  # noqa: BLE001 - raised again below, after the report
            failure = exc
        finally:
            self.stop.set()
            self._report_late_finishes()
            planner.join(timeout=5)
            self.summary.seconds = self.clock() - started
        if isinstance(failure, KeyboardInterrupt):
            self.summary.interrupted = True
            raise UploadInterrupted(self.summary) from None
        if isinstance(failure, Exception):
            raise UploadStopped(failure, self.summary) from failure
        if failure is not None:
            raise failure
        return self.summary

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        try:
            while self._planning or self._waiting or self._in_flight:
                self._handle(self.events.get())
                self._start_waiting(pool)
        except BaseException as exc:
            # Before the transfer manager and the pool are shut down: workers then report
            # their cancelled transfers as stopped, not as failures of their own.
            if not isinstance(exc, KeyboardInterrupt):
                self.stop_reason = "not sent: the upload stopped after an error"
            self.stop.set()
            raise

    def _handle(self, event: _Event) -> None:
        if isinstance(event, Decided):
            self._report(event.result)
        elif isinstance(event, Send):
            self.listener.queued(event.size)
            self._waiting.append(event)
        elif isinstance(event, _Sent):
            self.listener.sent(event.amount)
        elif isinstance(event, _Finished):
            self._free_slots += event.send.slots
            self._in_flight -= 1
            self._room.release()
            self._report(event.result)
            if event.fatal is not None:
                raise event.fatal
        else:
            self._planning = False
            self.summary.excluded = event.excluded
            if event.error is not None:
                raise event.error

    def _start_waiting(self, pool: ThreadPoolExecutor) -> None:
        while self._waiting and self._waiting[0].slots <= self._free_slots:
            send = self._waiting.popleft()
            self._free_slots -= send.slots
            self._in_flight += 1
            if send.multipart and self._manager is None:
                self._manager = TransferManager(
                    self.client,
                    TransferConfig(
                        multipart_threshold=self.config.multipart_threshold,
                        multipart_chunksize=self.config.multipart_chunksize,
                        max_request_concurrency=self.config.jobs,
                    ),
                )
            pool.submit(self._transfer, send)

    def _exit_manager(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        # The manager's own exit cancels in-flight transfers when an exception is passing
        # (their multipart uploads are then aborted) and waits for them either way.
        if self._manager is not None:
            self._manager.__exit__(exc_type, exc, tb)

    def _report(self, result: FileResult) -> None:
        self.summary.add(result)
        self.listener.finished(result)

    def _report_late_finishes(self) -> None:
        # After a stop, transfers that ended meanwhile are still reported.
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _Finished):
                self._report(event.result)

    # Workers (the pool's threads)

    def _transfer(self, send: Send) -> None:
        started = self.clock()
        fatal: BaseException | None = None
        etag: str | None = None
        version: str | None = None
        try:
            send_file = self._send_multipart if send.multipart else self._send_single
            etag, version = send_file(send)
            status: Status = "uploaded"
            reason: str | None = "replaced different content" if send.replaces else None
        except BaseException as exc:  # noqa: BLE001 - every outcome goes to the dispatcher
            status = "failed"
            if self.stop.is_set():
                reason = self.stop_reason
                if send.multipart:
                    reason += " (multipart upload aborted)"
            else:
                failure = describe_failure(exc)
                reason = failure.message
                if failure.exit_code in _BATCH_FAILURES:
                    fatal = exc
        result = FileResult(
            send.candidate.shown,
            send.key,
            status,
            reason,
            send.size,
            self.clock() - started,
            send.content_type,
            etag,
            version,
            send.replaces and status == "uploaded",
        )
        self.events.put(_Finished(send, result, fatal))

    def _send_single(self, send: Send) -> tuple[str, str | None]:
        with self.open_file(send.candidate.path) as stream:
            _unchanged(stream, send)
            digest = hash_stream(stream, "sha256")
            stream.seek(0)
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=send.key,
                Body=stream,
                ContentType=send.content_type,
                Metadata={SHA256_METADATA: digest.hexdigest()},
                ChecksumSHA256=base64.b64encode(digest.digest()).decode("ascii"),
            )
        self.events.put(_Sent(send.size))
        return unquote_etag(response["ETag"]), response.get("VersionId")

    def _send_multipart(self, send: Send) -> tuple[str, str | None]:
        with self.open_file(send.candidate.path) as stream:
            _unchanged(stream, send)
            sha256 = hash_stream(stream, "sha256").hexdigest()
        if self._manager is None:
            raise RuntimeError("the dispatcher makes the transfer manager before a multipart send")
        future = self._manager.upload(
            str(send.candidate.path),
            self.bucket,
            send.key,
            extra_args={"ContentType": send.content_type, "Metadata": {SHA256_METADATA: sha256}},
            subscribers=[_TransferProgress(send.size, self.events)],
        )
        future.result()
        # s3transfer returns nothing; --wait needs the ETag S3 gave the completed upload.
        head = self.client.head_object(Bucket=self.bucket, Key=send.key)
        return unquote_etag(head["ETag"]), head.get("VersionId")


def _unchanged(stream: IO[bytes], send: Send) -> None:
    size = os.fstat(stream.fileno()).st_size
    if size != send.size:
        raise _ChangedFile(f"changed since it was checked ({send.size} bytes, now {size})")


class _TransferProgress(BaseSubscriber):  # type: ignore[misc]
    """s3transfer's progress, forwarded to the dispatcher as events."""

    def __init__(self, size: int, events: queue.SimpleQueue[_Event]) -> None:
        self._size = size
        self._events = events

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        # The size the check saw: s3transfer would otherwise stat the file again.
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._events.put(_Sent(bytes_transferred))
