"""The local cloud's write-ahead journal: files of authenticated records, group-committed.

Every request that changes the local cloud's state is appended here before its client
hears it succeeded (``journal_layer`` decides what to append, ``journal_recovery`` reads
it back after a crash). This module is only the file format and the writer.

**Generations.** The journal is a sequence of files ``journal.<generation>`` in the data
dir. A snapshot is taken at a generation boundary (``JournalWriter.rotate``): from then
on, the snapshot plus the generations from its own onwards are the whole state, and the
older files are removed once the snapshot is safely on disk. Each process start opens a
new generation, so a file is never appended to after a crash (its torn tail, if any,
stays a tail). Every generation file is created with its first record at once, so the
generations after a snapshot are contiguous and a missing one is noticed.

**Framing.** A file is ``MAGIC`` and then records; a record is its payload's length
(4 bytes), an HMAC-SHA256 (32 bytes) and the payload. The HMAC covers the previous
record's HMAC and the payload (the first record's "previous" is derived from the
generation number), so records cannot be altered, reordered, dropped from the middle or
moved to another generation without the check failing. The key is derived from the
local cloud's secret (``secret.OwnerKey.derived("journal")``). A payload is a JSON header
(kind and fields, its length first) and an optional blob (a request body): no pickle.

**Reading.** ``read_generation`` stops at the first record that is incomplete (a crash
mid-append: a *torn tail*, normal, cut off) or whose HMAC fails (*rejected*: altered or
damaged; ``journal_recovery`` sets the rest aside). Nothing is interpreted before its
HMAC has passed.

**Group commit.** ``append`` writes a record with one ``os.write`` (a killed process
loses nothing the kernel has: ``kill -9`` is survived from there on) and returns its
sequence number; ``wait_durable`` returns once an ``fsync`` has covered it. Waiters take
turns as leader: one fsyncs everything appended so far while the others wait on a
condition, so concurrent requests share one fsync. Callers wait outside the global
mutation lock, so the next request is applied while this one's fsync runs.

Everything here is created 0600 (files) in a directory the server keeps 0700.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgcli.localcloud.snapshot_bodies import fsync_directory

MAGIC: Final = b"imgcli-localcloud-journal 1\n"
FILE_PREFIX: Final = "journal."
GENERATION_DIGITS: Final = 20
_FILE_PATTERN: Final = re.compile(rf"{re.escape(FILE_PREFIX)}(\d{{{GENERATION_DIGITS}}})")
_LENGTH: Final = struct.Struct(">I")
_MAC_BYTES: Final = 32
#: A record's payload can't be larger than this (far above any request the server takes).
MAX_PAYLOAD_BYTES: Final = 2**31

logger = logging.getLogger(__name__)

#: ``fsync`` for a file descriptor; tests inject one that counts.
Fsync = Callable[[int], None]


@dataclass(frozen=True)
class Record:
    """One journal record: its kind, its JSON fields and an optional blob (a body)."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    blob: bytes = b""

    def encode(self) -> bytes:
        header = json.dumps({"kind": self.kind, **self.fields}, separators=(",", ":")).encode()
        return _LENGTH.pack(len(header)) + header + self.blob

    @classmethod
    def decode(cls, payload: bytes) -> Record:
        (length,) = _LENGTH.unpack_from(payload)
        header = json.loads(payload[_LENGTH.size : _LENGTH.size + length])
        kind = header.pop("kind")
        return cls(str(kind), header, payload[_LENGTH.size + length :])


def generation_path(directory: Path, generation: int) -> Path:
    return directory / f"{FILE_PREFIX}{generation:0{GENERATION_DIGITS}d}"


def generations(directory: Path) -> list[tuple[int, Path]]:
    """The journal files in ``directory``, by generation."""
    try:
        names = os.listdir(directory)  # noqa: PTH208 - names only
    except FileNotFoundError:
        return []
    found = [
        (int(match[1]), directory / name)
        for name in names
        if (match := _FILE_PATTERN.fullmatch(name))
    ]
    return sorted(found)


def _chain_start(key: bytes, generation: int) -> bytes:
    return hmac.new(key, MAGIC + generation.to_bytes(8, "big"), hashlib.sha256).digest()


def _mac(key: bytes, previous: bytes, payload: bytes) -> bytes:
    return hmac.new(key, previous + payload, hashlib.sha256).digest()


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRead:
    """What one journal file holds.

    ``records`` are the whole, authentic records from its start (the first one is its
    ``start`` record); ``valid_bytes`` is where they end. ``torn`` says the file ends in
    an incomplete record (cut off); ``rejected`` says why the record at ``valid_bytes``
    failed its check (then it and everything after it must not be used).
    """

    records: list[Record]
    valid_bytes: int
    torn: bool = False
    rejected: str | None = None


def read_generation(path: Path, key: bytes, generation: int) -> GenerationRead:
    """Read and authenticate the journal file ``path`` of ``generation``."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            return GenerationRead([], 0, torn=True)  # created, killed before its start
        return GenerationRead([], 0, rejected="it is not a journal file")
    records: list[Record] = []
    previous = _chain_start(key, generation)
    offset = len(MAGIC)
    header = _LENGTH.size + _MAC_BYTES
    while offset < len(data):
        if len(data) - offset < header:
            return GenerationRead(records, offset, torn=True)
        (length,) = _LENGTH.unpack_from(data, offset)
        end = offset + header + length
        if end > len(data):
            return GenerationRead(records, offset, torn=True)
        mac = data[offset + _LENGTH.size : offset + header]
        payload = data[offset + header : end]
        expected = _mac(key, previous, payload)
        if not hmac.compare_digest(mac, expected):
            return GenerationRead(records, offset, rejected="a record fails its HMAC")
        try:
            record = Record.decode(payload)
        except (ValueError, KeyError, struct.error) as error:
            return GenerationRead(
                records, offset, rejected=f"an authentic record is unreadable ({error})"
            )
        if not records and (
            record.kind != "start" or record.fields.get("generation") != generation
        ):
            return GenerationRead(records, offset, rejected="its first record is not its own start")
        records.append(record)
        previous = mac
        offset = end
    return GenerationRead(records, offset)


# --- writing ------------------------------------------------------------------------------


class JournalWriter:
    """Appends records to the current generation; rotates; fsyncs with group commit.

    ``generation`` is the first file this writer creates (it must not exist); ``fresh``
    says no state lies behind it (a new data dir, or nothing could be restored), which
    its start record notes, so a recovery can tell it from one whose snapshot is
    missing. ``fsync`` is injectable so tests count syncs. Sequence numbers count
    records across generations, from 1.
    """

    def __init__(
        self,
        directory: Path,
        key: bytes,
        generation: int,
        *,
        fresh: bool = False,
        fsync: Fsync = os.fsync,
    ) -> None:
        self.directory = directory
        self._key = key
        self._fsync = fsync
        self._append_lock = threading.Lock()
        self._cond = threading.Condition()
        self._appended = 0
        self._durable = 0
        self._syncing = False
        self._closed = False
        self.generation = generation
        self.bytes_since_rotation = 0
        self.changes_since_rotation = 0
        self._fd, self._previous = self._create(generation, [], fresh=fresh)

    # appending

    def append(self, *records: Record, change: bool = True) -> int:
        """Write ``records`` (in one write) and return the last one's sequence number.

        ``change`` says they change the state (a snapshot is due), as opposed to
        bookkeeping of events.
        """
        with self._append_lock:
            if self._closed:
                raise JournalClosed("the journal is closed")
            data, self._previous = self._frame(records, self._previous)
            _write_all(self._fd, data)
            self._appended += len(records)
            self.bytes_since_rotation += len(data)
            if change:
                self.changes_since_rotation += len(records)
            return self._appended

    @property
    def appended(self) -> int:
        return self._appended

    def wait_durable(self, sequence: int) -> None:
        """Return once an fsync has covered record ``sequence`` (group commit)."""
        with self._cond:
            while self._durable < sequence:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target, descriptor = self._appended, self._fd
                self._cond.release()
                try:
                    self._fsync(descriptor)
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._durable = max(self._durable, target)

    # generations

    def rotate(self, carried: Iterable[Record] = ()) -> int:
        """Start the next generation, opening it with ``carried``; return its number.

        Everything appended before is fsynced first, and the new file, with its
        ``carried`` records, is fsynced before this returns: a snapshot taken now plus
        the generations from the returned one onwards hold the whole state.
        """
        carried = list(carried)
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._syncing = True  # no leader fsyncs a descriptor about to close
        try:
            with self._append_lock:
                self._fsync(self._fd)
                generation = self.generation + 1
                fd, previous = self._create(generation, carried)
                os.close(self._fd)
                self._fd, self._previous, self.generation = fd, previous, generation
                self._appended += len(carried)
                durable = self._appended
                self.bytes_since_rotation = 0
                self.changes_since_rotation = 0
        finally:
            with self._cond:
                self._syncing = False
                self._cond.notify_all()
        with self._cond:
            self._durable = max(self._durable, durable)
        return generation

    def remove_before(self, generation: int) -> None:
        """Remove the files of the generations before ``generation`` (a snapshot has them)."""
        for number, path in generations(self.directory):
            if number < generation:
                path.unlink(missing_ok=True)
        fsync_directory(self.directory)

    def close(self) -> None:
        """fsync what was appended and close; later appends raise ``JournalClosed``."""
        with self._append_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._fsync(self._fd)
            finally:
                os.close(self._fd)

    # internals

    def _frame(self, records: Iterable[Record], previous: bytes) -> tuple[bytes, bytes]:
        parts: list[bytes] = []
        for record in records:
            payload = record.encode()
            if len(payload) >= MAX_PAYLOAD_BYTES:
                raise ValueError(f"a journal record of {len(payload)} bytes is too large")
            previous = _mac(self._key, previous, payload)
            parts += [_LENGTH.pack(len(payload)), previous, payload]
        return b"".join(parts), previous

    def _create(
        self, generation: int, carried: list[Record], *, fresh: bool = False
    ) -> tuple[int, bytes]:
        path = generation_path(self.directory, generation)
        start = Record("start", {"generation": generation, "fresh": fresh})
        data, previous = self._frame([start, *carried], _chain_start(self._key, generation))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            _write_all(fd, MAGIC + data)
            self._fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        fsync_directory(self.directory)
        return fd, previous


class JournalClosed(RuntimeError):
    """An append after ``close``: the server is past its last snapshot."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def iter_records(reads: Iterable[GenerationRead]) -> Iterator[Record]:
    """The records of several generations in order, without their ``start`` records."""
    for read in reads:
        yield from (record for record in read.records if record.kind != "start")
