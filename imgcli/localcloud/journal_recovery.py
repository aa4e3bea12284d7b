"""Start-up after a stop or a crash: the snapshot, then the journal, then the events.

``recover`` runs before the server accepts a connection:

1. ``persistence.load_snapshot`` puts the last snapshot into moto. One that fails its
   HMAC (or predates it) is set aside, never loaded; the journal then describes changes
   to a state that is gone, so it is set aside too and the local cloud starts empty.
2. The journal generations from the snapshot's own onwards are read in order and each
   record replayed straight into moto (no gate, no journal, no S3 events: the events a
   request caused are in its record), with the draws it noted
   (``replay_determinism.replaying``), so ids and times come out as they were. Older
   generation files, left by a crash between a snapshot and their removal, are removed.
3. Events without a ``done`` record are returned, for the server to resubmit.

A torn last record (a crash mid-append; its client never heard back) is cut off. A
record that fails its HMAC, or a generation missing from the sequence, means the journal
was altered or damaged: from there on nothing is replayed, and the rest of that file and
every later one are set aside (``<file>.rejected-<utc>``, the file as found), named in
``Recovery.problems`` and in the log. A replayed request that does not answer 2xx (only a
bug, in moto or here, could cause that) is counted in ``Recovery.diverged`` and logged.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from imgcli.localcloud import persistence, replay_determinism
from imgcli.localcloud.journal import (
    GenerationRead,
    Record,
    generations,
    read_generation,
)
from imgcli.localcloud.journal_layer import (
    CALL,
    DONE,
    EVENT,
    REQUEST,
    PendingEvent,
    WsgiApp,
    draws_of,
    events_of,
)
from imgcli.localcloud.persistence import SnapshotInfo
from imgcli.localcloud.snapshot_bodies import fsync_directory
from imgcli.localcloud.snapshot_errors import SnapshotRejected

#: The generation a fresh data dir's journal starts with.
FIRST_GENERATION: Final = 1

#: Runs a journaled ``call`` again, given its arguments.
Replayer = Callable[[dict[str, Any]], object]

logger = logging.getLogger(__name__)


@dataclass
class Recovery:
    """What ``recover`` found and did.

    ``next_generation`` is the journal generation the server opens now; ``fresh`` says
    nothing was restored (no snapshot, no journal), which that generation records.
    """

    snapshot: SnapshotInfo | None = None
    next_generation: int = FIRST_GENERATION
    fresh: bool = True
    replayed: int = 0
    diverged: int = 0
    pending: list[PendingEvent] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def recover(
    directory: Path,
    *,
    snapshot: Path,
    snapshot_key: bytes,
    journal_key: bytes,
    app: WsgiApp,
    replayers: Mapping[str, Replayer],
) -> Recovery:
    """Restore the snapshot and replay the journal in ``directory`` into ``app`` (moto)."""
    recovery = Recovery()
    files = generations(directory)
    try:
        recovery.snapshot = persistence.load_snapshot(snapshot, key=snapshot_key)
    except SnapshotRejected as rejected:
        _reject(recovery, str(rejected), rejected.set_aside_as)
        for _, path in files:
            _reject(recovery, f"{path} records changes to that snapshot", _set_aside(path))
        recovery.next_generation = max([g for g, _ in files], default=0) + 1
        return recovery
    base = recovery.snapshot.journal_generation if recovery.snapshot else None
    for generation, path in files:
        if base is not None and generation < base:
            path.unlink()  # in the snapshot already; a crash kept it
    kept = [(g, p) for g, p in files if base is None or g >= base]
    recovery.fresh = recovery.snapshot is None
    recovery.next_generation = base or FIRST_GENERATION
    _replay_generations(recovery, kept, base, journal_key, app, replayers)
    return recovery


def _replay_generations(
    recovery: Recovery,
    files: list[tuple[int, Path]],
    base: int | None,
    key: bytes,
    app: WsgiApp,
    replayers: Mapping[str, Replayer],
) -> None:
    events: dict[str, PendingEvent] = {}
    done: set[str] = set()
    expected = base
    for index, (generation, path) in enumerate(files):
        read = read_generation(path, key, generation)
        out_of_sequence = _sequence_problem(read, generation, expected)
        if out_of_sequence is not None:
            for _, later in files[index:]:
                _reject(recovery, f"{later}: {out_of_sequence}", _set_aside(later))
            break
        for record in read.records[1:]:
            _apply(recovery, record, app, replayers, events, done)
        recovery.fresh = False
        recovery.next_generation = generation + 1
        if read.torn:
            logger.info("cut the torn last record of %s (never acknowledged)", path)
        if read.rejected is not None:
            _reject(recovery, f"{path}: {read.rejected}", _set_aside(path, keep=read.valid_bytes))
            for _, later in files[index + 1 :]:
                _reject(recovery, f"{later} follows a rejected journal", _set_aside(later))
            break
        expected = generation + 1
    recovery.pending = [event for event_id, event in events.items() if event_id not in done]
    if recovery.diverged:
        logger.error("%d journaled changes did not replay as they were made", recovery.diverged)
    if recovery.replayed or recovery.pending:
        logger.info(
            "replayed %d journaled changes; %d events to resume",
            recovery.replayed,
            len(recovery.pending),
        )


def _sequence_problem(read: GenerationRead, generation: int, expected: int | None) -> str | None:
    """Why this generation cannot follow the state restored so far, if it cannot."""
    if expected is not None and generation != expected:
        return f"journal generation {expected} is missing"
    start = read.records[0].fields if read.records else {}
    if expected is None and start and not start.get("fresh"):
        return f"journal generation {generation} follows a snapshot that is missing"
    return None


def _apply(
    recovery: Recovery,
    record: Record,
    app: WsgiApp,
    replayers: Mapping[str, Replayer],
    events: dict[str, PendingEvent],
    done: set[str],
) -> None:
    if record.kind == DONE:
        done.add(str(record.fields["id"]))
        return
    if record.kind in (REQUEST, CALL):
        ok = (
            _replay_request(app, record)
            if record.kind == REQUEST
            else _replay_call(replayers, record)
        )
        recovery.replayed += 1
        recovery.diverged += not ok
    elif record.kind != EVENT:
        logger.warning("skipped a journal record of unknown kind %r", record.kind)
        return
    events.update((event.event_id, event) for event in events_of(record))


def _replay_request(app: WsgiApp, record: Record) -> bool:
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **record.fields["environ"],
        "wsgi.input": io.BytesIO(record.blob),
    }
    status: list[str] = []

    def start_response(status_line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(status_line)

    described = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
    try:
        with replay_determinism.replaying(draws_of(record)):
            for _ in app(environ, start_response):
                pass
    except Exception:
        logger.exception("replaying %s failed", described)
        return False
    if status and status[-1][:1] == "2":
        return True
    logger.warning("replaying %s answered %s; it succeeded when it was made", described, status)
    return False


def _replay_call(replayers: Mapping[str, Replayer], record: Record) -> bool:
    name = str(record.fields["name"])
    replayer = replayers.get(name)
    if replayer is None:
        logger.warning("no replayer for the journaled call %r", name)
        return False
    try:
        with replay_determinism.replaying(draws_of(record)):
            replayer(dict(record.fields["arguments"]))
    except Exception:
        logger.exception("replaying the call %r failed", name)
        return False
    return True


def _reject(recovery: Recovery, problem: str, aside: Path | None) -> None:
    if aside is not None:
        recovery.set_aside.append(aside)
        problem = f"{problem}; set aside as {aside}"
    recovery.problems.append(problem)
    logger.error("not restored: %s", problem)


def _set_aside(path: Path, *, keep: int = 0) -> Path:
    """Move ``path`` aside as found; when ``keep`` > 0, its first ``keep`` bytes stay."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = path.with_name(f"{path.name}.rejected-{stamp}")
    if keep <= 0:
        path.replace(aside)
    else:
        os.link(path, aside)
        temporary = path.with_name(f".{path.name}.tmp")
        data = path.read_bytes()[:keep]
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    fsync_directory(path.parent)
    return aside


def describe(recovery: Recovery) -> Iterable[str]:
    """Lines for the log and the server's status: what a start-up could not restore."""
    yield from recovery.problems
    if recovery.diverged:
        yield f"{recovery.diverged} journaled changes did not replay as they were made"
