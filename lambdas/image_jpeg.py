"""What decoding a JPEG will cost, read from its markers before libjpeg sees it.

A JPEG is decoded only when its last bytes are not its end marker (``image_metadata``),
and then two things make libjpeg expensive out of all proportion to the bytes:

* **Scans.** A progressive decoder passes over every block of the scan's component for
  every scan, and a scan header is about ten bytes: 1,000 repeated scans of a 9,400 x 9,400
  image (11 KB) took 7 s of CPU, 10,000 would take over a minute (the "many scans" attack
  in Cisco Talos' *Two Issues with the JPEG Standard*; libjpeg-turbo's own answer is a scan
  limit its TurboJPEG API and ``djpeg -maxscans`` offer, but Pillow does not set).
  ``count_scans`` walks the marker segments and the entropy-coded data, stopping at the
  end marker or past the limit: a real encoder writes 1 to about 12 scans (libjpeg's
  default progression has 10; mozjpeg's optimised ones stay near that).
* **The coefficient buffer.** A JPEG of more than one scan (every progressive one) is
  decoded into a buffer of all its DCT coefficients before any pixel comes out: 2 bytes
  per sample of every component, 6 bytes a pixel for a full-resolution colour image,
  8 for CMYK, however few bytes the file has. ``coefficient_bytes`` estimates it from the
  frame header. The pixels that come out are decoded at 1/8 scale (``image_metadata``
  asks Pillow for a draft): the entropy decoding that finds damage is the same, the output
  64 times smaller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Final

#: Scans a JPEG may have when it must be decoded (see the module docstring).
MAX_JPEG_SCANS: Final = 100

_CHUNK: Final = 65536
_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})


class TooManyScans(Exception):
    """More scans than the limit, counted before decoding."""


def count_scans(stream: IO[bytes], offset: int, limit: int) -> int:
    """The scans (SOS markers) of the JPEG at ``offset`` of ``stream``, up to its end
    marker or the end of the stream; ``TooManyScans`` as soon as there are more than
    ``limit``. Reads the JPEG once, in 64 KiB blocks; anything malformed ends the count
    (the decoder reports it)."""
    reader = _Blocks(stream, offset)
    if reader.take(2) != b"\xff\xd8":
        return 0
    scans = 0
    while True:
        marker = reader.next_marker()
        if marker is None or marker == 0xD9:
            return scans
        if marker in _STANDALONE:
            continue
        length = reader.take(2)
        if len(length) < 2:
            return scans
        reader.skip(int.from_bytes(length, "big") - 2)
        if marker == 0xDA:
            scans += 1
            if scans > limit:
                raise TooManyScans(f"more than {limit} scans")
            reader.skip_entropy_coded_data()


def coefficient_bytes(width: int, height: int, sampling: Sequence[tuple[int, int]]) -> int:
    """Bytes of libjpeg's whole-image coefficient buffer for a ``width`` x ``height`` frame
    whose components have the (horizontal, vertical) ``sampling`` factors: 64 two-byte
    coefficients per 8x8 block of every component."""
    if not sampling:
        return 0
    most_h = max(h for h, _ in sampling) or 1
    most_v = max(v for _, v in sampling) or 1
    total = 0
    for h, v in sampling:
        blocks_wide = _ceil_div(_ceil_div(width * h, most_h), 8)
        blocks_high = _ceil_div(_ceil_div(height * v, most_v), 8)
        total += blocks_wide * blocks_high * 128
    return total


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


class _Blocks:
    """Forward-only reading of ``stream`` from ``offset`` in blocks."""

    def __init__(self, stream: IO[bytes], offset: int) -> None:
        self._stream = stream
        self._next = offset
        self._buffer = b""
        self._at = 0

    def _fill(self) -> bool:
        if self._at < len(self._buffer):
            return True
        self._stream.seek(self._next)
        self._buffer = self._stream.read(_CHUNK)
        self._next += len(self._buffer)
        self._at = 0
        return bool(self._buffer)

    def take(self, count: int) -> bytes:
        parts = []
        while count > 0 and self._fill():
            part = self._buffer[self._at : self._at + count]
            self._at += len(part)
            count -= len(part)
            parts.append(part)
        return b"".join(parts)

    def skip(self, count: int) -> None:
        left = len(self._buffer) - self._at
        if count <= left:
            self._at += max(0, count)
            return
        self._next += count - left
        self._buffer, self._at = b"", 0

    def next_marker(self) -> int | None:
        """The next marker's code, after its 0xFF and any fill bytes; ``None`` at the end
        or where no 0xFF comes next."""
        first = self.take(1)
        if first != b"\xff":
            return None
        while True:
            code = self.take(1)
            if code != b"\xff":
                return code[0] if code else None

    def skip_entropy_coded_data(self) -> None:
        """Up to the next marker: a 0xFF followed by neither 0x00 (a stuffed byte) nor a
        restart marker. Leaves the 0xFF unread."""
        while self._fill():
            found = self._buffer.find(b"\xff", self._at)
            if found < 0:
                self._at = len(self._buffer)
                continue
            self._at = found
            if found + 1 == len(self._buffer):
                # The byte after this 0xFF is in the next block: read on from the 0xFF.
                self._next -= 1
                self._buffer, self._at = b"", 0
                if not self._fill() or len(self._buffer) < 2:
                    self._at = len(self._buffer)
                    return
                found = 0
            following = self._buffer[found + 1]
            if following == 0x00 or following in _STANDALONE or following == 0xFF:
                self._at = found + (1 if following == 0xFF else 2)
                continue
            return
