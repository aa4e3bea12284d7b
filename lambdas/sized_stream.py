"""A read-only, seekable stream of a known size: the position arithmetic two readers share.

``RangedReader`` (bytes fetched from S3 on demand) and ``image_guard.GuardedStream`` (what
Pillow is given to read) both answer ``seek`` and ``tell`` over ``size`` bytes without
touching their source; only ``read`` differs.
"""

from __future__ import annotations

import io


class SizedStream(io.RawIOBase):
    """``seek``/``tell`` over ``size`` bytes; subclasses read from ``_position``."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise OSError("seek before the start of the file")
        self._position = position
        return position
