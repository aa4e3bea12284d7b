"""State that survives restarts: one pickle snapshot of everything moto holds.

moto keeps every service's state in memory, in ``BackendDict`` objects (service → account
→ region → backend). ``local stop`` + ``local start``, and a killed process, must find the
buckets, objects, tables, functions and APIs again *with the same ids*, because a stack's
recorded state (an API URL, a function ARN) points at them.

**Why a pickle of the backends, not moto's recorder.** moto can record requests and replay
them. Measured on moto 5.2.5 (shared/LOCAL_CLOUD.md), replaying 1,000 objects and 1,000
items took 8-9 s, produced new ids unless seeded, re-ran every invocation and grew without
bound. Pickling the backends themselves takes a fraction of a second, keeps ids, and its
size follows the state, not its history. All backends go into **one** pickle, so that an
object two services share (a backend holding another service's objects) is still one
object after loading.

**What plain pickle gets wrong on moto 5.2.5**, fixed by a private dispatch table (so the
fixes apply to this snapshot only, never to pickling elsewhere in the process):

* S3 versioned keys live in ``moto.s3.utils._VersionedKeyStore``, a ``dict`` of version
  lists whose ``items()`` yields only the latest version, so plain pickle *silently* keeps
  only the current version of every key (and loses delete markers' history). It is
  pickled as every (key, version) pair in order; loading replays them through the store's
  own ``__setitem__``, which appends, and so rebuilds each list.
* Lambda's storage keeps a ``weakref.WeakValueDictionary`` (unpicklable); it is pickled as
  its current items. The functions it points at are in the same snapshot, held by the
  storage's own strong references, so they stay alive after loading.
* Lambda's storage also keeps a ``defaultdict(lambda: {})``: a lambda cannot be pickled.
  A factory that is a lambda or a local function is replaced by the type of the empty
  value it returns (``dict`` here); any other such factory makes its service unpicklable.
* SQS queues hold a ``threading.Condition``, and S3 keys and others hold locks. No lock is
  meaningful in another process: they are recreated, released, on load (a condition keeps
  sharing its lock with whoever shared it, because pickle memoizes the lock).
* A reference to a ``BackendDict`` itself (S3's backends look up ``s3_backends``) is
  pickled as the module attribute it lives in, so loading points back at the live one
  rather than a copy. ``S3BackendDict`` also keeps state on itself (``bucket_accounts``,
  the global bucket namespace); attributes a plain ``BackendDict`` lacks are saved too.

**Object bodies are files of their own, written once.** Pickling every S3 object's bytes
into each snapshot made a save cost as much as the whole bucket: with 1.3 GB stored, each
save (every few seconds while anything changes) held the GIL for seconds and stalled every
request the server was answering. Instead each ``FakeKey``'s body goes to a file in
``<snapshot>.bodies/`` the first time a snapshot sees that key, named by a random id that
the key then carries with the body's size (``_imgcli_body``), and the pickle holds only
those two. moto 5.2.5 never changes a key's body after creating it (it sets ``value``
only in ``__init__`` and ``__setstate__``; a copy, a completed multipart upload, a new
version are new keys), so a body already on disk is not written again and a save costs
what the *metadata* costs; a key whose size no longer matches its file gets a new one.
A disposed key (a multipart upload's parts once it completes) has a closed buffer: like
moto's own ``__getstate__``, it is saved with an empty body and no file.

Each body file is written under a temporary name, fsynced and renamed, and the directory
is fsynced, before the snapshot that names it replaces the last one; after that, files it
does not name are removed. The snapshot lists the files it names with their sizes, and a
load checks them all before it touches the running state. Bodies are checked by size
only: hashing every body at every start would cost what the files cost to read.

**A service pickle cannot handle** (on moto 5.2.5: KMS, which keeps ``cryptography``
keys; SSM, whose defaultdict factory builds defaultdicts) is left out with a warning and
named in ``SnapshotInfo.skipped``, so a client poking at an unused service never costs the
stack's services their state. Each service is tried alone only when the whole dump fails.

**Restoring in place.** ``load_snapshot`` resets moto the way its ``/moto-api/reset`` does
(``BackendDict.reset``, which closes S3's buffers, then the model registry that would keep
the discarded objects alive) and puts the loaded backends into the live ``BackendDict``
objects, so a moto server already serving, and every client pointed at it, sees the
loaded state. Order matters: moto's S3 reset disposes every ``FakeKey`` it has ever
tracked, including freshly unpickled ones, so the reset happens before unpickling, and
only after the file has passed every check (header, versions, length, SHA-256): a corrupt
snapshot never touches the running state.

**Atomicity.** The state is pickled to memory (holding the caller's lock only for that),
then written to a temporary file in the same directory, fsynced, and renamed over the
snapshot, and the directory is fsynced: a crash at any point leaves either the last good
snapshot or the new one, never a half-written file under the snapshot's name.

**Versioning.** A JSON header before the pickle records the moto version and
``FORMAT_VERSION``. A pickle of moto's internals is only meaningful to the moto that wrote
it, so another version's snapshot is refused, before anything is unpickled, with a
``SnapshotError`` that says what to do (``imgcli local reset``). A missing file means
"nothing saved yet" (``None``); anything unreadable is a ``SnapshotError``, never a crash.

The pickle is read only from the user's own data directory, written by this module with
owner-only permissions; it is trusted like the rest of that directory.

This is the only module that pickles moto's internals; ``check_moto_internals`` and its
test fail loudly when a moto upgrade moves what it relies on.
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections import ChainMap, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import moto
from moto.core.base_backend import AccountSpecificBackend, BackendDict, BaseBackend, backend_lock
from moto.core.model_instances import reset_model_data
from moto.s3.models import FakeKey
from moto.s3.utils import _VersionedKeyStore

from imgcli.localcloud import MotoInternalsChanged

#: Bumped whenever the layout of the header or of the pickled payload changes.
FORMAT_VERSION: Final = 2
#: What this module can load: version 1 held the bodies inside the pickle.
READABLE_FORMATS: Final = (1, 2)
#: The moto whose internals a snapshot holds; another moto cannot read them.
MOTO_VERSION: Final[str] = moto.__version__
#: First line of every snapshot, so that any other file is recognised as "not a snapshot".
MAGIC: Final = b"imgcli-localcloud-snapshot\n"
#: Reading the state while requests change it can fail ("dictionary changed size during
#: iteration") when the caller passes no lock; a retry almost always succeeds.
DUMP_ATTEMPTS: Final = 3
#: The attribute a ``FakeKey`` carries once its body is in a body file: that file's name.
BODY_ATTRIBUTE: Final = "_imgcli_body"
_COPY_CHUNK: Final = 1024 * 1024

#: Anything a ``with`` statement can hold: ``threading.Lock``, ``RLock``, ...
Lock = AbstractContextManager[object]
#: Pickled payload: (module, attribute of the BackendDict, its extra attributes,
#: account → region → backend), one entry per service moto holds.
_Service = tuple[str, str, dict[str, Any], dict[str, dict[str, BaseBackend]]]

logger = logging.getLogger(__name__)


class SnapshotError(RuntimeError):
    """A snapshot cannot be written or read; the message says what to do about it."""


#: What pickling moto's state raises when it holds something pickle cannot handle.
_UNPICKLABLE: Final = (pickle.PicklingError, TypeError, AttributeError, SnapshotError)


@dataclass(frozen=True)
class SnapshotInfo:
    """What a save wrote or a load read.

    ``services`` names the moto services in the snapshot; ``skipped`` those left out
    because their state cannot be pickled (see ``save_snapshot``); ``size_bytes`` is the
    snapshot file (the object bodies are not in it); ``bodies_written`` is how many body
    files a save wrote (0 for a load); ``seconds`` is how long the save (pickling and
    writing) or the load (reading, checking, unpickling and installing) took.
    """

    path: Path
    moto_version: str
    format_version: int
    saved_at: datetime
    services: tuple[str, ...]
    skipped: tuple[str, ...]
    size_bytes: int
    seconds: float
    bodies_written: int = 0


def bodies_directory(path: Path) -> Path:
    """Where the snapshot at ``path`` keeps its object bodies."""
    return path.with_name(path.name + ".bodies")


# Saves may come from the scheduler and from a caller at once; one save at a time keeps
# one save's clean-up from removing a file another save has just written or named.
_save_lock = threading.Lock()


def save_snapshot(path: Path, *, lock: Lock | None = None) -> SnapshotInfo:
    """Write everything moto holds to ``path``, atomically; return what was written.

    ``lock``, when given, is held while the state is read (not while the file is
    written), so a caller that takes it around mutations gets a consistent snapshot.
    A service whose state cannot be pickled at all (KMS keeps ``cryptography`` keys) is
    left out with a warning and listed in ``SnapshotInfo.skipped``, rather than costing
    every other service its state; the stack's own services are all covered.
    """
    check_moto_internals()
    with _save_lock:
        return _save(path, lock)


def _save(path: Path, lock: Lock | None) -> SnapshotInfo:
    started = time.perf_counter()
    bodies = _BodyWriter(bodies_directory(path))
    try:
        dump = _dump_with_retries(lock, bodies)
    except _BodyNotSaved as error:
        raise SnapshotError(str(error)) from error
    _fsync_directory(bodies.directory)
    # The files it names first, so that a load can check them before it changes anything.
    body = pickle.dumps(bodies.named, protocol=pickle.HIGHEST_PROTOCOL) + dump.body
    saved_at = datetime.now(UTC)
    header = {
        "format": FORMAT_VERSION,
        "moto": MOTO_VERSION,
        "python": ".".join(map(str, sys.version_info[:3])),
        "saved_at": saved_at.isoformat(),
        "services": dump.services,
        "skipped": dump.skipped,
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    head = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n"
    _write_atomically(path, head, body)
    bodies.remove_unnamed()
    info = SnapshotInfo(
        path=path,
        moto_version=MOTO_VERSION,
        format_version=FORMAT_VERSION,
        saved_at=saved_at,
        services=tuple(dump.services),
        skipped=tuple(dump.skipped),
        size_bytes=len(head) + len(body),
        seconds=time.perf_counter() - started,
        bodies_written=bodies.written,
    )
    logger.info("saved %s (%d bytes) in %.3f s", path, info.size_bytes, info.seconds)
    return info


def load_snapshot(path: Path, *, lock: Lock | None = None) -> SnapshotInfo | None:
    """Replace moto's state with the snapshot at ``path``; ``None`` if there is none.

    Raises ``SnapshotError`` for a snapshot of another moto or format version, for a file
    that is not a complete snapshot, and for one whose body files are missing or cut short;
    in all these cases the running state is untouched.
    A snapshot that passes those checks yet fails to unpickle (only a change to moto or
    to this module could cause that) raises ``SnapshotError`` too, leaving moto empty
    rather than half-restored. ``lock``, when given, is held while the state is replaced.
    """
    check_moto_internals()
    started = time.perf_counter()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SnapshotError(f"cannot read the local cloud's snapshot {path}: {error}") from error
    header, body = _checked_parts(path, data)
    directory = bodies_directory(path)
    # The file is this module's own output from the user's private data directory, and it
    # has just matched the digest its header records.
    stream = io.BytesIO(body)
    if header["format"] >= 2:
        _check_bodies(path, directory, stream)
    # Its own unpickler: protocol 4's memo indices restart with each pickle.
    unpickler = _SnapshotUnpickler(stream, directory)
    # Not while a save removes the files it does not name.
    with _save_lock, lock or nullcontext(), backend_lock:
        _reset_moto()
        try:
            services: list[_Service] = unpickler.load()
            _install(services)
        except Exception as error:
            _reset_moto()  # never serve half a state
            raise SnapshotError(
                f"the local cloud's snapshot {path} cannot be restored ({error!r}); "
                "its state is lost: run `imgcli local reset` to discard it"
            ) from error
    info = SnapshotInfo(
        path=path,
        moto_version=header["moto"],
        format_version=header["format"],
        saved_at=datetime.fromisoformat(header["saved_at"]),
        services=tuple(header["services"]),
        skipped=tuple(header.get("skipped", ())),
        size_bytes=len(data),
        seconds=time.perf_counter() - started,
    )
    logger.info("restored %s (%d bytes) in %.3f s", path, info.size_bytes, info.seconds)
    return info


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems = _moved_internals_once()
    if problems:
        raise MotoInternalsChanged(
            "imgcli's snapshots need moto internals that moved: " + "; ".join(problems)
        )


class SnapshotScheduler:
    """Saves the snapshot every ``interval_s`` seconds when something changed, and on stop.

    The server calls ``mark_dirty`` on every mutating request, so it only sets a flag.
    It marks a request on its way in, before moto applies it, so a save that starts in
    between would miss that change: a mark therefore causes the next save *and one more*
    after it. ``stop`` saves once more if anything changed since the scheduler started,
    and raises if that last save fails; a failed periodic save is logged and retried at
    the next tick. ``lock`` is passed to ``save_snapshot``.
    """

    def __init__(self, path: Path, *, interval_s: float = 5.0, lock: Lock | None = None) -> None:
        self.path = path
        self.interval_s = interval_s
        self.saves = 0
        self.last_saved: SnapshotInfo | None = None
        self._lock = lock
        self._flags = threading.Lock()
        self._dirty = False
        self._recheck = False
        self._changed = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imgcli-snapshots", daemon=True)
        self._thread.start()

    def mark_dirty(self) -> None:
        """Note that the state changed (or is about to): the next tick saves it."""
        with self._flags:
            self._dirty = self._changed = True

    def stop(self) -> SnapshotInfo | None:
        """Stop the periodic saves, then save once more if anything changed; idempotent."""
        if self._stopping.is_set():
            return None
        self._stopping.set()
        self._thread.join()
        with self._flags:
            changed, self._changed = self._changed, False
        return self._save() if changed else None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            with self._flags:
                due = self._dirty or self._recheck
                self._recheck, self._dirty = self._dirty, False
            if not due:
                continue
            try:
                self._save()
            except Exception:
                logger.exception("could not save the local cloud's state; retrying")
                self.mark_dirty()

    def _save(self) -> SnapshotInfo:
        info = save_snapshot(self.path, lock=self._lock)
        self.saves += 1
        self.last_saved = info
        return info


# --- writing ------------------------------------------------------------------------------


def _dump_with_retries(lock: Lock | None, bodies: _BodyWriter) -> _Dump:
    for attempt in range(1, DUMP_ATTEMPTS + 1):
        try:
            with lock or nullcontext(), backend_lock:
                bodies.named.clear()
                return _dump(bodies)
        except RuntimeError as error:
            if isinstance(error, SnapshotError) or attempt == DUMP_ATTEMPTS:
                raise
            logger.debug("state changed while pickling it (%s); trying again", error)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Dump:
    body: bytes
    services: list[str]
    skipped: list[str]


def _dump(bodies: _BodyWriter) -> _Dump:
    # A list, not a dict by service name: two BackendDicts may share one (DynamoDB's two
    # API versions).
    entries = [
        (str(backend_dict.service_name), _entry(backend_dict))
        for backend_dict in list(BackendDict._instances)  # type: ignore[misc]
    ]
    try:
        return _Dump(_pickled([entry for _, entry in entries], bodies), _names(entries), [])
    except _UNPICKLABLE:
        # One service the stack never uses (a client made a KMS key, say) must not cost
        # every other service its state: save what can be saved, and say what was not.
        kept = [(name, entry) for name, entry in entries if _can_pickle(entry, bodies)]
        skipped = sorted({name for name, _ in entries} - set(_names(kept)))
        logger.warning("not saving moto state that cannot be pickled: %s", ", ".join(skipped))
        try:
            return _Dump(_pickled([entry for _, entry in kept], bodies), _names(kept), skipped)
        except _UNPICKLABLE as error:
            raise SnapshotError(f"cannot pickle moto's state: {error!r}") from error


def _names(entries: list[tuple[str, _Service]]) -> list[str]:
    return sorted({name for name, _ in entries})


def _entry(backend_dict: BackendDict[Any]) -> _Service:
    module, attribute = _location(backend_dict)
    accounts = {
        account_id: dict(dict.items(regions)) for account_id, regions in backend_dict.items()
    }
    return module, attribute, _extra_attributes(backend_dict), accounts


def _pickled(entries: list[_Service], bodies: _BodyWriter) -> bytes:
    buffer = io.BytesIO()
    _SnapshotPickler(buffer, bodies).dump(entries)
    return buffer.getvalue()


def _can_pickle(entry: _Service, bodies: _BodyWriter) -> bool:
    try:
        _pickled([entry], bodies)
    except _UNPICKLABLE:
        return False
    return True


def _write_atomically(path: Path, head: bytes, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    # A temporary file left by a process killed mid-save is useless: remove it.
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        stale.unlink(missing_ok=True)
    # Same directory, so the rename cannot cross filesystems; mkstemp makes it owner-only.
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    temporary = Path(temporary_name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(head)
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


class _BodyWriter:
    """One save's view of the body files: writes the new ones, then removes the unnamed.

    ``reduce_key`` runs while the state is pickled (under the caller's lock): a key whose
    file is already there costs a set lookup; a new key's body is copied to a new file
    there and then, since only then is the body certain to be the one pickled.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # Listed at every save, not remembered between saves: a reset or a hand may have
        # removed files since. Names only: Path objects cost twice as much per file.
        self.present = {name for name in os.listdir(directory) if name[0] != "."}  # noqa: PTH208
        self.named: dict[str, int] = {}
        self.written = 0

    def reduce_key(self, key: FakeKey) -> _Reduction:
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
        return (_restored_key, (type(key), state, name, size))

    def _write(self, key: FakeKey) -> tuple[str, int] | None:
        """A new body file holding ``key``'s body: (its name, its size); None if the key
        was disposed meanwhile."""
        name = uuid.uuid4().hex
        temporary = self.directory / f".{name}.tmp"
        try:
            with key.lock, temporary.open("wb") as file:
                try:
                    for chunk in _body_chunks(key._value_buffer):
                        file.write(chunk)
                except ValueError:  # its buffer was closed: disposed
                    return None
                file.flush()
                os.fsync(file.fileno())
                size = file.tell()
            temporary.replace(self.directory / name)
        # Raised as something pickling errors are not: losing a body must fail the save,
        # never leave S3 out of it as a service that cannot be pickled.
        except (OSError, AttributeError) as error:
            raise _BodyNotSaved(
                f"cannot save an object body in {self.directory}: {error!r}"
            ) from error
        finally:
            temporary.unlink(missing_ok=True)
        self.present.add(name)
        self.written += 1
        return name, size

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


class _BodyNotSaved(Exception):
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


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some platforms cannot open a directory, and there
    # the rename is as durable as it gets.
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


# --- reading ------------------------------------------------------------------------------


def _checked_parts(path: Path, data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the pickled body, once both are known to be whole and ours."""
    reset_hint = "run `imgcli local reset` to discard it and start empty"
    if not data.startswith(MAGIC):
        raise SnapshotError(f"{path} is not a local cloud snapshot; {reset_hint}")
    end_of_header = data.find(b"\n", len(MAGIC))
    try:
        if end_of_header < 0:
            raise ValueError("no end of header")
        header = json.loads(data[len(MAGIC) : end_of_header])
        moto_version = header["moto"]
        format_version = header["format"]
        expected_bytes = header["body_bytes"]
        expected_digest = header["body_sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{path} has a damaged header ({error}); {reset_hint}") from error
    if moto_version != MOTO_VERSION or format_version not in READABLE_FORMATS:
        raise SnapshotError(
            f"{path} was saved by moto {moto_version} (snapshot format {format_version}), "
            f"but this imgcli runs moto {MOTO_VERSION} (format {FORMAT_VERSION}) and cannot "
            f"read it; {reset_hint}, or use the imgcli version that saved it"
        )
    body = data[end_of_header + 1 :]
    if len(body) != expected_bytes or hashlib.sha256(body).hexdigest() != expected_digest:
        raise SnapshotError(
            f"{path} is truncated or damaged ({len(body)} of {expected_bytes} bytes, or a "
            f"checksum mismatch); {reset_hint}"
        )
    return header, body


def _check_bodies(path: Path, directory: Path, stream: io.BytesIO) -> None:
    """Raise ``SnapshotError`` unless every body file the snapshot names is there, whole."""
    try:
        named = pickle.load(stream)  # noqa: S301 - see load_snapshot
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


def _reset_moto() -> None:
    # What moto's own /moto-api/reset does: the backends, then the model registry that
    # would otherwise keep every object of the discarded state alive.
    BackendDict.reset()
    reset_model_data()


def _install(services: list[_Service]) -> None:
    for module, attribute, extras, accounts in services:
        backend_dict = _live_backend_dict(module, attribute)
        vars(backend_dict).update(extras)
        for account_id, regions in accounts.items():
            # Indexing creates the account's container and registers the BackendDict in
            # BackendDict._instances, so moto's reset and the next save both see it.
            account = backend_dict[account_id]
            for region, backend in regions.items():
                dict.__setitem__(account, region, backend)


# --- locating moto's BackendDicts ---------------------------------------------------------


def _location(backend_dict: BackendDict[Any]) -> tuple[str, str]:
    """The (module, attribute) a BackendDict lives in, to find the live one after a load."""
    home = backend_dict.backend.__module__
    candidates = [home, *(name for name in list(sys.modules) if name.startswith("moto."))]
    for module_name in candidates:
        module = sys.modules.get(module_name)
        for attribute, value in list(vars(module).items()) if module else ():
            if value is backend_dict:
                return module_name, attribute
    raise SnapshotError(
        f"cannot find where moto keeps the {backend_dict.service_name!r} backends; "
        "imgcli's snapshots need a moto internal that moved"
    )


def _live_backend_dict(module: str, attribute: str) -> BackendDict[Any]:
    value = getattr(importlib.import_module(module), attribute)
    if not isinstance(value, BackendDict):
        raise SnapshotError(f"{module}.{attribute} is no longer moto's backends")
    return value


def _plain_attributes() -> frozenset[str]:
    # Constructing a BackendDict registers nothing (only indexing it does).
    return frozenset(vars(BackendDict(BaseBackend, "imgcli-probe")))


_PLAIN_ATTRIBUTES: Final = _plain_attributes()


def _extra_attributes(backend_dict: BackendDict[Any]) -> dict[str, Any]:
    return {
        name: value for name, value in vars(backend_dict).items() if name not in _PLAIN_ATTRIBUTES
    }


# --- the pickling fixes -------------------------------------------------------------------

_Reduction = tuple[Any, ...]


def _reduce_versioned_key_store(store: _VersionedKeyStore) -> _Reduction:
    versions = ((key, version) for key, listed in dict.items(store) for version in listed)
    return (type(store), (), vars(store) or None, None, versions)


def _reduce_weak_value_dictionary(mapping: weakref.WeakValueDictionary[Any, Any]) -> _Reduction:
    return (type(mapping), (), None, None, iter(list(mapping.items())))


def _reduce_defaultdict(mapping: defaultdict[Any, Any]) -> _Reduction:
    factory = _picklable_factory(mapping.default_factory)
    return (type(mapping), (factory,), None, None, iter(mapping.items()))


def _picklable_factory(factory: Callable[[], Any] | None) -> Callable[[], Any] | None:
    qualname = getattr(factory, "__qualname__", "")
    if factory is None or ("<lambda>" not in qualname and "<locals>" not in qualname):
        return factory
    empty = factory()
    replacement = type(empty)
    if replacement.__module__ != "builtins" or empty != replacement():
        raise SnapshotError(
            f"cannot pickle a defaultdict whose factory {factory.__module__}.{qualname} "
            "makes a non-empty value"
        )
    return replacement


def _reduce_lock(_lock: object) -> _Reduction:
    return (threading.Lock, ())


def _reduce_rlock(_lock: object) -> _Reduction:
    return (threading.RLock, ())


def _reduce_condition(condition: threading.Condition) -> _Reduction:
    return (threading.Condition, (condition._lock,))  # type: ignore[attr-defined]


def _reduce_backend_dict(backend_dict: BackendDict[Any]) -> _Reduction:
    return (_live_backend_dict, _location(backend_dict))


def _restored_key(*_arguments: object) -> FakeKey:
    # Only _SnapshotUnpickler can restore a key: it knows where the bodies are.
    raise SnapshotError("a snapshot's object bodies can only be read through load_snapshot")


def _restore_key(
    directory: Path, cls: type[FakeKey], state: dict[str, Any], body: str | None, size: int
) -> FakeKey:
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


def _refuse_account_backend(account: AccountSpecificBackend[Any]) -> _Reduction:
    raise SnapshotError(
        f"a backend refers to moto's {account.service_name!r} account container; "
        "imgcli's snapshots do not know how to restore that reference"
    )


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    subclass: type
    for subclass in cls.__subclasses__():
        yield from _subclasses(subclass)


def _fixes() -> Mapping[type, Callable[[Any], _Reduction]]:
    fixes: dict[type, Callable[[Any], _Reduction]] = {
        _VersionedKeyStore: _reduce_versioned_key_store,
        weakref.WeakValueDictionary: _reduce_weak_value_dictionary,
        defaultdict: _reduce_defaultdict,
        type(threading.Lock()): _reduce_lock,
        type(threading.RLock()): _reduce_rlock,
        threading.Condition: _reduce_condition,
    }
    # The dispatch table matches exact types; moto subclasses BackendDict (S3).
    fixes.update(dict.fromkeys(_subclasses(BackendDict), _reduce_backend_dict))
    fixes.update(dict.fromkeys(_subclasses(AccountSpecificBackend), _refuse_account_backend))
    return fixes


class _SnapshotPickler(pickle.Pickler):
    """pickle with the fixes above, for this snapshot only (never copyreg's global table)."""

    def __init__(self, file: io.BytesIO, bodies: _BodyWriter) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        fixes = dict(_fixes())
        fixes.update(dict.fromkeys(_subclasses(FakeKey), bodies.reduce_key))
        # Chained, so what other modules registered with copyreg still applies.
        self.dispatch_table = ChainMap[type, Any](fixes, copyreg.dispatch_table)


class _SnapshotUnpickler(pickle.Unpickler):
    """pickle's loader, restoring each key's body from the snapshot's body directory."""

    def __init__(self, file: io.BytesIO, bodies: Path) -> None:
        super().__init__(file)
        self._bodies = bodies

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, _restored_key.__name__):
            return functools.partial(_restore_key, self._bodies)
        return super().find_class(module, name)


# --- the internals check ------------------------------------------------------------------


@functools.cache
def _moved_internals_once() -> tuple[str, ...]:
    # moto cannot move while the process runs, and the probe makes FakeKeys, which moto
    # keeps in FakeKey.instances_tracked until a reset: once per process, not per save.
    return tuple(_moved_internals())


def _moved_internals() -> Iterator[str]:
    instances = getattr(BackendDict, "_instances", None)
    if not isinstance(instances, list):
        yield "BackendDict._instances is no longer the list of backends in use"
    if not issubclass(AccountSpecificBackend, dict):
        yield "AccountSpecificBackend is no longer a dict of regions"
    if not callable(getattr(BackendDict, "reset", None)):
        yield "BackendDict.reset is gone"
    store = _VersionedKeyStore()
    store["key"] = "first"
    store["key"] = "second"
    if not isinstance(store, dict) or dict.get(store, "key") != ["first", "second"]:
        yield "_VersionedKeyStore no longer appends versions to a per-key list"
    if not hasattr(threading.Condition(), "_lock"):
        yield "threading.Condition no longer keeps its lock in _lock"
    yield from _moved_key_internals()


def _moved_key_internals() -> Iterator[str]:
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
