"""Start-up after a crash: snapshot plus journal, in order, and nothing that fails its check.

moto runs in this process behind the journal layer; ``wipe_moto`` is the crash and
``recovered`` the next start. Each test then looks at moto through plain boto3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import persistence, replay_determinism
from imgcli.localcloud.journal import generation_path, generations
from tests.journal_server import (
    SNAPSHOT_KEY,
    Journaled,
    client,
    journaled_moto,
    moto_app,
    recovered,
    serving,
    wipe_moto,
)


@pytest.fixture(autouse=True)
def determinism() -> Iterator[None]:
    uninstall = replay_determinism.install()
    yield
    uninstall()
    wipe_moto()


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "state.pickle"


def save(moto: Journaled, snapshot: Path, *, remove: bool = True) -> int:
    """A snapshot at a journal boundary, as the scheduler takes it; its generation.

    ``remove=False``: a crash came before the older generations were removed.
    """
    info = persistence.save_snapshot(
        snapshot,
        key=SNAPSHOT_KEY,
        lock=moto.layer.lock,
        boundary=lambda: moto.ledger.rotate(moto.writer),
    )
    if remove:
        moto.writer.remove_before(info.journal_generation)
    return info.journal_generation


def keys(bucket: str = "kept") -> list[str]:
    with serving(moto_app()) as endpoint:
        listed = client("s3", endpoint).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_the_snapshot_then_the_journal_after_it_in_order(tmp_path: Path, snapshot: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
        generation = save(moto, snapshot, remove=False)
        s3.put_object(Bucket="kept", Key="b.jpg", Body=b"b")
        s3.delete_object(Bucket="kept", Key="a.jpg")
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a again")
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert recovery.snapshot is not None
    assert recovery.snapshot.journal_generation == generation == 2
    # Generation 1 (bucket, first a.jpg) is in the snapshot and was not replayed: its
    # CreateBucket would have failed. A crash before its removal left it: it is gone now.
    assert (recovery.replayed, recovery.diverged, recovery.problems) == (3, 0, [])
    assert [number for number, _ in generations(tmp_path)] == [2]
    assert recovery.next_generation == 3
    with serving(moto_app()) as endpoint:
        body = client("s3", endpoint).get_object(Bucket="kept", Key="a.jpg")["Body"].read()
    assert (keys(), body) == (["a.jpg", "b.jpg"], b"a again")


def test_a_torn_last_record_is_cut_and_the_rest_replayed(tmp_path: Path, snapshot: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
    path = generation_path(tmp_path, 1)
    whole = path.read_bytes()
    with journaled_moto(tmp_path, generation=2) as moto:
        client("s3", moto.endpoint).put_object(Bucket="kept", Key="b.jpg", Body=b"b")
    path.write_bytes(whole[:-3])  # the put of a.jpg was being written when it crashed
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert (recovery.problems, recovery.diverged) == ([], 0)
    assert keys() == ["b.jpg"]


def tamper(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_altered_record_sets_the_rest_of_the_journal_aside(
    tmp_path: Path, snapshot: Path
) -> None:
    path = generation_path(tmp_path, 1)
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
        altered_at = path.stat().st_size + 40
        s3.put_object(Bucket="kept", Key="b.jpg", Body=b"b")
        s3.put_object(Bucket="kept", Key="c.jpg", Body=b"c")
        generation = moto.ledger.rotate(moto.writer)
        s3.put_object(Bucket="kept", Key="d.jpg", Body=b"d")
    tamper(path, altered_at)
    original = path.read_bytes()
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert keys() == ["a.jpg"]  # what came before the altered record, and nothing after
    assert len(recovery.problems) == 2
    assert "fails its HMAC" in recovery.problems[0]
    first, later = recovery.set_aside
    assert first.read_bytes() == original
    assert later.name.startswith(generation_path(tmp_path, generation).name + ".rejected-")
    assert recovery.next_generation == 2
    # The prefix stays in place, so a second start finds the same state without a word.
    wipe_moto()
    again = recovered(tmp_path, snapshot)
    assert (keys(), again.problems) == (["a.jpg"], [])


def test_a_missing_generation_stops_the_replay(tmp_path: Path, snapshot: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        moto.ledger.rotate(moto.writer)
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
        moto.ledger.rotate(moto.writer)
        s3.put_object(Bucket="kept", Key="b.jpg", Body=b"b")
    generation_path(tmp_path, 2).unlink()
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert keys() == []
    assert recovery.problems == [
        f"{generation_path(tmp_path, 3)}: journal generation 2 is missing; "
        f"set aside as {recovery.set_aside[0]}"
    ]


def test_a_journal_whose_snapshot_is_missing_is_set_aside(tmp_path: Path, snapshot: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        save(moto, snapshot)
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
    snapshot.unlink()
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert "follows a snapshot that is missing" in recovery.problems[0]
    assert (recovery.replayed, generations(tmp_path)) == (0, [])


@pytest.mark.parametrize("how", ["altered", "older format", "another secret"])
def test_a_rejected_snapshot_is_set_aside_with_its_journal(
    tmp_path: Path, snapshot: Path, how: str
) -> None:
    with journaled_moto(tmp_path) as moto:
        s3 = client("s3", moto.endpoint)
        s3.create_bucket(Bucket="kept")
        save(moto, snapshot)
        s3.put_object(Bucket="kept", Key="a.jpg", Body=b"a")
    if how == "altered":
        tamper(snapshot, len(snapshot.read_bytes()) - 10)
    elif how == "older format":
        _as_format_2(snapshot)
    else:
        persistence.save_snapshot(snapshot, key=b"another secret")
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    assert recovery.snapshot is None and recovery.replayed == 0
    assert not snapshot.exists() and generations(tmp_path) == []
    snapshot_aside, journal_aside = recovery.set_aside
    assert snapshot_aside.name.startswith("state.pickle.rejected-")
    assert persistence.bodies_directory(snapshot_aside).is_dir()
    assert journal_aside.name.startswith("journal.00000000000000000002.rejected-")
    assert "was not loaded" in recovery.problems[0]
    with serving(moto_app()) as endpoint:
        assert client("s3", endpoint).list_buckets()["Buckets"] == []


def _as_format_2(snapshot: Path) -> None:
    """The snapshot as imgcli wrote it before authentication: the header where the MAC is."""
    magic, _, header, body = snapshot.read_bytes().split(b"\n", 3)
    fields = json.loads(header) | {"format": 2}
    snapshot.write_bytes(magic + b"\n" + json.dumps(fields).encode() + b"\n" + body)


def test_unsettled_events_survive_rotations_and_come_back(tmp_path: Path, snapshot: Path) -> None:
    with journaled_moto(tmp_path) as moto:
        ledger = moto.ledger
        ledger.submitted("carried", "save", b'{"n": 1}')
        ledger.submitted("settled", "save", b'{"n": 2}')
        save(moto, snapshot)
        ledger.finished("settled")
        ledger.submitted("late", "index", b'{"n": 3}')
        ledger.finished("carried")
        ledger.submitted("resumed", "save", b'{"n": 4}')
    wipe_moto()

    recovery = recovered(tmp_path, snapshot)

    pending = {event.event_id: (event.function, event.payload) for event in recovery.pending}
    assert pending == {"late": ("index", b'{"n": 3}'), "resumed": ("save", b'{"n": 4}')}


def test_a_journaled_call_is_replayed_with_its_arguments(tmp_path: Path, snapshot: Path) -> None:
    from moto.moto_api._internal import mock_random

    made: list[Any] = []
    with journaled_moto(tmp_path) as moto:
        made.append(moto.layer.call("remember", {"n": 7}, lambda: mock_random.uuid4()))
    wipe_moto()

    def replay(arguments: dict[str, Any]) -> None:
        made.append((arguments, mock_random.uuid4()))

    recovery = recovered(tmp_path, snapshot, {"remember": replay})

    assert (recovery.replayed, made[1]) == (1, ({"n": 7}, made[0]))
