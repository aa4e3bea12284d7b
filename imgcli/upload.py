"""The upload engine: local files to the stack's bucket, checked, deduplicated, concurrent.

``imgcli upload`` is a batch tool (thousands of files from scripts), so this module is
built like a transfer library rather than a command: collaborators come in through the
constructor (the S3 client, an ``UploadConfig``, a clock, a file opener), progress goes out
through an ``UploadListener``, and nothing here knows about typer, rich or the terminal.

**Pipeline.** One *planner* thread walks the paths, checks each file and decides what to
do with it (one, because ``describe_image`` turns Pillow's bomb warning into an error with
``warnings.catch_warnings``, which is process-wide); the caller's thread (the *dispatcher*)
starts transfers, collects their outcomes and calls the listener, so every listener call,
and a Ctrl-C, arrives on the caller's thread; worker threads only send. Each file is
checked before it is queued, so a bad file is never sent, and the checks overlap the
transfers of earlier files instead of delaying the first one. Memory is bounded for any number of
files: the walk is a generator holding one sorted folder listing per level, at most
``UploadConfig.lookahead`` decided files wait for a transfer, two pages of the bucket
listing are held, and file contents are streamed, never read whole.

**The check**, in order (the first failure refuses the file, by path, with a reason):
the key is valid UTF-8 of at most 1,024 bytes; the path resolves (broken symlinks and
symlink loops are named as such) to a regular file we may read; its size is above 0 and
at most ``max_size``; ``lambdas.image_metadata.describe_image`` (the save function's own
check) opens it with Pillow restricted to the accepted formats, enforces the pixel limit
on every frame (decompression bombs) and proves it complete: with ``full_decode_bytes=0``
JPEG and PNG are proven by their trailer (a few bytes at the end) and everything else is
decoded, so a complete 12-megapixel JPEG is checked in well under a millisecond (a
truncated one falls back to a decode, which fails). The content type comes from the
detected format, never the file name.

**Existing keys.** Local keys are produced in S3's own order (UTF-8 byte order: each
folder's entries are sorted with folder names followed by ``/``), and several paths are
merged with ``heapq.merge``, so one ``ListObjectsV2`` pass over the common prefix,
fetched a page at a time one page ahead of the walk, is joined with the walk like a sorted
merge (as ``aws s3 sync`` does). No key means upload. A different size means different
content. Same size: the listing's ETag decides without another request when it is one
imgcli can reproduce, the MD5 of the file for a single-part object and, for a multipart
one, the MD5 of the part MD5s with the part size s3transfer would choose. Only when the
ETag is one imgcli cannot reproduce (SSE-KMS, another tool's part size) is the object's
``x-amz-meta-imgcli-sha256`` read with a HEAD; content it cannot prove the same counts as
different. Same content is *skipped*; different content is *refused* unless ``overwrite``.
So a second run of the same upload sends nothing and makes one listing pass.

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
concerns every file (credentials refused, endpoint unreachable) stops the batch instead of
failing each file in turn, and a rerun resumes cheaply because finished files are skipped.

**Ctrl-C** (``KeyboardInterrupt`` on the dispatcher's thread): no new transfer starts,
in-flight multipart uploads are cancelled and aborted (``AbortMultipartUpload``), in-flight
single PUTs finish and are reported, and ``UploadInterrupted`` (a ``KeyboardInterrupt``)
carries the summary of what finished. s3transfer 0.19's ``TransferManager.shutdown(cancel=
True)`` passes its arguments in the wrong order and raises ``TypeError``, so the manager is
cancelled through its context-manager exit, the path a ``with`` block takes.

Known limits: a file that changes between its check and its upload is sent as it is then
(a single-part upload hashes what it sends and S3 verifies it, so its stored SHA-256 stays
true; a multipart one is hashed just before s3transfer reads it); listing order is only
guaranteed by general purpose buckets, which is what bootstrap creates.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import heapq
import math
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol

from s3transfer.manager import TransferConfig, TransferManager  # type: ignore[import-untyped]
from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]
from s3transfer.utils import ChunksizeAdjuster  # type: ignore[import-untyped]

from imgcli.errors import ExitCode, ImgcliError, UsageError, describe_failure
from imgcli.lambdas.image_metadata import InvalidImage, describe_image

KiB: Final = 1024
MiB: Final = 1024 * KiB

#: Concurrent requests: enough to hide per-request latency on AWS and to saturate the
#: local cloud, few enough that a laptop's uplink is not split into slivers.
DEFAULT_JOBS: Final = 16
#: s3transfer's and the AWS CLI's defaults: below 8 MiB one PUT is cheaper than three calls.
DEFAULT_MULTIPART_THRESHOLD: Final = 8 * MiB
DEFAULT_MULTIPART_CHUNKSIZE: Final = 8 * MiB
#: Far above any camera JPEG or PNG (a 100-megapixel JPEG is about 60 MB), so what it
#: stops is a stray video or disk image renamed .jpg; raise it for huge TIFF scans.
DEFAULT_MAX_SIZE: Final = 256 * MiB
#: S3's longest key, in UTF-8 bytes.
MAX_KEY_BYTES: Final = 1024
#: User metadata holding the SHA-256 of the content (``x-amz-meta-imgcli-sha256``).
SHA256_METADATA: Final = "imgcli-sha256"
#: How ``--wait`` polls: per key (GetImage) up to this many pending keys, else listings.
WAIT_PER_KEY_LIMIT: Final = 50
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0

_HASH_CHUNK: Final = 1 * MiB
# How often a waiting thread looks at the stop flag: the longest a Ctrl-C waits for it.
_POLL_S: Final = 0.1
# Checked files that may wait for the bucket listing to reach their keys: a page's worth.
_CHECKED_AHEAD: Final = 1000

Status = Literal["uploaded", "skipped", "refused", "failed", "would_upload"]
STATUSES: Final[tuple[Status, ...]] = ("uploaded", "skipped", "refused", "failed", "would_upload")


@dataclass(frozen=True)
class UploadConfig:
    """How an upload runs; every default is documented where it is defined.

    ``jobs``: concurrent requests (default ``DEFAULT_JOBS``, 16); size the client's pool
    with ``pool_connections``. ``multipart_threshold`` / ``multipart_chunksize``: files of at
    least the threshold go multipart in parts of the chunk size (default 8 MiB each; s3transfer
    raises the part size where S3's limits demand). ``max_size``: larger files are refused
    (default 256 MiB). ``full_decode_bytes``: files up to this size are decoded in full by the
    check, larger ones only when their trailer does not prove them complete (default 0: JPEG
    and PNG are proven by their trailer, other formats are always decoded; the stack's save
    function decodes again anyway). ``lookahead``: files checked and waiting for a transfer
    (default ``4 * jobs``), what bounds memory and keeps the workers fed.
    """

    jobs: int = DEFAULT_JOBS
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE
    max_size: int = DEFAULT_MAX_SIZE
    full_decode_bytes: int = 0
    lookahead: int | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1 byte")

    @property
    def pool_connections(self) -> int:
        """Connections the S3 client needs: one per job, one for the bucket listing's next
        page, and one for the planner's rare HeadObject (a content check the listing's
        ETag cannot answer), which may overlap with it."""
        return self.jobs + 2

    @property
    def queued_files(self) -> int:
        """How many checked files may wait for a transfer (``lookahead``)."""
        return self.lookahead if self.lookahead is not None else 4 * self.jobs


# What to upload


@dataclass(frozen=True)
class PathFilter:
    """One ``--include`` (``include=True``) or ``--exclude`` glob."""

    pattern: str
    include: bool


def is_selected(relative: str, filters: Sequence[PathFilter]) -> bool:
    """Whether a file passes the filters, like ``aws s3``: later filters win.

    ``relative`` is the file's path relative to the folder given (``/`` separators), or its
    name for a file given directly. Patterns are ``fnmatch`` globs matched against the whole
    of it, case-sensitively, and ``*`` also matches ``/`` (so ``*.tmp`` excludes in every
    folder, ``raw/*`` everything under ``raw/``). The last filter that matches decides; a file
    no filter matches is uploaded, unless the first filter is an ``--include``: then only
    included files are (``--include '*.png'`` alone means "only PNGs", where ``aws s3``
    would silently upload everything).
    """
    selected = not (filters and filters[0].include)
    for path_filter in filters:
        if fnmatchcase(relative, path_filter.pattern):
            selected = path_filter.include
    return selected


@dataclass(frozen=True)
class Selection:
    """The files an upload considers: ``paths`` (files, or folders with ``recursive``),
    narrowed by ``filters``, keyed under ``prefix`` (taken literally: end it with ``/`` for
    a folder)."""

    paths: tuple[Path, ...]
    prefix: str = ""
    recursive: bool = False
    filters: tuple[PathFilter, ...] = ()


# What happened


@dataclass(frozen=True)
class FileResult:
    """What happened to one file. ``key`` is ``None`` for a folder that could not be walked;
    ``bytes`` is the file's size; ``seconds`` is the transfer's duration (0 if none)."""

    path: str
    key: str | None
    status: Status
    reason: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    content_type: str | None = None
    etag: str | None = None
    version_id: str | None = None
    replaced: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "key": self.key,
            "status": self.status,
            "reason": self.reason,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "content_type": self.content_type,
            "etag": self.etag,
            "version_id": self.version_id,
            "replaced": self.replaced,
        }


@dataclass
class UploadSummary:
    """Counts per status, what was sent, and whether the batch was cut short."""

    dry_run: bool = False
    uploaded: int = 0
    skipped: int = 0
    refused: int = 0
    failed: int = 0
    would_upload: int = 0
    #: Uploads that replaced an object with different content (``overwrite``).
    replaced: int = 0
    #: Files the filters left out (not reported one by one).
    excluded: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, result: FileResult) -> None:
        setattr(self, result.status, getattr(self, result.status) + 1)
        if result.status == "uploaded":
            self.bytes_sent += result.bytes
            self.replaced += result.replaced

    @property
    def files(self) -> int:
        """Files reported (every status)."""
        return sum(getattr(self, status) for status in STATUSES)

    @property
    def not_uploaded(self) -> int:
        """Files refused or failed: what makes the exit code 1."""
        return self.refused + self.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            **{status: getattr(self, status) for status in STATUSES},
            "replaced": self.replaced,
            "excluded": self.excluded,
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }


class UploadInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the upload; ``summary`` says what had finished."""

    def __init__(self, summary: UploadSummary) -> None:
        super().__init__("upload interrupted")
        self.summary = summary


class UploadListener(Protocol):
    """What the caller hears, always on the thread that called ``Uploader.upload``."""

    def queued(self, size: int) -> None:
        """A file of ``size`` bytes will be sent (progress totals grow as the walk goes)."""

    def sent(self, amount: int) -> None:
        """``amount`` more bytes were sent (negative when a part is retried)."""

    def finished(self, result: FileResult) -> None:
        """A file's outcome, as soon as it is known."""


class _Silent:
    def queued(self, size: int) -> None:
        return None

    def sent(self, amount: int) -> None:
        return None

    def finished(self, result: FileResult) -> None:
        return None


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


# The engine


class Uploader:
    """Uploads a ``Selection`` to ``bucket`` with ``client`` (a boto3 S3 client whose pool
    holds ``config.pool_connections``). ``clock`` times transfers (seconds, monotonic);
    ``open_file`` opens a file for reading (the seam for file-system failures)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        config: UploadConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        open_file: Callable[[Path], IO[bytes]] = _open_binary,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.config = config if config is not None else UploadConfig()
        self.clock = clock
        self.open_file = open_file

    def upload(
        self,
        selection: Selection,
        *,
        overwrite: bool = False,
        dry_run: bool = False,
        listener: UploadListener | None = None,
    ) -> UploadSummary:
        """Upload what ``selection`` names; returns the summary.

        Raises ``UsageError`` before anything happens if a path does not exist or is a folder
        without ``recursive``; ``UploadInterrupted`` on Ctrl-C; an AWS error that concerns the
        whole batch (listing the bucket, credentials, an unreachable endpoint) after the
        transfers in flight have ended.
        """
        roots = _roots(selection)
        batch = _Batch(self, selection, roots, overwrite, dry_run, listener or _Silent())
        return batch.run()


# The walk


@dataclass(frozen=True)
class _Root:
    path: Path
    shown: str
    is_folder: bool
    #: The smallest key this root can produce, and what all its keys start with.
    key_floor: str


def check_paths(selection: Selection) -> None:
    """``UsageError`` if a path does not exist, or is a folder without ``recursive``."""
    _roots(selection)


def _roots(selection: Selection) -> list[_Root]:
    roots = []
    for path in selection.paths:
        shown = str(path)
        if not os.path.lexists(path):
            raise UsageError(f"no such file or folder: {shown}")
        if path.is_dir():
            if not selection.recursive:
                raise UsageError(
                    f"{shown} is a folder", hint="pass --recursive to upload the images in it"
                )
            roots.append(_Root(path, shown, True, selection.prefix))
        else:
            roots.append(_Root(path, shown, False, selection.prefix + path.name))
    return roots


@dataclass(frozen=True)
class _Candidate:
    """A file (or a folder that could not be walked: ``problem``) found by the walk."""

    sort_key: str
    key: str | None
    path: Path
    shown: str
    relative: str
    problem: str | None = None


def _candidates(root: _Root, prefix: str) -> Iterator[_Candidate]:
    if not root.is_folder:
        name = root.path.name
        yield _Candidate(prefix + name, prefix + name, root.path, root.shown, name)
        return
    try:
        info = root.path.stat()
    except OSError as exc:  # it was a folder a moment ago
        yield _folder_problem(root, prefix, root.path, "", _os_reason(exc, root.path))
        return
    yield from _walk(root, prefix, root.path, "", frozenset({(info.st_dev, info.st_ino)}))


def _walk(
    root: _Root, prefix: str, folder: Path, relative: str, ancestors: frozenset[tuple[int, int]]
) -> Iterator[_Candidate]:
    try:
        with os.scandir(folder) as scan:
            entries = [(entry.name, _is_folder(entry)) for entry in scan]
    except OSError as exc:
        yield _folder_problem(root, prefix, folder, relative, f"unreadable folder: {exc.strerror}")
        return
    # Sorting "name/" for folders yields keys in S3's listing order: "a.jpg" < "a/b.jpg".
    entries.sort(key=lambda entry: entry[0] + "/" if entry[1] else entry[0])
    for name, is_folder in entries:
        path = folder / name
        below = relative + name
        if not is_folder:
            shown = str(Path(root.shown) / below)
            yield _Candidate(prefix + below, prefix + below, path, shown, below)
            continue
        try:
            info = path.stat()
        except OSError as exc:
            yield _folder_problem(root, prefix, path, below + "/", _os_reason(exc, path))
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in ancestors:
            reason = "symlink loop: this folder links back to a folder that contains it"
            yield _folder_problem(root, prefix, path, below + "/", reason)
            continue
        yield from _walk(root, prefix, path, below + "/", ancestors | {identity})


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a link to a folder is walked
    except OSError:
        return False  # a link that cannot be followed: the file check names the reason


def _folder_problem(root: _Root, prefix: str, path: Path, relative: str, reason: str) -> _Candidate:
    shown = str(Path(root.shown) / relative) if relative else root.shown
    return _Candidate(prefix + relative, None, path, shown, relative, reason)


def _os_reason(exc: OSError, path: Path) -> str:
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return "broken symlink: its target does not exist"
        return "no such file (removed during the upload?)"
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link leads back to itself"
    if isinstance(exc, PermissionError):
        return "unreadable: permission denied"
    return f"unreadable: {exc.strerror or exc}"


# The bucket's side


@dataclass(frozen=True)
class _Existing:
    key: str
    size: int
    etag: str


class _BucketListing:
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
        self._objects: list[_Existing] = []
        self._index = 0

    def find(self, key: str) -> _Existing | None:
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
                _Existing(item["Key"], int(item["Size"]), _etag(item["ETag"]))
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
        while not self._ready.wait(_POLL_S):
            if stop.is_set():
                raise _ListingAbandoned
        if self._error is not None:
            raise self._error
        return self._page

    def following(self) -> _NextPage:
        """Start fetching the page after this one."""
        return _NextPage(self._pages)


def _etag(value: str) -> str:
    return value.strip('"')


def multipart_etag(stream: IO[bytes], part_size: int) -> str:
    """The ETag S3 gives a multipart upload of ``stream`` in ``part_size`` parts."""
    digests = []
    while part := stream.read(part_size):
        digests.append(hashlib.md5(part, usedforsecurity=False).digest())
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def _hash_stream(stream: IO[bytes], algorithm: str) -> Any:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    while chunk := stream.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest


# The batch: planner thread, dispatcher, workers


@dataclass(frozen=True)
class _Send:
    """A checked file to send."""

    candidate: _Candidate
    key: str
    size: int
    content_type: str
    replaces: bool
    multipart: bool
    #: Requests it may have in flight at once: one, or one per part up to ``jobs``.
    slots: int


@dataclass(frozen=True)
class _Decided:
    result: FileResult


@dataclass(frozen=True)
class _Sent:
    amount: int


@dataclass(frozen=True)
class _Finished:
    send: _Send
    result: FileResult
    #: A failure that concerns the whole batch: it stops it.
    fatal: BaseException | None = None


@dataclass(frozen=True)
class _PlannerEnded:
    excluded: int
    error: BaseException | None = None


_Event = _Send | _Decided | _Sent | _Finished | _PlannerEnded

# Failures that would repeat for every file: stop rather than fail each in turn.
_BATCH_FAILURES: Final = frozenset({ExitCode.AUTH, ExitCode.NETWORK, ExitCode.INTERNAL})


class _ChangedFile(ImgcliError):
    """The file is not the one that was checked; it fails alone."""

    exit_code = ExitCode.SOME_FAILED


class _Batch:
    """One ``Uploader.upload`` call: the planner thread, the dispatcher and the workers."""

    def __init__(
        self,
        uploader: Uploader,
        selection: Selection,
        roots: list[_Root],
        overwrite: bool,
        dry_run: bool,
        listener: UploadListener,
    ) -> None:
        self.uploader = uploader
        self.client = uploader.client
        self.bucket = uploader.bucket
        self.config = uploader.config
        self.selection = selection
        self.roots = roots
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.listener = listener
        self.summary = UploadSummary(dry_run=dry_run)
        self.events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.stop_reason = "interrupted"
        # Only the dispatcher touches these.
        self._free_slots = self.config.jobs
        self._waiting: deque[_Send] = deque()
        self._in_flight = 0
        self._planning = True
        self._manager: TransferManager | None = None
        # Files decided but not finished: the planner waits for room.
        self._room = threading.BoundedSemaphore(self.config.queued_files)
        # Only the planner touches this: MD5s of files hashed while the listing was awaited.
        self._md5s: dict[str, str | None] = {}
        self._chunks = ChunksizeAdjuster()

    # Dispatcher (the caller's thread)

    def run(self) -> UploadSummary:
        started = self.uploader.clock()
        planner = threading.Thread(target=self._plan, name="imgcli-upload-planner", daemon=True)
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
            self.summary.seconds = self.uploader.clock() - started
        if isinstance(failure, KeyboardInterrupt):
            self.summary.interrupted = True
            raise UploadInterrupted(self.summary) from None
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
        if isinstance(event, _Decided):
            self._report(event.result)
        elif isinstance(event, _Send):
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

    # Planner (its own thread)

    def _plan(self) -> None:
        excluded = 0
        error: BaseException | None = None
        try:
            excluded = self._plan_files()
        except BaseException as exc:  # noqa: BLE001 - raised again on the dispatcher's thread
            error = exc
        self.events.put(_PlannerEnded(excluded, error))

    def _plan_files(self) -> int:
        selection = self.selection
        floors = [root.key_floor for root in self.roots]
        lowest = min(floors, default="")
        # StartAfter is exclusive; a proper prefix of the lowest key sorts just before it.
        # Keys, not paths: the character-wise common prefix is the one wanted.
        common = os.path.commonprefix(floors)  # noqa: RUF071
        listing = _BucketListing(self.client, self.bucket, common, lowest[:-1], self.stop)
        streams = [_candidates(root, selection.prefix) for root in self.roots]
        excluded = 0
        previous: _Candidate | None = None
        # Checked files wait here until the listing can answer for them without waiting for
        # a page, so the checks go on while a page is on its way.
        waiting: deque[tuple[_Candidate, str, int, str]] = deque()
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
                checked = self._check(candidate, candidate.key)
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
        self, candidate: _Candidate, key: str, size: int, content_type: str, listing: _BucketListing
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
        send = _Send(
            candidate, key, size, content_type, replaces, multipart, min(parts, self.config.jobs)
        )
        while not self._room.acquire(timeout=_POLL_S):
            if self.stop.is_set():
                return
        self.events.put(send)

    def _decided(
        self,
        candidate: _Candidate,
        status: Status,
        reason: str | None,
        size: int = 0,
        content_type: str | None = None,
    ) -> None:
        result = FileResult(
            candidate.shown, candidate.key, status, reason, size, content_type=content_type
        )
        self.events.put(_Decided(result))

    def _check(self, candidate: _Candidate, key: str) -> tuple[int, str] | str:
        """The file's size and content type, or why it is refused."""
        try:
            key_bytes = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            return "the file name is not valid UTF-8, so it cannot be an S3 key"
        if key_bytes > MAX_KEY_BYTES:
            return f"key too long: {key_bytes} bytes of UTF-8 (S3's limit is {MAX_KEY_BYTES})"
        path = candidate.path
        try:
            info = path.stat()
        except OSError as exc:
            return _os_reason(exc, path)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        size = info.st_size
        if size == 0:
            return "empty file"
        if size > self.config.max_size:
            return f"too large: {size} bytes (the limit is {self.config.max_size}; see --max-size)"
        try:
            with self.uploader.open_file(path) as stream:
                details = describe_image(
                    stream, size, full_decode_bytes=self.config.full_decode_bytes
                )
        except InvalidImage as invalid:
            return invalid.reason
        except OSError as exc:
            return _os_reason(exc, path)
        # Pillow's plugins raise more than describe_image anticipates on hostile input; one
        # such file must not stop a batch of thousands.
        except Exception as exc:  # noqa: BLE001
            return f"not readable as an image: {type(exc).__name__}: {exc}"
        return size, details.content_type

    def _same_content(
        self, path: Path, size: int, existing: _Existing, md5: str | None = None
    ) -> bool:
        if existing.size != size:
            return False
        if md5 is not None and md5 == existing.etag:
            return True  # hashed while the listing was on its way
        try:
            with self.uploader.open_file(path) as stream:
                if "-" in existing.etag:
                    local = multipart_etag(stream, self._part_size(size))
                else:
                    local = _hash_stream(stream, "md5").hexdigest()
                if local == existing.etag:
                    return True
                # An ETag imgcli cannot reproduce: ask for the hash it stored, this key only.
                head = self.client.head_object(Bucket=self.bucket, Key=existing.key)
                stored = head.get("Metadata", {}).get(SHA256_METADATA)
                stream.seek(0)
                return stored is not None and _hash_stream(stream, "sha256").hexdigest() == stored
        except OSError:
            return False  # the upload then reports what is wrong with the file

    def _md5_of(self, path: Path) -> str | None:
        try:
            with self.uploader.open_file(path) as stream:
                return str(_hash_stream(stream, "md5").hexdigest())
        except OSError:
            return None  # compared the usual way, which reports the problem

    def _part_size(self, size: int) -> int:
        return int(self._chunks.adjust_chunksize(self.config.multipart_chunksize, size))

    # Workers (the pool's threads)

    def _transfer(self, send: _Send) -> None:
        started = self.uploader.clock()
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
            self.uploader.clock() - started,
            send.content_type,
            etag,
            version,
            send.replaces and status == "uploaded",
        )
        self.events.put(_Finished(send, result, fatal))

    def _send_single(self, send: _Send) -> tuple[str, str | None]:
        with self.uploader.open_file(send.candidate.path) as stream:
            _unchanged(stream, send)
            digest = _hash_stream(stream, "sha256")
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
        return _etag(response["ETag"]), response.get("VersionId")

    def _send_multipart(self, send: _Send) -> tuple[str, str | None]:
        with self.uploader.open_file(send.candidate.path) as stream:
            _unchanged(stream, send)
            sha256 = _hash_stream(stream, "sha256").hexdigest()
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
        return _etag(head["ETag"]), head.get("VersionId")


def _unchanged(stream: IO[bytes], send: _Send) -> None:
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


# Waiting for the index


class ImageLookup(Protocol):
    """The reads ``wait_until_indexed`` needs; ``imgcli.gallery_api.GalleryApi`` has them."""

    def get_image(self, key: str) -> dict[str, Any] | None: ...

    def list_images(
        self, *, prefix: str | None = None, invalid: bool = False
    ) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class IndexWait:
    """How ``wait_until_indexed`` ended: keys listed as uploaded, keys the stack found
    invalid (with its reason), keys still not listed with their new ETag."""

    listed: int
    invalid: Mapping[str, str]
    pending: frozenset[str]


def wait_until_indexed(
    api: ImageLookup,
    expected: Mapping[str, str],
    *,
    timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    per_key_limit: int = WAIT_PER_KEY_LIMIT,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> IndexWait:
    """Poll the API until it lists every key of ``expected`` with the ETag given for it.

    The ETag is what makes it *this* upload: after an overwrite the old details stay listed
    until the new object is indexed. Up to ``per_key_limit`` pending keys are asked one by
    one; more are found by listing their common prefix (active, then invalid images). The
    delay between rounds doubles from ``first_delay_s`` to ``max_delay_s``.
    """
    pending = dict(expected)
    invalid: dict[str, str] = {}
    deadline = clock() + timeout_s
    delay = first_delay_s
    while True:
        for image in _lookup(api, pending, per_key_limit):
            key = image["key"]
            if key in pending and image.get("etag") == pending[key]:
                del pending[key]
                if image.get("status") == "invalid":
                    invalid[key] = str(image.get("reason") or "the stack could not read it")
        remaining_s = deadline - clock()
        if not pending or remaining_s <= 0:
            listed = len(expected) - len(pending) - len(invalid)
            return IndexWait(listed, invalid, frozenset(pending))
        sleep(min(delay, remaining_s))
        delay = min(delay * 2, max_delay_s)


def _lookup(api: ImageLookup, pending: Mapping[str, str], limit: int) -> Iterable[dict[str, Any]]:
    if len(pending) <= limit:
        found = (api.get_image(key) for key in list(pending))
        return [image for image in found if image is not None]
    prefix = os.path.commonprefix(list(pending)) or None  # noqa: RUF071 - keys, not paths
    return [
        image
        for invalid in (False, True)
        for image in api.list_images(prefix=prefix, invalid=invalid)
        if image.get("key") in pending
    ]
