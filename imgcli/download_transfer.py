"""One object, from the bucket to its final name: what a download worker does.

This is the part issue 16 puts on a faster engine, so it is one small interface:
``Fetcher.fetch(planned) -> DownloadResult``, called on a worker thread, reporting bytes
through ``on_bytes`` and stopping at the next chunk once ``stop`` is set. It knows nothing
of listings, claims or output (``imgcli.download``) or of the terminal.

**Same content, skipped.** A local file of the object's size is compared with the SHA-256
imgcli's upload stores in ``x-amz-meta-imgcli-sha256`` (one HeadObject, made only when
such a file exists); without it, with the ETag when that is the MD5 of the content (a
single-part upload) or, for a multipart ETag, the one the likely part sizes give
(``likely_part_sizes``: s3transfer's 8 MiB, which imgcli's own uploads use, and a few
others). A file it cannot compare counts as different.

**Verified before it is placed.** The bytes written are checked against the stored
SHA-256, else a single-part ETag (MD5). A multipart object without the SHA-256 is fetched
with ``ChecksumMode="ENABLED"``: when S3 holds a full-object checksum, botocore checks the
body against it as it is read (``verified: "checksum"``); otherwise only the size can be
checked, and the result says so (``verified: "size"``). Every fetch also checks the size.
A failed check is ``failed``, and the temporary file is removed: nothing is left.
"""

from __future__ import annotations

import hashlib
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from imgcli.download_files import (
    LocalConflict,
    PartFiles,
    existing,
    finish_part,
    open_part,
    parent_folder,
    place,
)
from imgcli.download_types import DownloadResult, Status, Verified
from imgcli.errors import ImgcliError
from imgcli.upload_listing import SHA256_METADATA, hash_stream, multipart_etag, unquote_etag
from imgcli.upload_types import DEFAULT_MULTIPART_CHUNKSIZE, MiB

#: botocore's names of the full-object checksums S3 may return.
_CHECKSUM_FIELDS: Final = (
    "ChecksumCRC64NVME",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumSHA256",
    "ChecksumSHA1",
)


@dataclass(frozen=True)
class Planned:
    """An object the dispatcher placed: where it goes, and what the listing said of it
    (``size`` is None for a key named on the command line: the fetcher asks S3)."""

    key: str
    segments: tuple[str, ...]
    path: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None


@dataclass(frozen=True)
class _Object:
    size: int
    etag: str
    sha256: str | None
    modified: datetime | None
    version_id: str | None


class FetchStopped(Exception):
    """``stop`` was set while the object was being fetched; its temporary file is gone."""


class VerificationFailed(ImgcliError):
    """The bytes written are not the object's."""


class Fetcher:
    """Fetches planned objects from ``bucket`` with ``client`` into ``root`` (a real path)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        root: str,
        *,
        parts: PartFiles,
        stop: threading.Event,
        umask: int,
        chunk_size: int,
        overwrite: bool,
        dry_run: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.root = root
        self.parts = parts
        self.stop = stop
        self.umask = umask
        self.chunk_size = chunk_size
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.clock = clock

    def fetch(self, planned: Planned, on_bytes: Callable[[int], None]) -> DownloadResult:
        """What happened to ``planned``; S3 and local errors that concern this object alone
        are its ``failed`` result, others (credentials, network) are raised."""
        started = self.clock()

        def result(status: Status, reason: str | None = None, **fields: Any) -> DownloadResult:
            return DownloadResult(
                planned.key,
                planned.path,
                status,
                reason,
                seconds=self.clock() - started if status == "downloaded" else 0.0,
                **fields,
            )

        known = None
        if planned.size is None:
            known = self._head(planned)
            if known is None:
                what = "version" if planned.version_id else "key"
                return result("failed", f"no such {what} in the bucket")
        size = known.size if known else planned.size or 0
        facts = {"bytes": size, "version_id": planned.version_id}
        try:
            folder = parent_folder(self.root, planned.segments, create=not self.dry_run)
            local = existing(planned.path)
            if local is not None:
                if stat.S_ISDIR(local.st_mode):
                    return result("refused", "a folder is in the way", **facts)
                if local.st_size == size and stat.S_ISREG(local.st_mode):
                    known = known or self._head(planned)
                    if known is not None and self._same_content(planned.path, known):
                        return result("skipped", "same content", etag=known.etag, **facts)
                if not self.overwrite:
                    return result("refused", "exists; --overwrite to replace", **facts)
            if self.dry_run:
                return result("would_download", None, **facts)
            listed_etag = known.etag if known else planned.etag
            etag, version, verified, received = self._download(
                planned, folder, listed_etag, on_bytes
            )
        except LocalConflict as conflict:
            return result("refused", conflict.reason, **facts)
        except (VerificationFailed, OSError) as failed:
            return result("failed", _reason(failed), **facts)
        return result(
            "downloaded",
            None,
            bytes=received,
            etag=etag,
            version_id=version,
            verified=verified,
        )

    def _head(self, planned: Planned) -> _Object | None:
        from botocore.exceptions import ClientError

        arguments = {"Bucket": self.bucket, "Key": planned.key}
        if planned.version_id:
            arguments["VersionId"] = planned.version_id
        try:
            head = self.client.head_object(**arguments)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code"))
            # A HEAD has no body: a missing key is only its status. (The bucket itself was
            # checked before any object, so a 404 here is the key.)
            if code in ("404", "NoSuchKey", "NoSuchVersion", "400", "405"):
                return None
            raise
        return _described(head)

    def _same_content(self, path: str, known: _Object) -> bool:
        with Path(path).open("rb") as stream:
            if known.sha256:
                return bool(hash_stream(stream, "sha256").hexdigest() == known.sha256)
            if "-" not in known.etag:
                return bool(hash_stream(stream, "md5").hexdigest() == known.etag)
            for part_size in likely_part_sizes(known.size, known.etag):
                stream.seek(0)
                if multipart_etag(stream, part_size) == known.etag:
                    return True
            return False

    def _download(
        self,
        planned: Planned,
        folder: str,
        listed_etag: str | None,
        on_bytes: Callable[[int], None],
    ) -> tuple[str, str | None, Verified, int]:
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": planned.key}
        if planned.version_id:
            arguments["VersionId"] = planned.version_id
        if listed_etag is None or "-" in listed_etag:
            arguments["ChecksumMode"] = "ENABLED"
        response = self.client.get_object(**arguments)
        known = _described(response)
        body = response["Body"]
        name = planned.segments[-1]
        descriptor, part = self.parts.create(folder, name)
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with open_part(descriptor) as stream:
                while True:
                    if self.stop.is_set():
                        raise FetchStopped
                    chunk = _read(body, self.chunk_size)
                    if not chunk:
                        break
                    stream.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    on_bytes(len(chunk))
                verified = _verify(known, response, received, sha256, md5)
                finish_part(stream, umask=self.umask, modified=known.modified)
            place(part, planned.path, overwrite=self.overwrite)
            self.parts.placed(part)
        except BaseException:
            on_bytes(-received)
            self.parts.discard(part)
            body.close()
            raise
        return known.etag, known.version_id, verified, received


def likely_part_sizes(size: int, etag: str) -> list[int]:
    """Part sizes a multipart ``etag`` (``MD5-N``) of ``size`` bytes was likely uploaded in
    (the tools' usual 8, 16 and 5 MiB, and the smallest whole MiB making ``N`` parts), each
    giving ``N`` parts: at most four reads of the local file to compare it."""
    try:
        parts = int(etag.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return []
    if parts < 1:
        return []
    smallest = -(-size // parts)
    whole = -(-smallest // MiB) * MiB
    candidates = dict.fromkeys((DEFAULT_MULTIPART_CHUNKSIZE, 16 * MiB, 5 * MiB, whole))
    return [p for p in candidates if p > 0 and -(-size // p) == parts]


def _read(body: Any, size: int) -> bytes:
    from botocore.exceptions import FlexibleChecksumError

    try:
        chunk: bytes = body.read(size)
    except FlexibleChecksumError as mismatch:
        # S3's full-object checksum, checked by botocore as the body ends: this object's
        # bytes are wrong, which says nothing about the others.
        raise VerificationFailed(
            f"the bytes received do not match S3's checksum: {mismatch}"
        ) from mismatch
    return chunk


def _verify(known: _Object, response: Any, received: int, sha256: Any, md5: Any) -> Verified:
    if received != known.size:
        raise VerificationFailed(
            f"received {received} bytes of {known.size}: the download was cut short"
        )
    if known.sha256:
        if sha256.hexdigest() != known.sha256:
            raise VerificationFailed("the bytes received do not match the stored SHA-256")
        return "sha256"
    if "-" not in known.etag:
        if md5.hexdigest() != known.etag:
            raise VerificationFailed("the bytes received do not match the ETag (MD5)")
        return "md5"
    if response.get("ChecksumType") == "FULL_OBJECT" and any(
        response.get(name) for name in _CHECKSUM_FIELDS
    ):
        return "checksum"  # botocore checked the body as it was read
    return "size"


def _described(response: Any) -> _Object:
    metadata = response.get("Metadata") or {}
    return _Object(
        size=int(response["ContentLength"]),
        etag=unquote_etag(response.get("ETag", "")),
        sha256=metadata.get(SHA256_METADATA),
        modified=response.get("LastModified"),
        version_id=response.get("VersionId"),
    )


def _reason(failure: Exception) -> str:
    if isinstance(failure, ImgcliError):
        return failure.message
    if isinstance(failure, OSError) and failure.strerror:
        return f"could not write the file: {failure.strerror}"
    return str(failure)
