"""Thumbnails of an image the save function has found valid (interface; see issue 14).

Placeholder with the interface the save function builds on; the full implementation
(draft mode, budgets, every mode, orientation, metadata stripped) replaces the body.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Final

from .records import THUMBNAIL_BOXES

CONTENT_TYPE: Final = "image/webp"
EXTENSION: Final = "webp"


class ThumbnailFailed(Exception):
    """No thumbnail could be made; ``reason`` says why, for the record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Thumbnail:
    """One encoded thumbnail: fitted into ``box`` x ``box``, never upscaled."""

    box: int
    width: int
    height: int
    data: bytes


def make_thumbnails(stream: IO[bytes], size: int) -> list[Thumbnail]:
    """One thumbnail per box of ``THUMBNAIL_BOXES``, from the image in ``stream``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(stream) as image:
            image.seek(0)
            oriented = ImageOps.exif_transpose(image.convert("RGBA"))
    except Exception as exc:  # placeholder: the real module names each failure
        raise ThumbnailFailed(str(exc)) from exc
    made = []
    for box in THUMBNAIL_BOXES:
        copy = oriented.copy()
        copy.thumbnail((box, box))
        out = io.BytesIO()
        copy.save(out, "WEBP")
        made.append(Thumbnail(box, copy.width, copy.height, out.getvalue()))
    return made
