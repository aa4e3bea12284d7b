"""A seekable, read-only file over an S3 object that fetches only the bytes a reader touches.

Pillow parses an image from a file object. Handing it the whole object would download a
50 MB photo to learn its dimensions; handing it only a fixed head breaks on images whose
headers are long (a big EXIF block) or whose facts are spread out (GIF frame counts, TIFF
directories at the end). This reader serves Pillow from ranged reads on demand instead.

Each miss fetches at least as many bytes as have been fetched so far (and at least
``min_fetch``), so a reader that walks the whole object costs O(log size) requests, and one
that needs the head and a few tail bytes costs two or three. The fetch function is injected
(``fetch(start, end_inclusive) -> bytes``), so this module knows nothing about S3 or boto3.

A failing fetch (a timeout, a 5xx, the object vanishing) surfaces as ``FetchFailed``, which
is deliberately not an ``OSError``: image parsers treat ``OSError`` as "broken file", and a
network hiccup must never be recorded as a broken image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .sized_stream import SizedStream

Fetch = Callable[[int, int], bytes]

DEFAULT_MIN_FETCH: Final = 64 * 1024


class FetchFailed(Exception):
    """Reading a range failed; the cause is chained. Not an image problem: retry later."""


class RangedReader(SizedStream):
    """Reads ``size`` bytes through ``fetch``, caching every segment it has fetched."""

    def __init__(
        self,
        fetch: Fetch,
        size: int,
        *,
        initial: bytes = b"",
        min_fetch: int = DEFAULT_MIN_FETCH,
    ) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        super().__init__(size)
        self._fetch = fetch
        self._min_fetch = max(1, min_fetch)
        # Disjoint or overlapping (start, data) pairs; a handful at most, so a list is enough.
        self._segments: list[tuple[int, bytes]] = []
        self.bytes_fetched = len(initial)
        self.fetches = 0
        if initial:
            self._segments.append((0, initial[:size]))

    @property
    def size(self) -> int:
        return self._size

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the current position; fewer only at the end."""
        if size is None or size < 0:
            size = self._size - self._position
        end = min(self._position + size, self._size)
        chunks: list[bytes] = []
        while self._position < end:
            chunk = self._cached(self._position, end) or self._fetch_from(self._position, end)
            chunks.append(chunk)
            self._position += len(chunk)
        return b"".join(chunks)

    def readall(self) -> bytes:
        return self.read(-1)

    def _cached(self, start: int, end: int) -> bytes:
        for segment_start, data in self._segments:
            offset = start - segment_start
            if 0 <= offset < len(data):
                return data[offset : offset + (end - start)]
        return b""

    def fill(self, start: int, end: int) -> None:
        """Fetch bytes ``start`` to ``end`` (exclusive) in one request, exactly those, and
        keep them: for a caller that knows what it will read and what is already here."""
        if start < end:
            self._fetch_segment(start, min(end, self._size) - 1)

    def _fetch_from(self, start: int, end: int) -> bytes:
        length = max(end - start, self._min_fetch, self.bytes_fetched)
        return self._fetch_segment(start, min(start + length, self._size) - 1)[: end - start]

    def _fetch_segment(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` (inclusive), fetched and kept."""
        try:
            data = self._fetch(start, stop)
        except Exception as exc:
            raise FetchFailed(f"reading bytes {start}-{stop} failed: {exc}") from exc
        if not data:
            raise FetchFailed(f"reading bytes {start}-{stop} returned nothing")
        self.fetches += 1
        self.bytes_fetched += len(data)
        self._segments.append((start, data))
        return data
