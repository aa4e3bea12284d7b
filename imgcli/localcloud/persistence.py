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
object after loading. What changed since the last snapshot is in the journal
(``journal``): a snapshot is taken at a journal generation boundary and records that
generation, and the start-up replays the generations from it onwards
(``journal_recovery``).

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
only after the file has passed every check (HMAC, versions, length, body files): a
corrupt snapshot never touches the running state.

**Atomicity.** The state is pickled to memory (holding the caller's lock only for that,
and for writing new bodies' files, which are fsynced after it is released), then written
to a temporary file in the same directory, fsynced, and renamed over the snapshot, and
the directory is fsynced: a crash at any point leaves either the last good snapshot or
the new one, never a half-written file under the snapshot's name.

**Versioning.** A JSON header before the pickle records the moto version and
``FORMAT_VERSION``. A pickle of moto's internals is only meaningful to the moto that wrote
it, so another version's snapshot is refused, before anything is unpickled, with a
``SnapshotError`` that says what to do (``imgcli local reset``). A missing file means
"nothing saved yet" (``None``).

**Authenticated before anything is unpickled.** Unpickling runs code, so a snapshot
planted in the data dir would run whatever its author chose at the next start. The
first line after ``MAGIC`` is an HMAC-SHA256, keyed by the local cloud's secret
(``secret.OwnerKey.derived("snapshot")``), of the header and the body as stored; it is
checked first. A snapshot that fails it (altered, damaged, or saved under another
secret), and one of the unauthenticated formats 1 and 2 earlier versions wrote, is
renamed aside with its bodies (``state.pickle.rejected-<utc>``) and never loaded:
``load_snapshot`` raises ``SnapshotRejected``, naming the file, and the server starts
empty and says so. A snapshot of another moto, authentic but unreadable here, is still
refused without being moved, so the imgcli that wrote it can read it.

These three modules are the only ones that pickle moto's internals;
``check_moto_internals`` (with each one's probes) and its test fail loudly when a moto
upgrade moves what they rely on.
"""

from __future__ import annotations

import copyreg
import functools
import hashlib
import hmac
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
from imgcli.localcloud.snapshot_errors import SnapshotError, SnapshotRejected
from imgcli.localcloud.snapshot_pickling import (
    Reduction,
    extra_attributes,
    location,
    moto_fixes,
    moved_pickling_internals,
    subclasses,
)

#: Bumped whenever the layout of the header or of the pickled payload changes.
#: Version 1 held the bodies inside the pickle; 2 was not authenticated.
FORMAT_VERSION: Final = 3
#: What this module can load.
READABLE_FORMATS: Final = (3,)
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
    writing) or the load (reading, checking, unpickling and installing) took;
    ``journal_generation`` is the generation the journal started when it was taken.
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
    #: The first journal generation that is not in this snapshot.
    journal_generation: int = 0


def bodies_directory(path: Path) -> Path:
    """Where the snapshot at ``path`` keeps its object bodies."""
    return path.with_name(path.name + ".bodies")


# Saves may come from the scheduler and from a caller at once; one save at a time keeps
# one save's clean-up from removing a file another save has just written or named.
_save_lock = threading.Lock()


def save_snapshot(
    path: Path,
    *,
    key: bytes,
    lock: Lock | None = None,
    boundary: Callable[[], int] | None = None,
) -> SnapshotInfo:
    """Write everything moto holds to ``path``, atomically; return what was written.

    ``key`` authenticates it (see the module docstring). ``lock``, when given, is held
    while the state is read (not while the file is written), so a caller that takes it
    around mutations gets a consistent snapshot; ``boundary``, when given, is called
    under it just before, and returns the journal generation the snapshot records (the
    journal's rotation). A service whose state cannot be pickled at all (KMS keeps
    ``cryptography`` keys) is left out with a warning and listed in
    ``SnapshotInfo.skipped``, rather than costing every other service its state; the
    stack's own services are all covered.
    """
    check_moto_internals()
    with _save_lock:
        return _save(path, key, lock, boundary)


def _save(
    path: Path, key: bytes, lock: Lock | None, boundary: Callable[[], int] | None
) -> SnapshotInfo:
    started = time.perf_counter()
    bodies = BodyWriter(bodies_directory(path), _restored_key)
    try:
        generation, dump = _dump_with_retries(lock, boundary, bodies)
        bodies.sync()
    except BaseException as error:
        bodies.discard_unsynced()
        if isinstance(error, BodyNotSaved):
            raise SnapshotError(str(error)) from error
        raise
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
        "journal_generation": generation,
    }
    header_line = json.dumps(header, sort_keys=True).encode() + b"\n"
    head = MAGIC + _mac(key, header_line, body).encode() + b"\n" + header_line
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
        journal_generation=generation,
    )
    logger.info("saved %s (%d bytes) in %.3f s", path, info.size_bytes, info.seconds)
    return info


def load_snapshot(path: Path, *, key: bytes, lock: Lock | None = None) -> SnapshotInfo | None:
    """Replace moto's state with the snapshot at ``path``; ``None`` if there is none.

    Raises ``SnapshotRejected`` (a ``SnapshotError``) after moving aside a snapshot that
    fails its HMAC under ``key`` or predates authentication; ``SnapshotError`` for one of
    another moto version and for one whose body files are missing or cut short. In all
    these cases the running state is untouched. A snapshot that passes those checks yet
    fails to unpickle (only a change to moto or to this module could cause that) raises
    ``SnapshotError`` too, leaving moto empty rather than half-restored. ``lock``, when
    given, is held while the state is replaced.
    """
    check_moto_internals()
    started = time.perf_counter()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise SnapshotError(f"cannot read the local cloud's snapshot {path}: {error}") from error
    try:
        header, body = _checked_parts(path, data, key)
    except SnapshotRejected as rejected:
        aside = set_aside(path)
        logger.error("%s", SnapshotRejected(path, rejected.reason, aside))
        raise SnapshotRejected(path, rejected.reason, aside) from None
    directory = bodies_directory(path)
    # Authenticated: this module wrote it, with the owner's secret.
    stream = io.BytesIO(body)
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
        journal_generation=int(header["journal_generation"]),
    )
    logger.info("restored %s (%d bytes) in %.3f s", path, info.size_bytes, info.seconds)
    return info


def set_aside(path: Path) -> Path:
    """Rename ``path`` (and its bodies directory) to ``<name>.rejected-<utc>``; the new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.name}.rejected-{stamp}")
    path.replace(aside)
    bodies = bodies_directory(path)
    if bodies.exists():
        bodies.replace(bodies_directory(aside))
    fsync_directory(path.parent)
    return aside


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems = _moved_internals_once()
    if problems:
        raise MotoInternalsChanged(
            "imgcli's snapshots need moto internals that moved: " + "; ".join(problems)
        )


# --- writing ------------------------------------------------------------------------------


def _dump_with_retries(
    lock: Lock | None, boundary: Callable[[], int] | None, bodies: BodyWriter
) -> tuple[int, _Dump]:
    with lock or nullcontext():
        generation = boundary() if boundary is not None else 0
        for attempt in range(1, DUMP_ATTEMPTS + 1):
            try:
                with backend_lock:
                    bodies.named.clear()
                    return generation, _dump(bodies)
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
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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


def _checked_parts(path: Path, data: bytes, key: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the pickled body, once both are known to be whole and ours."""
    reset_hint = "run `imgcli local reset` to discard it and start empty"
    if not data.startswith(MAGIC):
        raise SnapshotRejected(path, "it is not a local cloud snapshot")
    first = data.find(b"\n", len(MAGIC))
    second = data.find(b"\n", first + 1) if first >= 0 else -1
    if first < 0 or second < 0:
        raise SnapshotRejected(path, "its header is cut short")
    mac, header_line, body = (
        data[len(MAGIC) : first],
        data[first + 1 : second + 1],
        data[second + 1 :],
    )
    if mac.startswith(b"{"):  # formats 1 and 2: the header where the HMAC now is
        raise SnapshotRejected(path, "an earlier imgcli saved it without authentication")
    if not hmac.compare_digest(mac, _mac(key, header_line, body).encode()):
        raise SnapshotRejected(path, "it fails its HMAC (altered, damaged or another secret's)")
    try:
        header = json.loads(header_line)
        moto_version = header["moto"]
        format_version = header["format"]
        expected_bytes = header["body_bytes"]
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{path} has a damaged header ({error}); {reset_hint}") from error
    if moto_version != MOTO_VERSION or format_version not in READABLE_FORMATS:
        raise SnapshotError(
            f"{path} was saved by moto {moto_version} (snapshot format {format_version}), "
            f"but this imgcli runs moto {MOTO_VERSION} (format {FORMAT_VERSION}) and cannot "
            f"read it; {reset_hint}, or use the imgcli version that saved it"
        )
    if len(body) != expected_bytes:
        raise SnapshotError(f"{path} is {len(body)} of {expected_bytes} bytes; {reset_hint}")
    return header, body


def _mac(key: bytes, header_line: bytes, body: bytes) -> str:
    digest = hmac.new(key, header_line, hashlib.sha256)
    digest.update(body)
    return digest.hexdigest()


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
