"""What an image is, read from a file object with Pillow: safely, and reading little.

The save function calls ``describe_image`` on a ``RangedReader`` over the S3 object, so
every byte Pillow touches is a byte fetched. The checks, in order:

1. ``Image.open`` restricted to ``ALLOWED_FORMATS`` parses headers only. Anything else is
   "not an image we accept", never a guess by file name.
2. The pixel limit, for every frame: Pillow raises ``DecompressionBombError`` above twice
   ``Image.MAX_IMAGE_PIXELS`` and only *warns* between 1x and 2x. That warning band is an
   attack too. Opening happens with the warning turned into an error (the functions are
   single-threaded; ``catch_warnings`` is not thread-safe), and an explicit count backs it
   up for every frame (a multi-page TIFF can hide a huge second page).
3. Completeness and integrity. An object up to ``FULL_DECODE_BYTES`` is decoded in full
   (``load`` on every frame): that is where PNG's CRCs and zlib checksums and the GIF and
   WebP decoders catch a damaged body, and it costs one GET and a few milliseconds. A
   bigger object is not decoded, so a 50 MB photo costs kilobytes: JPEG and PNG end with a
   fixed trailer (EOI, IEND), and a few tail bytes prove the end arrived. When that
   trailer is missing (truncated, or legitimately followed by extra data such as a phone's
   appended motion-photo video), and for formats without one, the image is decoded after
   all.

Known limit: JPEG and uncompressed TIFF carry no checksums, and libjpeg conceals damaged
scan data rather than failing, so a JPEG whose middle is garbled but whose structure is
intact is indexed as an image (every viewer would display it too). Truncation is caught.

Failures become ``InvalidImage`` with a short reason for the index; nothing here retries.
EXIF is a bonus: unreadable EXIF gives ``None`` fields, not an invalid image.
"""

from __future__ import annotations

import functools
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

#: Objects up to this size are decoded in full (see the module docstring).
FULL_DECODE_BYTES: Final = 16 * 1024 * 1024

# Fixed last bytes that prove the end of the file arrived. GIF's trailer, a single 0x3B,
# also occurs inside its compressed data, so it proves nothing and GIF is always decoded.
_TRAILERS: Final = {
    "JPEG": b"\xff\xd9",
    "MPO": b"\xff\xd9",
    "PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82",
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


@functools.cache
def _register_allowed_formats() -> None:
    # Image.open imports every Pillow plugin (some 45: 15-25 ms, once per process or cold
    # start) as soon as a format it is told to try is not registered yet, which for WebP,
    # TIFF and anything that is no image at all is the usual case. Importing exactly the
    # accepted formats' plugins first leaves it nothing to look for.
    from PIL import (  # noqa: F401 - imported to register their formats
        BmpImagePlugin,
        GifImagePlugin,
        JpegImagePlugin,
        PngImagePlugin,
        TiffImagePlugin,
        WebPImagePlugin,
    )


def describe_image(
    stream: IO[bytes], size: int, *, full_decode_bytes: int = FULL_DECODE_BYTES
) -> ImageDetails:
    """Details of the ``size``-byte image in ``stream``, or ``InvalidImage`` saying why not.

    Objects up to ``full_decode_bytes`` are decoded in full; larger ones only when their
    trailer does not prove them complete.
    """
    if size <= 0:
        raise InvalidImage("empty file")
    _register_allowed_formats()
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
        # Read before seeking: later GIF frames open in another mode.
        fmt, mode, (width, height) = str(image.format), image.mode, image.size
        try:
            frames = int(getattr(image, "n_frames", 1))
            # A big object whose trailer proves it complete is not decoded.
            decode = size <= full_decode_bytes or not _has_trailer(stream, size, fmt)
            for frame in range(frames):
                image.seek(frame)
                _check_pixels(*image.size)
                if decode:
                    # Every frame: counting frames skips a truncated last one silently.
                    image.load()
            image.seek(0)
        except _PARSE_ERRORS as exc:
            raise InvalidImage(f"truncated or corrupt image: {_short(exc)}") from None
        exif = _exif_basics(image, fmt)
        return ImageDetails(
            format=fmt,
            content_type=CONTENT_TYPES[fmt],
            width=width,
            height=height,
            mode=mode,
            frames=frames,
            **exif,
        )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_pixels(width: int, height: int) -> None:
    limit = pixel_limit()
    if limit and width * height > limit:
        raise InvalidImage(
            f"over the pixel limit: {width}x{height} = {width * height} pixels > {limit}"
        )
    if width <= 0 or height <= 0:
        raise InvalidImage(f"corrupt image: {width}x{height} pixels")


def _has_trailer(stream: IO[bytes], size: int, fmt: str) -> bool:
    trailer = _TRAILERS.get(fmt)
    if trailer is None or size < len(trailer):
        return False
    stream.seek(size - len(trailer))
    return stream.read(len(trailer)) == trailer


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
