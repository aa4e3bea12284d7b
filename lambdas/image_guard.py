"""Running Pillow over hostile bytes so that only a verdict comes out: no stray exception, no
misread stream failure, no text on stderr.

``image_metadata.describe_image`` runs every Pillow call inside these guards:

* ``GuardedStream`` sits between Pillow and the caller's stream. Pillow catches and
  converts exceptions freely (an ``OSError`` means "broken file" to it), so a failure *of
  the stream* (a ranged GET that timed out, a local disk error) could otherwise come out as
  an invalid image, or be swallowed while Pillow tries the next format. The wrapper
  remembers the first exception the stream raised; ``raise_failure`` re-raises it after
  Pillow is done, whatever Pillow made of it, so a stream failure always wins over a
  verdict. It also keeps hostile offsets from reaching the stream: a negative seek is
  Pillow's problem (an ``OSError`` it reports as a corrupt file), not the stream's, and no
  read asks for more than the bytes left, so a chunk header claiming 4 GB cannot make a
  file object allocate 4 GB. And it reads the file at most once for libtiff (``getvalue``).
* ``PillowWarnings`` collects, for the verdict, what Pillow would otherwise print: Python
  warnings (corrupt EXIF, an invalid APNG control chunk, a truncated read...) and the
  records of warning level and above of the ``PIL`` logger (with no handler configured,
  Python's last-resort handler prints them on stderr: "More samples per pixel than can be
  decoded"). It also turns ``DecompressionBombWarning`` (more pixels than
  ``Image.MAX_IMAGE_PIXELS``, less than twice that) into an error raised where Pillow
  finds it, before it allocates the canvas. ``warnings.catch_warnings`` and the logger's
  handlers are process-wide state, so the guard holds a module lock: describe calls in
  one process run one at a time (the save function handles one event at a time; the
  upload checks files on one planner thread), and a warning another thread raises
  meanwhile is issued again afterwards rather than lost.
* ``quiet_libtiff`` removes libtiff's default error handler, which writes messages such as
  ``ZIPDecode: Decoding error at scanline 109`` straight to file descriptor 2, below
  Python, where no ``sys.stderr`` redirection can catch them. Pillow already removes the
  warning handler before each libtiff decode but not the error handler; the error itself
  still reaches the verdict as Pillow's ``OSError`` ("decoder error -2"). The handlers are
  set through ``ctypes`` on Pillow's own ``_imaging`` library, whose dynamic symbol lookup
  finds the libtiff it links (manylinux and macOS wheels, and distribution builds alike).
  Redirecting file descriptor 2 around each decode would also work, but it is
  process-wide and would swallow whatever other threads print meanwhile (the upload's
  progress display); setting a library-wide handler once is thread-safe and costs nothing.
  Where the symbols cannot be found (Windows), libtiff keeps its default: a message on
  stderr, never a wrong verdict.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from PIL import Image, _imaging

from .sized_stream import SizedStream

# Warnings attributed to Pillow's files, or to ours when Pillow passes a stacklevel.
_PILLOW_DIRS: Final = (
    str(Path(Image.__file__).resolve().parent),
    str(Path(__file__).resolve().parent),
)
_LIBTIFF_HANDLER_SETTERS: Final = (
    "TIFFSetErrorHandler",
    "TIFFSetErrorHandlerExt",
    "TIFFSetWarningHandler",
    "TIFFSetWarningHandlerExt",
)
_LOCK: Final = threading.Lock()


class GuardedStream(SizedStream):
    """``size`` bytes of ``stream`` for Pillow; remembers the first failure of ``stream``."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        super().__init__(size)
        self._stream = stream
        self._stream_position: int | None = None
        self.failure: Exception | None = None
        self._whole: bytes | None = None
        #: Bytes handed to Pillow, for tests that bound the work a file causes.
        self.bytes_read = 0
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        # Pillow parses headers with many tiny reads (about 40 for a JPEG): kept lean.
        position = self._position
        left = self._size - position
        if size is None or size < 0 or size > left:
            size = left
        if size <= 0:
            return b""
        try:
            if self._stream_position != position:
                self._stream.seek(position)
            data = self._stream.read(size)
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
            self._stream_position = None
            raise
        position += len(data)
        self._position = self._stream_position = position
        self.bytes_read += len(data)
        self.reads += 1
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        return len(data)

    def getvalue(self) -> bytes:
        """All ``size`` bytes, read once. Pillow hands libtiff the whole file for each page
        it decodes: read through ``read``, that is every byte again for every page (a
        10,000-page file would copy its size 10,000 times); this is the one copy."""
        if self._whole is None:
            position = self._position
            self._position = 0
            try:
                self._whole = self.read()
            finally:
                self._position = position
        return self._whole

    def release(self) -> None:
        """Close ``stream`` and drop the copy ``getvalue`` made: the caller's bytes can go
        once the image is decoded (the save function's stream holds a whole object)."""
        self._whole = None
        self._stream.close()

    def raise_failure(self) -> None:
        """Raise the stream's own failure, if it had one: it decides, not Pillow's verdict."""
        if self.failure is not None:
            raise self.failure


class _Collector(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text not in self.messages:
            self.messages.append(text)


class PillowWarnings:
    """Holds the describe lock and collects Pillow's warnings and log records of warning
    level and above as text (``messages``), in the order they came.

    Inside, ``DecompressionBombWarning`` is raised as an error; every other warning is
    recorded, never shown. On exit, warnings raised by code outside Pillow (another
    thread's, in the window) are issued again as they would have been.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._catcher = warnings.catch_warnings(record=True)
        self._caught: list[warnings.WarningMessage] = []
        self._logger = logging.getLogger("PIL")
        self._collector = _Collector(self.messages)
        self._propagated = True

    def __enter__(self) -> PillowWarnings:
        _LOCK.acquire()
        try:
            caught = self._catcher.__enter__()
            assert caught is not None  # record=True
            self._caught = caught
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            self._propagated = self._logger.propagate
            self._logger.propagate = False
            self._logger.addHandler(self._collector)
        except BaseException:
            _LOCK.release()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._logger.removeHandler(self._collector)
            self._logger.propagate = self._propagated
            self._catcher.__exit__(kind, value, traceback)
        finally:
            _LOCK.release()
        for warning in self._caught:
            if str(Path(warning.filename).resolve()).startswith(_PILLOW_DIRS):
                text = str(warning.message)
                if text not in self.messages:
                    self.messages.append(text)
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )


@functools.cache
def quiet_libtiff() -> bool:
    """Remove libtiff's stderr handlers (see the module docstring); whether it could."""
    try:
        library = ctypes.CDLL(_imaging.__file__)
        setters = [getattr(library, name) for name in _LIBTIFF_HANDLER_SETTERS]
    except (OSError, AttributeError):
        return False
    for setter in setters:
        setter.argtypes = [ctypes.c_void_p]
        setter.restype = ctypes.c_void_p
        setter(None)
    return True
