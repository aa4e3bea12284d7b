"""``imgcli url``: presigned GET links to an image or its thumbnail, and what they need.

A link is signed on the client, with the user's own credentials (an S3 client of the
run's session, ``generate_presigned_url``, always SigV4: ``presigning_client``): no
request reaches AWS to make one, nobody else's permission is borrowed, and whoever holds
the link can GET that one object until it expires. Decisions:

* **Expiry** (``parse_expiry``): ``90s``, ``15m``, ``1h``, ``7d`` or plain seconds, from
  1 s to 7 days, SigV4's limit on a presigned URL (AWS refuses a longer ``X-Amz-Expires``
  outright); anything else is a usage error (exit 2), before any request.
* **The object must exist** (``check_object``): a HeadObject first, so a mistyped key is
  exit 1 now rather than a link that answers 404 to whoever opens it later. A delete
  marker, as current version or named by ``--version-id``, counts as missing.
* **Served as an image, or as a download** (``response_overrides``): S3 answers a GET
  with the Content-Type the uploader stored, so a link to an object stored as
  ``text/html`` (or SVG, or no type) would open as a page, scripts and all, on the
  bucket's origin. Unless the stored type is one of the image types imgcli accepts
  (``imgcli.lambdas.image_metadata.CONTENT_TYPES``, compared exactly), the link is signed
  with ``response-content-type=application/octet-stream`` and
  ``response-content-disposition=attachment``: it downloads, it never renders. An image
  type is signed too (``response-content-type`` as stored, ``inline``): a link without a
  version serves whatever the key holds when it is opened, for up to seven days, and an
  upload of a page over the key must not turn the link into one. The type is read from
  the HeadObject that checks the object, of the very version linked.
* **Temporary credentials** (``temporary_credentials``): a link signed with a session
  token (SSO, an assumed role, ``aws sts get-session-token``) dies with that session,
  whatever its ``X-Amz-Expires`` says; the command warns.
* **Thumbnails** are found through the record the API serves (``thumbnail_key``), never
  by rebuilding their key names here (the save function owns those), in the stack's
  thumbnails bucket (``thumbnails_bucket_for``): its recorded name, or, for a stack
  recorded before the field existed, the name ``StackNames`` derives. An image without
  the size asked for is ``NoThumbnail`` (exit 1) with the record's reason, or the hint to
  run ``imgcli reconcile`` for an image indexed before thumbnails existed.

``show --preview`` uses the same thumbnail lookup (``imgcli.preview``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from imgcli.errors import ExitCode, ImgcliError, UsageError

if TYPE_CHECKING:
    from imgcli.aws import AwsClients
    from imgcli.invocation import Invocation

#: SigV4's limit on a presigned URL's life: 7 days.
MAX_EXPIRES_S: Final = 7 * 24 * 3600
DEFAULT_EXPIRES: Final = "1h"
UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The hint for an image indexed before the stack made thumbnails.
REINDEX_HINT: Final = "indexed before thumbnails: run 'imgcli reconcile' to make them"
#: What a link to an object not stored as an accepted image type answers.
DOWNLOAD_CONTENT_TYPE: Final = "application/octet-stream"
DOWNLOAD_DISPOSITION: Final = "attachment"
INLINE_DISPOSITION: Final = "inline"
_EXPIRY: Final = re.compile(r"([0-9]{1,9})([smhd]?)")
#: HeadObject's answers for "no such object": missing key or version, or a delete marker
#: (405 when one is named by version id).
_MISSING_CODES: Final = frozenset(
    {"404", "NoSuchKey", "NoSuchVersion", "NotFound", "405", "MethodNotAllowed"}
)


class ObjectNotFound(ImgcliError):
    """The bucket holds no object (or no such version) under the key (exit code 1, as
    ``show`` of a missing key)."""

    exit_code = ExitCode.SOME_FAILED


class NoThumbnail(ImgcliError):
    """The image's record names no thumbnail of the size asked for (exit code 1)."""

    exit_code = ExitCode.SOME_FAILED


@dataclass(frozen=True)
class ShareLink:
    """A presigned GET URL and what it opens, until when: ``key`` in ``bucket`` (a
    thumbnail's key for a thumbnail link), of the image ``image_key``."""

    url: str
    expires_at: datetime.datetime
    key: str
    bucket: str
    image_key: str
    version_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "expires_at": self.expires_at.isoformat().replace("+00:00", "Z"),
            "key": self.key,
            "image_key": self.image_key,
            "bucket": self.bucket,
            "version_id": self.version_id,
        }


def parse_expiry(text: str) -> int:
    """``text`` (``90s``, ``15m``, ``1h``, ``7d`` or plain seconds) as seconds, 1 s to 7
    days; else ``UsageError``."""
    match = _EXPIRY.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(
            f"--expires '{text}' is not a duration",
            hint="give seconds, or a number with s, m, h or d: 90s, 15m, 1h, 7d",
        )
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_EXPIRES_S:
        raise UsageError(
            f"--expires '{text}' is {seconds} s: a link lives from 1 s to 7 days "
            f"({MAX_EXPIRES_S} s), SigV4's limit",
        )
    return seconds


def check_object(s3: Any, bucket: str, key: str, version_id: str | None = None) -> str | None:
    """The Content-Type stored with ``key`` in ``bucket`` (that version, if given; None
    when it has none); ``ObjectNotFound`` when the bucket does not hold it."""
    from botocore.exceptions import ClientError

    extra = {"VersionId": version_id} if version_id else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING_CODES:
            raise
        if version_id:
            message = f"no version '{version_id}' of '{key}' in bucket {bucket}"
            hint = "'imgcli versions KEY' lists a key's versions"
        else:
            message = f"no object '{key}' in bucket {bucket}"
            hint = "'imgcli list' shows the keys; 'imgcli versions KEY' its old versions"
        raise ObjectNotFound(message, hint=hint) from None
    stored = head.get("ContentType")
    return str(stored) if stored is not None else None


def response_overrides(stored_content_type: str | None) -> dict[str, str]:
    """What a link to an object stored as ``stored_content_type`` makes S3 answer: that
    type, inline, for an image type imgcli accepts, else a download (module docstring)."""
    from imgcli.lambdas.image_metadata import CONTENT_TYPES

    if stored_content_type is not None and stored_content_type in CONTENT_TYPES.values():
        return {
            "ResponseContentType": stored_content_type,
            "ResponseContentDisposition": INLINE_DISPOSITION,
        }
    return {
        "ResponseContentType": DOWNLOAD_CONTENT_TYPE,
        "ResponseContentDisposition": DOWNLOAD_DISPOSITION,
    }


def presign_get(
    s3: Any,
    bucket: str,
    key: str,
    expires_s: int,
    *,
    stored_content_type: str | None,
    image_key: str | None = None,
    version_id: str | None = None,
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> ShareLink:
    """A presigned GET of ``key`` (that version, if given) that lives ``expires_s`` seconds,
    served as ``response_overrides(stored_content_type)`` says. ``image_key``: the image
    the object belongs to (default: ``key`` itself).

    ``expires_at`` is taken just before signing, so it is never later than the link's end.
    """
    params = {
        "Bucket": bucket,
        "Key": key,
        **({"VersionId": version_id} if version_id else {}),
        **response_overrides(stored_content_type),
    }
    start = now().replace(microsecond=0)
    url: str = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
    expires_at = start + datetime.timedelta(seconds=expires_s)
    return ShareLink(url, expires_at, key, bucket, image_key or key, version_id)


def presigning_client(aws: AwsClients) -> Any:
    """An S3 client of the run's session that presigns with SigV4.

    botocore still presigns S3 with SigV2 unless told otherwise (``AWSAccessKeyId`` and
    ``Expires`` in the query, on the global endpoint), which AWS refuses in every region
    opened since 2014 and for KMS-encrypted objects, and the local cloud refuses
    everywhere; SigV4 is also what bounds a link to 7 days.
    """
    from botocore.config import Config

    from imgcli.aws import client_config

    config = client_config(aws.settings, 1).merge(Config(signature_version="s3v4"))
    return aws.session.create_client("s3", endpoint_url=aws.settings.endpoint_url, config=config)


def temporary_credentials(credentials: Any) -> bool:
    """Whether botocore ``credentials`` carry a session token (they end with the session)."""
    if credentials is None:
        return False
    frozen = credentials.get_frozen_credentials()
    return bool(frozen.token)


def thumbnail_key(image: Mapping[str, Any], box: int) -> str:
    """The key, in the thumbnails bucket, of ``image``'s ``box`` px thumbnail, from its
    record as the API serves it; ``NoThumbnail`` when it has none."""
    thumbnails = image.get("thumbnails")
    if isinstance(thumbnails, Mapping):
        entry = thumbnails.get(str(box))
        if isinstance(entry, Mapping) and isinstance(entry.get("key"), str):
            return str(entry["key"])
    key = image.get("key", "")
    reason = image.get("thumbnail_reason")
    if image.get("status") == "invalid":
        raise NoThumbnail(
            f"'{key}' has no thumbnail: the stack could not read it as an image "
            f"({image.get('reason') or 'no reason recorded'})"
        )
    if reason:
        raise NoThumbnail(f"'{key}' has no {box} px thumbnail: {reason}")
    raise NoThumbnail(f"'{key}' has no {box} px thumbnail", hint=REINDEX_HINT)


def thumbnails_bucket_for(run: Invocation) -> str:
    """The run's stack's thumbnails bucket: as bootstrap recorded it, or as ``StackNames``
    names it for a stack recorded before the field existed (one STS call)."""
    settings = run.settings
    if "thumbnails_bucket" in settings.records:
        return str(settings.record("thumbnails_bucket"))
    settings.record("bucket")  # a stack never bootstrapped is reported as such
    return run.stack_environment().names.thumbnails_bucket
