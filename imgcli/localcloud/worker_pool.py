"""Warm Lambda workers: one worker process, and the pool of them that serves a function.

``runtime`` decides what runs, where and for how long; this module owns the processes it
runs in and hands them out. The script each process runs, and its end of the pipes, is
``worker``.

* **Warm workers.** A function runs in worker subprocesses (``worker.py``) that import the
  handler once and then serve invocation after invocation, as a Lambda execution
  environment does: module-level state and lazily built boto3 clients survive between
  invocations, and a warm invocation costs one round trip over a pipe, not an interpreter
  start. Each function version has a pool of up to ``max_workers_per_function`` workers,
  started on demand, the most recently used reused first (the warmest); callers beyond the
  maximum wait for a free worker (Lambda would throttle; the local cloud queues). An idle
  worker whose credentials expire too soon for the next invocation is stopped instead of
  handed out (``checkout(valid_until=...)``).
* **Private directory.** A worker owns the directory the runtime made for it (its HOME and
  TMPDIR); disposing of the worker removes it.
* **Logs.** A worker's stdout and stderr are one append-only file the runtime reads after
  each invocation (its last ``FULL_LOG_BYTES``), so even a killed handler's last words are
  kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from imgcli.localcloud import worker as protocol

LOG_TAIL_BYTES: Final = 4096
"""How much log ``LogType=Tail`` returns: the last 4 KB."""
FULL_LOG_BYTES: Final = 256 * 1024
"""How much of one invocation's output is kept for its log group (CloudWatch's event limit)."""

WORKER_SCRIPT: Final = Path(protocol.__file__)

# How Lambda (in Go) names the signal that ended a runtime, in Runtime.ExitError messages.
_SIGNAL_WORDS: Final = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGKILL: "killed",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGILL: "illegal instruction",
    signal.SIGFPE: "floating point exception",
}
_READ_CHUNK: Final = 1 << 16


class WorkerTimedOut(Exception):
    """The deadline passed before the worker answered."""


class WorkerExited(Exception):
    """The worker's end of the protocol closed: it exited or was killed."""


class Worker:
    """One worker process and the runtime's end of its pipes and log file.

    Used by one invocation at a time (the pool hands it out); ``terminate`` alone may be
    called from another thread, which is how ``shutdown`` stops a busy worker.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        request_fd: int,
        response_fd: int,
        log: IO[bytes],
        *,
        private_dir: Path | None = None,
        expires_at: float | None = None,
        log_stream: str = "",
    ) -> None:
        self.process = process
        self.private_dir = private_dir
        #: When the worker's credentials expire (epoch seconds); ``None``: never.
        self.expires_at = expires_at
        self.log_stream = log_stream
        self._request_fd = request_fd
        self._response_fd = response_fd
        self._log = log
        self._buffer = bytearray()
        self._poller = select.poll()
        self._poller.register(response_fd, select.POLLIN)
        self._lock = threading.Lock()
        self._reaped = False
        self._closed = False

    @classmethod
    def launch(
        cls,
        handler: str,
        code_dir: Path,
        env: Mapping[str, str],
        site_dirs: Sequence[str],
        *,
        private_dir: Path | None = None,
        expires_at: float | None = None,
        log_stream: str = "",
    ) -> Worker:
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the worker, closed in dispose
        # O_APPEND: after the runtime truncates the file, the worker writes from offset 0.
        fcntl.fcntl(
            log.fileno(), fcntl.F_SETFL, fcntl.fcntl(log.fileno(), fcntl.F_GETFL) | os.O_APPEND
        )
        config = {
            "request_fd": request_read,
            "response_fd": response_write,
            "code_dir": str(code_dir),
            "handler": handler,
            "site_dirs": list(site_dirs),
        }
        command = [sys.executable, "-I", "-S", "-u", "-X", "utf8", str(WORKER_SCRIPT)]
        try:
            # The command is this interpreter and our own script; nothing comes from a shell.
            process = subprocess.Popen(  # noqa: S603
                [*command, json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(request_read, response_write),
                cwd=code_dir,
                env=dict(env),
                start_new_session=True,  # its own process group, killed as a whole
            )
        except BaseException:
            for fd in (request_write, response_read):
                os.close(fd)
            log.close()
            raise
        finally:
            os.close(request_read)
            os.close(response_write)
        return cls(
            process,
            request_write,
            response_read,
            log,
            private_dir=private_dir,
            expires_at=expires_at,
            log_stream=log_stream,
        )

    def wait_ready(self, deadline: float) -> dict[str, Any]:
        """The worker's first message: ``{"ready": true}`` or ``{"init_error": {...}}``."""
        message: dict[str, Any] = json.loads(self._read_frame(deadline))
        return message

    def call(
        self, header: Mapping[str, Any], payload: bytes, deadline: float
    ) -> tuple[dict[str, Any], bytes]:
        try:
            protocol.write_message(self._request_fd, json.dumps(header).encode(), payload)
        except BrokenPipeError as exc:
            raise WorkerExited from exc
        reply: dict[str, Any] = json.loads(self._read_frame(deadline))
        return reply, self._read_frame(deadline)

    def take_log(self) -> bytes:
        """The output since the last call (its last ``FULL_LOG_BYTES``), and a fresh start
        for the next."""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - FULL_LOG_BYTES)
        output = os.pread(fd, size - start, start)
        os.ftruncate(fd, 0)
        return output

    def terminate(self) -> None:
        """Kills the worker's whole process group; safe from any thread, at any time."""
        with self._lock:
            self._kill_group()

    def reap(self) -> int:
        """Kills what is left of the process group, waits for the worker, returns its status."""
        with self._lock:
            if not self._reaped:
                self._kill_group()
                self.process.wait()
                self._reaped = True
        return self.process.returncode

    def dispose(self) -> None:
        """Reaps the worker and closes everything the runtime held for it."""
        self.reap()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self._request_fd)
        os.close(self._response_fd)
        self._log.close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    def lasts_until(self, moment: float | None) -> bool:
        """Whether the worker's credentials are still valid at ``moment`` (epoch seconds)."""
        return moment is None or self.expires_at is None or self.expires_at >= moment

    def exit_description(self) -> str:
        """How the worker ended, in the words of Lambda's ``Runtime.ExitError``."""
        code = self.reap()
        if code >= 0:
            return f"exit status {code}"
        try:
            number = signal.Signals(-code)
        except ValueError:
            return f"signal: {-code}"
        return "signal: " + _SIGNAL_WORDS.get(number, number.name)

    def _kill_group(self) -> None:
        # Called with the lock held and before the leader is reaped: until then its pid,
        # which is the group id, cannot have been given to another process.
        if not self._reaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def _read_frame(self, deadline: float) -> bytes:
        (length,) = protocol.FRAME_HEADER.unpack(
            self._read_exact(protocol.FRAME_HEADER.size, deadline)
        )
        return self._read_exact(length, deadline)

    def _read_exact(self, count: int, deadline: float) -> bytes:
        while len(self._buffer) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimedOut
            if not self._poller.poll(math.ceil(remaining * 1000)):
                continue
            chunk = os.read(self._response_fd, max(_READ_CHUNK, count - len(self._buffer)))
            if not chunk:
                raise WorkerExited
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


class Pool:
    """The workers of one configuration of one function version.

    A *retired* pool (its function changed) still serves the callers already waiting on
    it, with workers that stop after that one invocation; a *closed* one (the runtime shut
    down) serves nobody and has its busy workers killed.
    """

    def __init__(self, fingerprint: tuple[Any, ...], code_dir: Path, max_workers: int) -> None:
        self.fingerprint = fingerprint
        self.code_dir = code_dir
        self._max_workers = max_workers
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._retired = False
        self._closed = False

    def checkout(self, valid_until: float | None = None) -> Worker | None:
        """The warmest idle worker whose credentials last until ``valid_until``, or ``None``:
        the caller holds a slot and starts one. Idle workers that expire sooner are stopped."""
        expired: list[Worker] = []
        try:
            with self._cond:
                while True:
                    if self._closed:
                        raise RuntimeError("the Lambda runtime has been shut down")
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.lasts_until(valid_until):
                            self._busy.add(worker)
                            return worker
                        expired.append(worker)
                    if self._starting + len(self._busy) < self._max_workers:
                        self._starting += 1
                        return None
                    self._cond.wait()
        finally:
            for worker in expired:  # outside the lock: stopping a process takes a while
                worker.dispose()

    def started(self, worker: Worker) -> None:
        """The slot ``checkout`` reserved now holds ``worker``."""
        with self._cond:
            self._starting -= 1
            self._busy.add(worker)
            closed = self._closed
        if closed:
            worker.terminate()  # shut down while it started: its invocation fails as exited

    def start_failed(self) -> None:
        with self._cond:
            self._starting -= 1
            self._cond.notify()

    def checkin(self, worker: Worker) -> None:
        """A worker that answered goes back to idle, unless this pool was replaced."""
        with self._cond:
            self._busy.discard(worker)
            keep = not (self._retired or self._closed)
            if keep:
                self._idle.append(worker)
            self._cond.notify()
        if not keep:
            worker.dispose()

    def discard(self, worker: Worker) -> None:
        """A worker that timed out or died leaves the pool; its slot frees up."""
        with self._cond:
            self._busy.discard(worker)
            self._cond.notify()
        worker.dispose()

    def retire(self) -> None:
        """Stops the idle workers now and the busy ones when they finish."""
        with self._cond:
            self._retired = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.dispose()

    def close(self) -> None:
        """Stops every worker now, busy or idle; waiting callers get ``RuntimeError``."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._cond.notify_all()
        for worker in busy:
            worker.terminate()
        for worker in idle:
            worker.dispose()
