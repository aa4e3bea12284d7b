"""What the Lambda runtime's test files share: the handlers they run, and a runtime to run them.

``HANDLERS`` is one module, ``h.py``, with one function per behaviour; ``handler_zip``
packs it as a deployed function's zip and ``spec_for`` describes one of its functions.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imgcli.infra.packaging import code_sha256
from imgcli.localcloud.runtime import FunctionSpec, LambdaRuntime

ACCOUNT = "123456789012"
REGION = "us-east-1"
CREDENTIALS = ("LKIATESTRUNTIME00000", "runtime-test-secret")
FAILURES_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"

HANDLERS = """
import decimal, importlib.util, json, os, signal, stat, subprocess, sys, tempfile, time

calls = 0


def echo(event, context):
    return event


def odd(event, context):
    return {"price": decimal.Decimal("1.5"), "nothing": None, "text": "h\\u00e9"}


def unserialisable(event, context):
    return {"when": object()}


def describe(event, context):
    global calls
    calls += 1
    return {
        "pid": os.getpid(),
        "calls": calls,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "found": {name: importlib.util.find_spec(name) is not None
                  for name in ("PIL", "boto3", "lambdas", "imgcli")},
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
    }


def slow(event, context):
    time.sleep(event.get("sleep", 0))
    return os.getpid()


def hang(event, context):
    if event.get("hang"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        with open(event["pid_file"], "w") as out:
            out.write(f"{os.getpid()} {child.pid}")
        print("about to hang")
        time.sleep(5)
    return os.getpid()


def crash(event, context):
    if "exit" in event:
        os._exit(event["exit"])
    if event.get("segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return os.getpid()


def fail(event, context):
    raise ValueError("no good: " + json.dumps(event))


def chatty(event, context):
    print("to stdout")
    print("to stderr", file=sys.stderr)
    os.write(1, b"straight to fd 1\\n")
    sys.stdout.write("\\x00\\x00\\x00\\x10 looks like a frame\\n")
    if event.get("long"):
        print("x" * 10000)
    print("last words")
    return {"ok": True}


def home(event, context):
    here = os.path.expanduser("~")
    with open(os.path.join(tempfile.gettempdir(), "scratch"), "w") as out:
        out.write("mine")
    return {
        "pid": os.getpid(),
        "home": here,
        "tmp": tempfile.gettempdir(),
        "mode": stat.S_IMODE(os.stat(here).st_mode),
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "token": os.environ.get("AWS_SESSION_TOKEN"),
    }


def touch(event, context):
    with open(event["marker"], "a") as out:
        out.write(context.aws_request_id + "\\n")
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "code": "one"}
"""


def handler_zip(source: str = HANDLERS) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed timestamp: the same source must give the same bytes, even when two calls
        # fall on either side of a zip timestamp's two-second tick (a flaky comparison).
        archive.writestr(zipfile.ZipInfo("h.py", date_time=(1980, 1, 1, 0, 0, 0)), source)
    return buffer.getvalue()


def spec_for(
    handler: str,
    *,
    zip_bytes: bytes | None = None,
    name: str = "fn",
    timeout_s: int = 3,
    environment: dict[str, str] | None = None,
    role_arn: str | None = None,
) -> FunctionSpec:
    code = zip_bytes if zip_bytes is not None else handler_zip()
    return FunctionSpec(
        name=name,
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
        code_sha256=code_sha256(code),
        zip_bytes=code,
        handler=handler,
        environment=environment or {},
        timeout_s=timeout_s,
        memory_mb=256,
        role_arn=role_arn,
    )


@contextmanager
def running_runtime(workdir: Path) -> Iterator[LambdaRuntime]:
    """A runtime whose functions would call the local cloud back on a closed port."""
    runtime = LambdaRuntime(
        workdir=workdir,
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
        credentials=CREDENTIALS,
    )
    try:
        yield runtime
    finally:
        runtime.shutdown()


class Destinations:
    """A recording ``send_to_destination``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, arn: str, record: dict[str, Any]) -> None:
        self.sent.append((arn, record))
