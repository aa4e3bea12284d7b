"""Starting, finding and stopping the local cloud's background process.

The local cloud runs as one detached process (``python -m imgcli.localcloud.server``) so
it outlives the command that started it, like a database server. Its data directory
holds a ``server.json`` record (pid, port, start time) written by the server itself once
it is listening, its log file, its state snapshot and the functions' unpacked code.

"Running" means that the port answers the health check with a proof that it holds this
data dir's secret (``health``): a stale record (a crash, a reboot, a reused pid) or
another user's program listening on the port never fools ``start``, ``status`` or
``stop``, and nothing is sent to it. Starting twice is harmless; stopping sends SIGTERM
(the server saves its state and exits) to the pid the proof vouched for, and only falls
back to SIGKILL after a timeout.

Everything under the data dir is its owner's alone: the data dir is checked before
anything else (``secret``: refused when another user owns it or others may write to it),
what an earlier version left readable is tightened at each start, the server runs with
umask 077 (directories 0700, files 0600, its workers' too), and it starts with an
allow-listed environment (``server_env``), so function code cannot read the owner's
variables through ``/proc``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgcli.config import LOCAL_HOST, LOCAL_REGION
from imgcli.errors import ExitCode, ImgcliError
from imgcli.localcloud import health
from imgcli.localcloud.secret import (
    OwnerKey,
    ensure_private_directory,
    load_or_create,
    local_cloud_dir,
    make_private,
    read_for_reset,
)
from imgcli.localcloud.server_env import server_environment

RECORD: Final = "server.json"
LOG: Final = "server.log"
START_LOCK: Final = "start.lock"
#: Files the server and its workers create: directories 0700, files 0600.
SERVER_UMASK: Final = 0o077


class LocalCloudError(ImgcliError):
    """The local cloud could not be started or reached."""

    exit_code = ExitCode.NETWORK


@dataclass(frozen=True)
class LocalAccess:
    """Where the local cloud of a data dir answers, and the key pair it accepts."""

    endpoint: str
    port: int
    data_dir: Path
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = LOCAL_REGION

    def aws_environment(self) -> dict[str, str]:
        """The variables that point AWS's CLI and SDKs at this local cloud."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }


@dataclass(frozen=True)
class LocalCloudStatus:
    running: bool
    endpoint: str
    port: int
    pid: int | None
    data_dir: Path
    log_file: Path
    access_key_id: str
    secret_access_key: str = field(repr=False)
    #: Set when the port is held by something that did not prove it is this local cloud.
    note: str | None = None
    #: What the running server could not restore at start (a state file set aside...).
    problems: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "endpoint": self.endpoint,
            "port": self.port,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "region": LOCAL_REGION,
            "note": self.note,
            "problems": list(self.problems),
        }


def endpoint_for(port: int) -> str:
    return f"http://{LOCAL_HOST}:{port}"


def something_else_listens(port: int, claimed_pid: int | None = None) -> str:
    """What status and start say of a listener that did not prove it is this local cloud."""
    said = f"something else listens on {LOCAL_HOST}:{port}"
    if claimed_pid is not None:
        said += (
            f" (pid {claimed_pid}, it says it is an imgcli local cloud but cannot prove it "
            "holds this data dir's secret: an older imgcli's, another data dir's, or not one)"
        )
    return said


def access(port: int, environ: Mapping[str, str] = os.environ) -> LocalAccess:
    """The endpoint and key pair of this data dir's local cloud; no request is made.

    The port is the record's, if the local cloud was started (it may run elsewhere than
    the port asked for); the key pair is made on first use.
    """
    directory = local_cloud_dir(environ)
    key = load_or_create(directory)
    port = _recorded_port(directory, port)
    return LocalAccess(
        endpoint_for(port), port, directory, key.access_key_id, key.secret_access_key
    )


def status(port: int, environ: Mapping[str, str] = os.environ) -> LocalCloudStatus:
    """Whether this data dir's local cloud answers, and where.

    Raises ``UnsafeDataDir`` (exit code AUTH) when the data dir is not private.
    """
    directory = local_cloud_dir(environ)
    key = load_or_create(directory)
    return _status_at(_recorded_port(directory, port), directory, key)


def _status_at(port: int, directory: Path, key: OwnerKey) -> LocalCloudStatus:
    found = health.check(port, key)
    running = found.listener is health.Listener.OURS
    return LocalCloudStatus(
        running=running,
        endpoint=endpoint_for(port),
        port=port,
        pid=found.pid if running else None,
        data_dir=directory,
        log_file=directory / LOG,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret_access_key,
        note=(
            something_else_listens(port, found.claimed_pid)
            if found.listener is health.Listener.SOMETHING_ELSE
            else None
        ),
        problems=_recorded_problems(directory, found.pid) if running else (),
    )


def start(
    port: int, environ: Mapping[str, str] = os.environ, *, timeout_s: float = 60.0
) -> tuple[LocalCloudStatus, bool]:
    """Start the local cloud unless it runs; returns its status and whether it was started.

    Concurrent starts (two commands at once) take turns on a lock file, so the second
    finds the first one's server instead of racing it for the port. Raises
    ``UnsafeDataDir`` when the data dir is not private, and ``LocalCloudError`` when
    something else holds the port.
    """
    directory = local_cloud_dir(environ)
    key = load_or_create(directory)  # the data dir is private, and the server's key is there
    with _start_lock(directory):
        return _start_locked(port, environ, directory, key, timeout_s)


@contextlib.contextmanager
def _start_lock(directory: Path) -> Iterator[None]:
    descriptor = os.open(directory / START_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _start_locked(
    port: int, environ: Mapping[str, str], directory: Path, key: OwnerKey, timeout_s: float
) -> tuple[LocalCloudStatus, bool]:
    current = _status_at(_recorded_port(directory, port), directory, key)
    if current.running:
        return current, False
    if current.port != port:  # a stale record: what matters now is the port asked for
        current = _status_at(port, directory, key)
        if current.running:
            return current, False
    if current.note is not None:
        raise _impostor(current.note)
    (directory / RECORD).unlink(missing_ok=True)
    # What an earlier version made 0755 and 0644; walked only when a server starts, so
    # the commands that find it running pay nothing.
    make_private(directory)
    command = [
        sys.executable,
        "-m",
        "imgcli.localcloud.server",
        "--port",
        str(port),
        "--data-dir",
        str(directory),
    ]
    log = os.open(directory / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(environ),
            umask=SERVER_UMASK,
            start_new_session=True,  # outlives this command and its terminal's Ctrl-C
            close_fds=True,
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalCloudError(
                f"the local cloud exited during start-up (code {process.returncode}): "
                + _tail(directory / LOG),
                hint=f"see {directory / LOG}",
            )
        current = _status_at(port, directory, key)
        if current.running:
            return current, True
        if current.note is not None:
            # Our server listens only once it can prove itself: whatever answers without
            # the proof took the port first (ours then fails to bind), or is not ours.
            _kill(process)
            raise _impostor(current.note)
        time.sleep(0.1)
    _kill(process)
    raise LocalCloudError(
        f"the local cloud did not answer on port {port} within {timeout_s:.0f} s",
        hint=f"see {directory / LOG}",
    )


def _impostor(note: str) -> LocalCloudError:
    return LocalCloudError(
        f"{note}; imgcli sends it nothing",
        hint="stop that program (`kill PID` if it is yours), "
        "or choose another port with --port or IMGCLI_LOCAL_PORT",
    )


def stop(port: int, environ: Mapping[str, str] = os.environ, *, timeout_s: float = 30.0) -> bool:
    """Stop the local cloud (it saves its state first); False if it was not running.

    Only a pid the health check's proof vouched for is ever signalled.
    """
    directory = local_cloud_dir(environ)
    key = load_or_create(directory)
    return _stop(_recorded_port(directory, port), directory, key, timeout_s)


def _stop(port: int, directory: Path, key: OwnerKey, timeout_s: float) -> bool:
    current = _status_at(port, directory, key)
    if not current.running or current.pid is None:
        return False
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(current.pid):
            break
        time.sleep(0.1)
    else:
        os.killpg(current.pid, signal.SIGKILL)
    (directory / RECORD).unlink(missing_ok=True)
    return True


def reset(port: int, environ: Mapping[str, str] = os.environ) -> None:
    """Stop the local cloud and discard everything it holds, its secret included.

    Also the way out when the secret is exposed (others could read it: it still serves to
    stop the server, then it is discarded), another user's or damaged (then the data dir
    is only removed if nothing listens on the port, as no server can prove itself).
    """
    directory = local_cloud_dir(environ)
    ensure_private_directory(directory)  # never remove a dir someone else controls
    port = _recorded_port(directory, port)
    key = read_for_reset(directory)
    if key is not None:
        _stop(port, directory, key, 30.0)
    if not health.nobody_listens(port):
        raise LocalCloudError(
            f"{something_else_listens(port)}, and imgcli cannot tell whether it is the local "
            "cloud whose state it would discard",
            hint=f"stop the program listening on port {port}, then reset again",
        )
    shutil.rmtree(directory, ignore_errors=True)


def write_record(directory: Path, port: int, problems: Sequence[str] = ()) -> None:
    """Called by the server once it listens: where ``status`` and ``access`` look first,
    with what it could not restore at start (``problems``, shown by ``local status``)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = directory / f".{RECORD}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        record = {"pid": os.getpid(), "port": port, "started": time.time()}
        json.dump({**record, "problems": list(problems)}, file)
    temporary.replace(directory / RECORD)


def _recorded_problems(directory: Path, pid: int | None) -> tuple[str, ...]:
    """The problems the server with ``pid`` (proven ours) recorded at its start."""
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return ()
    if not isinstance(record, dict) or record.get("pid") != pid:
        return ()
    problems = record.get("problems", [])
    return tuple(str(problem) for problem in problems) if isinstance(problems, list) else ()


def _recorded_port(directory: Path, port: int) -> int:
    """The port in the server's record, if there is one; else ``port``."""
    try:
        record = json.loads((directory / RECORD).read_text())
        recorded = record["port"]
    except (OSError, ValueError, TypeError, KeyError):
        return port
    return recorded if type(recorded) is int and 0 < recorded < 65536 else port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished == 0


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
