"""The local cloud's key pair and the privacy of its data dir (``imgcli.localcloud.secret``).

These are unit tests on plain directories; ``test_localcloud_private`` checks the same
promises on a real local cloud and through the CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from imgcli.errors import ExitCode
from imgcli.localcloud.secret import (
    ACCESS_KEY_PREFIX,
    SECRET_FILE,
    OwnerKey,
    UnsafeDataDir,
    ensure_private_directory,
    load_or_create,
    local_cloud_dir,
    make_private,
)

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_first_use_makes_a_key_pair_only_its_owner_can_read(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "localcloud"
    key = load_or_create(directory)
    assert key.access_key_id.startswith(ACCESS_KEY_PREFIX) and len(key.access_key_id) == 20
    assert len(key.secret_access_key) >= 40
    assert mode(directory) == 0o700
    assert mode(directory / SECRET_FILE) == 0o600
    assert load_or_create(directory) == key  # kept, not made again
    assert load_or_create(tmp_path / "other") != key  # one per data dir


def test_the_data_dir_follows_imgcli_data_dir(tmp_path: Path) -> None:
    assert local_cloud_dir({"IMGCLI_DATA_DIR": str(tmp_path)}) == tmp_path / "localcloud"


def test_processes_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from imgcli.localcloud.secret import load_or_create\n"
        "print(load_or_create(Path(sys.argv[1])).access_key_id)\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    keys = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert len(keys) == 1
    assert keys == {load_or_create(directory).access_key_id.encode()}


def test_each_use_of_the_secret_gets_a_key_of_its_own() -> None:
    owner = OwnerKey("LKIAEXAMPLE", "secret")
    uses = {owner.derived(purpose) for purpose in ("health", "snapshot", "journal")}
    assert len(uses) == 3
    assert owner.derived("health") != OwnerKey("LKIAEXAMPLE", "other").derived("health")
    assert "secret" not in repr(owner)


@as_root
def test_a_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(UnsafeDataDir, match="belongs to another user") as refused:
        load_or_create(directory)
    assert refused.value.exit_code == ExitCode.AUTH
    assert not (directory / SECRET_FILE).exists()


@pytest.mark.parametrize("writable", [0o777, 0o770, 0o702])
def test_a_data_dir_others_may_write_to_is_refused(tmp_path: Path, writable: int) -> None:
    directory = tmp_path / "localcloud"
    directory.mkdir()
    directory.chmod(writable)
    with pytest.raises(UnsafeDataDir, match="others may write") as refused:
        load_or_create(directory)
    assert "chmod 700" in (refused.value.hint or "")
    assert not (directory / SECRET_FILE).exists()


def test_a_link_in_place_of_the_data_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "localcloud").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeDataDir, match="link"):
        load_or_create(tmp_path / "localcloud")


def test_a_data_dir_inside_a_dir_anyone_may_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could rename our dir away and put theirs in its place
    with pytest.raises(UnsafeDataDir, match="anyone may write"):
        load_or_create(shared / "data" / "localcloud")
    shared.chmod(0o1777)  # with the sticky bit (as /tmp), only we may rename ours
    load_or_create(shared / "data" / "localcloud")


@as_root
def test_a_data_dir_inside_a_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeDataDir, match="belongs to another user"):
        load_or_create(theirs / "localcloud")


def test_a_secret_others_may_read_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    load_or_create(directory)
    (directory / SECRET_FILE).chmod(0o644)
    with pytest.raises(UnsafeDataDir, match="readable or writable by others") as refused:
        load_or_create(directory)
    assert "imgcli local reset" in (refused.value.hint or "")


def test_a_damaged_secret_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    load_or_create(directory)
    (directory / SECRET_FILE).write_text(json.dumps({"access_key_id": "only half"}))
    with pytest.raises(UnsafeDataDir, match="damaged"):
        load_or_create(directory)


def test_an_earlier_versions_data_dir_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    bodies = directory / "state.pickle.bodies"
    bodies.mkdir(parents=True)
    for path in (directory, bodies):
        path.chmod(0o755)
    for path in (directory / "state.pickle", directory / "server.log", bodies / "0a1b"):
        path.write_bytes(b"what another user could read")
        path.chmod(0o644)
    (directory / "run.sh").write_text("#!/bin/sh\n")
    (directory / "run.sh").chmod(0o775)
    os.mkfifo(directory / "a-fifo")  # must not block the walk
    (directory / "a-fifo").chmod(0o666)

    ensure_private_directory(directory)
    make_private(directory)

    assert {path.name: mode(path) for path in [directory, *directory.rglob("*")]} == {
        "localcloud": 0o700,
        "state.pickle.bodies": 0o700,
        "state.pickle": 0o600,
        "server.log": 0o600,
        "0a1b": 0o600,
        "run.sh": 0o700,
        "a-fifo": 0o600,
    }


def test_making_private_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o755)
    (outside / "shared.txt").write_text("someone else's business")
    (outside / "shared.txt").chmod(0o644)
    directory = tmp_path / "localcloud"
    directory.mkdir(mode=0o700)
    (directory / "to-file").symlink_to(outside / "shared.txt")
    (directory / "to-dir").symlink_to(outside)

    make_private(directory)

    assert mode(outside) == 0o755
    assert mode(outside / "shared.txt") == 0o644


@as_root
def test_a_file_another_user_wrote_into_the_data_dir_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "localcloud"
    (directory / "runtime").mkdir(parents=True, mode=0o700)
    planted = directory / "runtime" / "state.pickle"
    planted.write_bytes(b"planted")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(UnsafeDataDir, match="belongs to another user"):
        make_private(directory)
