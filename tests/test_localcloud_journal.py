"""The journal's files: framing, authentication, torn tails, rotation and group commit.

No moto here: records are written with ``JournalWriter`` and read back with
``read_generation``, and the fsync is a counting double, so group commit is proved by
counting syncs, not by timing them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from imgcli.localcloud.journal import (
    MAGIC,
    JournalClosed,
    JournalWriter,
    Record,
    generation_path,
    generations,
    read_generation,
)

KEY = b"k" * 32


class CountingFsync:
    """An fsync that counts its calls; ``hold`` blocks the next one until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        self.release.clear()

    def __call__(self, descriptor: int) -> None:
        with self._lock:
            self.calls += 1
        self.holding.set()
        self.release.wait(10)
        os.fsync(descriptor)


def records(count: int) -> list[Record]:
    return [Record("request", {"n": n}, os.urandom(n * 7)) for n in range(count)]


def test_records_come_back_as_written(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 1, fresh=True)
    written = records(5)
    for record in written:
        writer.append(record)
    writer.close()

    read = read_generation(generation_path(tmp_path, 1), KEY, 1)

    assert read.records[0] == Record("start", {"generation": 1, "fresh": True})
    assert read.records[1:] == written
    assert (read.torn, read.rejected) == (False, None)
    assert generation_path(tmp_path, 1).stat().st_mode & 0o777 == 0o600


def test_a_torn_last_record_is_cut_wherever_the_crash_fell(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 1)
    written = records(3)
    path = generation_path(tmp_path, 1)
    writer.append(*written[:2])
    before_last = path.stat().st_size
    writer.append(written[2])
    writer.close()
    whole = path.read_bytes()

    for cut in range(before_last + 1, len(whole)):
        path.write_bytes(whole[:cut])
        read = read_generation(path, KEY, 1)
        assert read.records[1:] == written[:2], cut
        assert (read.torn, read.rejected, read.valid_bytes) == (True, None, before_last), cut


def test_a_file_killed_before_its_start_record_is_empty_not_rejected(tmp_path: Path) -> None:
    path = generation_path(tmp_path, 1)
    path.write_bytes(MAGIC[:5])
    assert read_generation(path, KEY, 1).torn


@pytest.mark.parametrize("where", ["first record", "middle record", "last record"])
def test_an_altered_record_is_rejected_with_everything_after_it(tmp_path: Path, where: str) -> None:
    writer = JournalWriter(tmp_path, KEY, 1)
    written = records(4)
    offsets = []
    for record in written:
        offsets.append(generation_path(tmp_path, 1).stat().st_size)
        writer.append(record)
    writer.close()
    path = generation_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    index = {"first record": 0, "middle record": 2, "last record": 3}[where]
    data[offsets[index] + 40] ^= 0x01  # a byte of its payload
    path.write_bytes(bytes(data))

    read = read_generation(path, KEY, 1)

    assert read.records[1:] == written[:index]
    assert read.rejected == "a record fails its HMAC"
    assert read.valid_bytes == offsets[index]


def test_records_cannot_be_reordered_or_moved_to_another_generation(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 1)
    for record in records(3):
        writer.append(record)
    writer.close()
    path = generation_path(tmp_path, 1)

    assert read_generation(path, b"another secret" * 3, 1).rejected == "a record fails its HMAC"
    assert read_generation(path, KEY, 2).rejected == "a record fails its HMAC"
    assert read_generation(path, KEY, 1).rejected is None


def test_rotation_starts_a_generation_with_the_carried_records(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 4)
    writer.append(*records(2))
    carried = [Record("event", {"id": "e1"}, b"payload")]

    assert writer.rotate(carried) == 5
    writer.append(Record("done", {"id": "e1"}))
    writer.close()

    assert [number for number, _ in generations(tmp_path)] == [4, 5]
    new = read_generation(generation_path(tmp_path, 5), KEY, 5)
    assert new.records == [
        Record("start", {"generation": 5, "fresh": False}),
        *carried,
        Record("done", {"id": "e1"}),
    ]
    writer.remove_before(5)
    assert [number for number, _ in generations(tmp_path)] == [5]


def test_changes_and_bytes_are_counted_until_the_rotation(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 1)
    writer.append(Record("event", {"id": "e"}), change=False)
    assert (writer.changes_since_rotation, writer.bytes_since_rotation > 0) == (0, True)
    writer.append(*records(2))
    assert writer.changes_since_rotation == 2
    writer.rotate()
    assert (writer.changes_since_rotation, writer.bytes_since_rotation) == (0, 0)
    writer.close()


def test_concurrent_writers_share_fsyncs(tmp_path: Path) -> None:
    fsync = CountingFsync()
    writer = JournalWriter(tmp_path, KEY, 1, fsync=fsync)
    created = fsync.calls
    threads_count = 16
    fsync.hold()  # the first leader's fsync waits until every record is appended
    appended = threading.Barrier(threads_count + 1)

    def commit(record: Record) -> None:
        sequence = writer.append(record)
        appended.wait()
        writer.wait_durable(sequence)

    threads = [threading.Thread(target=commit, args=(r,)) for r in records(threads_count)]
    for thread in threads:
        thread.start()
    appended.wait()  # all appended; some leader is (or will be) in its fsync
    fsync.holding.wait(10)
    fsync.release.set()
    for thread in threads:
        thread.join(10)

    # The held leader's sync, then at most one more that covers everyone else.
    assert fsync.calls - created <= 2 < threads_count
    read = read_generation(generation_path(tmp_path, 1), KEY, 1)
    assert len(read.records) == threads_count + 1


def test_wait_durable_returns_at_once_for_what_an_fsync_covered(tmp_path: Path) -> None:
    fsync = CountingFsync()
    writer = JournalWriter(tmp_path, KEY, 1, fsync=fsync)
    first = writer.append(Record("request"))
    second = writer.append(Record("request"))
    writer.wait_durable(second)
    calls = fsync.calls
    writer.wait_durable(first)
    assert fsync.calls == calls
    writer.close()


def test_a_closed_journal_takes_no_more_records(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, KEY, 1)
    writer.close()
    with pytest.raises(JournalClosed):
        writer.append(Record("request"))
    writer.close()  # idempotent


def test_a_generation_is_never_written_twice(tmp_path: Path) -> None:
    JournalWriter(tmp_path, KEY, 1).close()
    with pytest.raises(FileExistsError):
        JournalWriter(tmp_path, KEY, 1)
