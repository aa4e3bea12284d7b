"""One warm Lambda execution environment: a subprocess that imports a handler once and runs it.

``runtime.LambdaRuntime`` starts this file as ``python -I -S -u -X utf8 worker.py CONFIG``
(CONFIG is JSON: the code dir, the handler, the protocol's file descriptors, the extra
import paths). It is a script run by path, not ``python -m imgcli.localcloud.worker``, and
it imports only the standard library, because what the handler can import must be decided
here and nowhere else: ``-I`` drops the script's directory, the current directory and
``PYTHON*`` variables, ``-S`` skips ``site`` and so every ``.pth`` file. An editable install
of imgcli is such a ``.pth`` file, and it would put the repository's own ``lambdas/`` on the
path, so a module missing from the deployed zip would still import locally and the packaging
bug would reach AWS unseen. ``sys.path`` is therefore exactly: the extracted zip first (it
is ``/var/task``), then the interpreter's standard library, then the host's site-packages
directories that the runtime passes in (Pillow and boto3 come from imgcli's own environment,
as the ``local`` packaging target promises).

Protocol, on two private pipes whose descriptors the runtime passes (never stdin/stdout,
which belong to the handler): every message is a sequence of frames, each a 4-byte
big-endian length and that many bytes.

* worker → runtime, once after import: ``{"ready": true}``, or ``{"init_error": {...}}``
  (AWS's ``Runtime.ImportModuleError`` and friends) and then the worker exits, because AWS
  too retries initialisation on the next invocation.
* runtime → worker, per invocation: a JSON header (``request_id``, ``deadline_ms``,
  ``invoked_function_arn``) and the raw event payload.
* worker → runtime, per invocation: a JSON header (``function_error``: ``null`` or
  ``"Unhandled"``; ``max_memory_mb``) and the raw result payload (the handler's result as
  JSON, or AWS's error object).

The handler's own output: the runtime points this process's file descriptors 1 and 2 at
one append-only log file and reads it after each invocation. Capturing at the descriptor
level (not by swapping ``sys.stdout``) also catches native code and child processes, and
``-u`` makes Python's own streams unbuffered, so the log is complete up to the instant a
timed-out worker is killed. The worker's errors use AWS's Python runtime formats
(``awslambdaric``): the error object, ``[ERROR] Type: message`` plus the traceback in the
log, and the same ``Runtime.*`` error types.

Nothing enforces the timeout here: the runtime kills this process group when the deadline
passes, which stops a handler however it is stuck.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

FRAME_HEADER: Final = struct.Struct(">I")

Handler = Callable[[Any, Any], Any]


class ProtocolClosed(Exception):
    """The other end closed its pipe: for the worker, the runtime wants it gone."""


def encode_frames(*bodies: bytes) -> bytes:
    """One message: each body as a length-prefixed frame."""
    return b"".join(FRAME_HEADER.pack(len(body)) + body for body in bodies)


def write_message(fd: int, *bodies: bytes) -> None:
    """Writes a whole message; a pipe takes it in pieces when it is large."""
    data = memoryview(encode_frames(*bodies))
    while data:
        data = data[os.write(fd, data) :]


def read_frame(fd: int) -> bytes:
    """Reads one frame, blocking; raises ``ProtocolClosed`` at end of file."""
    (length,) = FRAME_HEADER.unpack(_read_exact(fd, FRAME_HEADER.size))
    return _read_exact(fd, length)


def _read_exact(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            raise ProtocolClosed
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


class LambdaContext:
    """The ``context`` argument, with the attributes and method AWS's Python runtime offers."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        # A string, as in awslambdaric: it is read straight from the environment there too.
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class InitError(Exception):
    """The handler could not be loaded; ``error`` is the object AWS would report."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def load_handler(name: str) -> Handler:
    """Imports ``module.path.function`` as AWS's Python runtime does, with its error types."""
    try:
        module_name, function_name = name.rsplit(".", 1)
    except ValueError as exc:
        message = f"Bad handler '{name}': {exc}"
        raise InitError(_fault("Runtime.MalformedHandlerName", message)) from exc
    module_name = module_name.replace("/", ".")
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise InitError(
            _fault(
                "Runtime.BuiltInModuleConflict",
                f"Cannot use built-in module {module_name} as a handler module",
            )
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise InitError(_fault("Runtime.ImportModuleError", message)) from exc
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_name}': {exc}"
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise InitError(_fault("Runtime.UserCodeSyntaxError", message, trace)) from exc
    except Exception as exc:  # module-level code may raise anything; AWS reports it
        raise InitError(_error_object(exc, "")) from exc
    handler = getattr(module, function_name, None)
    if not callable(handler):
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise InitError(_fault("Runtime.HandlerNotFound", message))
    return handler  # type: ignore[no-any-return]


def invoke(handler: Handler, header: dict[str, Any], payload: bytes) -> tuple[bool, bytes]:
    """Runs one invocation; returns (failed, result or error object as JSON bytes)."""
    request_id = str(header["request_id"])
    context = LambdaContext(request_id, str(header["invoked_function_arn"]), header["deadline_ms"])
    try:
        event = json.loads(payload) if payload else {}
    except ValueError as exc:
        error = _fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}", [])
        return True, _report(error, request_id)
    try:
        result = handler(event, context)
    except Exception as exc:  # noqa: BLE001 - any handler exception is the function's error
        return True, _report(_error_object(exc, request_id), request_id)
    try:
        return False, json.dumps(result, default=_decimal_as_float).encode()
    except (TypeError, ValueError) as exc:
        error = _fault("Runtime.MarshalError", f"Unable to marshal response: {exc}", [])
        return True, _report(error, request_id)


def _decimal_as_float(value: object) -> float:
    # awslambdaric's serializer: boto3's DynamoDB resource returns Decimal for every number.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fault(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "stackTrace": trace or []}


def _error_object(exc: BaseException, request_id: str) -> dict[str, Any]:
    # Drop the first frame: it is this module calling the handler, not the function's code.
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    error = _fault(type(exc).__name__, str(exc), traceback.format_list(frames))
    if request_id:
        error["requestId"] = request_id
    return error


def _report(error: dict[str, Any], request_id: str) -> bytes:
    """Logs the error as AWS's runtime does and returns the error object to send back."""
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in error["stackTrace"])
    sys.stderr.write("\n".join(lines) + "\n")
    if request_id and "requestId" not in error:
        error["requestId"] = request_id
    return json.dumps(error).encode()


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            continue  # a handler may have closed or replaced a stream; the log is best effort


def _max_memory_mb() -> int:
    """This process's own peak RSS: the REPORT line's "Max Memory Used".

    ``VmHWM`` where ``/proc`` has it, not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across
    ``exec``, so a worker the runtime started (``vfork``, then ``exec``) would report the
    local cloud server's own peak, which holds every stored object. ``VmHWM`` belongs to
    the address space, which ``exec`` replaces.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        status = ""  # not Linux
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // (1 << 20) if sys.platform == "darwin" else peak // 1024  # bytes on macOS


def serve(config: dict[str, Any]) -> int:
    """Imports the handler, then answers invocations until the runtime closes the pipe."""
    request_fd = int(config["request_fd"])
    response_fd = int(config["response_fd"])
    sys.path[:] = [str(config["code_dir"]), *sys.path, *map(str, config["site_dirs"])]
    try:
        handler = load_handler(str(config["handler"]))
    except InitError as exc:
        _report(exc.error, "")
        _flush_output()
        write_message(response_fd, json.dumps({"init_error": exc.error}).encode())
        return 1
    write_message(response_fd, json.dumps({"ready": True}).encode())
    while True:
        try:
            header = json.loads(read_frame(request_fd))
            payload = read_frame(request_fd)
        except ProtocolClosed:
            return 0
        failed, result = invoke(handler, header, payload)
        _flush_output()
        reply = {
            "function_error": "Unhandled" if failed else None,
            "max_memory_mb": _max_memory_mb(),
        }
        write_message(response_fd, json.dumps(reply).encode(), result)


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1])))
