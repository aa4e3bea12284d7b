"""Small generated images for tests: every accepted format, EXIF, and hostile files.

Nothing binary is committed; each helper builds its bytes with Pillow (or by hand where
Pillow refuses to write something broken).
"""

from __future__ import annotations

import io
import os
import struct
import zlib

from PIL import Image

SAVE_FORMATS = {
    "JPEG": ("RGB", {}),
    "PNG": ("RGBA", {}),
    "GIF": ("P", {}),
    "WEBP": ("RGB", {"lossless": True}),
    "TIFF": ("RGB", {}),
    "BMP": ("RGB", {}),
}


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    mode, defaults = SAVE_FORMATS[fmt]
    image = Image.new(mode, size, color=1 if mode == "P" else None)
    if mode != "P":
        image = Image.linear_gradient("L").resize(size).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt, **{**defaults, **save})
    return out.getvalue()


def animated_gif(
    frames: int = 3, size: tuple[int, int] = (32, 32), *, noise: bool = False
) -> bytes:
    """Frames of distinct content (Pillow merges identical consecutive frames when saving);
    with ``noise``, random pixels, so the compressed data holds every byte value."""

    def frame(index: int) -> Image.Image:
        if noise:
            return Image.frombytes("L", size, os.urandom(size[0] * size[1])).convert("P")
        return Image.new("L", size, color=40 * index).convert("P")

    images = [frame(i) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=50)
    return out.getvalue()


def jpeg_with_exif(
    *,
    taken_at: str = "2026:07:14 09:30:15",
    offset: str | None = "+02:00",
    make: str = "Fujifilm",
    model: str = "X-T5",
    orientation: int = 6,
) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = taken_at
    if offset is not None:
        sub[0x9011] = offset
    return image_bytes("JPEG", exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: a decompression bomb's calling card."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def noisy_jpeg(width: int, height: int, quality: int = 95) -> bytes:
    """A JPEG that barely compresses: random pixels, for large-object tests."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def multipage_tiff(*sizes: tuple[int, int]) -> bytes:
    """A TIFF with one bilevel page per size; group4 keeps even huge blank pages tiny."""
    pages = [Image.new("1", size, color=1) for size in sizes]
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:], compression="group4")
    return out.getvalue()


def damaged_middle(data: bytes, length: int = 64) -> bytes:
    """``data`` with ``length`` bytes in its middle flipped; header and trailer intact."""
    damaged = bytearray(data)
    middle = len(damaged) // 2
    for index in range(middle, middle + length):
        damaged[index] ^= 0x5A
    return bytes(damaged)
