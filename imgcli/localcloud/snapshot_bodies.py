"""A snapshot's S3 object bodies: files of their own, each written once.

**Why not in the pickle.** Pickling every S3 object's bytes into each snapshot made a save
cost as much as the whole bucket: with 1.3 GB stored, each save (every few seconds while
anything changes) held the GIL for seconds and stalled every request the server was
answering. Instead each ``FakeKey``'s body goes to a file in ``<snapshot>.bodies/`` the
first time a snapshot sees that key, named by a random id that the key then carries with
the body's size (``_imgcli_body``), and the pickle holds only those two. moto 5.2.5 never
changes a key's body after creating it (it sets ``value`` only in ``__init__`` and
``__setstate__``; a copy, a completed multipart upload, a new version are new keys), so a
body already on disk is not written again and a save costs what the *metadata* costs; a
key whose size no longer matches its file gets a new one. A disposed key (a multipart
upload's parts once it completes) has a closed buffer: like moto's own ``__getstate__``, it
is saved with an empty body and no file.

Each body file is written under a temporary name and renamed while the state is pickled
(under the server's mutation lock: only then is the body certain to be the one pickled),
but fsynced after the lock is released (``BodyWriter.sync``: a thousand fsyncs would
otherwise hold every writer for seconds), and the directory is fsynced, all before the
snapshot that names them replaces the last one, and so before the journal generations
that hold those bodies are removed. After that, files it does not name are removed. The
snapshot lists the files it names with their sizes, and a load checks them all before it
touches the running state. Bodies are checked by size only: hashing every body at every
start would cost what the files cost to read.

``persistence`` drives all of it: each save makes a ``BodyWriter``, whose ``reduce_key``
its pickler uses for every ``FakeKey``; a load runs ``check_bodies``, then its unpickler
rebuilds each key with ``restore_key``. ``moved_key_internals`` names what moved of the
``FakeKey`` internals this relies on, for ``persistence.check_moto_internals``.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, cast

from moto.s3.models import FakeKey

from imgcli.localcloud.snapshot_errors import SnapshotError
from imgcli.localcloud.snapshot_pickling import Reduction

#: The attribute a ``FakeKey`` carries once its body is in a body file: that file's name.
BODY_ATTRIBUTE: Final = "_imgcli_body"
_COPY_CHUNK: Final = 1024 * 1024

logger = logging.getLogger(__name__)


class BodyWriter:
    """One save's view of the body files: writes the new ones, then removes the unnamed.

    ``reduce_key`` runs while the state is pickled (under the caller's lock): a key whose
    file is already there costs a set lookup; a new key's body is copied to a new file
    there and then, since only then is the body certain to be the one pickled. Each key
    is pickled as a call of ``restored_key``, the function the snapshot format names for
    it (``persistence`` owns that name, and hands it over).
    """

    def __init__(self, directory: Path, restored_key: Callable[..., FakeKey]) -> None:
        self.directory = directory
        self.restored_key = restored_key
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Listed at every save, not remembered between saves: a reset or a hand may have
        # removed files since. Names only: Path objects cost twice as much per file.
        self.present = {name for name in os.listdir(directory) if name[0] != "."}  # noqa: PTH208
        self.named: dict[str, int] = {}
        self.written = 0
        self._unsynced: list[str] = []

    def reduce_key(self, key: FakeKey) -> Reduction:
        """How ``key`` pickles: its state and the name and size of its body's file."""
        state = {
            name: value
            for name, value in vars(key).items()
            if name not in ("_value_buffer", "lock")
        }
        tag = state.get(BODY_ATTRIBUTE)
        if key.disposed:
            tag = None
        elif not (isinstance(tag, tuple) and tag[0] in self.present and tag[1] == key.contentsize):
            tag = self._write(key)
            # On the live key too, so the next save finds its file.
            vars(key)[BODY_ATTRIBUTE] = tag
        state[BODY_ATTRIBUTE] = tag
        name, size = tag if tag is not None else (None, 0)
        if name is not None:
            self.named[name] = size
        return (self.restored_key, (type(key), state, name, size))

    def _write(self, key: FakeKey) -> tuple[str, int] | None:
        """A new body file holding ``key``'s body: (its name, its size); None if the key
        was disposed meanwhile."""
        name = uuid.uuid4().hex
        temporary = self.directory / f".{name}.tmp"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with key.lock, os.fdopen(descriptor, "wb") as file:
                try:
                    for chunk in _body_chunks(key._value_buffer):
                        file.write(chunk)
                except ValueError:  # its buffer was closed: disposed
                    return None
                size = file.tell()
            temporary.replace(self.directory / name)
        # Raised as something pickling errors are not: losing a body must fail the save,
        # never leave S3 out of it as a service that cannot be pickled.
        except (OSError, AttributeError) as error:
            raise BodyNotSaved(
                f"cannot save an object body in {self.directory}: {error!r}"
            ) from error
        finally:
            temporary.unlink(missing_ok=True)
        self.present.add(name)
        self._unsynced.append(name)
        self.written += 1
        return name, size

    def sync(self) -> None:
        """fsync the files this save wrote, then the directory: before the snapshot names them."""
        try:
            for name in self._unsynced:
                descriptor = os.open(self.directory / name, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        except OSError as error:
            raise BodyNotSaved(
                f"cannot save an object body in {self.directory}: {error!r}"
            ) from error
        self._unsynced.clear()
        fsync_directory(self.directory)

    def discard_unsynced(self) -> None:
        """Remove the files this failed save wrote: a later save must write (and sync) them
        again rather than find them there and trust them."""
        for name in self._unsynced:
            (self.directory / name).unlink(missing_ok=True)
        self._unsynced.clear()

    def remove_unnamed(self) -> None:
        """Remove the files the snapshot just written does not name (and stale temporaries).

        Best effort: the snapshot is already in place, and a file left here costs only
        disk until the next save.
        """
        for name in os.listdir(self.directory):  # noqa: PTH208 - see __init__
            if name not in self.named:
                try:
                    (self.directory / name).unlink()
                except OSError as error:
                    logger.warning("could not remove an unused object body: %s", error)


class BodyNotSaved(Exception):
    """A body file could not be written: the save fails and is tried again later."""


def _body_chunks(buffer: tempfile.SpooledTemporaryFile[bytes]) -> Iterator[bytes]:
    """A key's body, read without moving its buffer's position.

    moto computes a new key's ETag by seeking and reading the buffer without the key's
    lock, possibly while a save copies the body: seeking here would corrupt one or the
    other. Held in memory, the body is a ``BytesIO`` whose value needs no seek; in a file,
    it is read with ``pread`` from a duplicate descriptor, which has no position to share.
    """
    inner = buffer._file
    if isinstance(inner, io.BytesIO):
        yield inner.getvalue()
        return
    inner.flush()  # what moto wrote may still be in the buffered writer
    descriptor = os.dup(inner.fileno())
    try:
        offset = 0
        while chunk := os.pread(descriptor, _COPY_CHUNK, offset):
            offset += len(chunk)
            yield chunk
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    """Make the renames into ``directory`` durable, where the platform allows it."""
    # Some platforms cannot open a directory, and there the rename is as durable as it gets.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def check_bodies(path: Path, directory: Path, stream: io.BytesIO) -> None:
    """Raise ``SnapshotError`` unless every body file the snapshot names is there, whole."""
    try:
        named = pickle.load(stream)  # noqa: S301 - see persistence.load_snapshot
        files = [(str(name), int(size)) for name, size in named.items()]
    except Exception as error:
        raise SnapshotError(
            f"the snapshot {path} cannot be restored ({error!r}); "
            "run `imgcli local reset` to discard it"
        ) from error
    for name, size in files:
        try:
            found = (directory / name).stat().st_size
        except OSError:
            found = None
        if found != size:
            state = "missing" if found is None else f"{found} of {size} bytes"
            raise SnapshotError(
                f"the snapshot {path} names an object body that is {state} in {directory}: "
                "run `imgcli local reset` to discard the saved state and start empty"
            )


def restore_key(
    directory: Path, cls: type[FakeKey], state: dict[str, Any], body: str | None, size: int
) -> FakeKey:
    """The key ``BodyWriter.reduce_key`` pickled, with its body read from ``directory``."""
    try:
        value = b"" if body is None else (directory / body).read_bytes()
    except OSError as error:
        raise SnapshotError(f"an object body is missing from {directory}: {error}") from error
    if len(value) != size:
        raise SnapshotError(
            f"the object body {body} in {directory} is {len(value)} of {size} bytes"
        )
    key = cast(FakeKey, cls.__new__(cls))
    # moto's own __setstate__: makes the buffer and the lock, and sets the body.
    key.__setstate__({**state, "value": value})
    return key


def moved_key_internals() -> Iterator[str]:
    """What moved of the ``FakeKey`` internals the bodies rely on; nothing when all is there."""
    key = FakeKey("imgcli-probe", b"body", "123456789012", "us-east-1")
    try:
        buffer = getattr(key, "_value_buffer", None)
        if not isinstance(buffer, tempfile.SpooledTemporaryFile):
            yield "FakeKey no longer keeps its body in _value_buffer"
            return
        if b"".join(_body_chunks(buffer)) != b"body":
            yield "SpooledTemporaryFile no longer keeps its data in _file"
        state = {name: value for name, value in vars(key).items() if name != "_value_buffer"}
        copy = cast(FakeKey, FakeKey.__new__(FakeKey))
        copy.__setstate__({**state, "value": b"restored"})
        if copy.value != b"restored" or copy.contentsize != len(b"restored"):
            yield "FakeKey.__setstate__ no longer restores the body from state['value']"
        copy.dispose()
    finally:
        key.dispose()
