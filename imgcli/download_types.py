"""What a download is told and what it tells back: ``DownloadConfig``, the per-object
``DownloadResult``, the ``DownloadSummary``, the ``DownloadListener``, and the two ways a
run ends early (``DownloadInterrupted``, ``DownloadStopped``).

They mirror upload's (``imgcli.upload_types``) field for field where the meaning is the
same, so scripts read both commands' JSON lines alike: ``path``, ``key``, ``status``,
``reason``, ``bytes``, ``seconds``, ``etag``, ``version_id``; download adds ``verified``
(how the bytes written were checked: ``sha256``, ``md5``, ``checksum`` or ``size``).
Kept below the engine's other modules so each can speak them without importing the
entry point (``imgcli.download``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from imgcli.upload_types import DEFAULT_JOBS, MiB

Status = Literal["downloaded", "skipped", "refused", "failed", "would_download"]
STATUSES: Final[tuple[Status, ...]] = (
    "downloaded",
    "skipped",
    "refused",
    "failed",
    "would_download",
)
Verified = Literal["sha256", "md5", "checksum", "size"]


@dataclass(frozen=True)
class DownloadConfig:
    """How a download runs.

    ``jobs``: objects fetched at once (default ``DEFAULT_JOBS``, 16, upload's); size the S3
    client's pool with ``pool_connections``. ``chunk_size``: bytes read from a body and
    written at a time (default 1 MiB), what bounds memory to about ``jobs`` chunks.
    ``lookahead``: objects decided and waiting for a worker (default ``2 * jobs``).
    ``windows``: map names as Windows needs (``imgcli.download_paths``); default: whether
    this is Windows. ``fold_names``: names differing only in case or normalisation collide
    (default: on Windows and macOS).
    """

    jobs: int = DEFAULT_JOBS
    chunk_size: int = 1 * MiB
    lookahead: int | None = None
    windows: bool | None = None
    fold_names: bool | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1 byte")

    @property
    def pool_connections(self) -> int:
        """Connections the S3 client needs: one per job, one for the listing."""
        return self.jobs + 1

    @property
    def queued(self) -> int:
        """How many objects may wait for a worker (``lookahead``)."""
        return self.lookahead if self.lookahead is not None else 2 * self.jobs


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one object. ``path`` is where it lands (or would), ``None`` when it
    has no place; ``bytes`` is the object's size; ``seconds`` the transfer's duration."""

    key: str
    path: str | None
    status: Status
    reason: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    etag: str | None = None
    version_id: str | None = None
    verified: Verified | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "key": self.key,
            "status": self.status,
            "reason": self.reason,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "etag": self.etag,
            "version_id": self.version_id,
            "verified": self.verified,
        }


@dataclass
class DownloadSummary:
    """Counts per status, what was received, and whether the run was cut short."""

    dry_run: bool = False
    downloaded: int = 0
    skipped: int = 0
    refused: int = 0
    failed: int = 0
    would_download: int = 0
    #: Folder markers (keys ending in '/') passed over: no files.
    folders: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, result: DownloadResult) -> None:
        setattr(self, result.status, getattr(self, result.status) + 1)
        if result.status == "downloaded":
            self.bytes_received += result.bytes

    @property
    def files(self) -> int:
        """Objects reported (every status)."""
        return sum(getattr(self, status) for status in STATUSES)

    @property
    def not_downloaded(self) -> int:
        """Objects refused or failed: what makes the exit code 1."""
        return self.refused + self.failed

    def as_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            **{status: getattr(self, status) for status in STATUSES},
            "folders": self.folders,
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
        }


class DownloadInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the download; ``summary`` says what had finished. No partial file is
    left: every temporary file was removed before this is raised."""

    def __init__(self, summary: DownloadSummary) -> None:
        super().__init__("download interrupted")
        self.summary = summary


class DownloadStopped(Exception):
    """A failure that concerns every object (credentials, the network, the bucket gone)
    stopped the download; ``cause`` is it, ``summary`` what finished before it."""

    def __init__(self, cause: Exception, summary: DownloadSummary) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.summary = summary


class DownloadListener(Protocol):
    """What the caller hears, always on the thread that called ``Downloader.download``."""

    def queued(self, size: int) -> None:
        """An object of ``size`` bytes will be fetched (totals grow as the listing goes)."""

    def received(self, amount: int) -> None:
        """``amount`` more bytes were written (negative when a failed fetch is undone)."""

    def finished(self, result: DownloadResult) -> None:
        """An object's outcome, as soon as it is known."""
