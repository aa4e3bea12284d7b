"""What an upload is told and what it tells back: ``UploadConfig``, the per-file
``FileResult``, the ``UploadSummary``, the ``UploadListener`` and ``UploadInterrupted``.

They sit below every other ``imgcli.upload*`` module because the planner
(``imgcli.upload_plan``), the transfers (``imgcli.upload_transfer``) and the entry point
(``imgcli.upload``) all speak them; kept in ``imgcli.upload`` they would make the engine's
parts import the entry point that drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from imgcli.lambdas.image_metadata import FULL_DECODE_BYTES

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

Status = Literal["uploaded", "skipped", "refused", "failed", "would_upload"]
STATUSES: Final[tuple[Status, ...]] = ("uploaded", "skipped", "refused", "failed", "would_upload")


@dataclass(frozen=True)
class UploadConfig:
    """How an upload runs; every default is documented where it is defined.

    ``jobs``: concurrent requests (default ``DEFAULT_JOBS``, 16); size the client's pool
    with ``pool_connections``. ``multipart_threshold`` / ``multipart_chunksize``: files of at
    least the threshold go multipart in parts of the chunk size (default 8 MiB each; s3transfer
    raises the part size where S3's limits demand). ``max_size``: larger files are refused
    (default 256 MiB). ``full_decode_bytes``: the check's decode threshold, as
    ``describe_image`` takes it (default ``FULL_DECODE_BYTES``, 16 MiB: the save function's
    own, so the client refuses exactly what the stack would index as invalid; a complete
    JPEG is never decoded, whatever this says). ``lookahead``: files checked and waiting
    for a transfer (default ``4 * jobs``), what bounds memory and keeps the workers fed.
    """

    jobs: int = DEFAULT_JOBS
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE
    max_size: int = DEFAULT_MAX_SIZE
    full_decode_bytes: int = FULL_DECODE_BYTES
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
