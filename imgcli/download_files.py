"""The local side of a download: folders made safely, files compared, written and placed.

``imgcli.download_paths`` decides, without touching the disk, that a key's path stays
under the target folder; this module keeps that true on a real disk, where the folder may
already hold symbolic links, files where folders are needed, or a file of the same name.

**Folders.** Each folder on the way is made if missing and then looked at without following
links (``lstat``). A symbolic link is followed only when it resolves inside the target
folder: one that leads out of it is refused, as ``tar`` refuses to extract through a
symlinked directory, so a link planted in DIR cannot send a key's bytes elsewhere. A file
where a folder is needed is refused. (A link swapped in between that check and the write
is a race with someone who can already write in DIR; it is not defended against.)

**Files.** Each object is written to a hidden temporary file beside its final name
(``.NAME.imgcli-XXXXXXXX.part``, mode 0600 as ``mkstemp`` makes it), in chunks, then
fsync'd, verified by the caller, given the object's LastModified as its mtime and the
mode a new file gets under the umask, and only then put in place: with ``os.link``
(fails if the name was taken meanwhile, so a file that appeared during the download is
never clobbered) when not overwriting, with ``os.replace`` when overwriting (which
replaces a symbolic link at the name, never the file it points to); the folder is then
fsync'd so the new name survives a crash. ``PartFiles`` knows every temporary file alive,
so Ctrl-C removes them all.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from imgcli.download_paths import UnsafeKey

PART_SUFFIX: Final = ".part"
#: Bytes of the final name kept in a temporary file's name (it stays under NAME_MAX).
_NAME_IN_PART: Final = 100


class LocalConflict(UnsafeKey):
    """Something on the disk is in the way of a key's path (a file, a link out of DIR)."""


def current_umask() -> int:
    """The process's umask (read once, on the caller's thread: it cannot be read without
    setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def parent_folder(root: str, segments: tuple[str, ...], *, create: bool) -> str:
    """The folder ``segments``' file goes in, checked (and made, with ``create``) level by
    level under ``root`` (a real path: no links in it); ``LocalConflict`` when something
    is in the way. Without ``create`` a missing folder ends the checks (nothing below it
    exists)."""
    current = Path(root)
    for depth, segment in enumerate(segments[:-1], start=1):
        current = current / segment
        shown = "/".join(segments[:depth])
        if create:
            with contextlib.suppress(FileExistsError):
                current.mkdir()
        try:
            info = current.lstat()
        except FileNotFoundError:
            if create:
                raise
            return str(current)
        if stat.S_ISLNK(info.st_mode):
            real = os.path.realpath(current)
            if not is_within(root, real):
                raise LocalConflict(f"'{shown}' is a symbolic link out of the target folder")
            if not Path(real).is_dir():
                raise LocalConflict(f"'{shown}' is a symbolic link to something not a folder")
        elif not stat.S_ISDIR(info.st_mode):
            raise LocalConflict(f"a file is where folder '{shown}' is needed")
    return str(current)


def is_within(root: str, path: str) -> bool:
    """Whether ``path`` (a real path) is ``root`` (a real path) or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def existing(path: str) -> os.stat_result | None:
    """What is at ``path`` (not following a link), or None."""
    try:
        return Path(path).lstat()
    except FileNotFoundError:
        return None


class PartFiles:
    """The temporary files of one download; ``remove_all`` is what Ctrl-C runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alive: set[str] = set()

    def create(self, folder: str, name: str) -> tuple[int, str]:
        """A new temporary file for ``name`` in ``folder``: (descriptor, path), mode 0600."""
        short = name.encode("utf-8", "surrogateescape")[:_NAME_IN_PART]
        stem = short.decode("utf-8", "ignore")
        descriptor, path = tempfile.mkstemp(
            prefix=f".{stem}.imgcli-", suffix=PART_SUFFIX, dir=folder
        )
        with self._lock:
            self._alive.add(path)
        return descriptor, path

    def discard(self, path: str) -> None:
        """Remove a temporary file (gone already is fine)."""
        Path(path).unlink(missing_ok=True)
        with self._lock:
            self._alive.discard(path)

    def placed(self, path: str) -> None:
        """The temporary file became a final one (or was removed by the caller)."""
        with self._lock:
            self._alive.discard(path)

    def remove_all(self) -> None:
        with self._lock:
            alive = list(self._alive)
        for path in alive:
            self.discard(path)

    def __len__(self) -> int:
        with self._lock:
            return len(self._alive)


def finish_part(stream: IO[bytes], *, umask: int, modified: datetime | None) -> None:
    """Make a written temporary file durable and ordinary: fsync, mode, mtime."""
    stream.flush()
    os.fsync(stream.fileno())
    os.fchmod(stream.fileno(), 0o666 & ~umask)
    if modified is not None:
        stamp = modified.timestamp()
        os.utime(stream.fileno(), (stamp, stamp))


class NameTaken(LocalConflict):
    """A file appeared at the final name while the object was downloading."""


def place(part: str, final: str, *, overwrite: bool) -> None:
    """Put the finished temporary file ``part`` at ``final`` (module docstring: how)."""
    if overwrite:
        Path(part).replace(final)
    else:
        try:
            os.link(part, final)
        except FileExistsError:
            raise NameTaken(
                "exists (it appeared during the download); --overwrite to replace"
            ) from None
        except OSError:
            # No hard links on this file system: the check before the download stands.
            Path(part).replace(final)
        else:
            Path(part).unlink()
    fsync_folder(str(Path(final).parent))


def fsync_folder(folder: str) -> None:
    """fsync a folder, so a name just made in it survives a crash (where folders can be)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def open_part(descriptor: int) -> Any:
    """The temporary file's descriptor as a binary stream (it closes the descriptor)."""
    return os.fdopen(descriptor, "wb")
