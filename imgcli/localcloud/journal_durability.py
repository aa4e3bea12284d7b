"""The local cloud's durability, composed: recovery, the journal layer, snapshots.

``server`` builds one ``DurableState`` per data dir and uses it in this order:

1. ``recover(moto_app, replayers)`` before the server listens: the snapshot, the journal
   replayed (``journal_recovery``), and a new journal generation opened;
2. ``journaling(app)``: the WSGI layer (``journal_layer.Journaling``) the gate calls;
   ``ledger`` is the ``AsyncInvoker``'s event journal and ``call`` journals the changes
   that are not requests (deliveries to on-failure queues);
3. ``resubmit(invoker)``: the events a stop or a crash left unsettled run again;
4. ``close()`` after the server stopped: one last snapshot, and the journal closed.

``replaying`` is true while the journal is replayed, so the server drops the S3 events
moto's wrapped methods report then (they are in the journal already).

**When snapshots are taken.** The journal makes every acknowledged change durable on its
own, so a snapshot is only compaction: it bounds the journal a restart must replay and
the disk it takes. ``SnapshotScheduler`` saves when something changed and either
``SNAPSHOT_INTERVAL_S`` (60 s) passed since the last save or the current generation grew
past ``MAX_JOURNAL_BYTES`` (64 MiB) or ``MAX_JOURNAL_CHANGES`` (5,000 changes), and once
more at stop. A save holds the mutation lock while it pickles the state and writes new
bodies' files (about 0.1 s per thousand objects), so rarer is cheaper while uploads run.
A replay costs about what the request cost (measured: 3,000 uploads of 20 KB, 61 MiB of
journal, replayed in 6.7 s on 2 busy cores), so the caps bound the start-up after a
crash to seconds. The old every-5-seconds save held the lock far more often, for
nothing a crash could now lose.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from imgcli.localcloud import persistence, replay_determinism
from imgcli.localcloud.journal import Fsync, JournalWriter
from imgcli.localcloud.journal_layer import EventLedger, Journaling, WsgiApp
from imgcli.localcloud.journal_recovery import Recovery, Replayer, describe, recover
from imgcli.localcloud.persistence import SnapshotInfo

SNAPSHOT_INTERVAL_S: Final = 60.0
MAX_JOURNAL_BYTES: Final = 64 * 1024 * 1024
MAX_JOURNAL_CHANGES: Final = 5000
SNAPSHOT: Final = "state.pickle"
JOURNAL_DIRECTORY: Final = "journal"

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class Keys(Protocol):
    """Where the HMAC keys come from: ``secret.OwnerKey``."""

    def derived(self, purpose: str) -> bytes: ...


class Resubmits(Protocol):
    """What ``resubmit`` needs of the ``AsyncInvoker``."""

    def resubmit(self, event_id: str, function: str, payload: bytes, *, age_s: float) -> None: ...


class DurableState:
    """A data dir's snapshot and journal, and the layer that keeps them (module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        keys: Keys,
        *,
        interval_s: float = SNAPSHOT_INTERVAL_S,
        max_journal_bytes: int = MAX_JOURNAL_BYTES,
        max_journal_changes: int = MAX_JOURNAL_CHANGES,
        fsync: Fsync = os.fsync,
    ) -> None:
        self.snapshot_path = data_dir / SNAPSHOT
        self.journal_directory = data_dir / JOURNAL_DIRECTORY
        self.journal_directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._snapshot_key = keys.derived("snapshot")
        self._journal_key = keys.derived("journal")
        self._interval_s = interval_s
        self._max_journal_bytes = max_journal_bytes
        self._max_journal_changes = max_journal_changes
        self._fsync = fsync
        #: The one lock every journaled mutation (and a snapshot's pickling) holds.
        self.lock = threading.Lock()
        self.ledger = EventLedger()
        self.replaying = False
        self.recovery: Recovery | None = None
        self._writer: JournalWriter | None = None
        self._layer: Journaling | None = None
        self._scheduler: SnapshotScheduler | None = None
        self._unsaved_replay = False
        self._uninstall_determinism = replay_determinism.install()

    def recover(self, moto_app: WsgiApp, replayers: Mapping[str, Replayer]) -> Recovery:
        """Restore the state into ``moto_app`` and open the journal; what was found."""
        self.replaying = True
        try:
            recovery = recover(
                self.journal_directory,
                snapshot=self.snapshot_path,
                snapshot_key=self._snapshot_key,
                journal_key=self._journal_key,
                app=moto_app,
                replayers=replayers,
            )
        finally:
            self.replaying = False
        self.recovery = recovery
        self._writer = JournalWriter(
            self.journal_directory,
            self._journal_key,
            recovery.next_generation,
            fresh=recovery.fresh,
            fsync=self._fsync,
        )
        self.ledger.attach(self._writer, recovery.pending)
        self._unsaved_replay = recovery.replayed > 0
        self._scheduler = SnapshotScheduler(
            self.save, changed=self.changed, oversized=self.oversized, interval_s=self._interval_s
        )
        return recovery

    def problems(self) -> list[str]:
        """What the start-up could not restore (set aside, or replayed differently), for
        the server to report; empty when all is well."""
        return list(describe(self.recovery)) if self.recovery else []

    def journaling(self, app: WsgiApp) -> Journaling:
        """The WSGI layer journaling ``app``'s state changes; once, after ``recover``."""
        self._layer = Journaling(app, writer=self._opened(), ledger=self.ledger, lock=self.lock)
        return self._layer

    def call(self, name: str, arguments: dict[str, Any], run: Callable[[], _T]) -> _T:
        """``run`` as a journaled change named ``name`` (``Journaling.call``)."""
        if self._layer is None:
            raise RuntimeError("journaling() must come before call()")
        return self._layer.call(name, arguments, run)

    def resubmit(self, invoker: Resubmits) -> int:
        """Queue the events the recovery found unsettled; how many."""
        pending = self.recovery.pending if self.recovery else []
        now = time.time()
        for event in pending:
            invoker.resubmit(
                event.event_id, event.function, event.payload, age_s=now - event.submitted_at
            )
        return len(pending)

    def save(self) -> SnapshotInfo:
        """Snapshot the state at a journal boundary, then drop the generations it holds."""
        writer = self._opened()
        info = persistence.save_snapshot(
            self.snapshot_path,
            key=self._snapshot_key,
            lock=self.lock,
            boundary=lambda: self.ledger.rotate(writer),
        )
        writer.remove_before(info.journal_generation)
        self._unsaved_replay = False
        return info

    def changed(self) -> bool:
        """Whether the state changed since the last snapshot."""
        writer = self._opened()
        return self._unsaved_replay or writer.changes_since_rotation > 0

    def oversized(self) -> bool:
        """Whether the current generation is large enough to replay slowly: snapshot now."""
        writer = self._opened()
        return (
            writer.bytes_since_rotation > self._max_journal_bytes
            or writer.changes_since_rotation > self._max_journal_changes
        )

    def close(self) -> SnapshotInfo | None:
        """The last snapshot (if anything changed), then the journal closed; idempotent."""
        info = self._scheduler.stop() if self._scheduler is not None else None
        if self._writer is not None:
            self._writer.close()
        self._uninstall_determinism()
        return info

    def _opened(self) -> JournalWriter:
        if self._writer is None:
            raise RuntimeError("recover() opens the journal")
        return self._writer


class SnapshotScheduler:
    """Calls ``save`` when ``changed()`` and the interval passed or ``oversized()``; at stop.

    It checks every ``poll_s``. A failed periodic save is logged and tried again at the
    next interval; ``stop`` saves once more if anything changed, and raises if that fails.
    ``clock`` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        save: Callable[[], SnapshotInfo],
        *,
        changed: Callable[[], bool],
        oversized: Callable[[], bool],
        interval_s: float = SNAPSHOT_INTERVAL_S,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._save = save
        self._changed = changed
        self._oversized = oversized
        self._interval_s = interval_s
        self._poll_s = min(poll_s, interval_s)
        self._clock = clock
        self._last = clock()
        self.saves = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imgcli-snapshots", daemon=True)
        self._thread.start()

    def due(self) -> bool:
        if not self._changed():
            return False
        return self._oversized() or self._clock() - self._last >= self._interval_s

    def stop(self) -> SnapshotInfo | None:
        """Stop the periodic saves, then save once more if anything changed; idempotent."""
        if self._stopping.is_set():
            return None
        self._stopping.set()
        self._thread.join()
        return self._saved() if self._changed() else None

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_s):
            if not self.due():
                continue
            try:
                self._saved()
            except Exception:
                logger.exception("could not save the local cloud's snapshot; trying again later")
                self._last = self._clock()

    def _saved(self) -> SnapshotInfo:
        info = self._save()
        self._last = self._clock()
        self.saves += 1
        return info
