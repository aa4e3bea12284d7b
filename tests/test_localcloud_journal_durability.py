"""The composed durability: a data dir's recovery, journal layer and snapshots together.

``DurableState`` runs in this process over moto's WSGI app, as the server uses it; a
crash is moto's memory wiped and a new ``DurableState`` on the same data dir. The
scheduler's rules are checked with an injected clock and no ticking thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import replay_determinism
from imgcli.localcloud.journal import generations
from imgcli.localcloud.journal_durability import DurableState, SnapshotScheduler
from imgcli.localcloud.snapshot_errors import SnapshotError
from tests.journal_server import client, moto_app, serving, wipe_moto


class OwnerKey:
    def derived(self, purpose: str) -> bytes:
        return purpose.encode() * 4


class Resubmitted:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes, float]] = []

    def resubmit(self, event_id: str, function: str, payload: bytes, *, age_s: float) -> None:
        self.events.append((event_id, function, payload, age_s))


@pytest.fixture(autouse=True)
def determinism() -> Iterator[None]:
    # Installed here, so a DurableState a test abandons (its crash) leaves nothing behind.
    uninstall = replay_determinism.install()
    yield
    uninstall()
    wipe_moto()


def durable(data_dir: Path) -> DurableState:
    # interval 1 h: nothing saves unless a test asks.
    return DurableState(data_dir, OwnerKey(), interval_s=3600)


def test_a_killed_local_cloud_comes_back_with_its_changes_and_events(tmp_path: Path) -> None:
    first = durable(tmp_path)
    app = moto_app()
    try:
        assert first.recover(app, {}).fresh
        with serving(first.journaling(app)) as endpoint:
            s3 = client("s3", endpoint)
            s3.create_bucket(Bucket="kept")
            s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
            saved = first.save()
            s3.put_object(Bucket="kept", Key="b.jpg", Body=b"b")
            first.ledger.submitted("e1", "save", b'{"Records": []}')
        # killed here: no close, no last snapshot
        wipe_moto()
        second = durable(tmp_path)
        recovery = second.recover(moto_app(), {})
        resubmitted = Resubmitted()
        second.resubmit(resubmitted)
        with serving(moto_app()) as endpoint:
            listed = client("s3", endpoint).list_objects_v2(Bucket="kept")["Contents"]
    finally:
        second.close()

    assert recovery.snapshot is not None
    assert recovery.snapshot.journal_generation == saved.journal_generation == 2
    assert (recovery.replayed, recovery.fresh, recovery.next_generation) == (1, False, 3)
    assert [item["Key"] for item in listed] == ["a.jpg", "b.jpg"]
    [(event_id, function, payload, age_s)] = resubmitted.events
    assert (event_id, function, payload) == ("e1", "save", b'{"Records": []}')
    assert 0 <= age_s < 60


def test_a_snapshot_drops_the_generations_it_holds_and_close_saves_last(tmp_path: Path) -> None:
    state = durable(tmp_path)
    app = moto_app()
    try:
        state.recover(app, {})
        with serving(state.journaling(app)) as endpoint:
            client("s3", endpoint).create_bucket(Bucket="kept")
            assert state.changed()
            state.save()
            assert not state.changed()
            assert [n for n, _ in generations(state.journal_directory)] == [2]
            client("s3", endpoint).create_bucket(Bucket="later")
        last = state.close()
    finally:
        wipe_moto()
    assert last is not None and last.journal_generation == 3
    assert [n for n, _ in generations(state.journal_directory)] == [3]
    assert state.snapshot_path.stat().st_mode & 0o777 == 0o600
    assert state.journal_directory.stat().st_mode & 0o777 == 0o700


def test_what_could_not_be_restored_is_there_to_report(tmp_path: Path) -> None:
    first = durable(tmp_path)
    app = moto_app()
    first.recover(app, {})
    with serving(first.journaling(app)) as endpoint:
        client("s3", endpoint).create_bucket(Bucket="kept")
    first.save()
    assert first.problems() == []
    data = bytearray(first.snapshot_path.read_bytes())
    data[-1] ^= 1
    first.snapshot_path.write_bytes(bytes(data))
    wipe_moto()
    second = durable(tmp_path)
    try:
        second.recover(moto_app(), {})
        problems = second.problems()
    finally:
        second.close()
    assert len(problems) == 2
    assert "state.pickle.rejected-" in problems[0]
    assert "journal.00000000000000000002.rejected-" in problems[1]


def test_a_replay_makes_the_state_due_for_a_snapshot(tmp_path: Path) -> None:
    first = durable(tmp_path)
    app = moto_app()
    try:
        first.recover(app, {})
        with serving(first.journaling(app)) as endpoint:
            client("s3", endpoint).create_bucket(Bucket="kept")
        wipe_moto()
        second = durable(tmp_path)
        second.recover(moto_app(), {})
        assert second.changed()  # the replayed generation is not in a snapshot yet
        second.save()
        assert not second.changed()
    finally:
        second.close()


def test_an_acknowledged_change_waits_for_its_fsync(tmp_path: Path) -> None:
    synced: list[int] = []
    state = DurableState(tmp_path, OwnerKey(), interval_s=3600, fsync=synced.append)
    app = moto_app()
    try:
        state.recover(app, {})
        with serving(state.journaling(app)) as endpoint:
            s3 = client("s3", endpoint)
            s3.create_bucket(Bucket="kept")
            before = len(synced)
            s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
            after_put = len(synced)
            s3.get_object(Bucket="kept", Key="a.jpg")
            after_get = len(synced)
    finally:
        state.close()
        wipe_moto()
    assert (after_put - before, after_get - after_put) == (1, 0)


def test_many_changes_or_bytes_make_a_snapshot_due_before_the_minute(tmp_path: Path) -> None:
    state = DurableState(
        tmp_path, OwnerKey(), interval_s=3600, max_journal_changes=2, max_journal_bytes=10**6
    )
    app = moto_app()
    try:
        state.recover(app, {})
        with serving(state.journaling(app)) as endpoint:
            s3 = client("s3", endpoint)
            s3.create_bucket(Bucket="kept")
            s3.put_object(Bucket="kept", Key="small", Body=b"s")
            assert not state.oversized()
            s3.put_object(Bucket="kept", Key="third change", Body=b"s")
            assert state.oversized()
            state.save()
            s3.put_object(Bucket="kept", Key="big", Body=b"b" * 2 * 10**6)
            assert state.oversized()
    finally:
        state.close()


# --- the scheduler --------------------------------------------------------------------------


class Saves:
    def __init__(self, failures: int = 0) -> None:
        self.count = 0
        self.failures = failures
        self.changed = False
        self.oversized = False

    def save(self) -> Any:  # the scheduler only passes it on
        if self.failures:
            self.failures -= 1
            raise SnapshotError("disk full")
        self.count += 1
        self.changed = False
        return self.count


def scheduler(saves: Saves, now: list[float], **options: Any) -> SnapshotScheduler:
    return SnapshotScheduler(
        saves.save,
        changed=lambda: saves.changed,
        oversized=lambda: saves.oversized,
        interval_s=60,
        clock=lambda: now[0],
        **{"poll_s": 3600.0, **options},
    )


def test_a_snapshot_is_due_when_something_changed_and_a_minute_passed_or_the_journal_grew() -> None:
    saves, now = Saves(), [0.0]
    schedule = scheduler(saves, now)
    try:
        assert not schedule.due()
        saves.changed = True
        assert not schedule.due()
        now[0] = 59.0
        assert not schedule.due()
        saves.oversized = True
        assert schedule.due()
        saves.oversized = False
        now[0] = 60.0
        assert schedule.due()
    finally:
        schedule.stop()


def test_stop_saves_only_what_changed_once() -> None:
    saves, now = Saves(), [0.0]
    schedule = scheduler(saves, now)
    saves.changed = True
    assert schedule.stop() == 1  # type: ignore[comparison-overlap]
    assert schedule.stop() is None
    unchanged = scheduler(Saves(), now)
    assert unchanged.stop() is None


def test_a_failed_save_is_tried_again_later() -> None:
    saves, now = Saves(failures=1), [0.0]
    saves.changed = True
    saves.oversized = True
    schedule = scheduler(saves, now, poll_s=0.01)
    try:
        deadline = time.monotonic() + 10
        while saves.count == 0 and time.monotonic() < deadline:
            now[0] += 61  # each tick a minute later
            time.sleep(0.01)
    finally:
        schedule.stop()
    assert (saves.failures, saves.count) == (0, 1)


def test_a_lock_held_by_a_writer_holds_the_snapshot(tmp_path: Path) -> None:
    state = durable(tmp_path)
    app = moto_app()
    try:
        state.recover(app, {})
        with serving(state.journaling(app)) as endpoint:
            client("s3", endpoint).create_bucket(Bucket="kept")
        finished = threading.Event()

        def save() -> None:
            state.save()
            finished.set()

        with state.lock:
            saver = threading.Thread(target=save)
            saver.start()
            assert not finished.wait(0.2)
        saver.join(10)
        assert finished.is_set()
    finally:
        state.close()
        wipe_moto()
