"""Saving and loading the local cloud's snapshot, proved through boto3 against moto.

What makes a snapshot safe to rely on: a load restores into a moto server already
serving, writes are atomic, another moto's snapshot is refused and a damaged one set aside
without touching the running state, a service pickle cannot handle is skipped, a save
reads the state under the caller's lock (and calls the journal boundary there), nothing
is unpickled before the HMAC passes; then the moto internals the snapshot relies on. The
round trip is in ``test_localcloud_snapshot_pickling``, the object bodies' tests in
``test_localcloud_snapshot_bodies``, the scheduler's in ``test_localcloud_journal_durability``.
"""

from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import persistence
from imgcli.localcloud.snapshot_errors import SnapshotError, SnapshotRejected
from tests.localcloud_snapshots import KEY, client, rewrite_body, rewrite_header, wipe_moto


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
        persistence.save_snapshot(snapshot, key=KEY)
        s3.delete_object(Bucket="served", Key="a b.jpg")
        apigateway.delete_api(ApiId=api_id)

        persistence.load_snapshot(snapshot, key=KEY)

        # The same clients, on the same server, see the saved state again.
        assert s3.get_object(Bucket="served", Key="a b.jpg")["Body"].read() == b"jpeg"
        assert apigateway.get_api(ApiId=api_id)["Name"] == "imgcli"
    finally:
        server.stop()
        wipe_moto()


# --- safety -------------------------------------------------------------------------------


def test_no_snapshot_loads_nothing(moto_aws: None, snapshot: Path) -> None:
    client("s3").create_bucket(Bucket="kept")
    assert persistence.load_snapshot(snapshot, key=KEY) is None
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]


def test_a_failed_rename_keeps_the_last_good_snapshot(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="old")
    persistence.save_snapshot(snapshot, key=KEY)
    good = snapshot.read_bytes()
    s3.create_bucket(Bucket="new")

    def crash(source: object, destination: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        persistence.save_snapshot(snapshot, key=KEY)
    monkeypatch.undo()

    assert snapshot.read_bytes() == good
    # No temporary file left behind.
    assert sorted(snapshot.parent.iterdir()) == [snapshot, persistence.bodies_directory(snapshot)]
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["old"]


def test_a_temporary_file_left_by_a_killed_save_is_ignored_then_removed(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    persistence.save_snapshot(snapshot, key=KEY)
    leftover = snapshot.parent / f".{snapshot.name}.abc123.tmp"
    leftover.write_bytes(b"half a snapshot")
    wipe_moto()
    assert persistence.load_snapshot(snapshot, key=KEY) is not None
    persistence.save_snapshot(snapshot, key=KEY)
    assert not leftover.exists()


@pytest.mark.parametrize(
    ("changes", "saved_by"),
    [({"moto": "5.0.0"}, "moto 5.0.0"), ({"format": 999}, "format 999")],
)
def test_another_versions_snapshot_is_refused(
    moto_aws: None, snapshot: Path, changes: dict[str, Any], saved_by: str
) -> None:
    persistence.save_snapshot(snapshot, key=KEY)
    rewrite_header(snapshot, **changes)
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError) as refused:
        persistence.load_snapshot(snapshot, key=KEY)

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
        path.write_bytes(data[: data.index(b"\n", data.index(b"\n", len(persistence.MAGIC)) + 1)])
    elif how == "altered header":
        path.write_bytes(data.replace(b'"skipped": []', b'"skipped": ["s3"]'))
    elif how == "format 2":  # what imgcli wrote before snapshots were authenticated
        _, _, header, body = data.split(b"\n", 3)
        path.write_bytes(persistence.MAGIC + header + body)


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "flipped byte",
        "empty",
        "not a snapshot",
        "header only",
        "altered header",
        "format 2",
    ],
)
def test_a_snapshot_that_fails_its_check_is_set_aside_and_the_state_untouched(
    moto_aws: None, snapshot: Path, how: str
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="saved")
    s3.put_object(Bucket="saved", Key="k", Body=b"x" * 50_000)
    persistence.save_snapshot(snapshot, key=KEY)
    damage(snapshot, how)
    damaged = snapshot.read_bytes()

    with pytest.raises(SnapshotRejected) as rejected:
        persistence.load_snapshot(snapshot, key=KEY)

    aside = rejected.value.set_aside_as
    assert aside is not None and aside.name.startswith("state.pickle.rejected-")
    assert str(aside) in str(rejected.value)
    assert (aside.read_bytes(), snapshot.exists()) == (damaged, False)
    assert persistence.bodies_directory(aside).is_dir()
    assert s3.get_object(Bucket="saved", Key="k")["Body"].read() == b"x" * 50_000


def test_a_snapshot_is_only_unpickled_after_its_hmac_passes(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a planted snapshot would be: a pickle that runs code when loaded.
    persistence.save_snapshot(snapshot, key=KEY)
    ran: list[str] = []
    # The first thing a load unpickles (the body files' names, before the backends).
    monkeypatch.setattr(pickle, "load", lambda *args, **kwargs: ran.append("pickle.load"))

    with pytest.raises(SnapshotRejected, match="fails its HMAC"):
        persistence.load_snapshot(snapshot, key=b"somebody else's key")

    assert ran == []


def test_a_service_that_cannot_be_pickled_is_skipped_not_fatal(
    moto_aws: None, snapshot: Path
) -> None:
    client("s3").create_bucket(Bucket="kept")
    client("kms").create_key()  # moto keeps a cryptography key object, which pickle refuses

    saved = persistence.save_snapshot(snapshot, key=KEY)
    wipe_moto()
    loaded = persistence.load_snapshot(snapshot, key=KEY)

    assert saved.skipped == ("kms",)
    assert loaded is not None
    assert (loaded.skipped, "s3" in loaded.services) == (("kms",), True)
    assert [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]] == ["kept"]
    assert client("kms").list_keys()["Keys"] == []


def test_a_checked_snapshot_that_cannot_be_restored_leaves_moto_empty(
    moto_aws: None, snapshot: Path
) -> None:
    persistence.save_snapshot(snapshot, key=KEY)
    # A whole, correctly checksummed snapshot naming backends moto does not have: what a
    # change to moto's layout under the same version string would look like.
    body = pickle.dumps([("moto.s3.models", "no_such_backends", {}, {})])
    rewrite_body(snapshot, pickle.dumps({}) + body)  # no body files, then the backends
    client("s3").create_bucket(Bucket="running")

    with pytest.raises(SnapshotError, match="imgcli local reset"):
        persistence.load_snapshot(snapshot, key=KEY)

    assert client("s3").list_buckets()["Buckets"] == []


def test_save_reads_the_state_under_the_callers_lock(moto_aws: None, snapshot: Path) -> None:
    lock = threading.Lock()
    finished = threading.Event()

    def save() -> None:
        persistence.save_snapshot(snapshot, key=KEY, lock=lock)
        finished.set()

    with lock:
        saver = threading.Thread(target=save)
        saver.start()
        assert not finished.wait(0.2)
    saver.join(5)
    assert finished.is_set()


# --- the moto internals this relies on ----------------------------------------------------


def test_the_boundary_runs_under_the_lock_and_the_snapshot_records_it(
    moto_aws: None, snapshot: Path
) -> None:
    lock = threading.Lock()
    info = persistence.save_snapshot(
        snapshot, key=KEY, lock=lock, boundary=lambda: 7 if lock.locked() else -1
    )
    wipe_moto()
    loaded = persistence.load_snapshot(snapshot, key=KEY)
    assert loaded is not None
    assert (info.journal_generation, loaded.journal_generation) == (7, 7)
    assert snapshot.stat().st_mode & 0o777 == 0o600


def test_moto_internals_are_where_persistence_expects_them() -> None:
    persistence.check_moto_internals()
