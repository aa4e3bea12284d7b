"""Where a downloaded object lands: an S3 key to a path under the target folder, or a refusal.

Keys are any UTF-8 up to 1,024 bytes, so a key is untrusted input to the file system: a
gallery anyone can upload to must not be able to write ``~/.bashrc`` through ``imgcli
download``. This module is pure (no file system, no AWS) so that the rules can be tested
exhaustively; ``imgcli.download_files`` applies what it decides to real folders.

**Which part of the key.** A key named on the command line lands as its last ``/`` segment
(its file name). A ``--prefix`` download lands each object at its path relative to the
prefix, as ``aws s3 cp --recursive s3://bucket/P DIR`` does: that command treats ``P`` as a
folder and lists ``P/`` when ``P`` does not end in ``/`` (``photos`` takes
``photos/a.jpg``, not ``photos-old/b.jpg``); an empty prefix is the whole bucket. Keys that
end in ``/`` (folder markers, as the S3 console makes them) are no files and are skipped
without a report (``relative_key`` answers ``None``).

**Refused**, each with a reason: a NUL (no file name can hold one), a leading ``/`` (an
absolute path), an empty segment (``a//b``), a ``.`` or ``..`` segment, and a segment
longer than a file name may be (NAME_MAX, 255 bytes of UTF-8 on POSIX; 255 UTF-16 units on
Windows), measured after the mapping below. What is left is a relative path of plain
names, which cannot leave the folder; ``landing`` checks that once more on the joined,
normalised path (defence in depth, and what the property tests assert).

**Mapped**, where the file system cannot hold a character. On POSIX only ``/`` and NUL are
impossible in a name, and both are dealt with above, so nothing is mapped: the file name is
the key's segment, byte for byte. With ``windows=True`` (``map_segment``) these become
``%XX``, the percent-encoding of their UTF-8 bytes: ``< > : " \\ | ? *``, control
characters (U+0000..U+001F), a trailing ``.`` or space (the last character only: Windows
drops it), and the first character of a reserved device name (CON, PRN, AUX, NUL,
COM1-COM9, LPT1-LPT9, with any extension and in any case: ``con.jpg`` becomes
``%63on.jpg``). ``%`` itself is encoded (``%25``) only when two hex digits follow it in the
segment, the one case in which reading the name back (``unmapped_segment``) could mistake
it for an escape; so ``100%.jpg`` stays as it is, ``%41.jpg`` becomes ``%2541.jpg``, and
the mapping is injective (property-tested: decoding gives the segment back).

**Collisions.** Two keys may land on one path (two keys named on the command line with one
file name; on Windows and macOS, names that differ only in case or Unicode normalisation),
or a key may land where another needs a folder (``p/a`` and ``p/a/b``). ``Claims`` records
what this run has placed and refuses the later key, naming the earlier one. It holds one
entry per file and folder placed, the only state that grows with the number of objects.
"""

from __future__ import annotations

import posixpath
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Final

#: NAME_MAX on Linux and macOS (bytes); NTFS's limit is 255 UTF-16 units.
NAME_MAX: Final = 255
_WINDOWS_FORBIDDEN: Final = frozenset('<>:"\\|?*') | frozenset(chr(c) for c in range(32))
_RESERVED: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{n}" for n in range(1, 10)]
    + [f"LPT{n}" for n in range(1, 10)]
)
_HEX_PAIR: Final = re.compile(r"[0-9A-Fa-f]{2}")
_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")


class UnsafeKey(Exception):
    """The key cannot land under the target folder; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def folder_of(prefix: str) -> str:
    """The key prefix a ``--prefix`` download lists: ``P/`` for ``P``, as ``aws s3 cp
    --recursive`` reads it; the empty prefix (the whole bucket) stays empty."""
    return prefix if prefix == "" or prefix.endswith("/") else prefix + "/"


def relative_key(key: str, folder: str | None) -> str | None:
    """The part of ``key`` that becomes a path: its last segment when ``folder`` is None (a
    key named on the command line), else what follows ``folder`` (a ``folder_of`` value).
    ``None`` for a folder marker (a key ending in ``/``), which is no file."""
    if key.endswith("/"):
        return None
    if folder is None:
        return key.rsplit("/", 1)[-1]
    if not key.startswith(folder):
        raise ValueError(f"{key!r} is not under {folder!r}")
    return key[len(folder) :]


def landing(relative: str, *, windows: bool = False) -> tuple[str, ...]:
    """The path segments ``relative`` (a ``relative_key``) lands at, under the target
    folder; ``UnsafeKey`` when it must not be written."""
    if "\x00" in relative:
        raise UnsafeKey("holds a NUL character, which no file name can")
    if relative.startswith("/"):
        raise UnsafeKey("is an absolute path (it starts with '/')")
    segments = relative.split("/")
    if ".." in segments:
        raise UnsafeKey("has a '..' segment, which would leave the target folder")
    if "." in segments:
        raise UnsafeKey("has a '.' segment")
    if "" in segments:
        raise UnsafeKey("has an empty path segment ('//')")
    mapped = tuple(map_segment(segment, windows=windows) for segment in segments)
    for segment in mapped:
        size = name_size(segment, windows=windows)
        if size > NAME_MAX:
            unit = "UTF-16 units" if windows else "bytes"
            raise UnsafeKey(
                f"has a path segment of {size} {unit} (a file name holds at most {NAME_MAX})"
            )
    joined = posixpath.normpath(posixpath.join("/root", *mapped))
    if not joined.startswith("/root/"):  # unreachable after the checks above; kept as a net
        raise UnsafeKey("would land outside the target folder")
    return mapped


def name_size(name: str, *, windows: bool = False) -> int:
    """A file name's length as the file system counts it against ``NAME_MAX``."""
    if windows:
        return len(name.encode("utf-16-le", "surrogatepass")) // 2
    return len(name.encode("utf-8", "surrogateescape"))


def map_segment(segment: str, *, windows: bool = False) -> str:
    """``segment`` as a file name the platform can hold (module docstring: the rules)."""
    if not windows:
        return segment
    last = len(segment) - 1
    stem = segment.split(".", 1)[0]
    reserved = stem.upper() in _RESERVED
    out = []
    for index, char in enumerate(segment):
        if (
            char in _WINDOWS_FORBIDDEN
            or (index == last and char in ". ")
            or (index == 0 and reserved)
            or (char == "%" and _HEX_PAIR.fullmatch(segment[index + 1 : index + 3]))
        ):
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    return "".join(out)


def unmapped_segment(name: str) -> str:
    """The segment ``map_segment(..., windows=True)`` made ``name`` from."""
    # Bytes are rebuilt first, so a character encoded as several %XX comes back whole.
    raw = bytearray()
    index = 0
    while index < len(name):
        if _ESCAPE.match(name, index):
            raw.append(int(name[index + 1 : index + 3], 16))
            index += 3
        else:
            raw += name[index].encode("utf-8", "surrogatepass")
            index += 1
    return raw.decode("utf-8", "surrogatepass")


def folds_names(platform: str = sys.platform) -> bool:
    """Whether the platform's usual file systems take names differing only in case or
    Unicode normalisation as one (NTFS, APFS, HFS+), so such keys collide."""
    return platform == "win32" or platform == "darwin"


@dataclass
class Claims:
    """What one download has placed: a later key landing on a placed file, or where a placed
    file or folder is in the way, is refused. ``fold``: compare names as ``folds_names``."""

    fold: bool = False
    _files: dict[str, str] = field(default_factory=dict)
    _folders: dict[str, str] = field(default_factory=dict)

    def claim(self, segments: tuple[str, ...], key: str) -> str | None:
        """Place ``key`` at ``segments``; the reason it cannot be, or None when placed."""
        path = [self.comparable(segment) for segment in segments]
        for depth in range(1, len(path)):
            folder = "/".join(path[:depth])
            holder = self._files.get(folder)
            if holder is not None:
                return (
                    f"needs '{'/'.join(segments[:depth])}' as a folder, where key "
                    f"{holder!r} lands as a file"
                )
        target = "/".join(path)
        holder = self._files.get(target)
        if holder is not None:
            return f"lands on the same file as key {holder!r}"
        holder = self._folders.get(target)
        if holder is not None:
            return f"lands on a folder that key {holder!r} needs"
        for depth in range(1, len(path)):
            self._folders.setdefault("/".join(path[:depth]), key)
        self._files[target] = key
        return None

    def comparable(self, segment: str) -> str:
        """``segment`` as this run compares names (folded when ``fold``)."""
        if not self.fold:
            return segment
        return unicodedata.normalize("NFC", segment).casefold()


def local_path(root: str, segments: tuple[str, ...]) -> str:
    """The file ``segments`` names under ``root``."""
    return str(PurePath(root, *segments))
