"""describe_image on crafted hostile files: the issue's three cases, pixel bombs in every
format, frame bombs, EXIF control characters, warnings, libtiff's stderr, and stream
failures that must stay stream failures."""

from __future__ import annotations

import io
import struct
import threading
import warnings
from typing import Any

import pytest

from imgcli.lambdas.image_guard import GuardedStream, PillowWarnings, quiet_libtiff
from imgcli.lambdas.image_metadata import (
    FULL_DECODE_BYTES,
    MAX_FRAMES,
    DescribeWork,
    FrameBudget,
    ImageDetails,
    InvalidImage,
    decodes_in_full,
    describe_image,
)
from imgcli.lambdas.ranged_reader import FetchFailed, RangedReader
from imgcli.upload_types import UploadConfig
from tests import hostile_images as hostile
from tests.images import animated_gif, image_bytes


def describe(data: bytes, **options: Any) -> ImageDetails:
    return describe_image(io.BytesIO(data), len(data), **options)


def reason_of(data: bytes, **options: Any) -> str:
    with pytest.raises(InvalidImage) as caught:
        describe(data, **options)
    return caught.value.reason


# The three crafted cases


def test_a_tiff_page_without_dimensions_is_invalid_not_a_type_error() -> None:
    # Pillow's frame count raised TypeError("Missing dimensions") past describe_image.
    assert reason_of(hostile.tiff_missing_dimensions()) == (
        "truncated or corrupt image: Missing dimensions"
    )


@pytest.mark.parametrize(
    "side",
    [65535, 11000],  # beyond twice Pillow's limit (an error), inside its warning band
)
def test_a_gif_frame_with_huge_extents_is_named_a_bomb(side: int) -> None:
    # seek() raised DecompressionBombError past describe_image; the client said
    # "not readable as an image: DecompressionBombError".
    assert reason_of(hostile.gif_huge_frame_extents(side, side)).startswith("over the pixel limit")


@pytest.mark.parametrize("full_decode_bytes", [FULL_DECODE_BYTES, 0])
def test_an_apng_claiming_0_frames_is_invalid(full_decode_bytes: int) -> None:
    reason = reason_of(hostile.apng_with_num_frames(0), full_decode_bytes=full_decode_bytes)
    assert reason.startswith("invalid APNG animation control chunk (acTL)")


def test_an_apng_with_frame_sequence_errors_is_invalid_with_the_clients_parameters() -> None:
    # The client used full_decode_bytes=0: the IEND trailer passed for proof, frames were
    # never decoded, and the save function (which decodes) disagreed.
    data = hostile.apng_sequence_error()
    reason = reason_of(data, full_decode_bytes=UploadConfig().full_decode_bytes)
    assert reason == "truncated or corrupt image: APNG contains frame sequence errors"


# Bombs


@pytest.mark.parametrize(("name", "data"), sorted(hostile.pixel_bombs().items()))
def test_pixel_bombs_of_every_format_are_named_bombs(name: str, data: bytes) -> None:
    assert reason_of(data).startswith("over the pixel limit"), name


def test_a_gif_of_2_000_000_frames_stops_at_the_frame_budget() -> None:
    data = hostile.gif_frame_bomb(2_000_000)
    work = DescribeWork()
    with pytest.raises(InvalidImage, match=f"too many frames: more than {MAX_FRAMES}"):
        describe(data, work=work)
    assert work.frames == MAX_FRAMES
    assert work.decoded_pixels == MAX_FRAMES  # 1x1 each; nothing past the budget


@pytest.mark.parametrize(
    "data",
    [
        hostile.apng_frame_bomb(60),
        hostile.tiff_page_bomb_of_pages(60),
        hostile.gif_frame_bomb(60),
        hostile.animated_webp(60),
    ],
    ids=["apng", "tiff", "gif", "webp"],
)
def test_every_multi_frame_format_is_held_to_the_frame_budget(data: bytes) -> None:
    work = DescribeWork()
    with pytest.raises(InvalidImage, match="too many frames: more than 50"):
        describe(data, budget=FrameBudget(frames=50), work=work)
    assert work.frames == 50


def test_frames_whose_pixels_add_up_past_the_budget_are_invalid() -> None:
    data = animated_gif(frames=10, size=(100, 100), noise=True)
    assert describe(data, budget=FrameBudget(decoded_pixels=100_000)).frames == 10
    work = DescribeWork()
    with pytest.raises(InvalidImage, match="too much animation to check: 10 frames"):
        describe(data, budget=FrameBudget(decoded_pixels=99_999), work=work)
    assert work.decoded_pixels <= 99_999


def test_a_tiff_whose_directories_loop_ends() -> None:
    assert describe(hostile.tiff_ifd_loop()).frames == 1


# The decode rule


@pytest.mark.parametrize(
    ("fmt", "size", "complete", "animated", "decoded"),
    [
        ("JPEG", 1_000, True, False, False),  # a complete JPEG: never decoded
        ("JPEG", 100 * 2**20, True, False, False),
        ("MPO", 1_000, True, True, False),
        ("JPEG", 1_000, False, False, True),  # no EOI at the end: decoded
        ("JPEG", 100 * 2**20, False, False, True),
        ("PNG", 1_000, True, False, True),  # small: decoded, for its CRCs
        ("PNG", 100 * 2**20, True, False, False),  # big and proven complete
        ("PNG", 100 * 2**20, True, True, True),  # an APNG's frames are decoded
        ("PNG", 100 * 2**20, False, False, True),
        ("GIF", 100 * 2**20, False, True, True),
        ("TIFF", 100 * 2**20, False, False, True),
    ],
)
def test_the_decode_rule(
    fmt: str, size: int, complete: bool, animated: bool, decoded: bool
) -> None:
    decides = decodes_in_full(fmt, size, FULL_DECODE_BYTES, complete=complete, animated=animated)
    assert decides is decoded


def test_the_client_checks_with_the_save_functions_parameters() -> None:
    assert UploadConfig().full_decode_bytes == FULL_DECODE_BYTES


def test_a_complete_jpeg_is_not_decoded_even_when_small() -> None:
    work = DescribeWork()
    describe(image_bytes("JPEG", size=(300, 200)), work=work)
    assert (work.frames, work.decoded_pixels) == (1, 0)


# Text


def test_exif_text_is_reduced_to_printable_characters() -> None:
    details = describe(hostile.exif_with_control_characters())
    assert details.camera_make is None  # "\x8c" alone: nothing printable is left
    assert details.camera_model == "X[31mT5"


def test_exif_text_written_as_utf8_is_read_as_utf8() -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "MMMMMM"
    block = exif.tobytes().replace(b"MMMMMM", "Café".encode().ljust(6, b" "))
    assert describe(image_bytes("JPEG", exif=block)).camera_make == "Café"


def test_pillows_warnings_go_into_the_reason_and_nowhere_else(
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = hostile.truncated(hostile.seeds()["deflate-tiff"], 0.6)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        reason = reason_of(data)
    assert "(Pillow warned: Corrupt EXIF data." in reason
    assert escaped == []
    assert capfd.readouterr().err == ""


def test_harmless_warnings_of_a_valid_image_are_dropped() -> None:
    # A JPEG whose EXIF block is cut short: Pillow warns, the image itself is fine.
    data = image_bytes("JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        details = describe(data)
    assert (details.format, details.camera_make) == ("JPEG", None)
    assert escaped == []


def test_pillows_log_records_go_into_the_reason_not_to_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Pillow logs this at error level; with no handler, Python's last resort printed it.
    page = {256: 1, 257: 1, 258: 8, 259: 1, 262: 1, 277: 60000, 278: 1}
    reason = reason_of(hostile.tiff([page]))
    assert "More samples per pixel than can be decoded: 60000" in reason
    assert capfd.readouterr().err == ""


def test_warnings_from_outside_pillow_are_issued_again_not_swallowed() -> None:
    # Another thread's warning, raised while a check holds the process-wide capture.
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with PillowWarnings() as captured:
            warnings.warn("not Pillow's", UserWarning, stacklevel=1)
    assert captured.messages == []
    assert [str(warning.message) for warning in shown] == ["not Pillow's"]


def test_libtiff_errors_never_reach_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # libtiff's default handler printed "ZIPDecode: Decoding error at scanline ..." on fd 2.
    reason = reason_of(hostile.damaged_deflate_tiff())
    assert reason.startswith("truncated or corrupt image: decoder error")
    assert capfd.readouterr().err == ""


def test_libtiffs_handlers_are_found_through_pillow() -> None:
    # Fails loudly if a Pillow upgrade stops linking libtiff where ctypes can find it.
    assert quiet_libtiff() is True


def test_warnings_of_concurrent_checks_stay_with_their_own_file() -> None:
    warned = hostile.truncated(hostile.seeds()["deflate-tiff"], 0.6)
    files = [warned, hostile.apng_with_num_frames(0), image_bytes("PNG"), warned] * 4
    reasons: dict[int, str] = {}

    def check(index: int) -> None:
        try:
            describe(files[index])
            reasons[index] = "valid"
        except InvalidImage as invalid:
            reasons[index] = invalid.reason

    threads = [threading.Thread(target=check, args=(index,)) for index in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, data in enumerate(files):
        expected = "valid" if data == image_bytes("PNG") else describe_reason(data)
        assert reasons[index] == expected


def describe_reason(data: bytes) -> str:
    try:
        describe(data)
    except InvalidImage as invalid:
        return invalid.reason
    return "valid"


# Stream failures stay stream failures


class FailingStream(io.BytesIO):
    """Raises ``error`` on the first read that reaches ``at`` bytes."""

    def __init__(self, data: bytes, at: int, error: Exception) -> None:
        super().__init__(data)
        self.at, self.error = at, error

    def read(self, size: int | None = -1) -> bytes:
        end = len(self.getvalue()) if size is None or size < 0 else self.tell() + size
        if end >= self.at:
            raise self.error
        return super().read(size)


@pytest.mark.parametrize(
    "error",
    [
        OSError(5, "Input/output error"),  # Pillow reads OSError as "broken file"
        SyntaxError("a stream that raises what Pillow's openers swallow"),
        FetchFailed("reading bytes 0-65535 failed: read timed out"),
    ],
    ids=["oserror", "swallowed", "fetch"],
)
@pytest.mark.parametrize("at", [10, 2_000])  # while opening; while decoding frames
def test_a_failure_of_the_stream_is_raised_as_itself(error: Exception, at: int) -> None:
    data = animated_gif(frames=4, size=(60, 60), noise=True)
    stream = FailingStream(data, at, error)
    with pytest.raises(type(error)) as caught:
        describe_image(stream, len(data))
    assert caught.value is error


def test_a_failed_ranged_read_in_a_later_frame_is_a_fetch_failure() -> None:
    data = hostile.gif_huge_frame_extents(16, 16) + b"\x00" * 200_000
    calls = []

    def fetch(start: int, end: int) -> bytes:
        calls.append(start)
        if len(calls) > 1:
            raise TimeoutError("read timed out")
        return data[start : end + 1]

    reader = RangedReader(fetch, len(data), initial=data[:40], min_fetch=16)
    with pytest.raises(FetchFailed):
        describe_image(reader, len(data))  # type: ignore[arg-type]


def test_the_guard_keeps_hostile_offsets_from_the_stream() -> None:
    asked: list[int] = []

    class Recording(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            asked.append(-1 if size is None else size)
            return super().read(size)

    guarded = GuardedStream(Recording(b"x" * 100), 100)
    with pytest.raises(OSError, match="before the start"):
        guarded.seek(-5)
    guarded.seek(90)
    assert guarded.read(2**40) == b"x" * 10  # a chunk length of 1 TB asks for 10 bytes
    assert asked == [10]
    assert guarded.failure is None
    guarded.seek(10**12)
    assert guarded.read(4) == b""


def test_libtiff_reads_a_multi_page_file_once() -> None:
    data = hostile.deflate_tiff(size=(64, 64), pages=20)
    work = DescribeWork()
    assert describe(data, work=work).frames == 20
    # Through read(), libtiff's whole-file read would cost 20 copies of the file.
    assert work.bytes_read < 4 * len(data)


def test_reasons_are_printable_and_short() -> None:
    # A PNG chunk named with control characters, whose name Pillow puts in its message.
    chunks = hostile.png_chunks(image_bytes("PNG"))
    chunks.insert(1, (b"\x1b[2J", b""))
    data = hostile.png_from_chunks(chunks)
    try:
        describe(data)
    except InvalidImage as invalid:
        assert invalid.reason.isprintable()
        assert len(invalid.reason) <= 300


def test_a_bmp_claiming_a_negative_height_is_judged() -> None:
    data = bytearray(image_bytes("BMP", size=(4, 4)))
    data[22:26] = struct.pack("<i", -(2**31))
    with pytest.raises(InvalidImage):
        describe(bytes(data))
