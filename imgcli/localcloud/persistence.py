"""State that survives restarts: one pickle snapshot of everything moto holds.

moto keeps every service's state in memory, in ``BackendDict`` objects (service → account
→ region → backend). ``local stop`` + ``local start``, and a killed process, must find the
buckets, objects, tables, functions and APIs again *with the same ids*, because a stack's
recorded state (an API URL, a function ARN) points at them.

**Why a pickle of the backends, not moto's recorder.** moto can record requests and replay
them. Measured on moto 5.2.5 (docs/local-cloud.md), replaying 1,000 objects and 1,000
items took 8-9 s, produced new ids unless seeded, re-ran every invocation and grew without
bound. Pickling the backends themselves takes a fraction of a second, keeps ids, and its
size follows the state, not its history. All backends go into **one** pickle, so that an
object two services share (a backend holding another service's objects) is still one
object after loading.

This module writes and reads that snapshot and puts its state back into moto;
``snapshot_pickling`` fixes what plain pickle gets wrong about moto's objects, and
``snapshot_bodies`` keeps S3 object bodies out of the pickle, in files written once.

**The names a snapshot refers to.** A pickle names a function by module and name, and a
snapshot names two of this module's: ``_live_backend_dict`` (a ``BackendDict``) and
``_restored_key`` (a key whose body is in a body file). They stay here under these names,
handed to the modules that pickle with them: moved or renamed, they would make every
snapshot saved so far unreadable.

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

These three modules are the only ones that pickle moto's internals;
``check_moto_internals`` (with each one's probes) and its test fail loudly when a moto
upgrade moves what they rely on.
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
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import moto
from moto.core.base_backend import AccountSpecificBackend, BackendDict, BaseBackend, backend_lock
from moto.core.model_instances import reset_model_data
from moto.s3.models import FakeKey

from imgcli.localcloud import MotoInternalsChanged
from imgcli.localcloud.snapshot_bodies import (
    BodyNotSaved,
    BodyWriter,
    check_bodies,
    fsync_directory,
    moved_key_internals,
    restore_key,
)
from imgcli.localcloud.snapshot_errors import SnapshotError
from imgcli.localcloud.snapshot_pickling import (
    Reduction,
    extra_attributes,
    location,
    moto_fixes,
    moved_pickling_internals,
    subclasses,
)

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

#: Anything a ``with`` statement can hold: ``threading.Lock``, ``RLock``, ...
Lock = AbstractContextManager[object]
#: Pickled payload: (module, attribute of the BackendDict, its extra attributes,
#: account → region → backend), one entry per service moto holds.
_Service = tuple[str, str, dict[str, Any], dict[str, dict[str, BaseBackend]]]

logger = logging.getLogger(__name__)

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
    bodies = BodyWriter(bodies_directory(path), _restored_key)
    try:
        dump = _dump_with_retries(lock, bodies)
    except BodyNotSaved as error:
        raise SnapshotError(str(error)) from error
    fsync_directory(bodies.directory)
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
        check_bodies(path, directory, stream)
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


def _dump_with_retries(lock: Lock | None, bodies: BodyWriter) -> _Dump:
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


def _dump(bodies: BodyWriter) -> _Dump:
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
    module, attribute = location(backend_dict)
    accounts = {
        account_id: dict(dict.items(regions)) for account_id, regions in backend_dict.items()
    }
    return module, attribute, extra_attributes(backend_dict), accounts


def _pickled(entries: list[_Service], bodies: BodyWriter) -> bytes:
    buffer = io.BytesIO()
    _SnapshotPickler(buffer, bodies).dump(entries)
    return buffer.getvalue()


def _can_pickle(entry: _Service, bodies: BodyWriter) -> bool:
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
    fsync_directory(path.parent)


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


# --- the names a snapshot refers to (see the module's docstring) --------------------------


def _live_backend_dict(module: str, attribute: str) -> BackendDict[Any]:
    value = getattr(importlib.import_module(module), attribute)
    if not isinstance(value, BackendDict):
        raise SnapshotError(f"{module}.{attribute} is no longer moto's backends")
    return value


def _restored_key(*_arguments: object) -> FakeKey:
    # Only _SnapshotUnpickler can restore a key: it knows where the bodies are.
    raise SnapshotError("a snapshot's object bodies can only be read through load_snapshot")


# --- the pickle ---------------------------------------------------------------------------


def _fixes() -> Mapping[type, Callable[[Any], Reduction]]:
    return moto_fixes(_live_backend_dict)


class _SnapshotPickler(pickle.Pickler):
    """pickle with the fixes above, for this snapshot only (never copyreg's global table)."""

    def __init__(self, file: io.BytesIO, bodies: BodyWriter) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        fixes = dict(_fixes())
        fixes.update(dict.fromkeys(subclasses(FakeKey), bodies.reduce_key))
        # Chained, so what other modules registered with copyreg still applies.
        self.dispatch_table = ChainMap[type, Any](fixes, copyreg.dispatch_table)


class _SnapshotUnpickler(pickle.Unpickler):
    """pickle's loader, restoring each key's body from the snapshot's body directory."""

    def __init__(self, file: io.BytesIO, bodies: Path) -> None:
        super().__init__(file)
        self._bodies = bodies

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, _restored_key.__name__):
            return functools.partial(restore_key, self._bodies)
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
    yield from moved_pickling_internals()
    yield from moved_key_internals()
