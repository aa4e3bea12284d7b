"""What an image is, read from a file object with Pillow, safely and without decoding it.

The save function calls ``describe_image`` on a ``RangedReader`` over the S3 object, so
every byte Pillow touches is a byte fetched; the checks are ordered to touch as few as
possible:

1. ``Image.open`` restricted to ``ALLOWED_FORMATS`` parses headers only. Anything else is
   "not an image we accept", never a guess by file name.
2. The pixel limit: Pillow raises ``DecompressionBombError`` above twice
   ``Image.MAX_IMAGE_PIXELS`` and only *warns* between 1x and 2x. That warning band is an
   attack too, so it is refused here, by an explicit count rather than by trusting the global
   warnings filter (which other threads may change).
3. Completeness: a truncated upload must not be indexed as a good image. For JPEG, PNG and
   GIF the last bytes are a fixed trailer (EOI, IEND, 0x3B), so a few tail bytes prove the
   end arrived. When the trailer is absent (truncated, or legitimately followed by extra data
   such as a phone's appended motion-photo video) and for every other format, the image is
   decoded in full (``load``), which reads the whole object once.

Failures become ``InvalidImage`` with a short reason for the index; nothing here retries.
EXIF is a bonus: unreadable EXIF gives ``None`` fields, not an invalid image.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from typing import IO, Final, TypedDict

from PIL import ExifTags, Image, UnidentifiedImageError

#: Pillow format names we index. Pillow's JPEG opener names many phone JPEGs "MPO"
#: (a JPEG with extra frames), so those are JPEGs too.
ALLOWED_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")

CONTENT_TYPES: Final = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}

_TRAILERS: Final = {
    "JPEG": b"\xff\xd9",
    "MPO": b"\xff\xd9",
    "PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82",
    "GIF": b"\x3b",
}

_EXIF_TEXT_LIMIT: Final = 128
_EXIF_DATETIME: Final = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET: Final = re.compile(r"[+-]\d{2}:\d{2}")

# Everything Pillow's parsers are known to raise on hostile input.
_PARSE_ERRORS: Final = (OSError, SyntaxError, EOFError, ValueError, struct.error, IndexError)


class InvalidImage(Exception):
    """The bytes are not an image we index; ``reason`` is stored on the item."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ExifBasics(TypedDict):
    taken_at: str | None
    camera_make: str | None
    camera_model: str | None
    orientation: int | None


@dataclass(frozen=True)
class ImageDetails:
    format: str
    content_type: str
    width: int
    height: int
    mode: str
    frames: int
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    orientation: int | None = None


def pixel_limit() -> int:
    """The largest pixel count accepted: Pillow's own limit, read when called."""
    return int(Image.MAX_IMAGE_PIXELS or 0)


def describe_image(stream: IO[bytes], size: int) -> ImageDetails:
    """Details of the ``size``-byte image in ``stream``, or ``InvalidImage`` saying why not."""
    if size <= 0:
        raise InvalidImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(
            "not an image in an accepted format (" + ", ".join(ALLOWED_FORMATS) + ")"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"over the pixel limit ({exc})") from None
    except _PARSE_ERRORS as exc:
        raise InvalidImage(f"corrupt image: {_short(exc)}") from None

    with image:
        fmt = str(image.format)
        width, height = image.size
        limit = pixel_limit()
        if limit and width * height > limit:
            raise InvalidImage(
                f"over the pixel limit: {width}x{height} = {width * height} pixels > {limit}"
            )
        if width <= 0 or height <= 0:
            raise InvalidImage(f"corrupt image: {width}x{height} pixels")
        try:
            frames = int(getattr(image, "n_frames", 1))
            _check_complete(image, stream, size, fmt)
        except _PARSE_ERRORS as exc:
            raise InvalidImage(f"truncated or corrupt image: {_short(exc)}") from None
        exif = _exif_basics(image, fmt)
        return ImageDetails(
            format=fmt,
            content_type=CONTENT_TYPES[fmt],
            width=width,
            height=height,
            mode=image.mode,
            frames=frames,
            **exif,
        )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_complete(image: Image.Image, stream: IO[bytes], size: int, fmt: str) -> None:
    trailer = _TRAILERS.get(fmt)
    if trailer is not None and size >= len(trailer):
        stream.seek(size - len(trailer))
        if stream.read(len(trailer)) == trailer:
            return
    # No proof from the trailer: decode everything once (Pillow raises on a short file).
    image.seek(0)
    image.load()


def _exif_basics(image: Image.Image, fmt: str) -> ExifBasics:
    empty: ExifBasics = {
        "taken_at": None,
        "camera_make": None,
        "camera_model": None,
        "orientation": None,
    }
    # PNG keeps EXIF in a chunk Pillow only finds by decoding the image; unless the header
    # already carried it, looking would read the whole object for a rare bonus.
    if fmt == "PNG" and "exif" not in image.info:
        return empty
    try:
        exif = image.getexif()
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except (*_PARSE_ERRORS, KeyError, TypeError):
        return empty
    taken = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    offset = sub.get(ExifTags.Base.OffsetTimeOriginal)
    orientation = exif.get(ExifTags.Base.Orientation)
    if not (isinstance(orientation, int) and 1 <= orientation <= 8):
        orientation = None
    return {
        "taken_at": _exif_datetime(taken, offset),
        "camera_make": _exif_text(exif.get(ExifTags.Base.Make)),
        "camera_model": _exif_text(exif.get(ExifTags.Base.Model)),
        "orientation": orientation,
    }


def _exif_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text[:_EXIF_TEXT_LIMIT] or None


def _exif_datetime(value: object, offset: object) -> str | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` as ISO 8601, with the UTC offset when EXIF has one."""
    text = _exif_text(value)
    match = _EXIF_DATETIME.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None  # cameras write "0000:00:00 00:00:00" when the clock was never set
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    offset_text = _exif_text(offset)
    if offset_text and _EXIF_OFFSET.fullmatch(offset_text):
        iso += offset_text
    return iso
