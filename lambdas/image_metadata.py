"""What an image is, read from a file object with Pillow: one verdict for any bytes, reading
little, in bounded time and memory.

The save function calls ``describe_image`` on a ``RangedReader`` over the S3 object, so
every byte Pillow touches is a byte fetched; the upload client calls it on the local file
with the same parameters, so both reach the same verdict for every file. It returns
``ImageDetails`` or raises ``InvalidImage`` with a short, printable reason, and nothing
else, whatever the bytes: only a failure of the stream itself (a ranged GET that failed,
a disk error) comes out as its own exception, for the caller to retry or report
(``image_guard`` keeps the two apart, keeps Pillow's warnings and libtiff's messages off
stderr and puts the warnings into the reason). The checks, in order:

1. ``Image.open`` restricted to ``ALLOWED_FORMATS`` parses headers only. Anything else is
   "not an image we accept", never a guess by file name.
2. The pixel limit, for every frame: Pillow raises ``DecompressionBombError`` above twice
   ``Image.MAX_IMAGE_PIXELS`` and only *warns* between 1x and 2x; the warning is raised as
   an error where Pillow finds it (open, a GIF frame's extent, a TIFF page), and an explicit
   count backs it up for every frame. Whichever call finds it, a bomb's reason starts with
   "over the pixel limit".
3. A frame budget. Frames are counted by seeking one at a time, never with ``n_frames``
   (for GIF it walks, and with seeking decodes, every frame first): more than
   ``MAX_FRAMES`` frames, or frames whose canvases add up to more than
   ``MAX_DECODED_PIXELS`` decoded pixels, make an image invalid ("too many frames", "too
   much animation"). Both are far beyond real animations: ``MAX_FRAMES`` is over five
   minutes at 30 frames per second, which no GIF, APNG or animated WebP meant for a
   gallery reaches (GIF's 10 ms minimum delay makes most players run 20 fps or less); a
   billion pixels is a 20-second 1080p clip at 24 fps or a 250-page A4 scan at 300 dpi.
   They bound the worst case: Pillow decodes animations at about 110 (APNG) to 500 (GIF,
   WebP) megapixels a second on one laptop core, so a billion pixels take 2 to 9 seconds,
   well inside the save function's 60-second timeout even at a third of that speed; and
   a 2,000,000-frame GIF of 1x1 pixel stops after 10,001 frames, a fraction of a second.
4. Completeness and integrity, one rule of the bytes (``decodes_in_full``):

   - a JPEG (or MPO) whose last bytes are its EOI marker is complete and is not decoded,
     at any size: JPEG has no checksums and libjpeg conceals damaged scan data, so a
     decode finds nothing the trailer does not, and a photo's check stays a header parse
     and two tail bytes (well under a millisecond for a 12-megapixel photo);
   - anything else up to ``FULL_DECODE_BYTES`` is decoded in full, every frame: that is
     where PNG's CRCs and zlib checksums, APNG's frame sequence numbers and the GIF, WebP
     and TIFF decoders catch a damaged body, and it costs one GET and a few milliseconds;
   - a bigger PNG whose IEND trailer proves its end arrived, and that is not animated, is
     not decoded (a 50 MB screenshot costs kilobytes); everything else is decoded (GIF's
     trailer, a single 0x3B, also occurs inside its compressed data and proves nothing;
     WebP, TIFF and BMP have no trailer; an APNG's frames are decoded to be seen).

   A JPEG whose trailer is missing (truncated, or legitimately followed by extra data such
   as a phone's appended motion-photo video) is decoded after all.

Known limit: JPEG and uncompressed TIFF carry no checksums, so a JPEG whose middle is
garbled but whose structure is intact is indexed as an image (every viewer would display
it too). Truncation is caught.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import IO, Final, cast

from PIL import Image, UnidentifiedImageError

from .image_exif import exif_basics
from .image_guard import GuardedStream, PillowWarnings, quiet_libtiff

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

#: Objects up to this size are decoded in full, JPEGs proven complete aside (see above).
FULL_DECODE_BYTES: Final = 16 * 1024 * 1024
#: Frames (pages) an image may have, and the decoded pixels all its frames may add up to.
MAX_FRAMES: Final = 10_000
MAX_DECODED_PIXELS: Final = 1_000_000_000

# Fixed last bytes that prove the end of the file arrived.
_TRAILERS: Final = {
    "JPEG": b"\xff\xd9",
    "MPO": b"\xff\xd9",
    "PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82",
}
_REASON_LIMIT: Final = 300
#: Pillow warnings that mean the image itself is broken, not just its metadata (those are
#: dropped when the image decodes): an APNG whose animation control chunk is invalid
#: (``num_frames`` 0, or two acTL chunks) falls back to its default image, so a file that
#: claims an animation would be indexed as a still.
_FATAL_WARNINGS: Final = {"Invalid APNG": "invalid APNG animation control chunk (acTL)"}


class InvalidImage(Exception):
    """The bytes are not an image we index; ``reason`` is stored on the item."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


@dataclass(frozen=True)
class FrameBudget:
    """How many frames an image may have, and how many pixels its decoded frames may add
    up to. Client and server use ``FRAME_BUDGET``; tests pass smaller ones."""

    frames: int = MAX_FRAMES
    decoded_pixels: int = MAX_DECODED_PIXELS


FRAME_BUDGET: Final = FrameBudget()


@dataclass
class DescribeWork:
    """What one ``describe_image`` call did, for tests that bound the work a file causes."""

    opened: bool = False
    frames: int = 0
    decoded_pixels: int = 0
    bytes_read: int = 0
    reads: int = 0


def pixel_limit() -> int:
    """The largest pixel count accepted: Pillow's own limit, read when called."""
    return int(Image.MAX_IMAGE_PIXELS or 0)


def decodes_in_full(
    fmt: str, size: int, full_decode_bytes: int, *, complete: bool, animated: bool
) -> bool:
    """Whether an image is decoded, from its format, its size, whether its trailer proves
    it ``complete`` and whether it is ``animated`` (the rule in the module docstring)."""
    if fmt in ("JPEG", "MPO") and complete:
        return False
    if size <= full_decode_bytes:
        return True
    return not (complete and not animated)


@functools.cache
def _prepare_pillow() -> None:
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

    quiet_libtiff()


def describe_image(
    stream: IO[bytes],
    size: int,
    *,
    full_decode_bytes: int = FULL_DECODE_BYTES,
    budget: FrameBudget = FRAME_BUDGET,
    work: DescribeWork | None = None,
) -> ImageDetails:
    """Details of the ``size``-byte image in ``stream``, or ``InvalidImage`` saying why not.

    Any exception ``stream`` raises is raised again as it is, never turned into a verdict.
    ``budget`` bounds frames and decoded pixels; ``work``, when given, is filled in with
    what the call did.
    """
    if size <= 0:
        raise InvalidImage("empty file")
    _prepare_pillow()
    work = work if work is not None else DescribeWork()
    guarded = GuardedStream(stream, size)
    failure: InvalidImage | None = None
    with PillowWarnings() as warned:
        try:
            details = _describe(guarded, size, full_decode_bytes, budget, work)
        except InvalidImage as invalid:
            failure = invalid
        # Wherever Pillow finds a bomb (open, a GIF frame's extent, a TIFF page's tiles).
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            failure = InvalidImage(f"over the pixel limit ({exc})")
        # Pillow's plugins raise nearly anything on hostile input (OSError, SyntaxError,
        # ValueError, TypeError "Missing dimensions", struct.error, EOFError, IndexError,
        # MemoryError...); whatever it is, the bytes are not an image we can index.
        except Exception as exc:  # noqa: BLE001
            failure = InvalidImage(_corrupt(exc, opened=work.opened))
    work.bytes_read, work.reads = guarded.bytes_read, guarded.reads
    guarded.raise_failure()
    if failure is None:
        failure = next(
            (
                InvalidImage(reason)
                for prefix, reason in _FATAL_WARNINGS.items()
                if any(message.startswith(prefix) for message in warned.messages)
            ),
            None,
        )
    if failure is not None:
        raise InvalidImage(_reason(failure.reason, warned.messages)) from None
    return details


def _describe(
    stream: GuardedStream,
    size: int,
    full_decode_bytes: int,
    budget: FrameBudget,
    work: DescribeWork,
) -> ImageDetails:
    try:
        # RawIOBase is a binary file in all but typeshed's class hierarchy.
        image = Image.open(cast(IO[bytes], stream), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(
            "not an image in an accepted format (" + ", ".join(ALLOWED_FORMATS) + ")"
        ) from None
    work.opened = True
    with image:
        # Read before seeking: later GIF frames open in another mode.
        fmt, mode, (width, height) = str(image.format), image.mode, image.size
        _check_pixels(width, height)
        complete = fmt in _TRAILERS and _has_trailer(stream, size, fmt)
        # PNG's frame count is its acTL chunk's claim, read with the header: no seeking.
        animated = fmt == "PNG" and int(getattr(image, "n_frames", 1)) > 1
        decode = decodes_in_full(fmt, size, full_decode_bytes, complete=complete, animated=animated)
        frames = _count_frames(image, decode, budget, work)
        image.seek(0)
        exif = exif_basics(image, fmt)
    return ImageDetails(
        format=fmt,
        content_type=CONTENT_TYPES[fmt],
        width=width,
        height=height,
        mode=mode,
        frames=frames,
        **exif,
    )


def _count_frames(image: Image.Image, decode: bool, budget: FrameBudget, work: DescribeWork) -> int:
    """Visit every frame, one seek at a time, checking (and with ``decode``, decoding)
    each within the budget; the number of frames."""
    frames = 0
    while True:
        if frames:
            try:
                image.seek(frames)
            except EOFError:
                return frames
            if frames == budget.frames:
                raise InvalidImage(f"too many frames: more than {budget.frames}")
        frame_width, frame_height = image.size
        _check_pixels(frame_width, frame_height)
        if decode:
            pixels = frame_width * frame_height
            if work.decoded_pixels + pixels > budget.decoded_pixels:
                raise InvalidImage(
                    f"too much animation to check: {frames + 1} frames add up to more "
                    f"than {budget.decoded_pixels} pixels"
                )
            work.decoded_pixels += pixels
            # Every frame: counting frames skips a truncated last one silently.
            image.load()
        frames += 1
        work.frames = frames


def _check_pixels(width: int, height: int) -> None:
    limit = pixel_limit()
    if limit and width * height > limit:
        raise InvalidImage(
            f"over the pixel limit: {width}x{height} = {width * height} pixels > {limit}"
        )
    if width <= 0 or height <= 0:
        raise InvalidImage(f"corrupt image: {width}x{height} pixels")


def _has_trailer(stream: GuardedStream, size: int, fmt: str) -> bool:
    trailer = _TRAILERS[fmt]
    if size < len(trailer):
        return False
    stream.seek(size - len(trailer))
    return stream.read(len(trailer)) == trailer


def _corrupt(exc: BaseException, *, opened: bool) -> str:
    text = str(exc) or type(exc).__name__
    return f"truncated or corrupt image: {text}" if opened else f"corrupt image: {text}"


def _reason(reason: str, warned: list[str]) -> str:
    """``reason`` with what Pillow warned about, printable and short enough to store."""
    if warned:
        reason += " (Pillow warned: " + "; ".join(warned) + ")"
    if not reason.isprintable():
        reason = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in reason)
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 3] + "..."
    return reason
