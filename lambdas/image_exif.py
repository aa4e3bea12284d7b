"""The few EXIF facts the index keeps (when a photo was taken, the camera, its orientation),
reduced to text any reader may safely show.

EXIF is a bonus: an unreadable EXIF block gives ``None`` fields, never an invalid image.
Its text fields are whatever a camera, an editor or an attacker wrote, so each is reduced
to printable characters before it is stored: control characters (C0, C1, DEL), bidi
overrides and other invisible format characters are dropped (an ESC stored in the table
would reach every terminal that lists it; ``camera_make: "\\x8c"`` is noise, not a make),
other spaces become plain spaces, and what is left is trimmed and cut to
``EXIF_TEXT_LIMIT`` characters. Pillow reads EXIF ASCII as Latin-1; bytes that are valid
UTF-8 (phones write it, against the standard) are read as UTF-8 instead, so "Café" is not
stored as "CafÃ©".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, TypedDict

from PIL import ExifTags, Image

EXIF_TEXT_LIMIT: Final = 128
_EXIF_DATETIME: Final = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET: Final = re.compile(r"[+-]\d{2}:\d{2}")


class ExifBasics(TypedDict):
    taken_at: str | None
    camera_make: str | None
    camera_model: str | None
    orientation: int | None


def no_exif() -> ExifBasics:
    return {"taken_at": None, "camera_make": None, "camera_model": None, "orientation": None}


def exif_basics(image: Image.Image, fmt: str) -> ExifBasics:
    """The EXIF facts of ``image`` (its current frame), or ``None`` fields.

    Every exception is caught here, a failed read of the stream too: ``describe_image``'s
    stream guard raises that one again afterwards.
    """
    # PNG keeps EXIF in a chunk Pillow only finds by decoding the image; unless the header
    # (or a decode already done) carried it, looking would read the whole object.
    if fmt == "PNG" and "exif" not in image.info:
        return no_exif()
    try:
        exif = image.getexif()
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        taken = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
        offset = sub.get(ExifTags.Base.OffsetTimeOriginal)
        orientation = exif.get(ExifTags.Base.Orientation)
        make = exif.get(ExifTags.Base.Make)
        model = exif.get(ExifTags.Base.Model)
    # Hostile EXIF makes Pillow raise nearly anything; EXIF is a bonus, not a verdict.
    except Exception:  # noqa: BLE001
        return no_exif()
    if not (isinstance(orientation, int) and 1 <= orientation <= 8):
        orientation = None
    return {
        "taken_at": exif_datetime(taken, offset),
        "camera_make": exif_text(make),
        "camera_model": exif_text(model),
        "orientation": orientation,
    }


def exif_text(value: object) -> str | None:
    """An EXIF text field as printable text, or ``None`` when nothing printable is left."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = printable_text(_utf8_read_as_latin1(value)).strip()
    return text[:EXIF_TEXT_LIMIT] or None


def printable_text(text: str) -> str:
    """``text`` without control or invisible characters; other spaces become ``" "``."""
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else " " if unicodedata.category(char) == "Zs" else ""
        for char in text
    )


def exif_datetime(value: object, offset: object) -> str | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` as ISO 8601, with the UTC offset when EXIF has one."""
    text = exif_text(value)
    match = _EXIF_DATETIME.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None  # cameras write "0000:00:00 00:00:00" when the clock was never set
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    offset_text = exif_text(offset)
    if offset_text and _EXIF_OFFSET.fullmatch(offset_text):
        iso += offset_text
    return iso


def _utf8_read_as_latin1(text: str) -> str:
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text
