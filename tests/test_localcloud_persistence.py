"""Saving and loading the local cloud's snapshot, proved through boto3 against moto.

What makes a snapshot safe to rely on: a load restores into a moto server already
serving, writes are atomic, another moto's or a damaged snapshot is refused without
touching the running state, a service pickle cannot handle is skipped, a save reads the
state under the caller's lock; then the scheduler, and the moto internals the snapshot
relies on. The round trip is in ``test_localcloud_snapshot_pickling``, the object bodies'
tests in ``test_localcloud_snapshot_bodies``.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import persistence
from imgcli.localcloud.persistence import SnapshotScheduler
from imgcli.localcloud.snapshot_errors import SnapshotError
from tests.localcloud_snapshots import client, rewrite_body, rewrite_header, wipe_moto


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "data" / "state.pickle"


def test_a_running_server_serves_the_loaded_state(snapshot: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3, apigateway = client("s3", endpoint), client("apigatewayv2", endpoint)
        s3.create_bucket(Bucket="served")
        s3.put_object(Bucket="served", Key="a b.jpg", Body=b"jpeg")
        api_id = apigateway.create_api(Name="imgcli", ProtocolType="HTTP")["ApiId"]
        persistence.save_snapshot(snapshot)
        s3.delete_object(Bucket="served", Key="a b.jpg")
        apigateway.delete_api(ApiId=api_id)

        persistence.load_snapshot(snapshot)

        # The same clients, on the same server, see the saved state again.
        assert s3.get_object(Bucket="served", Key="a b.jpg")["Body"].read() == b"jpeg"
        assert apigateway.get_api(ApiId=api_id)["Name"] == "imgcli"
    finally:
        server.stop()
        wipe_moto()


# --- safety -------------------------------------------------------------------------------


def test_no_snapshot_loads_nothing(moto_aws: None, snapshot: Path) -> None:
    client("s3").create_bucket(Bucket="kept")
    assert persistence.load_snapshot(snapshot) is None
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]


def test_a_failed_rename_keeps_the_last_good_snapshot(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="old")
    persistence.save_snapshot(snapshot)
    good = snapshot.read_bytes()
    s3.create_bucket(Bucket="new")

    def crash(source: object, destination: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        persistence.save_snapshot(snapshot)
    monkeypatch.undo()

    assert snapshot.read_bytes() == good
    # No temporary file left behind.
    assert sorted(snapshot.parent.iterdir()) == [snapshot, persistence.bodies_directory(snapshot)]
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["old"]


def test_a_temporary_file_left_by_a_killed_save_is_ignored_then_removed(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    persistence.save_snapshot(snapshot)
    leftover = snapshot.parent / f".{snapshot.name}.abc123.tmp"
    leftover.write_bytes(b"half a snapshot")
    wipe_moto()
    assert persistence.load_snapshot(snapshot) is not None
    persistence.save_snapshot(snapshot)
    assert not leftover.exists()


@pytest.mark.parametrize(
    ("changes", "saved_by"),
    [({"moto": "5.0.0"}, "moto 5.0.0"), ({"format": 999}, "format 999")],
)
def test_another_versions_snapshot_is_refused(
    moto_aws: None, snapshot: Path, changes: dict[str, Any], saved_by: str
) -> None:
    persistence.save_snapshot(snapshot)
    rewrite_header(snapshot, **changes)
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError) as refused:
        persistence.load_snapshot(snapshot)

    message = str(refused.value)
    assert saved_by in message
    assert f"moto {persistence.MOTO_VERSION}" in message
    assert "imgcli local reset" in message
    # Refused before anything was touched.
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["running"]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped byte":
        middle = len(data) // 2 + 100
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not a snapshot":
        path.write_bytes(b"PK\x03\x04 some zip")
    elif how == "header only":
        path.write_bytes(data[: data.index(b"\n", len(persistence.MAGIC)) + 1])
    elif how == "bad header":
        path.write_bytes(persistence.MAGIC + b"{not json\n" + data)


@pytest.mark.parametrize(
    "how", ["truncated", "flipped byte", "empty", "not a snapshot", "header only", "bad header"]
)
def test_a_damaged_snapshot_is_refused_and_the_state_untouched(
    moto_aws: None, snapshot: Path, how: str
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="saved")
    s3.put_object(Bucket="saved", Key="k", Body=b"x" * 50_000)
    persistence.save_snapshot(snapshot)
    damage(snapshot, how)

    with pytest.raises(SnapshotError, match="imgcli local reset"):
        persistence.load_snapshot(snapshot)

    assert s3.get_object(Bucket="saved", Key="k")["Body"].read() == b"x" * 50_000


def test_a_service_that_cannot_be_pickled_is_skipped_not_fatal(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    client("kms").create_key()  # moto keeps a cryptography key object, which pickle refuses

    saved = persistence.save_snapshot(snapshot)
    wipe_moto()
    loaded = persistence.load_snapshot(snapshot)

    assert saved.skipped == ("kms",)
    assert loaded is not None
    assert (loaded.skipped, "s3" in loaded.services) == (("kms",), True)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]
    assert client("kms").list_keys()["Keys"] == []


def test_a_checked_snapshot_that_cannot_be_restored_leaves_moto_empty(
    moto_aws: None, snapshot: Path
) -> None:
    persistence.save_snapshot(snapshot)
    # A whole, correctly checksummed snapshot naming backends moto does not have: what a
    # change to moto's layout under the same version string would look like.
    body = pickle.dumps([("moto.s3.models", "no_such_backends", {}, {})])
    rewrite_body(snapshot, pickle.dumps({}) + body)  # no body files, then the backends
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError, match="imgcli local reset"):
        persistence.load_snapshot(snapshot)

    assert client("s3").list_buckets()["Buckets"] == []


def test_save_reads_the_state_under_the_callers_lock(moto_aws: None, snapshot: Path) -> None:
    lock = threading.Lock()
    finished = threading.Event()

    def save() -> None:
        persistence.save_snapshot(snapshot, lock=lock)
        finished.set()

    with lock:
        saver = threading.Thread(target=save)
        saver.start()
        assert not finished.wait(0.2)
    saver.join(5)
    assert finished.is_set()


# --- the scheduler ------------------------------------------------------------------------

TICK = 0.02


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(TICK / 2)


@pytest.fixture
def scheduler(moto_aws: None, snapshot: Path) -> Iterator[SnapshotScheduler]:
    scheduler = SnapshotScheduler(snapshot, interval_s=TICK)
    yield scheduler
    scheduler.stop()


def test_scheduler_saves_nothing_while_nothing_changes(
    scheduler: SnapshotScheduler, snapshot: Path
) -> None:
    time.sleep(TICK * 10)
    assert (scheduler.saves, snapshot.exists()) == (0, False)
    assert scheduler.stop() is None
    assert not snapshot.exists()


def test_scheduler_saves_a_change_then_settles(
    scheduler: SnapshotScheduler, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="changed")
    scheduler.mark_dirty()
    # One save for the change, one more for a change marked before moto applied it.
    wait_until(lambda: scheduler.saves == 2)
    time.sleep(TICK * 10)
    assert scheduler.saves == 2
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["changed"]


def test_scheduler_saves_once_more_on_stop(moto_aws: None, snapshot: Path) -> None:
    scheduler = SnapshotScheduler(snapshot, interval_s=60)
    client("s3").create_bucket(Bucket="last-second")
    scheduler.mark_dirty()

    info = scheduler.stop()

    assert info is not None
    assert (info.path, scheduler.saves) == (snapshot, 1)
    assert scheduler.stop() is None  # idempotent
    wipe_moto()
    persistence.load_snapshot(snapshot)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["last-second"]


def test_scheduler_retries_a_failed_save(moto_aws: None, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    snapshot = blocker / "state.pickle"  # cannot be written while blocker is a file
    scheduler = SnapshotScheduler(snapshot, interval_s=TICK)
    try:
        scheduler.mark_dirty()
        time.sleep(TICK * 5)
        assert scheduler.saves == 0
        blocker.unlink()
        wait_until(lambda: scheduler.saves >= 1)
        assert snapshot.exists()
    finally:
        scheduler.stop()


# --- the moto internals this relies on ----------------------------------------------------


def test_moto_internals_are_where_persistence_expects_them() -> None:
    persistence.check_moto_internals()
