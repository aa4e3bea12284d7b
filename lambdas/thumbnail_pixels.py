"""Pixels for a thumbnail: from whatever mode an accepted format decodes to, to 8-bit sRGB
(with alpha where the source has it), reduced, oriented.

``thumbnails`` decodes the first frame and hands it here. Decisions:

* **Reduce before anything full-size is copied.** The decoded frame is converted and
  reduced by an integer factor in horizontal bands (``reduced``), so besides the decoded
  canvas only a band of a few MB and the reduced image exist at once: converting a
  90-megapixel palette GIF to RGBA whole would add 360 MB. ``reduce`` averages boxes of
  ``factor`` x ``factor`` pixels (premultiplied when there is alpha), and leaves at least
  ``REDUCING_GAP`` times the target size for the final Lanczos resize, as Pillow's own
  ``thumbnail(reducing_gap=2.0)`` does: the result looks the same as a Lanczos resize of
  the whole image, at a fraction of the time.
* **Working modes.** L, LA, RGB, RGBA, CMYK and LAB are averaged as they are (CMYK and LAB
  go through their colour profile afterwards, on the small image); 1 becomes L; P and
  PA become RGBA when they have transparency, RGB otherwise; YCbCr and RGBX become RGB;
  L or RGB with a transparent colour (``info["transparency"]``) become LA or RGBA.
* **16 bits, 32-bit integers and floats are scaled, never clipped.** Pillow's own
  conversion of I;16 or I to L clips everything above 255 to white, so a 16-bit mid-grey
  would come out white. I;16 (any byte order) is divided by 257 (65535 becomes 255). For
  I and F the range comes from the pixels: I within 0..255 is 8-bit data and is kept,
  within 0..65535 it is 16-bit data (Pillow used to open 16-bit PNGs as I) and is
  divided by 257; F within 0..1 is multiplied by 255 (the usual float convention), within
  0..255 kept; anything else is stretched from its minimum to its maximum.
* **Colour profiles.** An embedded ICC profile is applied with LittleCMS (``ImageCms``)
  to reach sRGB, which is what a browser assumes for an image without one; a CMYK photo
  from a print workflow is only right that way. A profile LittleCMS rejects (broken,
  hostile, or for another colour space than the pixels') is ignored and the plain
  conversion used: colour is a bonus, never a failure. LAB pixels without a profile use
  LittleCMS's built-in LAB (D50) profile.
* **Orientation** is applied to the reduced image (a transpose of the small image, not of
  the decoded one), with the same table as ``ImageOps.exif_transpose``. We do not call
  that function: it returns a full-size copy even when there is nothing to do, and reads
  the orientation from ``info`` of the image given, which the reduced image has lost.
"""

from __future__ import annotations

import io
from typing import Final

from PIL import Image, ImageCms

#: The final resize starts from at least this many times the target size.
REDUCING_GAP: Final = 2
#: About how many bytes of converted pixels one band holds.
BAND_BYTES: Final = 8 * 1024 * 1024

# EXIF orientation -> the transpose that shows the image upright (ImageOps.exif_transpose's).
_TRANSPOSES: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_KEPT: Final = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "LAB"})
_AS_IS: Final = {"1": "L", "YCbCr": "RGB", "RGBX": "RGB", "RGBa": "RGBA", "La": "LA"}
_WITH_ALPHA: Final = frozenset({"LA", "RGBA", "PA", "RGBa", "La"})


class UnsupportedMode(Exception):
    """The decoded frame's mode is none an accepted format is meant to produce."""


def fitted(width: int, height: int, box: int) -> tuple[int, int]:
    """``width`` x ``height`` fitted into ``box`` x ``box``: aspect kept, rounded, never 0,
    never upscaled."""
    longest = max(width, height)
    if longest <= box:
        return width, height
    return max(1, round(width * box / longest)), max(1, round(height * box / longest))


def reduce_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The integer factor that leaves at least ``REDUCING_GAP`` times ``target``."""
    return max(1, min(size[0] // (target[0] * REDUCING_GAP), size[1] // (target[1] * REDUCING_GAP)))


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` has transparency a thumbnail must keep."""
    return image.mode in _WITH_ALPHA or "transparency" in image.info


def reduced(image: Image.Image, factor: int) -> Image.Image:
    """``image`` (loaded) in its working mode, reduced by ``factor``, band by band."""
    scale = _scale(image)
    width, height = image.size
    if factor == 1:
        return _working(image, scale)
    rows = max(1, BAND_BYTES // (4 * width * factor)) * factor
    out: Image.Image | None = None
    for top in range(0, height, rows):
        band = _working(image.crop((0, top, width, min(height, top + rows))), scale)
        small = band.reduce(factor)
        if out is None:
            out = Image.new(small.mode, (-(-width // factor), -(-height // factor)))
        out.paste(small, (0, top // factor))
    assert out is not None  # height >= 1
    return out


def display_ready(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """The reduced ``image`` as 8-bit sRGB: RGBA when it has alpha, RGB otherwise."""
    alpha = image.getchannel("A") if image.mode in ("LA", "RGBA") else None
    colour = image.convert(image.mode[:-1]) if alpha is not None else image
    rgb = _to_srgb(colour, icc_profile)
    if alpha is None:
        return rgb
    rgb.putalpha(alpha)
    return rgb


def oriented(image: Image.Image, orientation: int | None) -> Image.Image:
    """``image`` turned as EXIF ``orientation`` (1-8) says; as it is for anything else."""
    method = _TRANSPOSES.get(orientation or 1)
    return image.transpose(method) if method is not None else image


def _working(image: Image.Image, scale: tuple[float, float] | None) -> Image.Image:
    mode = image.mode
    if scale is not None:
        if mode.startswith("I;16"):
            image = image.convert("I")
        multiply, offset = scale
        return image.point(lambda value: value * multiply + offset).convert("L")
    if "transparency" in image.info and mode in ("L", "RGB", "P"):
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in _KEPT:
        return image
    if mode == "P":
        return image.convert("RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode in _AS_IS:
        return image.convert(_AS_IS[mode])
    raise UnsupportedMode(f"unsupported pixel mode {mode}")


def _scale(image: Image.Image) -> tuple[float, float] | None:
    """(multiply, offset) that bring 16-bit, integer or float pixels to 0..255; ``None``
    for 8-bit modes."""
    mode = image.mode
    if mode.startswith("I;16"):
        return 1 / 257, 0.0
    if mode not in ("I", "F"):
        return None
    low, high = image.getextrema()
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))
    if low >= 0:
        if mode == "F" and high <= 1:
            return 255.0, 0.0
        if high <= 255:
            return 1.0, 0.0
        if mode == "I" and high <= 65535:
            return 1 / 257, 0.0
    if high == low:
        return 0.0, 0.0
    return 255 / (high - low), -low * 255 / (high - low)


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    if image.mode in ("RGB", "CMYK", "LAB") and (icc_profile or image.mode == "LAB"):
        try:
            source = (
                ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
                if icc_profile
                else ImageCms.createProfile("LAB")
            )
            converted = ImageCms.profileToProfile(
                image, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        # LittleCMS rejects broken or mismatched profiles in many ways; colour is a bonus.
        except Exception:  # noqa: BLE001
            converted = None
        if converted is not None:
            return converted
    return image.convert("RGB")
