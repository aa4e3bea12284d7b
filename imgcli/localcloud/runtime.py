"""The local cloud's Lambda runtime: runs a function's deployed zip as AWS would, without Docker.

moto stores functions but never runs them (docs/local-cloud.md). This module runs them,
and knows nothing about moto: a function arrives as a :class:`FunctionSpec` (its zip, its
handler, its configuration), so the runtime is tested without any AWS, and
``moto_lambda`` is the one module that turns moto's function objects into specs. The
processes a function runs in, warm workers and their pools, are ``worker_pool``'s;
asynchronous invocation (an event queue with retries and destinations) is
``async_invoke``'s, on top of :meth:`LambdaRuntime.invoke`.

Decisions, each the closest local equivalent of what Lambda does:

* **Code and configuration updates.** A pool belongs to one configuration of one function
  version: its code's SHA-256, handler, environment, timeout, memory and execution role. An
  invocation with another configuration replaces the pool: idle workers of the old one
  stop at once, busy ones when their invocation ends. So an ``UpdateFunctionCode``, a
  changed environment variable or another role takes effect on the next invocation, as
  on AWS, where each starts new environments. Published versions keep their own pools.
* **The code.** The zip is extracted once per content hash under ``workdir/code/<sha-hex>/``
  (into a scratch directory, then renamed, so a half-extracted tree is never used) and is
  the worker's working directory and first import path: it is ``/var/task``. The local
  packaging target has no Pillow, so the host's site-packages follow it (see ``worker``).
* **Environment.** Built from nothing, never inherited: the function's variables, then what
  Lambda sets (``AWS_LAMBDA_FUNCTION_*``, ``AWS_REGION``, ``_HANDLER``, ``TZ=:UTC``...), the
  worker's credentials, and ``AWS_ENDPOINT_URL`` pointing back at the local cloud. A
  developer's ``AWS_PROFILE``, real keys or ``~/.aws`` files therefore never reach function
  code (the AWS config files are pointed at ``/dev/null``).
* **Credentials.** Each worker gets its own, from the ``credentials`` callable when it
  starts: on the local cloud, temporary credentials of the function's execution role
  (``role_sessions``; key, secret and ``AWS_SESSION_TOKEN``), so every call the code makes
  is authorised as that role, as on AWS. A worker whose credentials would expire before an
  invocation could end (``CREDENTIALS_MARGIN_S`` included) is replaced by a fresh one with
  new credentials, as Lambda refreshes an environment's.
* **HOME and /tmp.** Each worker gets a private directory (0700) under
  ``workdir/tmp/``, removed with the worker: it is both ``HOME`` and ``TMPDIR``, Lambda's
  ``/tmp``. So ``os.path.expanduser("~")`` never finds the owner's home and its
  ``~/.aws``, and two workers never share scratch files. (This is no OS sandbox: the code
  still runs as the owner's user.)
* **Timeout.** The caller's thread waits for the reply until the configured timeout; then
  the worker's whole process group is killed (so a subprocess the handler started dies
  too) and the invocation fails with AWS's ``Sandbox.Timedout``. A worker that dies on its
  own (``os._exit``, a segfault) fails its invocation with ``Runtime.ExitError``. Either
  way the worker is discarded and the next invocation starts a fresh one: workers are
  replaced on demand, not eagerly, so an idle function costs nothing. Importing the
  handler has its own limit, ``INIT_TIMEOUT_S``, like Lambda's 10-second init phase.
* **Logs.** The result carries what ``LogType=Tail`` returns: the last 4 KB of what the
  worker wrote, framed by AWS's ``START``/``END``/``REPORT`` lines. The whole invocation log
  (up to ``worker_pool.FULL_LOG_BYTES``) also goes to ``log_sink`` with the worker's log stream name
  (``YYYY/MM/DD/[version]<id>``, one stream per worker as Lambda names them); the local
  cloud writes it to the function's log group with the role's permissions
  (``function_logs``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from imgcli.localcloud.identity import Principal
from imgcli.localcloud.worker_pool import (
    LOG_TAIL_BYTES,
    Pool,
    Worker,
    WorkerExited,
    WorkerTimedOut,
)

logger = logging.getLogger(__name__)

INIT_TIMEOUT_S: Final = 10.0
"""How long importing the handler may take, as Lambda's init phase."""

CREDENTIALS_MARGIN_S: Final = 60.0
"""How long a worker's credentials must outlive an invocation's timeout for it to run it."""

LATEST: Final = "$LATEST"
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
    #: The execution role, whose credentials the code gets; ``None`` only in tests.
    role_arn: str | None = None

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


#: Credentials for a new worker of a function (on the local cloud, a session of its role).
CredentialSource = Callable[[FunctionSpec], Principal]
#: Receives each invocation's whole log: the spec, the worker's log stream, the text.
LogSink = Callable[[FunctionSpec, str, str], None]


class Invoker(Protocol):
    """Runs one invocation synchronously; :class:`LambdaRuntime` is the real one."""

    def invoke(self, spec: FunctionSpec, payload: bytes) -> InvocationResult: ...


@dataclass(frozen=True)
class _Failure:
    """A failed invocation before or instead of the handler's own answer."""

    error: dict[str, Any]
    log_line: str


class _InitFailed(Exception):
    """The worker could not load the handler; ``output`` is what it wrote meanwhile."""

    def __init__(self, failure: _Failure, output: bytes, log_stream: str) -> None:
        super().__init__(failure.error["errorMessage"])
        self.failure = failure
        self.output = output
        self.log_stream = log_stream


class LambdaRuntime:
    """Runs Lambda functions from their deployed zips in warm worker subprocesses.

    ``workdir`` holds the extracted code and the workers' private directories;
    ``endpoint_url`` and ``region`` are what function code gets to call the local cloud
    back, with the credentials ``credentials`` issues per worker (a fixed access key id
    and secret pair serves every worker, as tests use). ``log_sink`` receives every
    invocation's log; ``clock`` (epoch seconds) is compared with credentials' expiry.
    Thread-safe: call :meth:`invoke` from as many threads as you like.
    """

    def __init__(
        self,
        *,
        workdir: Path,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource | tuple[str, str],
        max_workers_per_function: int = 4,
        log_sink: LogSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_workers_per_function < 1:
            raise ValueError("max_workers_per_function must be at least 1")
        self._workdir = workdir
        self._endpoint_url = endpoint_url
        self._region = region
        self._credentials = _credential_source(credentials)
        self._log_sink = log_sink
        self._clock = clock
        self._max_workers = max_workers_per_function
        # Private directories of workers a killed process left behind are nobody's now.
        shutil.rmtree(self._workdir / "tmp", ignore_errors=True)
        self._site_dirs = host_site_dirs()
        self._pools: dict[tuple[str, str], Pool] = {}
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
                aws_error("InvalidParameterValueException", "Could not unzip uploaded file"), ""
            )
            return self._result(spec, request_id, failure=failure, output=b"", log_stream=None)
        worker = pool.checkout(valid_until=self._clock() + spec.timeout_s + CREDENTIALS_MARGIN_S)
        init_ms: float | None = None
        if worker is None:
            started = time.perf_counter()
            try:
                worker = self._start_worker(spec, pool, request_id)
            except _InitFailed as failed:
                pool.start_failed()
                return self._result(
                    spec,
                    request_id,
                    failure=failed.failure,
                    output=failed.output,
                    log_stream=failed.log_stream,
                )
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
        pool: Pool,
        worker: Worker,
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
        except WorkerTimedOut:
            worker.terminate()
            failure = _timed_out(request_id, spec.timeout_s)
        except WorkerExited:
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
            log_stream=worker.log_stream,
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
        log_stream: str | None,
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
        if self._log_sink is not None and log_stream is not None:
            try:
                self._log_sink(spec, log_stream, log.decode("utf-8", errors="replace"))
            except Exception:  # logs are best effort, never the invocation's failure
                logger.exception("could not write the log of %s", spec.name)
        return InvocationResult(
            status_code=200,
            payload=payload,
            function_error=function_error,
            duration_ms=duration_ms,
            # Cutting bytes can split a character: drop the fragment rather than invent one.
            log=log[-LOG_TAIL_BYTES:].decode("utf-8", errors="ignore"),
            request_id=request_id,
            executed_version=spec.version,
        )

    def _pool_for(self, spec: FunctionSpec) -> Pool:
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
            pool = Pool(fingerprint, code_dir, self._max_workers)
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

    def _start_worker(self, spec: FunctionSpec, pool: Pool, request_id: str) -> Worker:
        """A worker that has imported the handler; raises ``_InitFailed`` if it can't."""
        credentials = self._credentials(spec)
        log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[{spec.version}]{uuid.uuid4().hex}"
        private_dir = self._private_dir()
        try:
            env = self._environment(spec, pool.code_dir, credentials, log_stream, private_dir)
            worker = Worker.launch(
                spec.handler,
                pool.code_dir,
                env,
                self._site_dirs,
                private_dir=private_dir,
                expires_at=credentials.expires_at,
                log_stream=log_stream,
            )
        except BaseException:
            shutil.rmtree(private_dir, ignore_errors=True)
            raise
        try:
            message = worker.wait_ready(time.monotonic() + INIT_TIMEOUT_S)
        except WorkerTimedOut:
            worker.terminate()
            message = {"init_timeout": True}
        except WorkerExited:
            message = {"exited": worker.exit_description()}
        except BaseException:
            worker.dispose()
            raise
        if message.get("ready"):
            return worker
        output = worker.take_log()
        worker.dispose()
        if "init_error" in message:
            raise _InitFailed(_Failure(message["init_error"], ""), output, log_stream)
        if "exited" in message:
            raise _InitFailed(_exited(request_id, str(message["exited"])), output, log_stream)
        error = aws_error("Sandbox.Timedout", f"Init timed out after {INIT_TIMEOUT_S:.2f} seconds")
        raise _InitFailed(_Failure(error, error["errorMessage"]), output, log_stream)

    def _private_dir(self) -> Path:
        """A new directory only the worker uses (its HOME and TMPDIR), mode 0700."""
        parent = self._workdir / "tmp"
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=parent, prefix="worker-"))

    def _environment(
        self,
        spec: FunctionSpec,
        code_dir: Path,
        credentials: Principal,
        log_stream: str,
        private_dir: Path,
    ) -> dict[str, str]:
        """The worker's whole environment: nothing is inherited from this process but PATH."""
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
                "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
                "AWS_REGION": self._region,
                "AWS_DEFAULT_REGION": self._region,
                "AWS_ACCESS_KEY_ID": credentials.access_key_id,
                "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
                "AWS_ENDPOINT_URL": self._endpoint_url,
                "HOME": str(private_dir),
                "TMPDIR": str(private_dir),
                # Function code must not read the developer's AWS setup; Lambda has none.
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        if credentials.session_token is not None:
            env["AWS_SESSION_TOKEN"] = credentials.session_token
        return env


def host_site_dirs() -> list[str]:
    """This interpreter's site-packages directories, where Pillow and boto3 come from."""
    return [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]


def _fingerprint(spec: FunctionSpec) -> tuple[Any, ...]:
    """What a worker was started with: any change needs new workers."""
    environment = tuple(sorted((name, str(value)) for name, value in spec.environment.items()))
    return (
        spec.code_sha256,
        spec.handler,
        environment,
        spec.timeout_s,
        spec.memory_mb,
        spec.role_arn,
    )


def _credential_source(credentials: CredentialSource | tuple[str, str]) -> CredentialSource:
    if callable(credentials):
        return credentials
    access_key_id, secret_access_key = credentials
    fixed = Principal(access_key_id, secret_access_key)
    return lambda spec: fixed


def aws_error(error_type: str, message: str) -> dict[str, Any]:
    """AWS's error object: what a failed invocation answers instead of a result."""
    return {"errorMessage": message, "errorType": error_type}


def _timed_out(request_id: str, timeout_s: int) -> _Failure:
    message = f"Task timed out after {timeout_s:.2f} seconds"
    error = aws_error("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}")
    return _Failure(error, f"{aws_timestamp()} {request_id} {message}")


def _exited(request_id: str, how: str) -> _Failure:
    message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
    return _Failure(aws_error("Runtime.ExitError", message), f"{message}\nRuntime.ExitError")


def _invocation_log(
    spec: FunctionSpec,
    request_id: str,
    output: bytes,
    duration_ms: float,
    init_ms: float | None,
    memory_used_mb: int | None,
) -> bytes:
    """The invocation's whole log, framed by Lambda's START, END and REPORT lines."""
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
    return (
        f"START RequestId: {request_id} Version: {spec.version}\n".encode()
        + output
        + f"END RequestId: {request_id}\n{report}\n".encode()
    )


def aws_timestamp() -> str:
    """Now, as AWS writes times in logs and invocation records."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
