"""describe_image against time and memory bombs: JPEG scans and coefficient buffers, and
canvases whose decoders hold several copies (GIF, APNG, WebP, libtiff). Each bomb is
invalid with a reason naming what it exceeded, found before the decode it would cost;
work is counted (scans, decoded pixels, bytes read, the memory estimate), never timed.
One subprocess decodes the real-size bombs under an address-space limit of 1 GiB, the
save function's memory: the old code crashed there (MemoryError) or took it all."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imgcli.lambdas.image_jpeg import MAX_JPEG_SCANS, TooManyScans, count_scans
from imgcli.lambdas.image_metadata import (
    DECODE_MEMORY_BYTES,
    MAX_DECODED_PIXELS,
    DescribeWork,
    FrameBudget,
    ImageDetails,
    InvalidImage,
    decode_memory,
    describe_image,
    jpeg_decode_memory,
)
from tests import hostile_bombs as bombs
from tests import hostile_images as hostile
from tests.images import animated_gif, image_bytes

REPO = Path(__file__).resolve().parents[1]


def describe(data: bytes, **options: Any) -> ImageDetails:
    return describe_image(io.BytesIO(data), len(data), **options)


def reason_of(data: bytes, **options: Any) -> str:
    with pytest.raises(InvalidImage) as caught:
        describe(data, **options)
    return caught.value.reason


# JPEG scans


def test_a_progressive_jpeg_of_many_scans_is_refused_before_decoding() -> None:
    # 1,000 repeated scans of a 9,400 x 9,400 image (11 KB) took 7 s of CPU to decode.
    data = bombs.jpeg_bomb(extra_scans=1000)
    work = DescribeWork()
    reason = reason_of(data, work=work)
    assert reason == f"too many JPEG scans to check: more than {MAX_JPEG_SCANS}"
    assert work.decoded_pixels == 0
    assert work.bytes_read < 3 * len(data)


def test_a_jpeg_within_the_scan_limit_is_decoded() -> None:
    data = bombs.jpeg_bomb(64, 48, extra_scans=20)
    work = DescribeWork()
    reason = reason_of(data, work=work)  # no end marker: decoded, and found truncated
    assert reason.startswith("truncated or corrupt image")
    assert 20 < work.jpeg_scans <= MAX_JPEG_SCANS
    assert work.decoded_pixels == 64 * 48


def test_scans_are_counted_exactly_and_only_up_to_the_end_marker() -> None:
    data = bombs.jpeg_bomb(64, 48, extra_scans=5, eoi=True)
    real = sum(1 for marker, _ in bombs.jpeg_segments(data) if marker == 0xDA)
    # A motion photo's appended video: after the end marker, SOS bytes are not scans.
    appended = data + b"\xff\xda\x00\x08" * 500
    assert count_scans(io.BytesIO(appended), 0, MAX_JPEG_SCANS) == real
    with pytest.raises(TooManyScans):
        count_scans(io.BytesIO(appended), 0, real - 1)
    details = describe(appended)  # no trailer at the end: decoded, scans counted
    assert (details.format, details.width, details.height) == ("JPEG", 64, 48)


def test_stuffed_bytes_and_restart_markers_are_not_scans() -> None:
    data = image_bytes("JPEG", size=(256, 256), quality=100, restart_marker_blocks=1)
    assert data.count(b"\xff\xd0") > 0
    assert count_scans(io.BytesIO(data), 0, MAX_JPEG_SCANS) == 1


# JPEG memory


@pytest.mark.parametrize(
    ("mode", "subsampling", "refused"),
    [("CMYK", 0, True), ("RGB", 0, False), ("RGB", 2, False)],
    ids=["cmyk-444", "rgb-444", "rgb-420"],
)
def test_a_progressive_jpegs_coefficient_buffer_is_held_to_the_memory_budget(
    mode: str, subsampling: int, refused: bool
) -> None:
    # A 703-byte progressive CMYK JPEG without its end marker took 730 MB to decode.
    data = bombs.jpeg_bomb(mode=mode, subsampling=subsampling)
    budget = FrameBudget(decoded_pixels=MAX_DECODED_PIXELS)
    if refused:
        work = DescribeWork()
        assert reason_of(data, work=work) == (
            "too big to check: decoding a 9400x9400 frame needs about 679 MiB "
            f"(the file's own {len(data)} bytes included), more than 512 MiB"
        )
        assert work.decoded_pixels == 0
    else:
        # Within the budget, checked with a budget just below its estimate instead of a
        # 500 MB decode: the estimate is what the rule compares.
        work = DescribeWork()
        with pytest.raises(InvalidImage):
            describe(data, budget=budget, work=work)
        assert 0 < work.peak_decode_memory <= DECODE_MEMORY_BYTES
        tight = FrameBudget(memory=work.peak_decode_memory - 1)
        assert reason_of(data, budget=tight).startswith("too big to check")


def test_the_jpeg_estimate_counts_two_bytes_a_sample_and_an_eighth_of_the_pixels() -> None:
    full = jpeg_decode_memory(800, 800, [(1, 1)] * 3, scans=10, progressive=True)
    assert full == 800 * 800 * 2 * 3 + 100 * 100 * 4
    subsampled = jpeg_decode_memory(800, 800, [(2, 2), (1, 1), (1, 1)], scans=10, progressive=True)
    assert subsampled == 800 * 800 * 2 + 2 * 400 * 400 * 2 + 100 * 100 * 4
    baseline = jpeg_decode_memory(800, 800, [(1, 1)] * 3, scans=1, progressive=False)
    assert baseline == 100 * 100 * 4  # one scan: no coefficient buffer


def test_an_mpo_without_its_trailer_decodes_every_frame_at_an_eighth() -> None:
    data = hostile.mpo(size=(64, 48)) + b"\x00" * 16
    work = DescribeWork()
    details = describe(data, work=work)
    assert (details.format, details.frames, details.width, details.height) == ("MPO", 2, 64, 48)
    assert work.jpeg_scans == 2
    # The draft, not 64 x 48 x 4, and the file, which the save function's reader holds.
    assert work.peak_decode_memory == 8 * 6 * 4 + len(data)


# Canvases held several times


@pytest.mark.parametrize(
    ("name", "data", "needed"),
    [
        ("webp", bombs.webp_bomb(), 9400 * 9400 * 16 + 148),
        ("gif", bombs.gif_bomb(frames=2, full=False), 9400 * 9400 * 16),
        ("apng", bombs.png_bomb(frames=2, complete=False), 9400 * 9400 * 12),
        ("libtiff", bombs.tiff_deflate_bomb(pages=1, complete=False), None),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_canvas_its_decoder_holds_too_often_is_refused_before_decoding(
    name: str, data: bytes, needed: int | None
) -> None:
    # Unbounded: the WebP (148 bytes) took 1.4 GB, the GIF 1.5 GB, the APNG 1 GB, the
    # TIFF 700 MB: past the save function's 1,024 MB, or near it.
    work = DescribeWork()
    reason = reason_of(data, work=work)
    assert reason.startswith("too big to check: decoding a 9400x9400 frame needs about"), name
    assert reason.endswith("more than 512 MiB")
    if needed is not None:
        assert f"about {needed >> 20} MiB" in reason
    assert work.decoded_pixels == 0
    assert work.bytes_read < 64 * 1024


@pytest.mark.parametrize(
    ("fmt", "mode", "animated", "decoder", "per_pixel"),
    [
        ("PNG", "RGBA", False, "zip", 4),
        ("PNG", "L", False, "zip", 1),
        ("PNG", "I;16", False, "zip", 2),
        ("PNG", "RGBA", True, "zip", 12),
        ("GIF", "P", True, "gif", 16),
        ("WEBP", "RGB", False, "raw", 16),
        ("TIFF", "RGB", False, "raw", 4),
        ("TIFF", "RGB", False, "libtiff", 8),
        ("TIFF", "1", False, "libtiff", 2),
        ("BMP", "RGB", False, "raw", 4),
        ("BMP", "P", False, "bmp_rle", 3),
    ],
)
def test_decode_memory_is_canvas_bytes_times_the_copies_its_decoder_keeps(
    fmt: str, mode: str, animated: bool, decoder: str, per_pixel: int
) -> None:
    whole_file = 1000 if fmt == "WEBP" or decoder == "libtiff" else 0
    estimate = decode_memory(fmt, mode, 100, 50, animated=animated, decoder=decoder, size=1000)
    assert estimate == 100 * 50 * per_pixel + whole_file


def test_a_still_image_at_the_pixel_limit_fits_the_budget() -> None:
    # What the budget must not refuse: the widest still canvases Pillow decodes once.
    side = bombs.SIDE
    for fmt, mode in [("PNG", "RGBA"), ("TIFF", "RGBA"), ("BMP", "RGBA")]:
        needed = decode_memory(fmt, mode, side, side, animated=False, decoder="raw", size=0)
        assert needed <= DECODE_MEMORY_BYTES
    subsampled = [(2, 2), (1, 1), (1, 1)]
    assert jpeg_decode_memory(side, side, subsampled, scans=10, progressive=True) < (
        DECODE_MEMORY_BYTES
    )


def test_a_webp_bigger_than_the_budget_is_refused_before_pillow_reads_it_whole() -> None:
    data = hostile.animated_webp()
    work = DescribeWork()
    reason = reason_of(data, budget=FrameBudget(memory=len(data) - 1), work=work)
    assert reason == f"too big to check: a WebP is read whole, and {len(data)} bytes are more " + (
        f"than {len(data) - 1} bytes"
    )
    assert work.bytes_read == 12


def test_an_animation_at_the_memory_budget_stops_at_the_pixel_budget() -> None:
    # 33.5 megapixel frames, the widest GIF the memory budget lets through: the pixel
    # budget stops the animation (11 such frames took 4 s and 560 MB, 12 are refused).
    side = 5790
    data = bombs.gif_bomb(side, frames=12, full=False)
    assert decode_memory("GIF", "P", side, side, animated=True, decoder="gif", size=0) <= (
        DECODE_MEMORY_BYTES
    )
    work = DescribeWork()
    budget = FrameBudget(decoded_pixels=side * side * 2)
    # The second frame is cut short: its decode fails, after the budget let it in.
    reason = reason_of(data, budget=budget, work=work)
    assert reason.startswith("truncated or corrupt image")
    assert work.decoded_pixels == side * side
    assert MAX_DECODED_PIXELS // (side * side) == 11


# The save function's memory, for real

_UNDER_A_GIGABYTE = """
import io, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from imgcli.lambdas.image_metadata import InvalidImage, describe_image
from tests import hostile_bombs as bombs
verdicts = {}
for name, data in [
    ("webp", bombs.webp_bomb()),
    ("jpeg-cmyk", bombs.jpeg_bomb(mode="CMYK")),
    ("apng", bombs.png_bomb(frames=2, complete=False)),
    ("gif", bombs.gif_bomb(frames=2)),
]:
    try:
        describe_image(io.BytesIO(data), len(data))
        verdicts[name] = "valid"
    except InvalidImage as invalid:
        verdicts[name] = invalid.reason
json.dump(verdicts, sys.stdout)
"""


def test_real_size_bombs_are_judged_within_the_save_functions_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_GIGABYTE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = json.loads(done.stdout)
    assert set(verdicts) == {"webp", "jpeg-cmyk", "apng", "gif"}
    for name, reason in verdicts.items():
        assert reason.startswith("too big to check"), (name, reason)


def test_a_decoded_file_counts_its_own_bytes_against_the_memory_budget() -> None:
    # The save function's reader keeps every range it fetched, so a big file decoded in
    # full is held whole beside its decoder: a 600 MB GIF of tiny frames would exhaust the
    # function. Scaled down: a budget over what the decoder holds, under that plus the file.
    data = animated_gif(frames=40, size=(16, 16), noise=True)
    decoder = decode_memory("GIF", "P", 16, 16, animated=True, decoder="gif", size=len(data))
    work = DescribeWork()
    reason = reason_of(data, budget=FrameBudget(memory=decoder + len(data) - 1), work=work)
    assert reason.startswith("too big to check: decoding a 16x16 frame needs about ")
    assert f"(the file's own {len(data)} bytes included)" in reason
    assert work.decoded_pixels == 0
    assert describe(data, budget=FrameBudget(memory=decoder + len(data))).frames == 40
