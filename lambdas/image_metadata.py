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
   much animation"). ``MAX_FRAMES`` is over five minutes at 30 frames per second, which no
   GIF, APNG or animated WebP meant for a gallery reaches (GIF's 10 ms minimum delay makes
   most players run 20 fps or less); 400 million pixels is 190 frames of 1080p (8 s at
   24 fps), 600 frames of 720p, or 46 A4 pages scanned at 300 dpi. The pixel budget bounds
   time: at the pixel limit Pillow decodes 4-byte canvases at about 90 (APNG, deflate TIFF)
   to 115 (GIF) megapixels a second on one laptop core, so the budget costs at most about
   4.5 s of CPU (a billion took 10.5 s), and a 2,000,000-frame GIF of 1x1 pixel stops after
   10,001 frames, a fraction of a second. The save function's 1,024 MB buy about 0.6 of a
   core on Lambda, so that is some 8 s there, inside its 60 s.
4. A memory budget: no frame is decoded whose decoder would hold more than
   ``DECODE_MEMORY_BYTES`` (512 MiB, half the save function's memory: the rest is the
   runtime and boto3) at once, counting the object's own bytes, which the save function's
   reader holds whole once a full decode has fetched them all ("too big to check": a
   600 MB GIF of small frames would otherwise exhaust the function). What a decoder
   holds, measured with Pillow 13 at the pixel limit (``decode_memory``): a canvas of 1
   (P, L), 2 (16-bit) or 4 bytes a pixel, times the copies its plugin keeps: 4 for GIF
   (frame, canvas, previous canvas, disposal) and WebP (libwebp's two canvases, the frame's
   bytes, the image), 3 for an APNG and for BMP's RLE decoder (written in Python), 2 when
   libtiff decodes, 1 otherwise; WebP and libtiff also get the whole file. A JPEG is
   decoded at 1/8 scale and holds its coefficient buffer (``image_jpeg``), and may have at
   most ``MAX_JPEG_SCANS`` scans. Unbounded, an 88-megapixel animated WebP of 148 bytes took
   1.4 GB, a GIF of 11 such frames 1.5 GB and 8 s, a progressive CMYK JPEG of 703 bytes
   730 MB, and 1,000 repeated scans (11 KB) 7 s. A still image under the pixel limit always
   fits, except a WebP over about 33 megapixels, a compressed colour TIFF over 67 and a
   progressive JPEG without its end marker sampled 4:4:4 over 89 (CMYK over 67).
5. Completeness and integrity, one rule of the bytes (``decodes_in_full``):

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

from PIL import Image, ImageFile, UnidentifiedImageError

from .image_exif import exif_basics
from .image_guard import GuardedStream, PillowWarnings, quiet_libtiff
from .image_jpeg import MAX_JPEG_SCANS, TooManyScans, coefficient_bytes, count_scans

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
MAX_DECODED_PIXELS: Final = 400_000_000
#: What one frame's decoder may hold at once (see above).
DECODE_MEMORY_BYTES: Final = 512 * 1024 * 1024

# Copies of the canvas each format's decoder holds (see above; APNG is 3).
_CANVAS_COPIES: Final = {"GIF": 4, "WEBP": 4, "PNG": 1, "TIFF": 1, "BMP": 1}
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
    """How many frames an image may have, how many pixels its decoded frames may add up
    to, what one frame's decoder may hold in memory and how many scans a decoded JPEG may
    have. Client and server use ``FRAME_BUDGET``; tests pass smaller ones."""

    frames: int = MAX_FRAMES
    decoded_pixels: int = MAX_DECODED_PIXELS
    memory: int = DECODE_MEMORY_BYTES
    jpeg_scans: int = MAX_JPEG_SCANS


FRAME_BUDGET: Final = FrameBudget()


@dataclass
class DescribeWork:
    """What one ``describe_image`` call did, for tests that bound the work a file causes."""

    opened: bool = False
    frames: int = 0
    decoded_pixels: int = 0
    bytes_read: int = 0
    reads: int = 0
    #: Scans counted in decoded JPEG frames, and the most memory a decoded frame needed.
    jpeg_scans: int = 0
    peak_decode_memory: int = 0


def decode_memory(
    fmt: str, mode: str, width: int, height: int, *, animated: bool, decoder: str, size: int
) -> int:
    """Bytes the ``decoder`` (Pillow's tile decoder name) of a ``size``-byte file holds at
    once for one frame (the table in the module docstring), JPEG aside (its coefficient
    buffer depends on its scans: ``jpeg_decode_memory``)."""
    libtiff = decoder == "libtiff"
    if fmt in ("GIF", "WEBP"):
        per_pixel = 4  # later GIF frames and every WebP frame are RGB(A) canvases
    elif mode in ("1", "L", "P"):
        per_pixel = 1
    else:
        per_pixel = 2 if mode.startswith("I;16") else 4
    if (fmt == "PNG" and animated) or decoder == "bmp_rle":
        copies = 3
    else:
        copies = 2 if libtiff else _CANVAS_COPIES[fmt]
    whole_file = size if fmt == "WEBP" or libtiff else 0
    return width * height * per_pixel * copies + whole_file


def jpeg_decode_memory(
    width: int, height: int, sampling: list[tuple[int, int]], *, scans: int, progressive: bool
) -> int:
    """Bytes libjpeg holds for a frame decoded at 1/8 scale: the coefficient buffer when it
    has more than one scan, and the 4-byte pixels that come out."""
    buffered = progressive or scans > 1
    coefficients = coefficient_bytes(width, height, sampling) if buffered else 0
    return coefficients + -(-width // 8) * -(-height // 8) * 4


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
        raise InvalidImage(readable_reason(failure.reason, warned.messages)) from None
    return details


def _describe(
    stream: GuardedStream,
    size: int,
    full_decode_bytes: int,
    budget: FrameBudget,
    work: DescribeWork,
) -> ImageDetails:
    # Pillow's WebP opener reads the whole file before anything else can be checked.
    if size > budget.memory and stream.read(12)[8:] == b"WEBP":
        raise InvalidImage(
            f"too big to check: a WebP is read whole, and {size} bytes are more than "
            f"{_amount(budget.memory)}"
        )
    stream.seek(0)
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
        frames = _count_frames(image, stream, size, animated, decode, budget, work)
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


def _count_frames(
    image: ImageFile.ImageFile,
    stream: GuardedStream,
    size: int,
    animated: bool,
    decode: bool,
    budget: FrameBudget,
    work: DescribeWork,
) -> int:
    """Visit every frame, one seek at a time, checking (and with ``decode``, decoding)
    each within the budget; the number of frames."""
    fmt = str(image.format)
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
            if fmt in ("JPEG", "MPO"):
                _prepare_jpeg_frame(image, stream, size, budget, work)
            else:
                decoder = image.tile[0][0] if image.tile else ""
                needed = decode_memory(
                    fmt,
                    image.mode,
                    frame_width,
                    frame_height,
                    animated=animated,
                    decoder=decoder,
                    size=size,
                )
                _check_memory(needed, size, frame_width, frame_height, budget, work)
            work.decoded_pixels += pixels
            # Every frame: counting frames skips a truncated last one silently.
            image.load()
        frames += 1
        work.frames = frames


def _prepare_jpeg_frame(
    image: ImageFile.ImageFile,
    stream: GuardedStream,
    size: int,
    budget: FrameBudget,
    work: DescribeWork,
) -> None:
    """Count the frame's scans and check its memory, then ask for a 1/8-scale draft."""
    width, height = image.size
    offset = int(image.tile[0][2]) if image.tile else 0
    try:
        scans = count_scans(cast(IO[bytes], stream), offset, budget.jpeg_scans)
    except TooManyScans:
        raise InvalidImage(f"too many JPEG scans to check: more than {budget.jpeg_scans}") from None
    work.jpeg_scans += scans
    sampling = [(int(layer[1]), int(layer[2])) for layer in getattr(image, "layer", [])]
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    needed = jpeg_decode_memory(width, height, sampling, scans=scans, progressive=progressive)
    _check_memory(needed, size, width, height, budget, work)
    # An MPO's later frame is a new JPEG to Pillow, which refuses a second draft otherwise.
    image.decoderconfig = ()
    image.draft(None, (max(1, width // 8), max(1, height // 8)))


def _check_memory(
    decoder: int, size: int, width: int, height: int, budget: FrameBudget, work: DescribeWork
) -> None:
    # A decoded object is held whole besides what its decoder holds: the save function's
    # reader keeps every range it fetched, and a full decode fetches them all.
    needed = decoder + size
    if needed > budget.memory:
        raise InvalidImage(
            f"too big to check: decoding a {width}x{height} frame needs about "
            f"{_amount(needed)} (the file's own {_amount(size)} included), more than "
            f"{_amount(budget.memory)}"
        )
    work.peak_decode_memory = max(work.peak_decode_memory, needed)


def _amount(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


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


def readable_reason(reason: str, warned: list[str]) -> str:
    """``reason`` with what Pillow warned about, printable and short enough to store."""
    if warned:
        reason += " (Pillow warned: " + "; ".join(warned) + ")"
    if not reason.isprintable():
        reason = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in reason)
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 3] + "..."
    return reason
