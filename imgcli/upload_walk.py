"""What an upload considers and whether each file may go: the ``Selection`` (paths, a
prefix, ``--include`` / ``--exclude`` filters), the walk that turns it into keyed
candidates, and the check of each file.

The planner (``imgcli.upload_plan``) runs all of this on its one thread. Local keys are
produced in S3's own order (UTF-8 byte order: each folder's entries are sorted with folder
names followed by ``/``), which is what lets the planner join the walk with one pass of the
bucket listing (``imgcli.upload_listing``). A folder that cannot be walked (unreadable, a
symlink loop) comes out as a candidate with a ``problem`` and no key, refused by its path.

**The check**, in order (the first failure refuses the file, by path, with a reason):
the key is one ``imgcli.keys`` accepts for a new object (valid UTF-8, at most 1,024 bytes,
no control characters: a file named with a newline or an ESC is refused here, never sent);
the path resolves (broken symlinks and symlink loops are named as such) to a regular file
we may read; its size is above 0 and at most ``max_size``; and
``lambdas.image_metadata.describe_image`` accepts it, with the save function's own
parameters (``UploadConfig.full_decode_bytes`` defaults to the function's), so the client
refuses exactly the files the stack would index as invalid: the accepted formats only, the
pixel limit on every frame, the frame budget, and proof of completeness (a complete JPEG by
its trailer, in well under a millisecond; other images up to 16 MiB by a full decode). The
content type comes from the detected format, never the file name. ``describe_image``
raises nothing but its verdict or the file's own ``OSError``, so no file can stop a batch.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO

from imgcli.errors import UsageError
from imgcli.keys import key_problem
from imgcli.lambdas.image_metadata import InvalidImage, describe_image
from imgcli.upload_types import UploadConfig

# What to upload


@dataclass(frozen=True)
class PathFilter:
    """One ``--include`` (``include=True``) or ``--exclude`` glob."""

    pattern: str
    include: bool


def is_selected(relative: str, filters: Sequence[PathFilter]) -> bool:
    """Whether a file passes the filters, like ``aws s3``: later filters win.

    ``relative`` is the file's path relative to the folder given (``/`` separators), or its
    name for a file given directly. Patterns are ``fnmatch`` globs matched against the whole
    of it, case-sensitively, and ``*`` also matches ``/`` (so ``*.tmp`` excludes in every
    folder, ``raw/*`` everything under ``raw/``). The last filter that matches decides; a file
    no filter matches is uploaded, unless the first filter is an ``--include``: then only
    included files are (``--include '*.png'`` alone means "only PNGs", where ``aws s3``
    would silently upload everything).
    """
    selected = not (filters and filters[0].include)
    for path_filter in filters:
        if fnmatchcase(relative, path_filter.pattern):
            selected = path_filter.include
    return selected


@dataclass(frozen=True)
class Selection:
    """The files an upload considers: ``paths`` (files, or folders with ``recursive``),
    narrowed by ``filters``, keyed under ``prefix`` (taken literally: end it with ``/`` for
    a folder)."""

    paths: tuple[Path, ...]
    prefix: str = ""
    recursive: bool = False
    filters: tuple[PathFilter, ...] = ()


# The walk


@dataclass(frozen=True)
class Root:
    """A path of the selection, as the walk starts from it."""

    path: Path
    shown: str
    is_folder: bool
    #: The smallest key this root can produce, and what all its keys start with.
    key_floor: str


def check_paths(selection: Selection) -> None:
    """``UsageError`` if a path does not exist, or is a folder without ``recursive``."""
    find_roots(selection)


def find_roots(selection: Selection) -> list[Root]:
    """The selection's paths as roots of the walk; raises as ``check_paths`` says."""
    roots = []
    for path in selection.paths:
        shown = str(path)
        if not os.path.lexists(path):
            raise UsageError(f"no such file or folder: {shown}")
        if path.is_dir():
            if not selection.recursive:
                raise UsageError(
                    f"{shown} is a folder", hint="pass --recursive to upload the images in it"
                )
            roots.append(Root(path, shown, True, selection.prefix))
        else:
            key = selection.prefix + path.name
            problem = key_problem(key)
            if problem is not None:
                # Named on the command line, it is a new key asked for: a usage error, as
                # --prefix is. Found in a folder's walk, the same file is refused on its own.
                raise UsageError(f"{shown}: its key {problem}", hint=_key_hint(problem))
            roots.append(Root(path, shown, False, key))
    return roots


@dataclass(frozen=True)
class Candidate:
    """A file (or a folder that could not be walked: ``problem``) found by the walk."""

    sort_key: str
    key: str | None
    path: Path
    shown: str
    relative: str
    problem: str | None = None


def candidates(root: Root, prefix: str) -> Iterator[Candidate]:
    """What ``root`` holds, keyed under ``prefix``, in S3's listing order."""
    if not root.is_folder:
        name = root.path.name
        yield Candidate(prefix + name, prefix + name, root.path, root.shown, name)
        return
    try:
        info = root.path.stat()
    except OSError as exc:  # it was a folder a moment ago
        yield _folder_problem(root, prefix, root.path, "", _os_reason(exc, root.path))
        return
    yield from _walk(root, prefix, root.path, "", frozenset({(info.st_dev, info.st_ino)}))


def _walk(
    root: Root, prefix: str, folder: Path, relative: str, ancestors: frozenset[tuple[int, int]]
) -> Iterator[Candidate]:
    try:
        with os.scandir(folder) as scan:
            entries = [(entry.name, _is_folder(entry)) for entry in scan]
    except OSError as exc:
        yield _folder_problem(root, prefix, folder, relative, f"unreadable folder: {exc.strerror}")
        return
    # Sorting "name/" for folders yields keys in S3's listing order: "a.jpg" < "a/b.jpg".
    entries.sort(key=lambda entry: entry[0] + "/" if entry[1] else entry[0])
    for name, is_folder in entries:
        path = folder / name
        below = relative + name
        if not is_folder:
            shown = str(Path(root.shown) / below)
            yield Candidate(prefix + below, prefix + below, path, shown, below)
            continue
        try:
            info = path.stat()
        except OSError as exc:
            yield _folder_problem(root, prefix, path, below + "/", _os_reason(exc, path))
            continue
        identity = (info.st_dev, info.st_ino)
        if identity in ancestors:
            reason = "symlink loop: this folder links back to a folder that contains it"
            yield _folder_problem(root, prefix, path, below + "/", reason)
            continue
        yield from _walk(root, prefix, path, below + "/", ancestors | {identity})


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a link to a folder is walked
    except OSError:
        return False  # a link that cannot be followed: the file check names the reason


def _folder_problem(root: Root, prefix: str, path: Path, relative: str, reason: str) -> Candidate:
    shown = str(Path(root.shown) / relative) if relative else root.shown
    return Candidate(prefix + relative, None, path, shown, relative, reason)


def _key_hint(problem: str) -> str:
    return "shorten its path or the prefix" if problem.endswith(")") else "rename the file"


def _os_reason(exc: OSError, path: Path) -> str:
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return "broken symlink: its target does not exist"
        return "no such file (removed during the upload?)"
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link leads back to itself"
    if isinstance(exc, PermissionError):
        return "unreadable: permission denied"
    return f"unreadable: {exc.strerror or exc}"


# The check


def check_file(
    path: Path, key: str, config: UploadConfig, open_file: Callable[[Path], IO[bytes]]
) -> tuple[int, str] | str:
    """The file's size and content type, or why it is refused."""
    problem = key_problem(key)
    if problem is not None:
        # Refused per file, before any request: a newline in a key used to fail as
        # "PutObject failed (404)", and an ESC would reach every terminal that lists it.
        return f"its key {problem}: {_key_hint(problem)}"
    try:
        info = path.stat()
    except OSError as exc:
        return _os_reason(exc, path)
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    size = info.st_size
    if size == 0:
        return "empty file"
    if size > config.max_size:
        return f"too large: {size} bytes (the limit is {config.max_size}; see --max-size)"
    try:
        with open_file(path) as stream:
            details = describe_image(stream, size, full_decode_bytes=config.full_decode_bytes)
    except InvalidImage as invalid:
        return invalid.reason
    except OSError as exc:
        return _os_reason(exc, path)
    return size, details.content_type
