"""make_thumbnails: sizes, every mode the accepted formats decode to, orientation, metadata
stripped, first frames, bounds, and one outcome (thumbnails or ThumbnailFailed) whatever
the bytes, with the stream's own failures passed through."""

from __future__ import annotations

import io
import os
from typing import IO, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgcli.lambdas.image_metadata import FrameBudget
from imgcli.lambdas.ranged_reader import FetchFailed, RangedReader
from imgcli.lambdas.records import THUMBNAIL_BOXES
from imgcli.lambdas.thumbnail_pixels import display_ready, fitted, reduced
from imgcli.lambdas.thumbnails import (
    Thumbnail,
    ThumbnailFailed,
    ThumbnailWork,
    make_thumbnails,
)
from tests import hostile_images as hostile
from tests import thumbnail_images as made
from tests.images import damaged_middle, png_header_only
from tests.thumbnail_images import BLUE, RED

TOLERANCE = 12  # lossy WebP of a flat colour


def thumbs(data: bytes, **kwargs: object) -> list[Thumbnail]:
    return make_thumbnails(io.BytesIO(data), len(data), **kwargs)  # type: ignore[arg-type]


def opened(thumbnail: Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumbnail.data))
    assert image.format == "WEBP"
    assert image.size == (thumbnail.width, thumbnail.height)
    return image


def near(pixel: object, expected: tuple[int, ...]) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= TOLERANCE for a, b in zip(pixel, expected, strict=True))


def pixels_of(data: bytes, *points: tuple[float, float]) -> tuple[str, list[tuple[int, ...]]]:
    """The 1,024 px thumbnail's mode and its RGBA pixels at relative ``points``."""
    _small, large = thumbs(data)
    image = opened(large)
    mode = image.mode
    rgba = image.convert("RGBA")
    found = [rgba.getpixel((int(x * image.width), int(y * image.height))) for x, y in points]
    return mode, found  # type: ignore[return-value]


GREY = (128, 128, 128, 255)
WHITE = (255, 255, 255, 255)
OPAQUE_RED = (255, 0, 0, 255)
# name: (bytes, the output's mode, the expected pixel at the centre)
SOLID_CASES = {
    "1 png": (made.solid("1", (40, 30), 1, "PNG"), "RGB", WHITE),
    "1 tiff": (made.solid("1", (40, 30), 1, "TIFF"), "RGB", WHITE),
    "1 bmp": (made.solid("1", (40, 30), 1, "BMP"), "RGB", WHITE),
    "L png": (made.solid("L", (40, 30), 128, "PNG"), "RGB", GREY),
    "P gif": (made.solid("RGB", (40, 30), RED, "GIF"), "RGB", OPAQUE_RED),
    "RGB bmp": (made.solid("RGB", (40, 30), RED, "BMP"), "RGB", OPAQUE_RED),
    "CMYK jpeg (Adobe, inverted)": (
        made.solid("CMYK", (40, 30), (0, 255, 255, 0), "JPEG", quality=95),
        "RGB",
        OPAQUE_RED,
    ),
    "CMYK tiff": (made.solid("CMYK", (40, 30), (0, 255, 255, 0), "TIFF"), "RGB", OPAQUE_RED),
    "YCbCr tiff": (made.solid("YCbCr", (40, 30), (128, 128, 128), "TIFF"), "RGB", GREY),
    "I;16 png (16-bit grey)": (made.grey16_png(32768, (40, 30)), "RGB", GREY),
    "I;16 tiff": (made.solid("I;16", (40, 30), 32768, "TIFF"), "RGB", GREY),
    "I;16B tiff": (made.solid("I;16B", (40, 30), 32768, "TIFF"), "RGB", GREY),
    "I tiff (32-bit, 16-bit data)": (made.solid("I", (40, 30), 32768, "TIFF"), "RGB", GREY),
    "F tiff (0..1)": (made.solid("F", (40, 30), 0.5, "TIFF"), "RGB", GREY),
    "16-bit RGB png": (made.rgb16_png((65535, 0, 0), (40, 30)), "RGB", OPAQUE_RED),
    # Opaque everywhere: libwebp leaves the alpha channel out.
    "16-bit grey+alpha png": (made.grey16_alpha_png(32768, 65535, (40, 30)), "RGB", GREY),
    "LAB tiff": (made.solid("LAB", (40, 30), (255, 128, 128), "TIFF"), "RGB", WHITE),
}


@pytest.mark.parametrize("name", SOLID_CASES)
def test_every_mode_gives_sensible_pixels(name: str) -> None:
    data, mode, expected = SOLID_CASES[name]
    found_mode, (centre,) = pixels_of(data, (0.5, 0.5))
    assert found_mode == mode
    assert near(centre, expected), centre


# name: bytes whose left half is opaque and whose right half is fully transparent
ALPHA_CASES = {
    "P png with tRNS": made.palette_with_transparency("PNG", (40, 30)),
    "P gif with transparency": made.palette_with_transparency("GIF", (40, 30)),
    "LA png": made.half_transparent("LA", "PNG", (40, 30)),
    "LA tiff": made.half_transparent("LA", "TIFF", (40, 30)),
    "RGBA png": made.half_transparent("RGBA", "PNG", (40, 30)),
    "RGBA tiff": made.half_transparent("RGBA", "TIFF", (40, 30)),
    "RGBA webp": made.half_transparent("RGBA", "WEBP", (40, 30)),
}


@pytest.mark.parametrize("name", ALPHA_CASES)
def test_alpha_is_kept(name: str) -> None:
    mode, (left, right) = pixels_of(ALPHA_CASES[name], (0.1, 0.5), (0.9, 0.5))
    assert mode == "RGBA"
    assert left[3] == 255
    assert right[3] == 0


@pytest.mark.parametrize(
    ("data", "alpha"),
    [
        (made.solid("L", (40, 30), 5, "PNG", transparency=5), 0),
        (made.solid("RGB", (40, 30), (1, 2, 3), "PNG", transparency=(1, 2, 3)), 0),
        (made.grey16_alpha_png(32768, 0, (40, 30)), 0),
    ],
    ids=["L with tRNS", "RGB with tRNS", "16-bit grey, alpha 0"],
)
def test_a_transparent_colour_stays_transparent(data: bytes, alpha: int) -> None:
    mode, (centre,) = pixels_of(data, (0.5, 0.5))
    assert mode == "RGBA"
    assert centre[3] == alpha


def test_palette_with_alpha_converts_through_its_palette() -> None:
    # PA comes from no accepted file format Pillow writes; the pixel path still handles it.
    image = Image.new("PA", (40, 30))
    image.putpalette([255, 0, 0] + [0] * 765)
    image.putdata([(0, 255)] * 600 + [(0, 0)] * 600)
    result = display_ready(reduced(image, 2), None)
    assert result.mode == "RGBA"
    assert result.getpixel((10, 2)) == (255, 0, 0, 255)
    assert result.getpixel((10, 14))[3] == 0  # type: ignore[index]


def test_a_cmyk_photo_goes_through_its_icc_profile_and_a_broken_profile_is_ignored() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    good = made.solid("RGB", (40, 30), RED, "JPEG", quality=95, icc_profile=srgb)
    broken = made.solid("RGB", (40, 30), RED, "JPEG", quality=95, icc_profile=b"not a profile")
    for data in (good, broken):
        assert near(pixels_of(data, (0.5, 0.5))[1][0], OPAQUE_RED)


# Where the stored top-left corner lands, per EXIF orientation (TIFF/EXIF 2.3, tag 274),
# and whether width and height swap.
CORNERS = {
    1: ((0.1, 0.1), False),
    2: ((0.9, 0.1), False),
    3: ((0.9, 0.9), False),
    4: ((0.1, 0.9), False),
    5: ((0.1, 0.1), True),
    6: ((0.9, 0.1), True),
    7: ((0.9, 0.9), True),
    8: ((0.1, 0.9), True),
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", sorted(CORNERS))
def test_every_exif_orientation_is_applied(fmt: str, orientation: int) -> None:
    corner, swapped = CORNERS[orientation]
    for thumbnail in thumbs(made.oriented(fmt, orientation, (60, 40))):
        assert (thumbnail.width, thumbnail.height) == ((40, 60) if swapped else (60, 40))
        image = opened(thumbnail).convert("RGB")
        x, y = int(corner[0] * image.width), int(corner[1] * image.height)
        assert near(image.getpixel((x, y)), RED)
        opposite = (image.width - 1 - x, image.height - 1 - y)
        assert near(image.getpixel(opposite), BLUE)


def test_orientation_swaps_the_fitted_size_of_a_big_image() -> None:
    large = made.encoded(made.cornered((2000, 1000)), "JPEG", exif=_orientation_exif(6))
    assert [(t.width, t.height) for t in thumbs(large)] == [(128, 256), (512, 1024)]


def _orientation_exif(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_sizes_fit_the_boxes_and_small_images_are_never_upscaled() -> None:
    assert [
        (t.box, t.width, t.height) for t in thumbs(made.solid("RGB", (100, 50), RED, "PNG"))
    ] == [
        (256, 100, 50),
        (1024, 100, 50),
    ]
    big = thumbs(made.solid("RGB", (3000, 1000), RED, "PNG"))
    assert [(t.box, t.width, t.height) for t in big] == [(256, 256, 85), (1024, 1024, 341)]
    middle = thumbs(made.solid("RGB", (600, 800), RED, "PNG"))
    assert [(t.width, t.height) for t in middle] == [(192, 256), (600, 800)]
    assert [t.box for t in big] == list(THUMBNAIL_BOXES)


@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from(THUMBNAIL_BOXES))
def test_fitting_keeps_the_aspect_and_never_upscales(width: int, height: int, box: int) -> None:
    fit_width, fit_height = fitted(width, height, box)
    assert 1 <= fit_width <= width and 1 <= fit_height <= height
    assert max(fit_width, fit_height) == min(box, max(width, height))
    # Rounded: within half a pixel of the exact aspect (or 1 where it would round to 0).
    scale = max(fit_width, fit_height) / max(width, height)
    assert abs(fit_width - width * scale) <= 0.5 or fit_width == 1
    assert abs(fit_height - height * scale) <= 0.5 or fit_height == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5000), st.integers(1, 5000))
def test_real_images_of_any_shape_get_fitted_thumbnails(width: int, height: int) -> None:
    data = made.solid("1", (width, height), 1, "PNG")
    result = thumbs(data)
    assert [(t.width, t.height) for t in result] == [
        fitted(width, height, box) for box in THUMBNAIL_BOXES
    ]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP", "TIFF"])
def test_animations_give_their_first_frame(fmt: str) -> None:
    data = made.first_red_then_blue(fmt, frames=3, size=(40, 30))
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    for thumbnail in thumbs(data):
        assert near(opened(thumbnail).convert("RGB").getpixel((20, 15)), RED)


def test_no_metadata_reaches_a_thumbnail() -> None:
    source = made.with_metadata()
    original = Image.open(io.BytesIO(source))
    assert original.getexif().get_ifd(0x8825) and "icc_profile" in original.info
    assert "xmp" in original.info
    for thumbnail in thumbs(source):
        # WebP keeps metadata in RIFF chunks of its own; none may be there.
        for chunk in (b"EXIF", b"XMP ", b"ICCP"):
            assert chunk not in thumbnail.data
        image = opened(thumbnail)
        assert not image.getexif()
        assert not set(image.info) & {"exif", "xmp", "icc_profile"}
        assert b"secret" not in thumbnail.data and b"Camera" not in thumbnail.data


def test_a_big_jpeg_is_decoded_at_a_fraction_of_its_size() -> None:
    data = made.flat_jpeg((8192, 6144))
    work = ThumbnailWork()
    result = thumbs(data, work=work)
    assert work.decoded_size == (1024, 768)  # libjpeg's 1/8 scale: 64 times fewer pixels
    assert [(t.width, t.height) for t in result] == [(256, 192), (1024, 768)]
    panorama = ThumbnailWork()
    thumbs(made.flat_jpeg((8192, 1024)), work=panorama)
    assert panorama.decoded_size == (1024, 128)  # scaled by the long side, not the short


def test_a_big_image_is_reduced_before_it_is_converted() -> None:
    work = ThumbnailWork()
    thumbs(made.palette_with_transparency("PNG", (6000, 4000)), work=work)
    assert work.reduce_factor == 2  # 3,000 x 2,000 left for the Lanczos resize


def test_more_memory_than_the_budget_is_refused() -> None:
    data = made.solid("RGB", (400, 300), RED, "PNG")
    with pytest.raises(ThumbnailFailed, match="too big for a thumbnail"):
        thumbs(data, budget=FrameBudget(memory=100_000))
    assert thumbs(data, budget=FrameBudget(memory=1_000_000))


def test_a_complete_jpeg_with_too_many_scans_is_refused() -> None:
    # The check leaves a JPEG whose end marker is there undecoded; a thumbnail decodes it.
    data = made.encoded(made.cornered((64, 48)), "JPEG", progressive=True)
    with pytest.raises(ThumbnailFailed, match="too many JPEG scans"):
        thumbs(data, budget=FrameBudget(jpeg_scans=2))


@pytest.mark.parametrize(
    "data",
    [
        b"not an image at all",
        hostile.truncated(made.solid("RGB", (64, 48), RED, "PNG"), 0.6),
        hostile.truncated(made.flat_jpeg((640, 480)), 0.5),
        hostile.damaged_deflate_tiff(),
        damaged_middle(made.solid("RGB", (64, 48), RED, "PNG")),
        png_header_only(60000, 60000),
    ],
    ids=["text", "truncated png", "truncated jpeg", "damaged tiff", "damaged png", "bomb"],
)
def test_a_broken_image_gives_thumbnail_failed_and_nothing_on_stderr(
    data: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ThumbnailFailed) as failed:
        thumbs(data)
    assert failed.value.reason.isprintable() and len(failed.value.reason) <= 300
    assert capfd.readouterr().err == ""


class FailingStream(io.BytesIO):
    """Raises ``error`` on any read after the first ``good`` bytes."""

    def __init__(self, data: bytes, good: int, error: Exception) -> None:
        super().__init__(data)
        self.good, self.error = good, error

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.good:
            raise self.error
        return super().read(size)


@pytest.mark.parametrize("good", [0, 100, 2000])
def test_an_oserror_of_the_stream_comes_out_as_itself(good: int) -> None:
    data = made.encoded(Image.frombytes("L", (300, 200), os.urandom(60_000)), "PNG")
    assert len(data) > 4 * good
    error = OSError("disk gone")
    with pytest.raises(OSError, match="disk gone") as raised:
        make_thumbnails(FailingStream(data, good, error), len(data))
    assert raised.value is error


def test_a_failed_ranged_fetch_comes_out_as_fetch_failed() -> None:
    data = made.flat_jpeg((1200, 900))

    def fetch(start: int, end: int) -> bytes:
        if start > 0:
            raise ConnectionError("reset")
        return data[start : end + 1]

    reader = RangedReader(fetch, len(data), min_fetch=1024)
    with pytest.raises(FetchFailed):
        make_thumbnails(cast(IO[bytes], reader), len(data))


SEEDS = hostile.seeds()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=6),
    st.floats(0.05, 1.0),
)
def test_mutated_images_give_thumbnails_or_thumbnail_failed(
    name: str, flips: list[tuple[int, int]], keep: float
) -> None:
    data = bytearray(SEEDS[name])
    for position, mask in flips:
        data[position % len(data)] ^= mask
    mutated = hostile.truncated(bytes(data), keep)
    try:
        result = thumbs(mutated)
    except ThumbnailFailed as failed:
        assert failed.reason.isprintable()
        return
    assert [t.box for t in result] == list(THUMBNAIL_BOXES)
    for thumbnail in result:
        assert opened(thumbnail).size == (thumbnail.width, thumbnail.height)


def test_threads_get_the_same_thumbnails_as_one_at_a_time() -> None:
    # Pillow's warning capture is process-wide: calls share image_guard's lock.
    from concurrent.futures import ThreadPoolExecutor

    images = [made.oriented("JPEG", value, (300, 200)) for value in range(1, 9)]
    alone = [thumbs(data) for data in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(thumbs, images))
    assert together == alone


def test_the_stream_is_closed_once_decoded_before_any_encoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The save function's stream holds the whole object: it goes before encoding."""
    from imgcli.lambdas import thumbnails

    data = made.solid("RGB", (300, 200), (10, 20, 30), "PNG")
    stream = io.BytesIO(data)
    closed_when_encoding: list[bool] = []
    encode = thumbnails._webp

    def spying(image: Image.Image) -> bytes:
        closed_when_encoding.append(stream.closed)
        return encode(image)

    monkeypatch.setattr(thumbnails, "_webp", spying)
    assert len(make_thumbnails(stream, len(data))) == len(THUMBNAIL_BOXES)
    assert closed_when_encoding == [True] * len(THUMBNAIL_BOXES)


def test_an_image_smaller_than_every_box_is_encoded_once_for_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imgcli.lambdas import thumbnails

    data = made.solid("RGB", (120, 80), (200, 10, 10), "PNG")
    encoded: list[tuple[int, int]] = []
    encode = thumbnails._webp

    def counting(image: Image.Image) -> bytes:
        encoded.append(image.size)
        return encode(image)

    monkeypatch.setattr(thumbnails, "_webp", counting)
    small, large = make_thumbnails(io.BytesIO(data), len(data))
    assert encoded == [(120, 80)]
    assert (small.box, large.box) == THUMBNAIL_BOXES
    assert small.data == large.data and (small.width, small.height) == (120, 80)
