"""describe_image on in-memory files: formats, EXIF, and every kind of bad input."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from imgcli.lambdas.image_metadata import ALLOWED_FORMATS, InvalidImage, describe_image
from imgcli.lambdas.ranged_reader import FetchFailed, RangedReader
from tests.images import (
    SAVE_FORMATS,
    animated_gif,
    damaged_middle,
    image_bytes,
    jpeg_with_exif,
    multipage_tiff,
    noisy_jpeg,
    png_header_only,
)


def describe(data: bytes):  # type: ignore[no-untyped-def]
    return describe_image(io.BytesIO(data), len(data))


@pytest.mark.parametrize("fmt", sorted(SAVE_FORMATS))
def test_every_accepted_format_is_described(fmt: str) -> None:
    details = describe(image_bytes(fmt, size=(64, 48)))
    assert details.format == fmt
    assert (details.width, details.height) == (64, 48)
    assert details.content_type == f"image/{fmt.lower()}"
    assert details.frames == 1
    assert details.mode == SAVE_FORMATS[fmt][0]


def test_allow_list_covers_the_promised_formats() -> None:
    assert {"JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"} <= set(ALLOWED_FORMATS)


def test_animated_gif_counts_frames() -> None:
    assert describe(animated_gif(frames=4)).frames == 4


def test_exif_basics_are_read() -> None:
    details = describe(jpeg_with_exif())
    assert details.taken_at == "2026-07-14T09:30:15+02:00"
    assert details.camera_make == "Fujifilm"
    assert details.camera_model == "X-T5"
    assert details.orientation == 6


def test_exif_without_offset_and_with_unset_clock() -> None:
    assert describe(jpeg_with_exif(offset=None)).taken_at == "2026-07-14T09:30:15"
    assert describe(jpeg_with_exif(taken_at="0000:00:00 00:00:00")).taken_at is None


def test_out_of_range_orientation_is_dropped() -> None:
    assert describe(jpeg_with_exif(orientation=42)).orientation is None


def test_image_without_exif_has_none_fields() -> None:
    details = describe(image_bytes("PNG"))
    assert (details.taken_at, details.camera_make, details.orientation) == (None, None, None)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file\n" * 20, "not an image in an accepted format"),
        (b"%PDF-1.7\n" + b"0" * 500, "not an image in an accepted format"),
        # A broken header is indistinguishable from "some other file type" to Pillow.
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image in an accepted format"),
    ],
)
def test_non_images_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        describe(data)
    assert reason in caught.value.reason


PLUGIN_PROBE = """
import io, sys
from imgcli.lambdas.image_metadata import InvalidImage, describe_image
data = bytes.fromhex(sys.argv[1])
try:
    describe_image(io.BytesIO(data), len(data))
except InvalidImage:
    pass
print(",".join(sorted(m for m in sys.modules if m.endswith("ImagePlugin"))))
"""


@pytest.mark.parametrize(
    "data", [image_bytes("WEBP", size=(16, 16)), b"no image at all"], ids=["webp", "no image"]
)
def test_only_the_accepted_formats_plugins_are_imported(data: bytes) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PLUGIN_PROBE, data.hex()],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(result.stdout.strip().split(","))
    # The accepted formats' plugins, and Pillow's common set; not all of its 45 plugins.
    common = {"Bmp", "Gif", "Jpeg", "Png", "Ppm", "Tiff", "WebP"}
    assert loaded <= {f"PIL.{name}ImagePlugin" for name in common}


def test_format_outside_the_allow_list_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PPM")
    with pytest.raises(InvalidImage, match="not an image in an accepted format"):
        describe(out.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_images_are_refused(fmt: str) -> None:
    data = image_bytes(fmt, size=(200, 150))
    with pytest.raises(InvalidImage, match=r"truncated|corrupt"):
        describe(data[: len(data) * 2 // 3])


def test_jpeg_with_appended_data_is_still_an_image() -> None:
    # Phones append a motion-photo video after the JPEG's end marker.
    details = describe(image_bytes("JPEG") + b"\x00ftypmp42" + b"v" * 5000)
    assert details.format == "JPEG"


@pytest.mark.parametrize(
    "pixels_factor",
    [1.05, 2.5],  # inside Pillow's warning band (1x-2x its limit) and beyond it
)
def test_decompression_bombs_are_refused(pixels_factor: float) -> None:
    side = int((Image.MAX_IMAGE_PIXELS * pixels_factor) ** 0.5) + 1  # type: ignore[operator]
    with pytest.raises(InvalidImage, match="pixel limit"):
        describe(png_header_only(side, side))


def describe_as_big_object(data: bytes):  # type: ignore[no-untyped-def]
    """As the save function describes an object too big to decode in full."""
    return describe_image(io.BytesIO(data), len(data), full_decode_bytes=0)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP"])
def test_damaged_body_with_intact_header_and_trailer_is_refused(fmt: str) -> None:
    data = image_bytes(fmt, size=(300, 200))
    with pytest.raises(InvalidImage, match="corrupt"):
        describe(damaged_middle(data))


def test_gif_cut_just_after_a_0x3b_byte_is_refused() -> None:
    # 0x3B is GIF's trailer, but it also occurs inside the compressed frame data.
    data = animated_gif(frames=3, size=(120, 120), noise=True)
    cut = next(i for i in range(len(data) // 2, len(data) - 1) if data[i] == 0x3B) + 1
    with pytest.raises(InvalidImage, match=r"truncated|corrupt"):
        describe(data[:cut])


def test_a_huge_later_page_is_a_decompression_bomb() -> None:
    with pytest.raises(InvalidImage, match="pixel limit"):
        describe(multipage_tiff((10, 10), (12_000, 12_000)))


def test_multipage_tiff_within_limits_counts_its_pages() -> None:
    assert describe(multipage_tiff((10, 10), (20, 30), (5, 5))).frames == 3


def test_big_objects_with_a_trailer_are_not_decoded() -> None:
    data = noisy_jpeg(400, 300)
    reads: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        reads.append((start, end))
        return data[start : end + 1]

    reader = RangedReader(fetch, len(data), initial=data[:4096], min_fetch=4096)
    details = describe_image(reader, len(data), full_decode_bytes=0)  # type: ignore[arg-type]
    assert (details.width, details.height) == (400, 300)
    assert reads == [(len(data) - 2, len(data) - 1)]


def test_big_objects_without_their_trailer_are_decoded() -> None:
    data = image_bytes("JPEG", size=(300, 200))
    assert describe_as_big_object(data + b"\x00ftypmp42" + b"v" * 5000).format == "JPEG"
    with pytest.raises(InvalidImage, match="truncated"):
        describe_as_big_object(data[: len(data) * 2 // 3])


def test_a_failed_read_is_not_an_invalid_image() -> None:
    data = image_bytes("PNG", size=(300, 200))

    def fetch(start: int, end: int) -> bytes:
        raise TimeoutError("read timed out")

    reader = RangedReader(fetch, len(data), initial=data[:100])
    with pytest.raises(FetchFailed):
        describe_image(reader, len(data))  # type: ignore[arg-type]
