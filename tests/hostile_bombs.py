"""Time and memory bombs within the accepted formats, generated: each is the worst case found
for one format (what makes ``describe_image`` decode the most, or hold the most, for the
fewest bytes), at the save function's parameters.

JPEGs are built from a tiny Pillow JPEG whose frame header is patched to claim a big image
and whose scans are repeated, with the end marker left off so the trailer proves nothing;
the other formats are built chunk by chunk. Sizes default to ``SIDE`` pixels a side, just
under the pixel limit; ``bombs()`` names the set measured (time, peak RSS, verdict) when
the memory and scan budgets of ``image_metadata`` were chosen.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.hostile_images import gif, png_chunk, tiff

#: Just under Pillow's pixel limit (89,478,485): 9,400 x 9,400 = 88,360,000 pixels.
SIDE = 9400

# JPEG


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """The (marker, bytes) segments of a JPEG after SOI, each with its marker and, for a
    scan, its entropy-coded data; stops at EOI or the end."""
    segments = []
    position = 2
    while position + 4 <= len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        if marker == 0xDA:
            while end + 1 < len(data) and not (
                data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))
            ):
                end += 1
        segments.append((marker, data[position:end]))
        position = end
    return segments


def jpeg_bomb(
    width: int = SIDE,
    height: int = SIDE,
    *,
    mode: str = "RGB",
    progressive: bool = True,
    extra_scans: int = 0,
    subsampling: int = 0,
    eoi: bool = False,
) -> bytes:
    """A JPEG claiming ``width`` x ``height`` with the scan data of a 16x16 one, its last
    scan repeated ``extra_scans`` times (each a few bytes; every one makes a progressive
    decoder pass over the whole image), and no end marker unless ``eoi``."""
    out = io.BytesIO()
    options: dict[str, object] = {"quality": 90, "progressive": progressive}
    if mode != "L":
        options["subsampling"] = subsampling
    Image.new(mode, (16, 16), 128 if mode == "L" else None).save(out, format="JPEG", **options)
    body = bytearray()
    last_scan = b""
    for marker, segment in jpeg_segments(out.getvalue()):
        if marker in (0xC0, 0xC2):
            segment = segment[:5] + struct.pack(">HH", height, width) + segment[9:]
        if marker == 0xDA:
            last_scan = segment
        body += segment
    body += last_scan * extra_scans
    return b"\xff\xd8" + bytes(body) + (b"\xff\xd9" if eoi else b"")


# PNG and APNG


def _zlib_of_zeros(length: int, chunk: int = 1 << 24) -> bytes:
    compressor = zlib.compressobj(9)
    parts = []
    zeros = bytes(min(chunk, length))
    left = length
    while left > 0:
        parts.append(compressor.compress(zeros[: min(chunk, left)]))
        left -= chunk
    parts.append(compressor.flush())
    return b"".join(parts)


def png_bomb(side: int = SIDE, *, frames: int = 1, complete: bool = True) -> bytes:
    """An RGBA PNG (an APNG when ``frames`` > 1) of ``side`` x ``side`` pixels whose every
    frame is a zlib stream of zeros (about 1,000 times smaller than what it inflates to),
    all frames sharing the one stream; ``complete=False`` cuts the stream short instead."""
    raw = (side * 4 + 1) * side
    stream = _zlib_of_zeros(raw) if complete else zlib.compress(bytes(side * 4 + 1))[:-4]
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    parts = [png_chunk(b"IHDR", ihdr)]
    if frames > 1:
        parts.append(png_chunk(b"acTL", struct.pack(">II", frames, 0)))
    sequence = 0
    for frame in range(frames):
        if frames > 1:
            fctl = struct.pack(">IIIIIHHBB", sequence, side, side, 0, 0, 1, 10, 0, 0)
            parts.append(png_chunk(b"fcTL", fctl))
            sequence += 1
        if frame == 0:
            parts.append(png_chunk(b"IDAT", stream))
        else:
            parts.append(png_chunk(b"fdAT", struct.pack(">I", sequence) + stream))
            sequence += 1
    parts.append(png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


# GIF


def _gif_lzw_of_zeros(pixels: int) -> bytes:
    """GIF LZW data (2-bit minimum code size) for ``pixels`` zero pixels, near LZW's best
    ratio: each new code is the previous run plus one zero (runs of 1, 2, 3... zeros) until
    the table is full, then the longest run over and over (12-bit codes, deferred clear)."""
    bits, nbits, width, out = 0, 0, 3, bytearray()

    def put(code: int) -> None:
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    put(4)  # clear
    put(0)  # one zero; no table entry for the first code
    left, next_code = pixels - 1, 6
    while left > 0:
        if next_code < 4096 and next_code - 4 <= left:
            put(next_code)  # not yet in the table: the previous run plus its first pixel
            left -= next_code - 4
            next_code += 1
            if next_code == 1 << width and width < 12:
                width += 1
        else:
            code = min(next_code - 1, left + 4)
            code = 0 if code < 6 else code
            put(code)
            left -= 1 if code == 0 else code - 4
            if next_code < 4096:
                next_code += 1
                if next_code == 1 << width and width < 12:
                    width += 1
    put(5)  # end of information
    if nbits:
        out.append(bits & 0xFF)
    blocks = b"".join(
        bytes([len(out[i : i + 255])]) + bytes(out[i : i + 255]) for i in range(0, len(out), 255)
    )
    return b"\x02" + blocks + b"\x00"


def gif_bomb(side: int = SIDE, frames: int = 11, *, full: bool = True) -> bytes:
    """A GIF of ``frames`` frames of ``side`` x ``side`` pixels on a screen of that size, each
    frame's LZW data a run of zeros (``full``) or a single pixel (the decoder fills the rest)."""
    data = _gif_lzw_of_zeros(side * side) if full else b"\x02\x02\x44\x01\x00"
    # Restore-to-background disposal, so Pillow keeps its dispose canvas for every frame.
    control = b"!\xf9\x04" + bytes([0x08]) + struct.pack("<H", 2) + b"\x00\x00"
    frame = control + b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + data
    return gif((side, side), frame * frames)


# WebP


def webp_bomb(side: int = SIDE, frames: int = 2) -> bytes:
    """An animated WebP with a ``side`` x ``side`` canvas and ``frames`` 1x1 frames: libwebp's
    animation decoder allocates and fills the whole canvas, twice, whatever the frames."""
    pixel = io.BytesIO()
    Image.new("RGBA", (1, 1), (1, 2, 3, 255)).save(pixel, format="WEBP", lossless=True)
    riff = pixel.getvalue()
    vp8l = riff[12:]  # the VP8L chunk of a 1x1 lossless still
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x12, 0, 0, 0])
    vp8x += (side - 1).to_bytes(3, "little") + (side - 1).to_bytes(3, "little")
    anim = b"ANIM" + struct.pack("<I", 6) + b"\x00\x00\x00\x00\x00\x00"
    anmf_body = b"\x00" * 6 + b"\x00\x00\x00" + b"\x00\x00\x00" + b"\x28\x00\x00" + b"\x00"
    anmf_body += vp8l
    anmf = b"ANMF" + struct.pack("<I", len(anmf_body)) + anmf_body
    if len(anmf_body) % 2:
        anmf += b"\x00"
    body = b"WEBP" + vp8x + anim + anmf * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


# TIFF


def tiff_pages_bomb(pages: int = 10_000) -> bytes:
    page = {256: 1, 257: 1, 258: 8, 259: 1, 262: 1, 277: 1, 278: 1}
    return tiff([page] * pages)


def tiff_strips_bomb(side: int = SIDE, rows_per_strip: int = 1) -> bytes:
    """An uncompressed gray TIFF of ``side`` x ``side`` pixels cut into one strip per
    ``rows_per_strip`` rows, every strip's offset and byte count pointing at the same few
    bytes: Pillow's own reader makes one tile per strip and reads each."""
    strips = -(-side // rows_per_strip)
    offsets_at = 8
    counts_at = offsets_at + 4 * strips
    data_at = counts_at + 4 * strips
    entries = [
        (256, 4, 1, side),
        (257, 4, 1, side),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, strips, offsets_at),
        (277, 3, 1, 1),
        (278, 4, 1, rows_per_strip),
        (279, 4, strips, counts_at),
    ]
    ifd_at = data_at + 16
    head = b"II*\x00" + struct.pack("<I", ifd_at)
    offsets = struct.pack(f"<{strips}I", *([data_at] * strips))
    counts = struct.pack(f"<{strips}I", *([16] * strips))
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    return head + offsets + counts + b"\x80" * 16 + ifd


def tiff_deflate_bomb(side: int = SIDE, pages: int = 11, *, complete: bool = True) -> bytes:
    """A deflate (libtiff) RGBA TIFF of ``pages`` pages of ``side`` x ``side`` pixels, one
    strip each, all pages' strips the same zlib stream of zeros (cut short unless
    ``complete``)."""
    raw = side * side * 4
    stream = _zlib_of_zeros(raw) if complete else zlib.compress(bytes(64))[:-4]
    data_at = 8
    body = bytearray(b"II*\x00" + struct.pack("<I", 0))
    body += stream
    if len(body) % 2:
        body += b"\x00"
    bits_at = len(body)
    body += struct.pack("<4H", 8, 8, 8, 8)
    first_ifd = len(body)
    body[4:8] = struct.pack("<I", first_ifd)
    for page in range(pages):
        entries = [
            (256, 4, 1, side),
            (257, 4, 1, side),
            (258, 3, 4, bits_at),
            (259, 3, 1, 8),
            (262, 3, 1, 2),
            (273, 4, 1, data_at),
            (277, 3, 1, 4),
            (278, 4, 1, side),
            (279, 4, 1, len(stream)),
            (338, 3, 1, 2),
        ]
        ifd_at = len(body)
        next_at = ifd_at + 2 + 12 * len(entries) + 4 if page + 1 < pages else 0
        body += struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and count == 1 else None
            body += struct.pack("<HHI", tag, kind, count) + (packed or struct.pack("<I", value))
        body += struct.pack("<I", next_at)
    return bytes(body)


# BMP


def bmp_rle_bomb(side: int = SIDE, *, runs: bool = True) -> bytes:
    """An RLE8 BMP of ``side`` x ``side`` pixels: runs of 255 pixels (``runs``, the Python
    decoder's slowest path per byte) or one end-of-bitmap escape after nothing."""
    if runs:
        row = b"\xff\x01" * (side // 255) + bytes([side % 255, 1]) + b"\x00\x00"
        pixels = row * side + b"\x00\x01"
    else:
        pixels = b"\x00\x01"
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    header_size = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 2, 0)
    file_header = b"BM" + struct.pack("<IHHI", header_size + len(pixels), 0, 0, header_size)
    return file_header + info + palette + pixels


def bmp_raw_bomb(side: int = SIDE) -> bytes:
    """A 32-bit BMP claiming ``side`` x ``side`` pixels with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 32, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def bombs() -> dict[str, bytes]:
    """Every bomb above at its worst measured setting, by name."""
    return {
        "jpeg-progressive-1000-scans": jpeg_bomb(extra_scans=1000),
        "jpeg-progressive-cmyk": jpeg_bomb(mode="CMYK"),
        "jpeg-progressive-rgb": jpeg_bomb(),
        "jpeg-baseline-rgb": jpeg_bomb(progressive=False),
        "jpeg-baseline-cmyk": jpeg_bomb(mode="CMYK", progressive=False),
        "png-rgba-zeros": png_bomb(),
        "png-rgba-truncated": png_bomb(complete=False),
        "apng-rgba-11-frames": png_bomb(frames=11),
        "gif-11-full-frames": gif_bomb(),
        "gif-11-empty-frames": gif_bomb(full=False),
        "webp-canvas-2-frames": webp_bomb(),
        "tiff-10000-pages": tiff_pages_bomb(),
        "tiff-9400-strips": tiff_strips_bomb(),
        "tiff-deflate-11-pages": tiff_deflate_bomb(),
        "bmp-rle-runs": bmp_rle_bomb(),
        "bmp-rle-empty": bmp_rle_bomb(runs=False),
        "bmp-32-bit-no-data": bmp_raw_bomb(),
    }
