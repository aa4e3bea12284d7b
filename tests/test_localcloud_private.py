"""The local cloud is private to its owner: its files, its data dir, its environment.

One real local cloud, bootstrapped, with uploaded images, stopped (so its state is saved)
and started again, in a data dir an earlier version left readable by everyone. Another
user is played by ``nobody`` through ``setpriv``, which needs root.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcli.errors import ExitCode
from imgcli.localcloud import health, process, server_env
from imgcli.localcloud.secret import SECRET_FILE, local_cloud_dir
from tests.images import image_bytes
from tests.localstack import bootstrap, cloud_environment, local_cloud_env, run_imgcli

PLANTED = "SECRET_TOKEN=planted-by-test_localcloud_private"
PHOTO = image_bytes("PNG", size=(37, 23))
#: Left by an earlier version, which made the data dir 0755 and its files 0644.
EARLIER_FILES = ("notes.txt", "old-runtime/code/handler.py")

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root")


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    # Outside pytest's own temporary dirs (0700): anyone may traverse this one, so only the
    # data dir itself can keep another user out.
    path = Path(tempfile.mkdtemp(prefix="imgcli-private-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(base: Path) -> Iterator[dict[str, str]]:
    images = base / "images"
    images.mkdir()
    (images / "photo.png").write_bytes(PHOTO)
    name, _, value = PLANTED.partition("=")
    extra = {name: value, "AWS_SECRET_ACCESS_KEY": "the-owners-real-aws-secret"}
    with local_cloud_env(base, "private", **extra) as env:
        directory = local_cloud_dir(env)
        for relative in EARLIER_FILES:
            (directory / relative).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            (directory / relative).write_text("from an earlier version")
            (directory / relative).chmod(0o644)
        directory.chmod(0o755)
        bootstrap(env)
        uploaded = run_imgcli(env, "upload", str(images), "--recursive", "--wait")
        assert uploaded.returncode == 0, uploaded.stderr
        for command in ("stop", "start"):  # everything saved, and running again
            done = run_imgcli(env, "local", command)
            assert done.returncode == 0, done.stderr
        yield env


def files_holding(directory: Path, data: bytes) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and data in p.read_bytes()]


def test_everything_under_the_data_dir_is_private_to_its_owner(cloud: dict[str, str]) -> None:
    directory = local_cloud_dir(cloud)
    found = [directory, *directory.rglob("*")]
    shared = {
        str(path.relative_to(directory)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in found
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    }
    assert shared == {}
    assert all(stat.S_IMODE(p.lstat().st_mode) == 0o700 for p in found if p.is_dir())
    # What the walk covered: the secret, the server's files, the saved state and bodies,
    # the functions' extracted code, and what the earlier version left.
    names = {path.name for path in found}
    assert {SECRET_FILE, process.RECORD, process.LOG, process.START_LOCK} <= names
    assert files_holding(directory, PHOTO)
    assert any(path.suffix == ".py" and "lambdas" in path.parts for path in found)
    assert all((directory / relative).exists() for relative in EARLIER_FILES)


@as_root
def test_another_user_can_read_nothing(base: Path, cloud: dict[str, str]) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    directory = local_cloud_dir(cloud)
    control = base / "readable.txt"
    control.write_text("anyone may read this")
    control.chmod(0o644)
    assert as_nobody("cat", str(control)).returncode == 0  # so a refusal below means it
    bodies = files_holding(directory, PHOTO)
    for path in [directory / SECRET_FILE, directory / process.LOG, *bodies]:
        read = as_nobody("cat", str(path))
        assert read.returncode != 0 and b"Permission denied" in read.stderr, path
        assert PHOTO not in read.stdout
    assert as_nobody("ls", str(directory)).returncode != 0


def as_nobody(*command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command],
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_the_server_has_none_of_the_owners_variables(cloud: dict[str, str]) -> None:
    status = process.status(int(cloud["IMGCLI_LOCAL_PORT"]), cloud)
    assert status.running and status.pid is not None
    # What function code could read through /proc/<its parent>/environ.
    environ = Path(f"/proc/{status.pid}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0].decode() for entry in environ if entry}
    assert not any(PLANTED.encode() in entry for entry in environ)
    assert "SECRET_TOKEN" not in names
    assert not {name for name in names if name.startswith("AWS_")}
    assert "PATH" in names  # the server still got what it needs


# Refusals: a data dir someone else controls


def unsafe_environment(tmp_path: Path, how: str) -> dict[str, str]:
    env = cloud_environment(tmp_path, "unsafe")
    directory = local_cloud_dir(env)
    directory.mkdir(parents=True, mode=0o700)
    if how == "another user's":
        os.chown(directory, 65534, 65534)
    else:
        directory.chmod(0o777)
    return env


@pytest.mark.parametrize(
    ("how", "says"),
    [
        pytest.param("another user's", "belongs to another user", marks=as_root),
        ("writable by others", "others may write to"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ("local", "start"),
        ("local", "status"),
        ("local", "env"),
        ("local", "stop"),
        ("local", "reset", "--yes"),  # removes nothing of a dir someone else controls
        ("upload", "-r", "."),
        ("list",),
    ],
)
def test_every_command_refuses_a_data_dir_someone_else_controls(
    tmp_path: Path, how: str, says: str, command: tuple[str, ...]
) -> None:
    env = unsafe_environment(tmp_path, how)
    done = run_imgcli(env, *command)
    assert done.returncode == ExitCode.AUTH, done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr  # one line: why, what to do
    assert done.stdout == ""
    directory = local_cloud_dir(env)
    assert sorted(os.listdir(directory)) == []  # no secret, no log, no record
    assert health.nobody_listens(int(env["IMGCLI_LOCAL_PORT"]))


def test_a_secret_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    with local_cloud_env(tmp_path, "theirs") as env:
        os.chown(local_cloud_dir(env) / SECRET_FILE, 65534, 65534)
        done = run_imgcli(env, "local", "start")
        assert done.returncode == ExitCode.AUTH
        assert "belongs to another user" in done.stderr
        assert "imgcli local reset" in done.stderr
        reset = run_imgcli(env, "local", "reset", "--yes")  # the way out it names
        assert reset.returncode == 0, reset.stderr
        assert not local_cloud_dir(env).exists()


# The server's environment, as a function


OWNERS_SHELL = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "VIRTUAL_ENV": "/home/owner/venv",
    "PYTHONPATH": "/home/owner/src",
    "IMGCLI_DATA_DIR": "/home/owner/data",
    "HOME": "/home/owner",
    "AWS_SECRET_ACCESS_KEY": "the-owners-real-aws-secret",
    "AWS_PROFILE": "prod",
    "GITHUB_TOKEN": "ghp_owner",
    "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
    "SECRET_TOKEN": "planted",
}
KEPT = {"PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "PYTHONPATH", "IMGCLI_DATA_DIR"}


def test_the_server_is_given_only_the_allowed_variables() -> None:
    assert set(server_env.server_environment(OWNERS_SHELL)) == KEPT


def test_the_server_clears_the_rest_from_its_own_environment() -> None:
    environ = dict(OWNERS_SHELL)
    removed = server_env.scrub(environ)
    assert set(environ) == KEPT
    assert removed == sorted(set(OWNERS_SHELL) - KEPT)
