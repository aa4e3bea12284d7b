"""The local cloud's Lambda runtime: runs a function's deployed zip as AWS would, without Docker.

moto stores functions but never runs them (shared/LOCAL_CLOUD.md). This module runs them,
and knows nothing about moto: a function arrives as a :class:`FunctionSpec` (its zip, its
handler, its configuration), so the runtime is tested without any AWS, and
``moto_lambda`` is the one module that turns moto's function objects into specs.

Decisions, each the closest local equivalent of what Lambda does:

* **Warm workers.** A function runs in worker subprocesses (``worker.py``) that import the
  handler once and then serve invocation after invocation, as a Lambda execution
  environment does: module-level state and lazily built boto3 clients survive between
  invocations, and a warm invocation costs one round trip over a pipe, not an interpreter
  start. Each function version has a pool of up to ``max_workers_per_function`` workers,
  started on demand, the most recently used reused first (the warmest); callers beyond the
  maximum wait for a free worker (Lambda would throttle; the local cloud queues).
* **Code and configuration updates.** A pool belongs to one configuration of one function
  version: its code's SHA-256, handler, environment, timeout and memory. An invocation with
  another configuration replaces the pool: idle workers of the old one stop at once, busy
  ones when their invocation ends. So an ``UpdateFunctionCode`` or a changed environment
  variable takes effect on the next invocation, as on AWS, where both start new
  environments. Published versions keep their own pools.
* **The code.** The zip is extracted once per content hash under ``workdir/code/<sha-hex>/``
  (into a scratch directory, then renamed, so a half-extracted tree is never used) and is
  the worker's working directory and first import path: it is ``/var/task``. The local
  packaging target has no Pillow, so the host's site-packages follow it (see ``worker``).
* **Environment.** Built from nothing, never inherited: the function's variables, then what
  Lambda sets (``AWS_LAMBDA_FUNCTION_*``, ``AWS_REGION``, ``_HANDLER``, ``TZ=:UTC``...), the
  local cloud's credentials, and ``AWS_ENDPOINT_URL`` pointing back at the local cloud. A
  developer's ``AWS_PROFILE``, real keys or ``~/.aws`` files therefore never reach function
  code (the AWS config files are pointed at ``/dev/null``).
* **Timeout.** The caller's thread waits for the reply until the configured timeout; then
  the worker's whole process group is killed (so a subprocess the handler started dies
  too) and the invocation fails with AWS's ``Sandbox.Timedout``. A worker that dies on its
  own (``os._exit``, a segfault) fails its invocation with ``Runtime.ExitError``. Either
  way the worker is discarded and the next invocation starts a fresh one: workers are
  replaced on demand, not eagerly, so an idle function costs nothing. Importing the
  handler has its own limit, ``INIT_TIMEOUT_S``, like Lambda's 10-second init phase.
* **Logs.** A worker's stdout and stderr are one append-only file the runtime reads after
  each invocation, so even a killed handler's last words are kept. The result carries what
  ``LogType=Tail`` returns: the last 4 KB, framed by AWS's ``START``/``END``/``REPORT`` lines.
* **Asynchronous invocation.** :class:`AsyncInvoker` is Lambda's event queue: ``submit``
  returns at once, worker threads invoke, a function error is retried per AWS's rules
  (``MaximumRetryAttempts``, default 2; ``MaximumEventAgeInSeconds``), and an event that
  still fails goes to the ``OnFailure`` destination as AWS's invocation record. AWS waits
  one minute before the first retry and two before the second (``AWS_RETRY_DELAYS``); the
  local cloud passes shorter delays so a failing event settles in seconds. Retries wait in
  a schedule, not in a sleeping thread, so one failing function cannot stall the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import heapq
import io
import itertools
import json
import logging
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
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Protocol

from imgcli.localcloud import worker as protocol

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES: Final = 4096
"""How much log ``LogType=Tail`` returns: the last 4 KB."""

INIT_TIMEOUT_S: Final = 10.0
"""How long importing the handler may take, as Lambda's init phase."""

AWS_RETRY_DELAYS: Final = (60.0, 120.0)
"""AWS's waits before the first and second retry of a failed asynchronous invocation."""

DEFAULT_MAX_RETRY_ATTEMPTS: Final = 2
DEFAULT_MAX_EVENT_AGE_S: Final = 21600.0

LATEST: Final = "$LATEST"
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
_PYTHON_VERSION: Final = f"{sys.version_info[0]}.{sys.version_info[1]}"


@dataclass(frozen=True)
class FunctionSpec:
    """Everything the runtime needs to run one function version.

    ``code_sha256`` is Lambda's ``CodeSha256`` (base64); ``arn`` is the function's ARN as
    its owner reports it (qualified for a published version); ``version`` is ``$LATEST``
    or a published version number.
    """

    name: str
    arn: str
    code_sha256: str
    zip_bytes: bytes = field(repr=False)
    handler: str
    environment: Mapping[str, str]
    timeout_s: int
    memory_mb: int
    version: str = LATEST

    @property
    def qualified_arn(self) -> str:
        """The ARN with its version, as invocation records name the function."""
        suffix = f":{self.version}"
        return self.arn if self.arn.endswith(suffix) else self.arn + suffix


@dataclass(frozen=True)
class InvocationResult:
    """What ``Invoke`` answers: ``payload`` is the result, or AWS's error object when
    ``function_error`` is ``"Unhandled"``; ``log`` is the last 4 KB of the invocation's log."""

    status_code: int
    payload: bytes
    function_error: str | None
    duration_ms: float
    log: str
    request_id: str = ""
    executed_version: str = LATEST


class Invoker(Protocol):
    """Runs one invocation synchronously; :class:`LambdaRuntime` is the real one."""

    def invoke(self, spec: FunctionSpec, payload: bytes) -> InvocationResult: ...


class _WorkerTimedOut(Exception):
    """The deadline passed before the worker answered."""


class _WorkerExited(Exception):
    """The worker's end of the protocol closed: it exited or was killed."""


@dataclass(frozen=True)
class _Failure:
    """A failed invocation before or instead of the handler's own answer."""

    error: dict[str, Any]
    log_line: str


class _InitFailed(Exception):
    """The worker could not load the handler; ``output`` is what it wrote meanwhile."""

    def __init__(self, failure: _Failure, output: bytes) -> None:
        super().__init__(failure.error["errorMessage"])
        self.failure = failure
        self.output = output


class _Worker:
    """One worker process and the runtime's end of its pipes and log file.

    Used by one invocation at a time (the pool hands it out); ``terminate`` alone may be
    called from another thread, which is how ``shutdown`` stops a busy worker.
    """

    def __init__(
        self, process: subprocess.Popen[bytes], request_fd: int, response_fd: int, log: IO[bytes]
    ) -> None:
        self.process = process
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
        cls, handler: str, code_dir: Path, env: Mapping[str, str], site_dirs: Sequence[str]
    ) -> _Worker:
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
        return cls(process, request_write, response_read, log)

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
            raise _WorkerExited from exc
        reply: dict[str, Any] = json.loads(self._read_frame(deadline))
        return reply, self._read_frame(deadline)

    def take_log(self) -> bytes:
        """The output since the last call (its last 4 KB), and a fresh start for the next."""
        fd = self._log.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - LOG_TAIL_BYTES)
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
                raise _WorkerTimedOut
            if not self._poller.poll(math.ceil(remaining * 1000)):
                continue
            chunk = os.read(self._response_fd, max(_READ_CHUNK, count - len(self._buffer)))
            if not chunk:
                raise _WorkerExited
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


class _Pool:
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
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._retired = False
        self._closed = False

    def checkout(self) -> _Worker | None:
        """The warmest idle worker, or ``None``: the caller holds a slot and starts one."""
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the Lambda runtime has been shut down")
                if self._idle:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker
                if self._starting + len(self._busy) < self._max_workers:
                    self._starting += 1
                    return None
                self._cond.wait()

    def started(self, worker: _Worker) -> None:
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

    def checkin(self, worker: _Worker) -> None:
        """A worker that answered goes back to idle, unless this pool was replaced."""
        with self._cond:
            self._busy.discard(worker)
            keep = not (self._retired or self._closed)
            if keep:
                self._idle.append(worker)
            self._cond.notify()
        if not keep:
            worker.dispose()

    def discard(self, worker: _Worker) -> None:
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


class LambdaRuntime:
    """Runs Lambda functions from their deployed zips in warm worker subprocesses.

    ``workdir`` holds the extracted code; ``endpoint_url``, ``region`` and ``credentials``
    (access key id, secret) are what function code gets to call the local cloud back.
    Thread-safe: call :meth:`invoke` from as many threads as you like.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        endpoint_url: str,
        region: str,
        credentials: tuple[str, str],
        max_workers_per_function: int = 4,
    ) -> None:
        if max_workers_per_function < 1:
            raise ValueError("max_workers_per_function must be at least 1")
        self._workdir = workdir
        self._endpoint_url = endpoint_url
        self._region = region
        self._credentials = credentials
        self._max_workers = max_workers_per_function
        self._site_dirs = host_site_dirs()
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._lock = threading.Lock()
        self._extract_lock = threading.Lock()
        self._closed = False

    def invoke(self, spec: FunctionSpec, payload: bytes) -> InvocationResult:
        """Runs one invocation and returns its outcome; a function error is a result, not
        an exception. Blocks while all of the function's workers are busy."""
        request_id = str(uuid.uuid4())
        try:
            pool = self._pool_for(spec)
        except zipfile.BadZipFile:
            failure = _Failure(
                _error("InvalidParameterValueException", "Could not unzip uploaded file"), ""
            )
            return self._result(spec, request_id, failure=failure, output=b"")
        worker = pool.checkout()
        init_ms: float | None = None
        if worker is None:
            started = time.perf_counter()
            try:
                worker = self._start_worker(spec, pool, request_id)
            except _InitFailed as failed:
                pool.start_failed()
                return self._result(spec, request_id, failure=failed.failure, output=failed.output)
            except BaseException:
                pool.start_failed()
                raise
            pool.started(worker)
            init_ms = (time.perf_counter() - started) * 1000
        return self._run(spec, pool, worker, request_id, payload, init_ms)

    def shutdown(self) -> None:
        """Stops every worker, busy or idle; later invocations raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def _run(
        self,
        spec: FunctionSpec,
        pool: _Pool,
        worker: _Worker,
        request_id: str,
        payload: bytes,
        init_ms: float | None,
    ) -> InvocationResult:
        header = {
            "request_id": request_id,
            "invoked_function_arn": spec.arn,
            "deadline_ms": int(time.time() * 1000) + spec.timeout_s * 1000,
        }
        started = time.perf_counter()
        reply: dict[str, Any] = {}
        body = b""
        failure: _Failure | None = None
        try:
            reply, body = worker.call(header, payload, time.monotonic() + spec.timeout_s)
        except _WorkerTimedOut:
            worker.terminate()
            failure = _timed_out(request_id, spec.timeout_s)
        except _WorkerExited:
            failure = _exited(request_id, worker.exit_description())
        except BaseException:
            pool.discard(worker)  # a broken reply: the worker can't be trusted with another
            raise
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            output = worker.take_log()
        finally:
            if failure is None:
                pool.checkin(worker)
            else:
                pool.discard(worker)
        return self._result(
            spec,
            request_id,
            payload=body,
            function_error=reply.get("function_error"),
            failure=failure,
            output=output,
            duration_ms=duration_ms,
            init_ms=init_ms,
            memory_used_mb=reply.get("max_memory_mb"),
        )

    def _result(
        self,
        spec: FunctionSpec,
        request_id: str,
        *,
        output: bytes,
        payload: bytes = b"",
        function_error: str | None = None,
        failure: _Failure | None = None,
        duration_ms: float = 0.0,
        init_ms: float | None = None,
        memory_used_mb: int | None = None,
    ) -> InvocationResult:
        if failure is not None:
            payload = json.dumps(failure.error).encode()
            function_error = "Unhandled"
            if failure.log_line:
                output += failure.log_line.encode() + b"\n"
        log = _invocation_log(spec, request_id, output, duration_ms, init_ms, memory_used_mb)
        return InvocationResult(
            status_code=200,
            payload=payload,
            function_error=function_error,
            duration_ms=duration_ms,
            log=log,
            request_id=request_id,
            executed_version=spec.version,
        )

    def _pool_for(self, spec: FunctionSpec) -> _Pool:
        key = (spec.name, spec.version)
        fingerprint = _fingerprint(spec)
        with self._lock:
            self._check_open()
            pool = self._pools.get(key)
            if pool is not None and pool.fingerprint == fingerprint:
                return pool
        # Extract outside the runtime's lock: other functions keep running meanwhile.
        code_dir = self._extracted(spec.zip_bytes)
        with self._lock:
            self._check_open()
            pool = self._pools.get(key)
            if pool is not None and pool.fingerprint == fingerprint:
                return pool
            replaced = pool
            pool = _Pool(fingerprint, code_dir, self._max_workers)
            self._pools[key] = pool
        if replaced is not None:
            logger.info("%s %s changed: starting fresh workers", spec.name, spec.version)
            replaced.retire()
        return pool

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the Lambda runtime has been shut down")

    def _extracted(self, zip_bytes: bytes) -> Path:
        """The zip's contents under ``workdir/code/<sha-hex>/``, extracted once."""
        target = self._workdir / "code" / hashlib.sha256(zip_bytes).hexdigest()
        if target.is_dir():
            return target
        with self._extract_lock:
            if target.is_dir():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extracting-"))
            try:
                with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
                    archive.extractall(scratch)  # zipfile drops absolute and ".." parts
                scratch.rename(target)
            except OSError:
                if not target.is_dir():  # else another local cloud process extracted it first
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return target

    def _start_worker(self, spec: FunctionSpec, pool: _Pool, request_id: str) -> _Worker:
        """A worker that has imported the handler; raises ``_InitFailed`` if it can't."""
        env = self._environment(spec, pool.code_dir)
        worker = _Worker.launch(spec.handler, pool.code_dir, env, self._site_dirs)
        try:
            message = worker.wait_ready(time.monotonic() + INIT_TIMEOUT_S)
        except _WorkerTimedOut:
            worker.terminate()
            message = {"init_timeout": True}
        except _WorkerExited:
            message = {"exited": worker.exit_description()}
        except BaseException:
            worker.dispose()
            raise
        if message.get("ready"):
            return worker
        output = worker.take_log()
        worker.dispose()
        if "init_error" in message:
            raise _InitFailed(_Failure(message["init_error"], ""), output)
        if "exited" in message:
            raise _InitFailed(_exited(request_id, str(message["exited"])), output)
        error = _error("Sandbox.Timedout", f"Init timed out after {INIT_TIMEOUT_S:.2f} seconds")
        raise _InitFailed(_Failure(error, error["errorMessage"]), output)

    def _environment(self, spec: FunctionSpec, code_dir: Path) -> dict[str, str]:
        """The worker's whole environment: nothing is inherited from this process but PATH."""
        access_key, secret_key = self._credentials
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[{spec.version}]{uuid.uuid4().hex}"
        env = {name: str(value) for name, value in spec.environment.items()}
        env.update(
            {
                "PATH": os.environ.get("PATH", os.defpath),
                "TZ": ":UTC",
                "_HANDLER": spec.handler,
                "LAMBDA_TASK_ROOT": str(code_dir),
                "AWS_EXECUTION_ENV": f"AWS_Lambda_python{_PYTHON_VERSION}",
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_REGION": self._region,
                "AWS_DEFAULT_REGION": self._region,
                "AWS_ACCESS_KEY_ID": access_key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_ENDPOINT_URL": self._endpoint_url,
                # Function code must not read the developer's AWS setup; Lambda has none.
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        return env


def host_site_dirs() -> list[str]:
    """This interpreter's site-packages directories, where Pillow and boto3 come from."""
    return [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]


def _fingerprint(spec: FunctionSpec) -> tuple[Any, ...]:
    """What a worker was started with: any change needs new workers."""
    environment = tuple(sorted((name, str(value)) for name, value in spec.environment.items()))
    return (spec.code_sha256, spec.handler, environment, spec.timeout_s, spec.memory_mb)


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type}


def _timed_out(request_id: str, timeout_s: int) -> _Failure:
    message = f"Task timed out after {timeout_s:.2f} seconds"
    error = _error("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}")
    return _Failure(error, f"{_aws_timestamp()} {request_id} {message}")


def _exited(request_id: str, how: str) -> _Failure:
    message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
    return _Failure(_error("Runtime.ExitError", message), f"{message}\nRuntime.ExitError")


def _invocation_log(
    spec: FunctionSpec,
    request_id: str,
    output: bytes,
    duration_ms: float,
    init_ms: float | None,
    memory_used_mb: int | None,
) -> str:
    """The invocation's log as ``LogType=Tail`` shows it: its last 4 KB."""
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {spec.memory_mb} MB"
    )
    if memory_used_mb is not None:
        report += f"\tMax Memory Used: {memory_used_mb} MB"
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    if output and not output.endswith(b"\n"):
        output += b"\n"
    text = (
        f"START RequestId: {request_id} Version: {spec.version}\n".encode()
        + output
        + f"END RequestId: {request_id}\n{report}\n".encode()
    )
    # Cutting bytes can split a character: drop the fragment rather than invent one.
    return text[-LOG_TAIL_BYTES:].decode("utf-8", errors="ignore")


def _aws_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class AsyncConfig:
    """A function's event invoke config (``PutFunctionEventInvokeConfig``), AWS's defaults
    when it has none: two retries, six hours, no destinations."""

    maximum_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    maximum_event_age_s: float = DEFAULT_MAX_EVENT_AGE_S
    on_failure: str | None = None
    on_success: str | None = None


@dataclass
class _Event:
    """One asynchronous invocation on its way through attempts."""

    request_id: str
    function: str
    payload: bytes
    submitted_at: float
    attempts: int = 0
    last_result: InvocationResult | None = None
    function_arn: str = ""


class AsyncInvoker:
    """Lambda's asynchronous invocation (``InvocationType=Event``): queue, retries, destinations.

    ``lookup`` resolves a function name or ARN to its current spec when an attempt starts
    (``None``: the function is gone and the event is dropped); ``invoke_config`` gives its
    event invoke config; ``send_to_destination(arn, record)`` delivers an invocation record.
    ``retry_delays[i]`` is the wait before retry ``i + 1`` (the last one repeats); AWS's
    are ``AWS_RETRY_DELAYS``. ``clock`` (monotonic seconds) measures event age and times
    retries; tests replace it to age events without waiting.
    """

    def __init__(
        self,
        runtime: Invoker,
        *,
        lookup: Callable[[str], FunctionSpec | None],
        invoke_config: Callable[[str], AsyncConfig],
        send_to_destination: Callable[[str, dict[str, Any]], None],
        retry_delays: Sequence[float] = AWS_RETRY_DELAYS,
        threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if any(delay < 0 for delay in retry_delays):
            raise ValueError("retry delays can't be negative")
        self._runtime = runtime
        self._lookup = lookup
        self._invoke_config = invoke_config
        self._send = send_to_destination
        self._retry_delays = tuple(retry_delays)
        self._clock = clock
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Event]] = []
        self._order = itertools.count()
        self._outstanding = 0
        self._running = True
        self._threads = [
            threading.Thread(target=self._serve, name=f"lambda-async-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: str, payload: bytes) -> None:
        """Queues one asynchronous invocation of a function (name or ARN) and returns at once."""
        event = _Event(str(uuid.uuid4()), function, payload, submitted_at=self._clock())
        with self._cond:
            if not self._running:
                raise RuntimeError("the asynchronous invoker has been shut down")
            self._outstanding += 1
            self._schedule(event, event.submitted_at)

    def drain(self, timeout: float) -> bool:
        """Waits until every submitted event has succeeded or been given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops the threads after their current attempt; events still waiting are dropped."""
        with self._cond:
            self._running = False
            dropped = len(self._due)
            self._due.clear()
            self._outstanding -= dropped
            self._cond.notify_all()
        if dropped:
            logger.warning("dropped %d queued asynchronous invocation(s) at shutdown", dropped)
        for thread in self._threads:
            thread.join(timeout)

    def _schedule(self, event: _Event, due: float) -> None:
        heapq.heappush(self._due, (due, next(self._order), event))
        self._cond.notify()

    def _next_due(self) -> _Event | None:
        with self._cond:
            while self._running:
                if self._due:
                    wait = self._due[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._due)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _serve(self) -> None:
        while (event := self._next_due()) is not None:
            try:
                retry_at = self._attempt(event)
            except Exception:  # a bug in one event must not kill the thread
                logger.exception("asynchronous invocation %s failed", event.request_id)
                retry_at = None
            with self._cond:
                if retry_at is not None and self._running:
                    self._schedule(event, retry_at)
                else:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def _attempt(self, event: _Event) -> float | None:
        """Runs one attempt; returns when to retry, or None when the event is settled."""
        spec = self._lookup(event.function)
        if spec is None:
            logger.warning(
                "dropping event %s: function %s is gone", event.request_id, event.function
            )
            return None
        event.function_arn = spec.qualified_arn
        config = self._invoke_config(event.function)
        if self._clock() - event.submitted_at > config.maximum_event_age_s:
            self._deliver(config.on_failure, event, "EventAgeExceeded")
            return None
        result = self._run(spec, event.payload)
        event.attempts += 1
        event.last_result = result
        if result.function_error is None:
            self._deliver(config.on_success, event, "Success")
            return None
        if event.attempts > config.maximum_retry_attempts:
            self._deliver(config.on_failure, event, "RetriesExhausted")
            return None
        return self._clock() + self._retry_delay(event.attempts)

    def _run(self, spec: FunctionSpec, payload: bytes) -> InvocationResult:
        try:
            return self._runtime.invoke(spec, payload)
        except Exception as exc:  # the runtime failing is a failed attempt
            logger.exception("runtime failed to invoke %s", spec.name)
            error = _error("Runtime.Unknown", f"the local runtime failed: {exc}")
            return InvocationResult(200, json.dumps(error).encode(), "Unhandled", 0.0, "")

    def _retry_delay(self, attempts: int) -> float:
        if not self._retry_delays:
            return 0.0
        return self._retry_delays[min(attempts, len(self._retry_delays)) - 1]

    def _deliver(self, destination: str | None, event: _Event, condition: str) -> None:
        if not destination:
            if condition != "Success":
                logger.warning(
                    "asynchronous invocation %s of %s failed (%s); no on-failure destination",
                    event.request_id,
                    event.function,
                    condition,
                )
            return
        try:
            self._send(destination, _invocation_record(event, condition))
        except Exception:  # a missing queue must not stop other deliveries
            logger.exception("could not send invocation %s to %s", event.request_id, destination)


def _invocation_record(event: _Event, condition: str) -> dict[str, Any]:
    """The record Lambda sends to a destination (AWS, "Adding a destination")."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": _aws_timestamp(),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": event.function_arn,
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": _json_or_text(event.payload),
    }
    result = event.last_result
    if result is not None:
        response: dict[str, Any] = {
            "statusCode": result.status_code,
            "executedVersion": result.executed_version,
        }
        if result.function_error:
            response["functionError"] = result.function_error
        record["responseContext"] = response
        record["responsePayload"] = _json_or_text(result.payload)
    return record


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", errors="replace")
