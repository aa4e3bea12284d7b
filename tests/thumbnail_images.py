"""Generated images for thumbnail tests: every mode the accepted formats decode to, EXIF
orientations, metadata to strip, and animations whose first frame differs from the rest.

Nothing binary is committed. Each helper returns the file's bytes; colours are chosen so a
test can tell a right conversion from a wrong one (a 16-bit mid-grey must not come out
white, a CMYK red must come out red).
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageCms

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def encoded(image: Image.Image, fmt: str, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def solid(mode: str, size: tuple[int, int], colour: object, fmt: str, **save: object) -> bytes:
    """A ``size`` image of one ``colour`` in ``mode``, saved as ``fmt``."""
    return encoded(Image.new(mode, size, colour), fmt, **save)  # type: ignore[arg-type]


def png_raw(width: int, height: int, colour_type: int, depth: int, row: bytes) -> bytes:
    """A PNG written by hand (Pillow writes no 16-bit grey+alpha or 16-bit RGB): every row
    is ``row``, filter 0."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def grey16_alpha_png(grey: int, alpha: int, size: tuple[int, int] = (8, 6)) -> bytes:
    """16-bit grey with 16-bit alpha (PNG colour type 4)."""
    return png_raw(size[0], size[1], 4, 16, struct.pack(">HH", grey, alpha) * size[0])


def rgb16_png(colour: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    """16-bit RGB (PNG colour type 2)."""
    return png_raw(size[0], size[1], 2, 16, struct.pack(">HHH", *colour) * size[0])


def grey16_png(grey: int, size: tuple[int, int] = (8, 6)) -> bytes:
    """16-bit grey (PNG colour type 0), which Pillow opens as I;16."""
    return png_raw(size[0], size[1], 0, 16, struct.pack(">H", grey) * size[0])


def palette_with_transparency(fmt: str, size: tuple[int, int] = (8, 6)) -> bytes:
    """A P image, left half red, right half transparent (index 1)."""
    image = Image.new("P", size, 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (size[0] // 2, 0, size[0], size[1]))
    return encoded(image, fmt, transparency=1)


def half_transparent(mode: str, fmt: str, size: tuple[int, int] = (8, 6)) -> bytes:
    """``mode`` (LA or RGBA) red/grey on the left, fully transparent on the right."""
    colour = (255, 0, 0, 255) if mode == "RGBA" else (200, 255)
    image = Image.new(mode, size, colour)
    clear = (0, 0, 0, 0) if mode == "RGBA" else (0, 0)
    image.paste(clear, (size[0] // 2, 0, size[0], size[1]))
    return encoded(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def cornered(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """Blue, with a red block in the stored top-left corner: where it lands shows the
    orientation applied."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 3, size[1] // 3))
    return image


def oriented_jpeg(orientation: int, size: tuple[int, int] = (60, 40)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(cornered(size), "JPEG", quality=95, exif=exif.tobytes())


def oriented(fmt: str, orientation: int, size: tuple[int, int] = (60, 40)) -> bytes:
    """``cornered`` as ``fmt`` with EXIF ``orientation`` (JPEG, PNG, WebP, TIFF)."""
    if fmt == "JPEG":
        return oriented_jpeg(orientation, size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    return encoded(cornered(size), fmt, exif=exif.tobytes(), **extra)


def with_metadata() -> bytes:
    """A JPEG with EXIF (camera, GPS position), XMP, a comment and an sRGB ICC profile."""
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    exif[0x0112] = 1
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encoded(
        cornered((64, 48)),
        "JPEG",
        exif=exif.tobytes(),
        xmp=xmp,
        icc_profile=icc,
        comment=b"secret comment",
    )


def first_red_then_blue(fmt: str, frames: int = 3, size: tuple[int, int] = (20, 10)) -> bytes:
    """An animation (GIF, PNG for APNG, WEBP, or a multi-page TIFF) whose first frame is
    red and whose others are blue (each a different blue: identical frames are merged)."""
    images = [Image.new("RGB", size, RED)]
    images += [Image.new("RGB", size, (0, index, 255)) for index in range(1, frames)]
    extra: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    if fmt in ("GIF", "PNG", "WEBP"):
        extra["duration"] = 40
    return encoded(images[0], fmt, save_all=True, append_images=images[1:], **extra)


def flat_jpeg(size: tuple[int, int], colour: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    """A big JPEG that encodes fast (one colour): for draft-mode tests."""
    return encoded(Image.new("RGB", size, colour), "JPEG", quality=90)
