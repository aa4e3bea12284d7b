"""Starting, finding and stopping the local cloud's background process.

The local cloud runs as one detached process (``python -m imgcli.localcloud.server``) so
it outlives the command that started it, like a database server. Its data directory
holds a ``server.json`` record (pid, port, start time) written by the server itself once
it is listening, its log file, its state snapshot and the functions' unpacked code.

"Running" means more than a live pid: the record's port must answer the health check
with the same pid, so a stale record (a crash, a reboot, a reused pid) never fools
``start`` or ``status``. Starting twice is harmless; stopping sends SIGTERM (the server
saves its state and exits) and only falls back to SIGKILL after a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgcli.config import LOCAL_HOST, LOCAL_REGION
from imgcli.errors import ExitCode, ImgcliError
from imgcli.localcloud.secret import load_or_create, local_cloud_dir

HEALTH_PATH: Final = "/_imgcli/health"
RECORD: Final = "server.json"
LOG: Final = "server.log"


class LocalCloudError(ImgcliError):
    """The local cloud could not be started or reached."""

    exit_code = ExitCode.NETWORK


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
        }


def endpoint_for(port: int) -> str:
    return f"http://{LOCAL_HOST}:{port}"


def status(port: int, environ: Mapping[str, str] = os.environ) -> LocalCloudStatus:
    """Whether a local cloud answers for this data dir, and where."""
    directory = local_cloud_dir(environ)
    record = _read_record(directory)
    if record is not None:
        port = int(record.get("port", port))
    health = _health(port)
    running = record is not None and health is not None and health.get("pid") == record.get("pid")
    key = load_or_create(directory)
    return LocalCloudStatus(
        running=running,
        endpoint=endpoint_for(port),
        port=port,
        pid=int(record["pid"]) if running and record else None,
        data_dir=directory,
        log_file=directory / LOG,
        access_key_id=key.access_key_id,
        secret_access_key=key.secret_access_key,
    )


def start(
    port: int, environ: Mapping[str, str] = os.environ, *, timeout_s: float = 60.0
) -> tuple[LocalCloudStatus, bool]:
    """Start the local cloud unless it runs; returns its status and whether it was started.

    Concurrent starts (two commands at once) take turns on a lock file, so the second
    finds the first one's server instead of racing it for the port.
    """
    import fcntl

    directory = local_cloud_dir(environ)
    load_or_create(directory)  # the data dir is private, and the server's key is there
    with (directory / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_locked(port, environ, timeout_s)


def _start_locked(
    port: int, environ: Mapping[str, str], timeout_s: float
) -> tuple[LocalCloudStatus, bool]:
    current = status(port, environ)
    if current.running:
        return current, False
    if _health(port) is not None or _port_taken(port):
        raise LocalCloudError(
            f"port {port} on {LOCAL_HOST} is already in use by another program",
            hint="choose another port with --port or IMGCLI_LOCAL_PORT",
        )
    directory = local_cloud_dir(environ)
    (directory / RECORD).unlink(missing_ok=True)
    log = (directory / LOG).open("ab")
    command = [
        sys.executable,
        "-m",
        "imgcli.localcloud.server",
        "--port",
        str(port),
        "--data-dir",
        str(directory),
    ]
    child_environment = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_environment,
        start_new_session=True,  # outlives this command and its terminal's Ctrl-C
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalCloudError(
                f"the local cloud exited during start-up (code {process.returncode}): "
                + _tail(directory / LOG),
                hint=f"see {directory / LOG}",
            )
        current = status(port, environ)
        if current.running:
            return current, True
        time.sleep(0.1)
    process.kill()
    raise LocalCloudError(
        f"the local cloud did not answer on port {port} within {timeout_s:.0f} s",
        hint=f"see {directory / LOG}",
    )


def stop(port: int, environ: Mapping[str, str] = os.environ, *, timeout_s: float = 30.0) -> bool:
    """Stop the local cloud (it saves its state first); False if it was not running."""
    current = status(port, environ)
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
    (current.data_dir / RECORD).unlink(missing_ok=True)
    return True


def reset(port: int, environ: Mapping[str, str] = os.environ) -> None:
    """Stop the local cloud and discard everything it holds."""
    stop(port, environ)
    shutil.rmtree(local_cloud_dir(environ), ignore_errors=True)


def write_record(directory: Path, port: int) -> None:
    """Called by the server once it listens: the record ``status`` trusts."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{RECORD}.{os.getpid()}"
    temporary.write_text(json.dumps({"pid": os.getpid(), "port": port, "started": time.time()}))
    temporary.replace(directory / RECORD)


def _read_record(directory: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(  # noqa: S310 - a fixed http://127.0.0.1 URL
            endpoint_for(port) + HEALTH_PATH, timeout=1.0
        ) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return answer if isinstance(answer, dict) and answer.get("service") == "imgcli-local" else None


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOCAL_HOST, port)) == 0


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


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"
