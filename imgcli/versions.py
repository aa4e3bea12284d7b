"""``imgcli versions`` and ``imgcli restore``: a key's versions in the gallery bucket, and
bringing an old one back.

The gallery bucket is versioned and keeps noncurrent versions for the stack's
``noncurrent-days``, so an overwritten or deleted image is still there. Decisions:

* **Listing** is ListObjectVersions with ``Prefix=KEY``, keeping only the exact key
  (``a.jpg`` must not show ``a.jpg.bak``'s versions). S3 lists keys in UTF-8 byte order
  and a key sorts before every longer key it is a prefix of, so the exact key's versions
  come first: paging stops at the first other key instead of walking a large prefix.
  Versions and delete markers arrive as two lists (botocore parses S3's one interleaved
  list into two), each newest first; merged: the current one first, then by
  last-modified time. S3 gives that time in whole seconds, so a version and a delete
  marker of the same second cannot be ordered for sure: the marker is put first, as a
  delete usually follows the version it hides (put, then delete at once).
* **Restore copies** the chosen version over the key (CopyObject with the version in
  ``CopySource``), as AWS documents for restoring a previous version. The alternative,
  deleting the delete marker, works only for a deleted key and erases the record of the
  deletion; a copy keeps the whole history (the restored image is a new version), keeps
  the object's metadata (``imgcli-sha256`` included) and content type (the copy's
  default ``MetadataDirective=COPY``), and the stack indexes it like any upload, from its
  ``ObjectCreated:Copy`` event. CopyObject copies at most 5 GB; a larger version is copied
  in parts (``UploadPartCopy``) with the source's content type and metadata set on the
  new upload, since a multipart copy does not carry them over by itself.
* **Which version** (``restore_source``): ``--version-id`` names it. Without it, a deleted
  key (current version a delete marker) gets its newest version that is not a delete
  marker; a live key is refused (exit 2), since which older version is meant is a guess.
  A version that is a delete marker, or is already current, is refused too.
* **Waiting** (``wait_until_version_indexed``): the API is polled until the key's record
  carries the new version id. ETags cannot tell (a restored version has its old ETag,
  which an earlier record may also carry).
"""

from __future__ import annotations

import datetime
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from imgcli.errors import ExitCode, ImgcliError, UsageError

#: CopyObject's limit; larger objects are copied in parts.
COPY_OBJECT_LIMIT: Final = 5 * 1024**3
#: A multipart copy's part size (S3: 5 MiB .. 5 GiB, at most 10,000 parts).
COPY_PART_SIZE: Final = 512 * 1024**2
MAX_PARTS: Final = 10_000
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0
#: What HeadObject answers that a multipart copy sets again on the new object.
_CARRIED_HEADERS: Final = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Metadata",
)


class NoVersions(ImgcliError):
    """The bucket holds no version of the key, or not the one named (exit code 1, as
    ``show`` of a missing key)."""

    exit_code = ExitCode.SOME_FAILED


class RestoredButInvalid(ImgcliError):
    """The restored version was indexed as not an image (exit code 1)."""

    exit_code = ExitCode.SOME_FAILED


@dataclass(frozen=True)
class ObjectVersion:
    """One version of a key, or one of its delete markers."""

    key: str
    version_id: str
    last_modified: datetime.datetime
    is_latest: bool
    delete_marker: bool
    size: int | None = None
    etag: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version_id": self.version_id,
            "last_modified": self.last_modified.isoformat().replace("+00:00", "Z"),
            "size": self.size,
            "etag": self.etag,
            "is_latest": self.is_latest,
            "delete_marker": self.delete_marker,
        }


@dataclass(frozen=True)
class Restored:
    """What ``restore_version`` did: ``key`` is now a copy of ``source``, as ``version_id``."""

    key: str
    source: ObjectVersion
    version_id: str | None
    etag: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "restored_from": self.source.version_id,
            "version_id": self.version_id,
            "etag": self.etag,
        }


class RecordLookup(Protocol):
    """The read ``wait_until_version_indexed`` needs; ``GalleryApi`` has it."""

    def get_image(self, key: str) -> dict[str, Any] | None: ...


def list_versions(s3: Any, bucket: str, key: str) -> list[ObjectVersion]:
    """Every version and delete marker of exactly ``key``, newest first."""
    found: list[ObjectVersion] = []
    for page in _version_pages(s3, bucket, key):
        entries = [
            *((entry, False) for entry in page.get("Versions", ())),
            *((entry, True) for entry in page.get("DeleteMarkers", ())),
        ]
        found.extend(_version(entry, marker) for entry, marker in entries if entry["Key"] == key)
        if any(entry["Key"] != key for entry, _ in entries):
            break  # past the key: every later one is another key under the same prefix
    # Stable: within versions, and within delete markers, S3's own order stays.
    return sorted(
        found, key=lambda v: (not v.is_latest, -v.last_modified.timestamp(), not v.delete_marker)
    )


def _version_pages(s3: Any, bucket: str, key: str) -> Iterator[Mapping[str, Any]]:
    markers: dict[str, str] = {}
    while True:
        page: Mapping[str, Any] = s3.list_object_versions(Bucket=bucket, Prefix=key, **markers)
        yield page
        if not page.get("IsTruncated"):
            return
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextVersionIdMarker"):
            markers["VersionIdMarker"] = page["NextVersionIdMarker"]


def _version(entry: Mapping[str, Any], delete_marker: bool) -> ObjectVersion:
    return ObjectVersion(
        key=entry["Key"],
        version_id=str(entry.get("VersionId") or "null"),
        last_modified=entry["LastModified"],
        is_latest=bool(entry.get("IsLatest")),
        delete_marker=delete_marker,
        size=None if delete_marker else entry.get("Size"),
        etag=None if delete_marker else entry.get("ETag"),
    )


def restore_source(
    versions: Sequence[ObjectVersion], key: str, version_id: str | None
) -> ObjectVersion:
    """The version ``restore`` copies back (module docstring: which version)."""
    if not versions:
        raise NoVersions(
            f"no version of '{key}' in the gallery bucket",
            hint="'imgcli list' shows the keys; old versions are kept for the stack's "
            "noncurrent-days",
        )
    if version_id is not None:
        chosen = next((v for v in versions if v.version_id == version_id), None)
        if chosen is None:
            raise NoVersions(
                f"'{key}' has no version '{version_id}'",
                hint=f"`imgcli versions {shlex.quote(key)}` lists its versions",
            )
        if chosen.delete_marker:
            raise UsageError(
                f"version '{version_id}' of '{key}' is a delete marker, not an image",
                hint=f"name an image version from `imgcli versions {shlex.quote(key)}`",
            )
        if chosen.is_latest:
            raise UsageError(f"version '{version_id}' is already the current version of '{key}'")
        return chosen
    current = versions[0]
    if not current.delete_marker:
        raise UsageError(
            f"'{key}' exists: restoring it needs the version to bring back",
            hint=f"`imgcli versions {shlex.quote(key)}` lists them; then "
            f"`imgcli restore {shlex.quote(key)} --version-id VERSION`",
        )
    chosen = next((v for v in versions if not v.delete_marker), None)
    if chosen is None:
        raise NoVersions(f"'{key}' has only delete markers: no image version to restore")
    return chosen


def restore_version(
    s3: Any,
    bucket: str,
    source: ObjectVersion,
    *,
    copy_limit: int = COPY_OBJECT_LIMIT,
    part_size: int = COPY_PART_SIZE,
) -> Restored:
    """Copy ``source`` over its key as the new current version (module docstring)."""
    copy_source = {"Bucket": bucket, "Key": source.key, "VersionId": source.version_id}
    if source.size is None or source.size <= copy_limit:
        answer = s3.copy_object(Bucket=bucket, Key=source.key, CopySource=copy_source)
        etag = answer.get("CopyObjectResult", {}).get("ETag")
        return Restored(source.key, source, answer.get("VersionId"), etag)
    answer = _copy_in_parts(s3, bucket, copy_source, source.size, part_size)
    return Restored(source.key, source, answer.get("VersionId"), answer.get("ETag"))


def _copy_in_parts(
    s3: Any, bucket: str, copy_source: Mapping[str, str], size: int, part_size: int
) -> Mapping[str, Any]:
    head = s3.head_object(Bucket=bucket, Key=copy_source["Key"], VersionId=copy_source["VersionId"])
    carried = {name: head[name] for name in _CARRIED_HEADERS if head.get(name) is not None}
    part_size = max(part_size, -(-size // MAX_PARTS))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=copy_source["Key"], **carried)[
        "UploadId"
    ]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part_size), start=1):
            end = min(start + part_size, size) - 1
            answer = s3.upload_part_copy(
                Bucket=bucket,
                Key=copy_source["Key"],
                UploadId=upload_id,
                PartNumber=number,
                CopySource=dict(copy_source),
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        completed: Mapping[str, Any] = s3.complete_multipart_upload(
            Bucket=bucket,
            Key=copy_source["Key"],
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        # Ctrl-C included: no half-copied upload left to bill for.
        s3.abort_multipart_upload(Bucket=bucket, Key=copy_source["Key"], UploadId=upload_id)
        raise
    return completed


def wait_until_version_indexed(
    api: RecordLookup,
    key: str,
    version_id: str,
    *,
    timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    first_delay_s: float = 0.2,
    max_delay_s: float = 2.0,
) -> dict[str, Any] | None:
    """Poll the API until ``key``'s record carries ``version_id``; the record, or None
    when ``timeout_s`` passed first. The delay doubles from ``first_delay_s``."""
    deadline = clock() + timeout_s
    delay = first_delay_s
    while True:
        image = api.get_image(key)
        if image is not None and image.get("version_id") == version_id:
            return image
        remaining_s = deadline - clock()
        if remaining_s <= 0:
            return None
        sleep(min(delay, remaining_s))
        delay = min(delay * 2, max_delay_s)
