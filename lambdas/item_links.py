"""The presigned URLs an item of the retrieve API carries, and how a runtime signs them.

``retrieve`` decides what the URLs are (its docstring: which keys, which buckets, how long,
and why they are in the items); this module does the signing for it. :class:`ItemLinks`
adds ``urls`` and ``urls_expire_at`` to one response's items, all dated alike;
:class:`SignedLinks` is a warm runtime's signing state: each bucket's endpoint, asked of
botocore once (its endpoint rules decide path-style or virtual-hosted addressing and the
signing region), and a ``presign.Presigner`` for the function's current credentials (read
per request, so a refreshed role session signs with its new keys).
:func:`links_from_environment` reads the function's configuration (``BUCKET_NAME``,
``THUMBNAILS_BUCKET``, ``URL_EXPIRES_S``) and says what is wrong with it rather than fail.

**What a link serves** (``response_overrides``). S3 answers a GET with the
``Content-Type`` and ``Content-Disposition`` the uploader stored, and a presigned URL
opens on the bucket's own origin (on the local cloud, the endpoint itself): an object
uploaded as ``text/html`` would run as a page there, and so would a PNG/HTML polyglot,
which is a valid image. So every image link signs the response headers itself:

* an active image: ``response-content-type`` = the record's ``content_type``, the type the
  save function's check detected from the bytes (``image_metadata.CONTENT_TYPES``), never
  the uploader's; and ``response-content-disposition=inline``, so a stored ``attachment;
  filename="x.html"`` cannot save the polyglot as a page either;
* an invalid image, or an active record whose type is missing or not one the check
  detects (``IMAGE_TYPES``; should not happen): ``application/octet-stream`` and
  ``attachment``. The link is kept: a gallery's view of invalid objects may offer the
  download, which is then a download and never a page;
* a thumbnail: ``response-content-type=image/webp``. The save function writes them with
  that type, so this changes nothing today; it costs nothing per URL and keeps the link's
  answer independent of how the object got there.

The record may lag a new upload by a moment (the image link names no version): the
current object is then served with the previous record's type, which is a wrong type for
an image at worst, never a page (browsers do not render ``image/*`` as HTML).

**Keys with ``.`` or ``..`` segments** (``../evil.jpg``, ``a/./b.jpg``) get a URL signed for
the path exactly as S3 stores it, which is correct, but browsers, curl and most HTTP
libraries remove dot segments before sending (RFC 3986, 5.2.4): the request then names
another path, its signature does not match, and S3 answers 403. Only a client that sends
the path as is (``curl --path-as-is``, ``http.client``) opens such a link. Either way no
other object is reachable: a signature covers one path. The link is kept, not dropped.

No boto3 import: the S3 client and the credentials come in as arguments.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

from . import presign, records

DEFAULT_URL_EXPIRES_S: Final = 900
#: The key botocore presigns once per bucket to learn the bucket's endpoint.
PROBE_KEY: Final = "imgcli-endpoint-probe"
#: The types the save function's check detects (``image_metadata.CONTENT_TYPES``' values,
#: not imported: that module needs Pillow, which the retrieve function does without).
IMAGE_TYPES: Final = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp"}
)
#: The type the save function writes thumbnails with (``thumbnails.CONTENT_TYPE``).
THUMBNAIL_TYPE: Final = "image/webp"

#: Query parameters signed into a URL, in the URL's order.
Overrides = tuple[tuple[str, str], ...]
#: What a link to anything not known to be an image serves: a download, never a page.
DOWNLOAD: Final[Overrides] = (
    ("response-content-type", "application/octet-stream"),
    ("response-content-disposition", "attachment"),
)
THUMBNAIL_OVERRIDES: Final[Overrides] = (("response-content-type", THUMBNAIL_TYPE),)
_EXPIRES_PATTERN: Final = re.compile(r"[0-9]{1,6}")


def response_overrides(record: records.ImageRecord) -> Overrides:
    """The response headers ``record``'s image link makes S3 send (module docstring)."""
    if record.status == "active" and record.content_type in IMAGE_TYPES:
        return (
            ("response-content-type", record.content_type),
            ("response-content-disposition", "inline"),
        )
    return DOWNLOAD


class ItemLinks:
    """Signs the URLs of one response's items, all dated and expiring alike."""

    def __init__(
        self,
        image_signer: Callable[[Overrides], Callable[[str], str]],
        thumbnail: Callable[[str], str],
        expires_at: str,
    ) -> None:
        #: A signer of gallery-bucket URLs carrying the given overrides.
        self._image_signer = image_signer
        #: One per set of overrides: at most one per image type, and the download.
        self._image_signers: dict[Overrides, Callable[[str], str]] = {}
        #: The presigned URL of a thumbnail's key in the thumbnails bucket.
        self.thumbnail = thumbnail
        #: When every URL stops working, ISO 8601 UTC.
        self.expires_at = expires_at

    def image(self, record: records.ImageRecord) -> str:
        """The presigned URL of the record's key's current object in the gallery bucket,
        serving the headers ``response_overrides`` says."""
        overrides = response_overrides(record)
        sign = self._image_signers.get(overrides)
        if sign is None:
            sign = self._image_signers[overrides] = self._image_signer(overrides)
        return sign(record.key)

    def add_to(self, item: dict[str, Any], record: records.ImageRecord) -> dict[str, Any]:
        """``item`` (the record's public JSON) with its ``urls`` and ``urls_expire_at``."""
        urls = {"image": self.image(record)}
        for thumbnail in record.thumbnails or ():
            urls[str(thumbnail.box)] = self.thumbnail(thumbnail.key)
        item["urls"] = urls
        item["urls_expire_at"] = self.expires_at
        return item


class SignedLinks:
    """The runtime's URL signing: each bucket's endpoint from botocore once, credentials
    read per request (a refreshed session gets a new ``Presigner``), signing by ``presign``.

    ``s3`` is a botocore S3 client configured for SigV4 (its endpoint and addressing style
    are the URLs'); ``credentials`` returns the function's current credentials.
    """

    def __init__(
        self,
        s3: Any,
        credentials: Callable[[], presign.Credentials],
        *,
        bucket: str,
        thumbnails_bucket: str,
        expires_s: int = DEFAULT_URL_EXPIRES_S,
    ) -> None:
        self._s3 = s3
        self._credentials = credentials
        self.bucket = bucket
        self.thumbnails_bucket = thumbnails_bucket
        self.expires_s = expires_s
        self._endpoints: dict[str, presign.BucketEndpoint] = {}
        self._presigner: presign.Presigner | None = None

    def at(self, now: int) -> ItemLinks:
        """The links of a response dated ``now`` (epoch seconds)."""
        credentials = self._credentials()
        if self._presigner is None or self._presigner.credentials != credentials:
            self._presigner = presign.Presigner(credentials)
        signing = partial(self._presigner.signing, now=now, expires_s=self.expires_s)
        image = partial(signing, self._endpoint(self.bucket))
        thumbnail = signing(self._endpoint(self.thumbnails_bucket), parameters=THUMBNAIL_OVERRIDES)
        expires_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + self.expires_s))
        return ItemLinks(lambda overrides: image(parameters=overrides), thumbnail, expires_at)

    def _endpoint(self, bucket: str) -> presign.BucketEndpoint:
        endpoint = self._endpoints.get(bucket)
        if endpoint is None:
            url = self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": PROBE_KEY}, ExpiresIn=60
            )
            endpoint = self._endpoints[bucket] = presign.BucketEndpoint.from_presigned_url(
                url, PROBE_KEY
            )
        return endpoint


def links_from_environment(
    environ: Mapping[str, str],
    s3: Callable[[], Any],
    credentials: Callable[[], presign.Credentials],
) -> tuple[SignedLinks | None, tuple[str, ...]]:
    """The URL signing the environment configures, and warnings about it.

    Without ``BUCKET_NAME`` or ``THUMBNAILS_BUCKET`` there is nothing to sign for: items
    go without ``urls``. A ``URL_EXPIRES_S`` that is not a whole number of seconds from 1
    to 604,800 is replaced by the default, with a warning, rather than failing every call.
    """
    warnings: list[str] = []
    expires_s = DEFAULT_URL_EXPIRES_S
    text = environ.get("URL_EXPIRES_S")
    if text is not None:
        if _EXPIRES_PATTERN.fullmatch(text) and 1 <= int(text) <= presign.MAX_EXPIRES_S:
            expires_s = int(text)
        else:
            warnings.append(
                f"URL_EXPIRES_S={text!r} is not 1 to {presign.MAX_EXPIRES_S} seconds; "
                f"URLs expire after {DEFAULT_URL_EXPIRES_S}"
            )
    bucket = environ.get("BUCKET_NAME")
    thumbnails_bucket = environ.get("THUMBNAILS_BUCKET")
    if not bucket or not thumbnails_bucket:
        missing = [
            name
            for name, value in (("BUCKET_NAME", bucket), ("THUMBNAILS_BUCKET", thumbnails_bucket))
            if not value
        ]
        warnings.append(
            f"{' and '.join(missing)} not set in the function's environment: items are "
            "listed without presigned URLs; run 'imgcli bootstrap' to update the stack"
        )
        return None, tuple(warnings)
    links = SignedLinks(
        s3(),
        credentials,
        bucket=bucket,
        thumbnails_bucket=thumbnails_bucket,
        expires_s=expires_s,
    )
    return links, tuple(warnings)
