"""Hostile image files, generated: crafted headers, pixel bombs, frame bombs and mutations of
valid images, for every accepted format.

Nothing binary is committed. Valid seeds come from Pillow; broken files are built by hand
(chunk by chunk, block by block) where Pillow refuses to write them, so each case names the
exact defect it carries. ``corpus()`` gathers a small named set of everything, for the
tests that run one corpus through both the client's check and the save function.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from PIL import Image

from tests.images import animated_gif, image_bytes, multipage_tiff, png_header_only

# Valid seeds, one per accepted format and variant


def apng(frames: int = 3, size: tuple[int, int] = (24, 16)) -> bytes:
    images = [Image.new("RGB", size, (i % 256, i // 256, 90)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="PNG", save_all=True, append_images=images[1:], duration=40)
    return out.getvalue()


def animated_webp(frames: int = 3, size: tuple[int, int] = (24, 16)) -> bytes:
    # Distinct frames: Pillow merges identical consecutive ones when saving.
    images = [Image.new("RGB", size, (i % 256, i // 256, 90)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(
        out, format="WEBP", save_all=True, append_images=images[1:], duration=40, lossless=True
    )
    return out.getvalue()


def deflate_tiff(size: tuple[int, int] = (40, 30), pages: int = 2) -> bytes:
    """A multi-page TIFF that libtiff decodes (compressed), unlike Pillow's raw reader."""
    images = [Image.linear_gradient("L").resize(size).convert("RGB") for _ in range(pages)]
    out = io.BytesIO()
    images[0].save(
        out,
        format="TIFF",
        save_all=True,
        append_images=images[1:],
        compression="tiff_adobe_deflate",
    )
    return out.getvalue()


def mpo(size: tuple[int, int] = (32, 24)) -> bytes:
    left = Image.linear_gradient("L").resize(size).convert("RGB")
    out = io.BytesIO()
    left.save(out, format="MPO", save_all=True, append_images=[left.rotate(90)])
    return out.getvalue()


def seeds() -> dict[str, bytes]:
    """A valid, small image of every accepted format and variant."""
    return {
        "jpeg": image_bytes("JPEG", size=(48, 32)),
        "mpo": mpo(),
        "png": image_bytes("PNG", size=(48, 32)),
        "apng": apng(),
        "gif": image_bytes("GIF", size=(48, 32)),
        "animated-gif": animated_gif(frames=3, size=(24, 16), noise=True),
        "webp": image_bytes("WEBP", size=(48, 32)),
        "animated-webp": animated_webp(),
        "tiff": image_bytes("TIFF", size=(48, 32)),
        "multipage-tiff": multipage_tiff((16, 16), (24, 8), (8, 8)),
        "deflate-tiff": deflate_tiff(),
        "bmp": image_bytes("BMP", size=(48, 32)),
    }


# PNG chunks


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, body) chunks of a PNG, in order (stops at the first malformed length)."""
    chunks = []
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        chunks.append((kind, body))
        position += 12 + length
    return chunks


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, body) for kind, body in chunks)


def apng_with_num_frames(num_frames: int) -> bytes:
    """A 3-frame APNG whose acTL chunk claims ``num_frames`` (CRC fixed, so Pillow reads it)."""
    chunks = png_chunks(apng())
    patched = [
        (kind, struct.pack(">I", num_frames) + body[4:] if kind == b"acTL" else body)
        for kind, body in chunks
    ]
    return png_from_chunks(patched)


def apng_sequence_error() -> bytes:
    """A 3-frame APNG whose last frame's data is split over two fdAT chunks, the second
    with a wrong sequence number: only decoding that frame finds it (seeking to a frame
    reads its first data chunk only), so a check that trusted the IEND trailer passed it."""
    chunks = png_chunks(apng())
    last = max(index for index, (kind, _) in enumerate(chunks) if kind == b"fdAT")
    _, body = chunks[last]
    (sequence,) = struct.unpack(">I", body[:4])
    half = 4 + (len(body) - 4) // 2
    chunks[last : last + 1] = [
        (b"fdAT", body[:half]),
        (b"fdAT", struct.pack(">I", sequence + 7) + body[half:]),
    ]
    return png_from_chunks(chunks)


def apng_frame_bomb(frames: int) -> bytes:
    """An APNG of 1x1 pixel claiming and holding ``frames`` frames, built in memory fast."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixel = zlib.compress(b"\x00\x00")
    head = png_chunk(b"IHDR", ihdr) + png_chunk(b"acTL", struct.pack(">II", frames, 0))

    def fctl(sequence: int) -> bytes:
        body = struct.pack(">IIIIIHHBB", sequence, 1, 1, 0, 0, 1, 10, 0, 0)
        return png_chunk(b"fcTL", body)

    first = fctl(0) + png_chunk(b"IDAT", pixel)
    rest = b"".join(
        fctl(2 * index - 1) + png_chunk(b"fdAT", struct.pack(">I", 2 * index) + pixel)
        for index in range(1, frames)
    )
    return b"\x89PNG\r\n\x1a\n" + head + first + rest + png_chunk(b"IEND", b"")


# GIF blocks

# A 1x1 frame: image descriptor, then LZW data (minimum code size 2: clear, 0, end).
_GIF_PIXEL_DATA = b"\x02\x02\x44\x01\x00"


def gif_frame(x: int = 0, y: int = 0, width: int = 1, height: int = 1) -> bytes:
    return b"," + struct.pack("<HHHHB", x, y, width, height, 0) + _GIF_PIXEL_DATA


def gif(screen: tuple[int, int], *frames: bytes) -> bytes:
    """A GIF89a of logical screen ``screen`` with a 2-colour table and ``frames``."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return header + b"".join(frames) + b";"


def gif_frame_bomb(frames: int = 2_000_000) -> bytes:
    """A GIF of ``frames`` 1x1 frames (2,000,000 frames: 30 MB, built in well under a second)."""
    return gif((1, 1), gif_frame() * frames)


def gif_huge_frame_extents(width: int = 65535, height: int = 65535) -> bytes:
    """A valid 16x16 GIF with a second frame claiming a ``width`` x ``height`` extent:
    Pillow grows the canvas to it when it seeks there, past the pixel limit."""
    first = image_bytes("GIF", size=(16, 16))
    assert first.endswith(b";")
    return first[:-1] + gif_frame(width=width, height=height) + b";"


def gif_screen_bomb(width: int = 65535, height: int = 65535) -> bytes:
    return gif((width, height), gif_frame())


# TIFF directories

_SHORT, _LONG = 3, 4


def tiff(pages: list[dict[int, int]]) -> bytes:
    """A little-endian TIFF with one 1-byte strip per page and exactly the given tags (plus
    StripOffsets and StripByteCounts), each a SHORT or LONG value."""
    header = 8
    data_at = header
    body = bytearray(b"II*\x00" + struct.pack("<I", header + len(pages)))
    body += b"\x80" * len(pages)  # one strip byte per page
    for number, tags in enumerate(pages):
        entries = {**tags, 273: data_at + number, 279: 1}
        ifd_at = len(body)
        next_at = ifd_at + 2 + 12 * len(entries) + 4 if number + 1 < len(pages) else 0
        body += struct.pack("<H", len(entries))
        for tag, value in sorted(entries.items()):
            kind = _SHORT if value < 65536 and tag not in (273, 279) else _LONG
            packed = (
                struct.pack("<HI", value, 0)[:4] if kind == _SHORT else struct.pack("<I", value)
            )
            body += struct.pack("<HHI", tag, kind, 1) + packed
        body += struct.pack("<I", next_at)
    return bytes(body)


def _gray_page(width: int = 1, height: int = 1) -> dict[int, int]:
    # ImageWidth, ImageLength, BitsPerSample 8, no compression, BlackIsZero, 1 sample, rows.
    return {256: width, 257: height, 258: 8, 259: 1, 262: 1, 277: 1, 278: height}


def tiff_missing_dimensions() -> bytes:
    """A 2-page TIFF whose second page has no ImageWidth or ImageLength: Pillow's frame
    count raised ``TypeError: Missing dimensions``."""
    second = {tag: value for tag, value in _gray_page().items() if tag not in (256, 257)}
    return tiff([_gray_page(), second])


def tiff_page_bomb(width: int = 60000, height: int = 60000) -> bytes:
    return tiff([_gray_page(), _gray_page(width, height)])


def tiff_ifd_loop() -> bytes:
    """A TIFF whose only directory points back to itself."""
    data = bytearray(tiff([_gray_page()]))
    data[-4:] = struct.pack("<I", 9)
    return bytes(data)


def tiff_page_bomb_of_pages(pages: int) -> bytes:
    return tiff([_gray_page() for _ in range(pages)])


# Pixel bombs of the other formats


def jpeg_dimensions(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a baseline JPEG) with its SOF0 marker claiming ``width`` x ``height``."""
    start = data.index(b"\xff\xc0")
    patched = bytearray(data)
    patched[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(patched)


def bmp_dimensions(width: int, height: int) -> bytes:
    data = bytearray(image_bytes("BMP", size=(4, 4)))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_canvas(width: int, height: int) -> bytes:
    """A VP8X WebP header claiming a ``width`` x ``height`` canvas, and no image."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def pixel_bombs() -> dict[str, bytes]:
    """One file per format whose header claims far more pixels than the limit allows."""
    return {
        "bomb.png": png_header_only(30000, 30000),
        "bomb-warning-band.png": png_header_only(11000, 11000),
        "bomb.gif": gif_screen_bomb(),
        "bomb.jpg": jpeg_dimensions(image_bytes("JPEG", size=(8, 8)), 60000, 60000),
        "bomb.webp": webp_canvas(16000, 16000),
        "bomb.tiff": multipage_tiff((20000, 20000)),
        "bomb-page.tiff": tiff_page_bomb(),
        "bomb.bmp": bmp_dimensions(30000, 30000),
    }


# Mutations (what the property tests apply; kept here so the corpus can use them too)

Mutation = Callable[[bytes], bytes]


def truncated(data: bytes, keep: float) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def flipped(data: bytes, positions: list[int], mask: int = 0xFF) -> bytes:
    changed = bytearray(data)
    for position in positions:
        changed[position % len(changed)] ^= mask or 1
    return bytes(changed)


def spliced(data: bytes, start: int, length: int, to: int) -> bytes:
    """A copy of ``length`` bytes from ``start`` inserted again at ``to``."""
    start %= len(data)
    piece = data[start : start + length]
    to %= len(data) + 1
    return data[:to] + piece + data[to:]


def removed(data: bytes, start: int, length: int) -> bytes:
    start %= len(data)
    return data[:start] + data[start + length :]


def duplicated_png_chunk(data: bytes, index: int) -> bytes:
    chunks = png_chunks(data)
    if not chunks:
        return data
    index %= len(chunks)
    return png_from_chunks(chunks[: index + 1] + chunks[index:])


def removed_png_chunk(data: bytes, index: int) -> bytes:
    chunks = png_chunks(data)
    if not chunks:
        return data
    index %= len(chunks)
    return png_from_chunks(chunks[:index] + chunks[index + 1 :])


def inflated_png(data: bytes, value: int, kind_to_inflate: bytes) -> bytes:
    """``data`` with its IHDR size, acTL frame count or every fcTL size set to ``value``
    (CRCs fixed): the counts and extents a reader must not trust."""
    chunks = []
    for kind, body in png_chunks(data):
        value %= 2**32  # PNG's fields are 32 bits
        if kind == kind_to_inflate == b"IHDR":
            body = struct.pack(">II", value, value) + body[8:]
        elif kind == kind_to_inflate == b"acTL":
            body = struct.pack(">I", value) + body[4:]
        elif kind == kind_to_inflate == b"fcTL":
            body = body[:4] + struct.pack(">II", value, value) + body[12:]
        chunks.append((kind, body))
    return png_from_chunks(chunks)


def inflated_gif(data: bytes, value: int) -> bytes:
    """``data``'s logical screen and first frame's extent set to ``value`` pixels a side
    (GIF's fields are 16 bits: ``value`` is taken modulo 65,536)."""
    value %= 65536
    changed = bytearray(data)
    changed[6:10] = struct.pack("<HH", value, value)
    descriptor = data.find(b",", 13)
    if descriptor > 0 and descriptor + 9 <= len(data):
        changed[descriptor + 5 : descriptor + 9] = struct.pack("<HH", value, value)
    return bytes(changed)


def overwritten(data: bytes, offset: int, value: int, width: int, byteorder: str) -> bytes:
    """``data`` with a ``width``-byte field at ``offset`` set to ``value`` (a count or a size
    field, wherever it is, when the offset lands on one)."""
    offset %= max(1, len(data) - width)
    field = (value % (1 << (8 * width))).to_bytes(width, byteorder)  # type: ignore[arg-type]
    return data[:offset] + field + data[offset + width :]


def damaged_deflate_tiff() -> bytes:
    """A deflate TIFF whose compressed strip is garbled: libtiff's decoder fails on it, and
    its default error handler would print "ZIPDecode: Decoding error..." to stderr."""
    data = bytearray(deflate_tiff(size=(200, 200), pages=1))
    for index in range(200, 600):
        data[index] ^= 0x55
    return bytes(data)


# The corpus


def corpus() -> dict[str, bytes]:
    """~30 named files: the issue's three crafted cases and their kin, a pixel bomb per
    format, a frame bomb, files that make Pillow warn or libtiff complain, and a valid
    image of each format (with a control-character EXIF)."""
    valid = seeds()
    files: dict[str, bytes] = {
        f"valid-{name}": valid[name]
        for name in ("jpeg", "png", "apng", "animated-gif", "animated-webp", "deflate-tiff")
    }
    files |= {
        "tiff-missing-dimensions.tiff": tiff_missing_dimensions(),
        "gif-huge-frame-extents.gif": gif_huge_frame_extents(),
        "gif-frame-extents-warning-band.gif": gif_huge_frame_extents(11000, 11000),
        "apng-num-frames-0.png": apng_with_num_frames(0),
        "apng-sequence-error.png": apng_sequence_error(),
        "apng-num-frames-huge.png": apng_with_num_frames(0x7FFFFFFF),
        "tiff-ifd-loop.tiff": tiff_ifd_loop(),
        "tiff-damaged-deflate.tiff": damaged_deflate_tiff(),
        "tiff-truncated-deflate.tiff": truncated(valid["deflate-tiff"], 0.6),
        "gif-frame-bomb.gif": gif_frame_bomb(20_000),
        "exif-control-characters.jpg": exif_with_control_characters(),
        "truncated-jpeg.jpg": truncated(image_bytes("JPEG", size=(200, 150)), 0.7),
        "truncated-webp.webp": truncated(valid["animated-webp"], 0.7),
        "not-an-image.jpg": b"GIF87a? no: plain text\n" * 10,
    }
    return files | pixel_bombs()


def mutated_corpus() -> dict[str, bytes]:
    """``corpus()`` plus every seed truncated and with bytes flipped in its middle."""
    files = corpus()
    for name, data in seeds().items():
        files[f"valid-{name}"] = data
        files[f"truncated-{name}"] = truncated(data, 0.6)
        files[f"flipped-{name}"] = flipped(data, [len(data) // 2 + i for i in range(8)])
    return files


def exif_with_control_characters() -> bytes:
    """A JPEG whose EXIF Make is the byte 0x8C (a C1 control once read) and whose Model
    holds an ESC sequence and a bidi override (written as UTF-8, as phones do)."""
    exif = Image.Exif()
    exif[0x010F] = "ZQ"
    exif[0x0110] = "M" * 16
    model = "X\x1b[31mT5\u202e".encode()
    block = exif.tobytes().replace(b"ZQ", b"\x8c\x00").replace(b"M" * 16, model.ljust(16, b" "))
    return image_bytes("JPEG", exif=block)
