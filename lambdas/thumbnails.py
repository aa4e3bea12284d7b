"""Thumbnails of an image the save function has found valid: one per size of
``THUMBNAIL_BOXES``, WebP, upright, without metadata, in bounded time and memory.

The save function calls ``make_thumbnails`` after ``describe_image`` accepted the object,
on a seekable stream of all of it. Like ``describe_image`` it gives one outcome whatever
the bytes: the thumbnails, or ``ThumbnailFailed`` with a short printable reason for the
record (an image whose thumbnail fails is still indexed). A failure of the stream itself
(an ``OSError`` of a read, the ranged reader's ``FetchFailed``) comes out as itself, for
the caller to retry, through the same guards (``image_guard``): Pillow's warnings and log
records are collected under the describe lock, never printed, and libtiff is quiet.

Decisions:

* **WebP, lossy, quality 80, method 4.** WebP keeps alpha, which JPEG cannot (a
  transparent PNG's thumbnail would get a black box), and every browser shows it (Safari
  since 14, 2020). Measured at 1,024 px on the demo's images: a third to two thirds of a
  JPEG's bytes at the same quality setting (only a noisy night-sky GIF came out a quarter
  bigger); method 6 saved 1-5 % more at up to three times the encoding time, and quality
  85 or 90 added 15-45 % bytes for no difference visible at these sizes.
* **Size.** The longest side is fitted into the box, aspect kept and rounded (never 0);
  a smaller image is never upscaled (a 100 x 50 image gives 100 x 50 twice). The
  1,024 px thumbnail is made from the image, the 256 px one from the 1,024 px one.
* **The first frame** of an animation or multi-page file (GIF, APNG, animated WebP, TIFF
  pages, an MPO's primary view): what a gallery grid shows, and it bounds the work.
* **Orientation and metadata.** The EXIF orientation (all eight values) is applied; then
  nothing of the source's metadata is written: no EXIF (GPS is in it), no XMP, no ICC
  profile (the pixels are converted to sRGB first, ``thumbnail_pixels``), no comments.
* **Bounds: the check's budgets.** A decode is refused ("too big for a thumbnail") when
  what it would hold, counted as ``image_metadata`` counts it (``decode_memory``, the
  object's own bytes included), is more than ``FrameBudget.memory``, and a JPEG with more
  than ``FrameBudget.jpeg_scans`` scans is refused (the check does not count the scans of
  a JPEG whose end marker proves it complete, but a thumbnail decodes it). A JPEG is
  decoded at the largest of libjpeg's 1/2, 1/4, 1/8 scales that still covers the
  1,024 px thumbnail (``Image.draft``): a 42-megapixel photo is decoded at 1/4, 2.6 MP.
  Everything else is decoded once, frame 0 only, and reduced band by band, so memory stays
  near the decoded canvas (``thumbnail_pixels``); pixels are within Pillow's limit, which
  the check enforced and which is enforced again here (a bomb warning is an error).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Final, cast

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from .image_guard import GuardedStream, PillowWarnings, quiet_libtiff
from .image_jpeg import TooManyScans, coefficient_bytes, count_scans
from .image_metadata import (
    ALLOWED_FORMATS,
    FRAME_BUDGET,
    FrameBudget,
    decode_memory,
    pixel_limit,
    readable_reason,
)
from .records import THUMBNAIL_BOXES
from .thumbnail_pixels import (
    UnsupportedMode,
    display_ready,
    fitted,
    oriented,
    reduce_factor,
    reduced,
)

CONTENT_TYPE: Final = "image/webp"
EXTENSION: Final = "webp"
#: WebP encoder settings (see the module docstring).
WEBP_QUALITY: Final = 80
WEBP_METHOD: Final = 4


class ThumbnailFailed(Exception):
    """No thumbnail could be made; ``reason`` says why, for the record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Thumbnail:
    """One encoded thumbnail: fitted into ``box`` x ``box``, never upscaled."""

    box: int
    width: int
    height: int
    data: bytes


@dataclass
class ThumbnailWork:
    """What one ``make_thumbnails`` call did, for tests that bound its work."""

    #: The size the first frame was decoded at (a JPEG's draft size) and the reduce factor.
    decoded_size: tuple[int, int] = (0, 0)
    reduce_factor: int = 1
    decode_memory: int = 0


def make_thumbnails(
    stream: IO[bytes],
    size: int,
    *,
    budget: FrameBudget = FRAME_BUDGET,
    work: ThumbnailWork | None = None,
) -> list[Thumbnail]:
    """One thumbnail per box of ``THUMBNAIL_BOXES``, in that order, from the ``size``-byte
    image in ``stream``; ``ThumbnailFailed`` if none can be made.

    ``stream`` is closed once the image is decoded, before encoding, so a stream that
    holds the object's bytes lets them go early. Any exception ``stream`` raises is
    raised again as it is. ``budget`` bounds memory and
    JPEG scans; ``work``, when given, is filled in with what the call did.
    """
    if size <= 0:
        raise ThumbnailFailed("empty file")
    quiet_libtiff()
    work = work if work is not None else ThumbnailWork()
    guarded = GuardedStream(stream, size)
    made: list[Thumbnail] = []
    failure: ThumbnailFailed | None = None
    with PillowWarnings() as warned:
        try:
            made = _make(guarded, size, budget, work)
        except ThumbnailFailed as failed:
            failure = failed
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            failure = ThumbnailFailed(f"over the pixel limit ({exc})")
        # Pillow's plugins raise nearly anything on hostile input (see image_metadata), and
        # a huge canvas may not fit (MemoryError): whatever it is, there is no thumbnail.
        except Exception as exc:  # noqa: BLE001
            failure = ThumbnailFailed(f"could not decode: {exc or type(exc).__name__}")
    guarded.raise_failure()
    if failure is not None:
        raise ThumbnailFailed(readable_reason(failure.reason, warned.messages)) from None
    return made


def _make(
    stream: GuardedStream, size: int, budget: FrameBudget, work: ThumbnailWork
) -> list[Thumbnail]:
    try:
        # RawIOBase is a binary file in all but typeshed's class hierarchy.
        image = Image.open(cast(IO[bytes], stream), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ThumbnailFailed("not an image in an accepted format") from None
    with image:
        width, height = image.size
        limit = pixel_limit()
        if limit and width * height > limit:
            raise ThumbnailFailed(f"over the pixel limit: {width}x{height} pixels > {limit}")
        largest = fitted(width, height, max(THUMBNAIL_BOXES))
        if image.format in ("JPEG", "MPO"):
            _prepare_jpeg(image, stream, size, largest, budget, work)
        else:
            _check_memory(image, size, budget, work)
        image.load()
        work.decoded_size = image.size
        work.reduce_factor = reduce_factor(image.size, largest)
        orientation = _orientation(image)
        icc = image.info.get("icc_profile")
        try:
            small = reduced(image, work.reduce_factor)
        except UnsupportedMode as exc:
            raise ThumbnailFailed(str(exc)) from None
    # Decoded and reduced: neither the file's bytes nor the full-size image (unless it is
    # ``small`` itself) are needed for encoding.
    stream.release()
    del image
    ready = oriented(display_ready(small, icc if isinstance(icc, bytes) else None), orientation)
    made: dict[int, Thumbnail] = {}
    previous: Thumbnail | None = None
    # Largest first: each smaller thumbnail is resized from the one before.
    for box in sorted(THUMBNAIL_BOXES, reverse=True):
        target = fitted(width, height, box)
        if orientation in (5, 6, 7, 8):
            target = target[::-1]
        if ready.size != target:
            ready = ready.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        # An image smaller than a box is its own thumbnail in both: encoded once (the
        # encoding is most of the cost of a small image's thumbnails).
        same = previous is not None and (previous.width, previous.height) == ready.size
        data = previous.data if previous is not None and same else _webp(ready)
        previous = made[box] = Thumbnail(box, ready.width, ready.height, data)
    return [made[box] for box in THUMBNAIL_BOXES]


def _prepare_jpeg(
    image: ImageFile.ImageFile,
    stream: GuardedStream,
    size: int,
    target: tuple[int, int],
    budget: FrameBudget,
    work: ThumbnailWork,
) -> None:
    """Count the scans, ask libjpeg for the smallest scale that covers ``target`` and
    check what decoding there holds."""
    width, height = image.size
    offset = int(image.tile[0][2]) if image.tile else 0
    try:
        scans = count_scans(cast(IO[bytes], stream), offset, budget.jpeg_scans)
    except TooManyScans:
        raise ThumbnailFailed(f"too many JPEG scans: more than {budget.jpeg_scans}") from None
    sampling = [(int(layer[1]), int(layer[2])) for layer in getattr(image, "layer", [])]
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    image.draft(None, target)
    drafted_width, drafted_height = image.size
    coefficients = coefficient_bytes(width, height, sampling) if progressive or scans > 1 else 0
    _within(coefficients + drafted_width * drafted_height * 4 + size, size, image, budget, work)


def _check_memory(
    image: ImageFile.ImageFile, size: int, budget: FrameBudget, work: ThumbnailWork
) -> None:
    fmt, (width, height) = str(image.format), image.size
    animated = fmt == "PNG" and int(getattr(image, "n_frames", 1)) > 1
    decoder = image.tile[0][0] if image.tile else ""
    needed = decode_memory(
        fmt, image.mode, width, height, animated=animated, decoder=decoder, size=size
    )
    _within(needed + size, size, image, budget, work)


def _within(
    needed: int, size: int, image: Image.Image, budget: FrameBudget, work: ThumbnailWork
) -> None:
    work.decode_memory = needed
    if needed > budget.memory:
        width, height = image.size
        raise ThumbnailFailed(
            f"too big for a thumbnail: decoding the {width}x{height} first frame needs about "
            f"{needed >> 20} MiB (the file's own {size >> 20} MiB included), more than "
            f"{budget.memory >> 20} MiB"
        )


def _orientation(image: Image.Image) -> int | None:
    # Hostile EXIF makes Pillow raise nearly anything; orientation is a bonus.
    try:
        value = image.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # noqa: BLE001
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _webp(image: Image.Image) -> bytes:
    # No metadata: ``info`` is dropped (Pillow's encoders read EXIF, XMP and ICC from it).
    image.info = {}
    out = io.BytesIO()
    image.save(out, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return out.getvalue()
