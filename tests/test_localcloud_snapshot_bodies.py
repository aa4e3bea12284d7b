"""A snapshot's object bodies, proved through boto3 against moto.

Each body is written once, to a file of its own, and kept out of the snapshot; a deleted
object's file goes, a missing or cut-short one is refused before the running state is
touched, a body that cannot be written fails the save, and new bodies are fsynced once the
caller's lock is released.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from moto.s3.models import s3_backends

from imgcli.localcloud import persistence
from imgcli.localcloud.snapshot_errors import SnapshotError
from tests.localcloud_snapshots import ACCOUNT, KEY, client, wipe_moto


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    return tmp_path / "data" / "state.pickle"


def body_files(snapshot: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in persistence.bodies_directory(snapshot).iterdir())


def test_object_bodies_are_written_once_and_kept_out_of_the_snapshot(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    big = os.urandom(1_000_000)
    s3.put_object(Bucket="bodies", Key="big.jpg", Body=big)
    first = persistence.save_snapshot(snapshot, key=KEY)
    s3.put_object(Bucket="bodies", Key="small.jpg", Body=b"small")
    second = persistence.save_snapshot(snapshot, key=KEY)
    third = persistence.save_snapshot(snapshot, key=KEY)

    # Each body once, by the first save that saw it; the snapshot holds none of them.
    assert (first.bodies_written, second.bodies_written, third.bodies_written) == (1, 1, 0)
    assert third.size_bytes < len(big) // 10
    assert body_files(snapshot) == sorted([big, b"small"])
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)
    assert s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read() == big
    # The restored key still knows its file: the next save writes nothing.
    assert persistence.save_snapshot(snapshot, key=KEY).bodies_written == 0


def test_a_deleted_objects_body_goes_with_it_and_a_copy_keeps_the_content(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="source.jpg", Body=b"content")
    s3.put_object(Bucket="bodies", Key="gone.jpg", Body=b"gone")
    persistence.save_snapshot(snapshot, key=KEY)
    s3.copy_object(
        Bucket="bodies", Key="copy.jpg", CopySource={"Bucket": "bodies", "Key": "source.jpg"}
    )
    s3.delete_objects(
        Bucket="bodies", Delete={"Objects": [{"Key": "source.jpg"}, {"Key": "gone.jpg"}]}
    )
    persistence.save_snapshot(snapshot, key=KEY)

    assert body_files(snapshot) == [b"content"]
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)
    assert s3.get_object(Bucket="bodies", Key="copy.jpg")["Body"].read() == b"content"
    s3.delete_object(Bucket="bodies", Key="copy.jpg")
    persistence.save_snapshot(snapshot, key=KEY)
    assert body_files(snapshot) == []


@pytest.mark.parametrize("held", ["in memory", "in a file"])
def test_saving_a_body_leaves_its_buffer_where_moto_had_it(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    # moto reads a key's buffer without the key's lock (to compute its ETag), so a save
    # that seeks could corrupt that read, or be corrupted by it.
    if held == "in a file":
        monkeypatch.setenv("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", "1024")
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    data = os.urandom(10_000)
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=data)
    key = s3_backends[ACCOUNT]["aws"].buckets["bodies"].keys["k.jpg"]
    assert key._value_buffer._rolled == (held == "in a file")
    key._value_buffer.seek(1234)

    persistence.save_snapshot(snapshot, key=KEY)

    assert key._value_buffer.tell() == 1234
    assert body_files(snapshot) == [data]


@pytest.mark.parametrize("damage", ["removed", "cut short"])
def test_a_missing_or_damaged_body_is_refused_and_the_state_untouched(
    moto_aws: None, snapshot: Path, damage: str
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=b"0123456789")
    persistence.save_snapshot(snapshot, key=KEY)
    (body,) = persistence.bodies_directory(snapshot).iterdir()
    if damage == "removed":
        body.unlink()
    else:
        body.write_bytes(b"01234")
    s3.create_bucket(Bucket="running")

    with pytest.raises(SnapshotError, match=r"names an object body that is .*imgcli local reset"):
        persistence.load_snapshot(snapshot, key=KEY)

    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["bodies", "running"]


def test_a_completed_multipart_upload_survives_saves_before_and_after_it(
    moto_aws: None, snapshot: Path
) -> None:
    # Completing disposes the parts (their buffers close) while the new key still refers
    # to them: saved like moto pickles them, empty, and without files.
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    part_size = 5 * 1024 * 1024
    upload = s3.create_multipart_upload(Bucket="bodies", Key="big.jpg")["UploadId"]
    parts = [
        s3.upload_part(
            Bucket="bodies", Key="big.jpg", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        for number, body in ((1, os.urandom(part_size)), (2, b"end"))
    ]
    persistence.save_snapshot(snapshot, key=KEY)  # the parts, while the upload is in progress
    s3.complete_multipart_upload(
        Bucket="bodies",
        Key="big.jpg",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(parts, 1)]
        },
    )
    whole = s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read()
    persistence.save_snapshot(snapshot, key=KEY)
    persistence.save_snapshot(snapshot, key=KEY)

    assert body_files(snapshot) == [whole]
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)
    assert s3.get_object(Bucket="bodies", Key="big.jpg")["Body"].read() == whole


def test_a_body_that_cannot_be_written_fails_the_save_and_keeps_the_last_one(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="old.jpg", Body=b"old")
    persistence.save_snapshot(snapshot, key=KEY)
    good = snapshot.read_bytes()
    s3.put_object(Bucket="bodies", Key="new.jpg", Body=b"new")

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    # Not "S3 cannot be pickled, saved without it": the save fails.
    with pytest.raises(SnapshotError, match="No space left on device"):
        persistence.save_snapshot(snapshot, key=KEY)
    monkeypatch.undo()

    assert snapshot.read_bytes() == good
    assert body_files(snapshot) == [b"old"]


def test_new_bodies_are_fsynced_after_the_lock_is_released(
    moto_aws: None, snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under the lock every writer waits: a thousand fsyncs there would stall them all.
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    for number in range(3):
        s3.put_object(Bucket="bodies", Key=f"{number}.jpg", Body=b"body %d" % number)
    lock = threading.Lock()
    synced_under_lock: list[bool] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced_under_lock.append(lock.locked())
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    info = persistence.save_snapshot(snapshot, key=KEY, lock=lock)

    assert info.bodies_written == 3
    assert len(synced_under_lock) >= 3
    assert not any(synced_under_lock)


def test_a_body_removed_by_hand_is_written_again_by_the_next_save(
    moto_aws: None, snapshot: Path
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="bodies")
    s3.put_object(Bucket="bodies", Key="k.jpg", Body=b"body")
    persistence.save_snapshot(snapshot, key=KEY)
    for path in persistence.bodies_directory(snapshot).iterdir():
        path.unlink()

    assert persistence.save_snapshot(snapshot, key=KEY).bodies_written == 1
    wipe_moto()
    persistence.load_snapshot(snapshot, key=KEY)
    assert s3.get_object(Bucket="bodies", Key="k.jpg")["Body"].read() == b"body"
