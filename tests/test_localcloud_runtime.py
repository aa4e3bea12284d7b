"""The local cloud's Lambda runtime: warm workers, timeouts, crashes, async retries, moto's Invoke.

Most tests run small handler zips built here (one module, ``h.py``, one function per
behaviour) in a real :class:`LambdaRuntime`: real subprocesses, real pipes, real kills.
The asynchronous rules that need time to pass (delays, event age) use a scripted invoker
and an injected clock instead. The moto tests run moto in process (``mock_aws``), except
the last, which serves moto on a loopback port so that the real save/delete function,
zipped as bootstrap deploys it, can call the local cloud back.
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from imgcli.config import LOCAL_ACCESS_KEY
from imgcli.infra.packaging import code_sha256
from imgcli.localcloud import moto_lambda
from imgcli.localcloud.runtime import (
    AWS_RETRY_DELAYS,
    LOG_TAIL_BYTES,
    AsyncConfig,
    AsyncInvoker,
    FunctionSpec,
    InvocationResult,
    LambdaRuntime,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
CREDENTIALS = (LOCAL_ACCESS_KEY.access_key_id, LOCAL_ACCESS_KEY.secret_access_key)
FAILURES_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failures"

HANDLERS = """
import decimal, importlib.util, json, os, signal, subprocess, sys, time

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
        archive.writestr("h.py", source)
    return buffer.getvalue()


def spec_for(
    handler: str,
    *,
    zip_bytes: bytes | None = None,
    name: str = "fn",
    timeout_s: int = 3,
    environment: dict[str, str] | None = None,
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
    )


def invoke_json(runtime: LambdaRuntime, spec: FunctionSpec, event: Any = None) -> Any:
    result = runtime.invoke(spec, json.dumps(event if event is not None else {}).encode())
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's parent may not reap it at once)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    runtime = LambdaRuntime(
        workdir=tmp_path / "runtime",
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
        credentials=CREDENTIALS,
    )
    yield runtime
    runtime.shutdown()


# --- LambdaRuntime ----------------------------------------------------------------------


def test_result_round_trips(runtime: LambdaRuntime) -> None:
    event = {"key": "photos/beach day é.jpg", "n": [1, 2.5, None, True]}
    result = runtime.invoke(spec_for("h.echo"), json.dumps(event).encode())
    assert (result.status_code, result.function_error) == (200, None)
    assert json.loads(result.payload) == event
    assert result.executed_version == "$LATEST" and result.request_id in result.log
    # An empty payload is an empty event, as for Invoke without Payload.
    assert invoke_json(runtime, spec_for("h.echo"), {}) == {}
    assert runtime.invoke(spec_for("h.echo"), b"").payload == b"{}"
    # Decimal (what boto3's DynamoDB resource returns) is marshalled as awslambdaric does.
    assert invoke_json(runtime, spec_for("h.odd")) == {
        "price": 1.5,
        "nothing": None,
        "text": "hé",
    }


def test_unmarshallable_result_and_payload_are_runtime_errors(runtime: LambdaRuntime) -> None:
    bad_result = runtime.invoke(spec_for("h.unserialisable"), b"{}")
    assert bad_result.function_error == "Unhandled"
    assert json.loads(bad_result.payload)["errorType"] == "Runtime.MarshalError"
    bad_payload = runtime.invoke(spec_for("h.echo"), b"{not json")
    assert json.loads(bad_payload.payload)["errorType"] == "Runtime.UnmarshalError"


def test_environment_and_context(runtime: LambdaRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "developer-profile")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "host-token")
    spec = spec_for("h.describe", timeout_s=7, environment={"TABLE_NAME": "images"})

    result = runtime.invoke(spec, b"{}")
    seen = json.loads(result.payload)

    env = seen["env"]
    assert env["TABLE_NAME"] == "images"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == CREDENTIALS
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_TIMEOUT"] == "7"
    assert env["_HANDLER"] == "h.describe"
    for leaked in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "IMGCLI_CONFIG"):
        assert leaked not in env
    code_dir = Path(env["LAMBDA_TASK_ROOT"])
    assert code_dir.parent.name == "code" and (code_dir / "h.py").is_file()
    assert seen["cwd"] == seen["path0"] == str(code_dir)
    # Pillow and boto3 come from imgcli's environment; the repository's own packages don't.
    assert seen["found"] == {"PIL": True, "boto3": True, "lambdas": False, "imgcli": False}
    context = seen["context"]
    assert context["aws_request_id"] == result.request_id
    assert context["function_name"] == "fn"
    assert context["invoked_function_arn"] == spec.arn
    assert context["memory_limit_in_mb"] == "256"
    assert 5000 < context["remaining_ms"] <= 7000


def test_a_warm_worker_serves_invocation_after_invocation(runtime: LambdaRuntime) -> None:
    spec = spec_for("h.describe")
    first, second, third = (invoke_json(runtime, spec) for _ in range(3))
    assert first["pid"] == second["pid"] == third["pid"]
    assert [first["calls"], second["calls"], third["calls"]] == [1, 2, 3]


def test_parallel_invocations_share_at_most_four_workers(runtime: LambdaRuntime) -> None:
    spec = spec_for("h.slow")
    results: list[InvocationResult] = []
    lock = threading.Lock()

    def call() -> None:
        result = runtime.invoke(spec, b'{"sleep": 0.3}')
        with lock:
            results.append(result)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert len(results) == 10
    assert all(result.function_error is None for result in results)
    pids = {json.loads(result.payload) for result in results}
    assert 1 < len(pids) <= 4


def test_timeout_kills_the_whole_process_group_and_a_new_worker_follows(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    spec = spec_for("h.hang", timeout_s=1)
    pid_file = tmp_path / "pids"

    started = time.monotonic()
    result = runtime.invoke(spec, json.dumps({"hang": True, "pid_file": str(pid_file)}).encode())
    elapsed = time.monotonic() - started

    assert result.function_error == "Unhandled"
    error = json.loads(result.payload)
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert "about to hang" in result.log and "Task timed out" in result.log
    assert 1.0 <= elapsed < 3.0
    worker_pid, child_pid = map(int, pid_file.read_text().split())
    assert wait_until(lambda: not is_running(worker_pid) and not is_running(child_pid))

    assert invoke_json(runtime, spec) not in (worker_pid, child_pid)


@pytest.mark.parametrize(
    ("event", "how"),
    [({"exit": 3}, "exit status 3"), ({"segfault": True}, "signal: segmentation fault")],
)
def test_a_crashed_worker_fails_its_invocation_and_is_replaced(
    runtime: LambdaRuntime, event: dict[str, Any], how: str
) -> None:
    spec = spec_for("h.crash")
    before = invoke_json(runtime, spec)

    result = runtime.invoke(spec, json.dumps(event).encode())

    assert result.function_error == "Unhandled"
    error = json.loads(result.payload)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith(f"Runtime exited with error: {how}")
    after = invoke_json(runtime, spec)
    assert after != before and not is_running(before)


def test_code_and_configuration_updates_take_effect_on_the_next_invocation(
    runtime: LambdaRuntime,
) -> None:
    one = spec_for("h.describe", environment={"STAGE": "one"})
    old = invoke_json(runtime, one)

    reconfigured = replace(one, environment={"STAGE": "two"})
    assert invoke_json(runtime, reconfigured)["env"]["STAGE"] == "two"
    assert wait_until(lambda: not is_running(old["pid"]))  # the replaced worker is stopped

    new_code = handler_zip(HANDLERS.replace('"code": "one"', '"code": "two"'))
    updated = replace(one, zip_bytes=new_code, code_sha256=code_sha256(new_code), handler="h.touch")
    marker = runtime.invoke(updated, json.dumps({"marker": "/dev/null"}).encode())
    assert json.loads(marker.payload)["code"] == "two"


def test_a_handler_exception_is_an_unhandled_function_error(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(spec_for("h.fail"), b'{"id": 7}')

    assert result.status_code == 200 and result.function_error == "Unhandled"
    error = json.loads(result.payload)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == 'no good: {"id": 7}'
    assert error["requestId"] == result.request_id
    assert any('h.py", line' in line and "in fail" in line for line in error["stackTrace"])
    assert "[ERROR] ValueError: no good" in result.log
    # The worker survives its handler's exception.
    assert runtime.invoke(spec_for("h.fail"), b"{}").function_error == "Unhandled"


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("missing.handler", "Runtime.ImportModuleError"),
        ("h.nothing_here", "Runtime.HandlerNotFound"),
        ("nodots", "Runtime.MalformedHandlerName"),
    ],
)
def test_a_handler_that_cannot_load_reports_aws_init_errors(
    runtime: LambdaRuntime, handler: str, error_type: str
) -> None:
    result = runtime.invoke(spec_for(handler), b"{}")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorType"] == error_type
    assert error_type in result.log


def test_a_zip_that_is_not_a_zip_is_an_error_not_a_crash(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(spec_for("h.echo", zip_bytes=b"not a zip"), b"{}")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload)["errorMessage"] == "Could not unzip uploaded file"


def test_handler_output_goes_to_the_log_not_the_protocol(runtime: LambdaRuntime) -> None:
    spec = spec_for("h.chatty")

    short = runtime.invoke(spec, b"{}")
    assert json.loads(short.payload) == {"ok": True}
    lines = short.log.splitlines()
    assert lines[0] == f"START RequestId: {short.request_id} Version: $LATEST"
    for expected in ("to stdout", "to stderr", "straight to fd 1", "looks like a frame"):
        assert any(expected in line for line in lines)
    assert lines[-2] == f"END RequestId: {short.request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {short.request_id}\tDuration: ")

    long = runtime.invoke(spec, b'{"long": true}')
    assert json.loads(long.payload) == {"ok": True}
    assert len(long.log.encode()) <= LOG_TAIL_BYTES
    assert "START RequestId" not in long.log and "last words" in long.log
    # Each invocation gets its own output only.
    assert "to stdout" not in runtime.invoke(spec_for("h.echo"), b"{}").log


def test_shutdown_stops_every_worker(tmp_path: Path) -> None:
    runtime = LambdaRuntime(
        workdir=tmp_path, endpoint_url="http://127.0.0.1:9", region=REGION, credentials=CREDENTIALS
    )
    pids = {invoke_json(runtime, spec_for("h.describe", name=name))["pid"] for name in "abc"}
    runtime.shutdown()
    assert wait_until(lambda: not any(is_running(pid) for pid in pids))
    with pytest.raises(RuntimeError):
        runtime.invoke(spec_for("h.echo"), b"{}")


def test_warm_overhead_over_a_direct_call(runtime: LambdaRuntime, tmp_path: Path) -> None:
    """Measures what the issue targets (< 20 ms per warm invocation); printed with -s."""
    namespace: dict[str, Any] = {}
    exec(compile(HANDLERS, "h.py", "exec"), namespace)  # the same handler, called in process
    spec = spec_for("h.echo")
    event = {"Records": [{"s3": {"object": {"key": "k" * 100, "size": 20000}}}]}
    payload = json.dumps(event).encode()
    runtime.invoke(spec, payload)  # cold start

    def median_ms(call: Callable[[], object], rounds: int = 200) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    direct = median_ms(lambda: json.dumps(namespace["echo"](json.loads(payload), None)))
    warm = median_ms(lambda: runtime.invoke(spec, payload))
    print(f"\nwarm invoke {warm:.3f} ms, direct {direct:.3f} ms, overhead {warm - direct:.3f} ms")
    assert warm - direct < 20


# --- AsyncInvoker -----------------------------------------------------------------------


class Destinations:
    """A recording ``send_to_destination``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, arn: str, record: dict[str, Any]) -> None:
        self.sent.append((arn, record))


class ScriptedInvoker:
    """Answers each invocation with the next scripted outcome, noting when it was called."""

    def __init__(self, failures: int, *, on_call: Callable[[], None] = lambda: None) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.on_call = on_call

    def invoke(self, spec: FunctionSpec, payload: bytes) -> InvocationResult:
        self.calls.append(time.monotonic())
        self.on_call()
        if len(self.calls) <= self.failures:
            error = {"errorType": "ValueError", "errorMessage": "scripted"}
            return InvocationResult(200, json.dumps(error).encode(), "Unhandled", 1.0, "")
        return InvocationResult(200, b'"done"', None, 1.0, "")


def async_invoker(
    runtime: Any,
    destinations: Destinations,
    config: AsyncConfig,
    *,
    retry_delays: tuple[float, ...] = (0.0, 0.0),
    clock: Callable[[], float] = time.monotonic,
) -> AsyncInvoker:
    specs = {"fn": spec_for("h.touch"), "failing": spec_for("h.fail", name="failing")}
    return AsyncInvoker(
        runtime,
        lookup=specs.get,
        invoke_config=lambda name: config,
        send_to_destination=destinations,
        retry_delays=retry_delays,
        threads=2,
        clock=clock,
    )


def test_async_failure_is_retried_twice_then_sent_to_the_on_failure_destination(
    runtime: LambdaRuntime,
) -> None:
    destinations = Destinations()
    invoker = async_invoker(runtime, destinations, AsyncConfig(on_failure=FAILURES_QUEUE))
    try:
        invoker.submit("failing", b'{"id": 1}')
        assert invoker.drain(timeout=10)
    finally:
        invoker.shutdown()

    [(arn, record)] = destinations.sent
    assert arn == FAILURES_QUEUE
    assert set(record) == {
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    }
    assert record["version"] == "1.0"
    assert time.strptime(record["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 3
    assert context["functionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:failing:$LATEST"
    assert context["requestId"]
    assert record["requestPayload"] == {"id": 1}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_async_success_sends_nothing_to_the_failure_destination(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    destinations = Destinations()
    invoker = async_invoker(runtime, destinations, AsyncConfig(on_failure=FAILURES_QUEUE))
    marker = tmp_path / "ran"
    try:
        invoker.submit("fn", json.dumps({"marker": str(marker)}).encode())
        assert invoker.drain(timeout=10)
    finally:
        invoker.shutdown()
    assert destinations.sent == []
    assert len(marker.read_text().splitlines()) == 1


def test_async_retries_wait_the_configured_delays_and_obey_maximum_retry_attempts() -> None:
    scripted = ScriptedInvoker(failures=5)
    invoker = async_invoker(
        scripted,
        Destinations(),
        AsyncConfig(maximum_retry_attempts=2),
        retry_delays=(0.15, 0.3),
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(scripted.calls) == 3
    first_gap, second_gap = (
        b - a for a, b in zip(scripted.calls, scripted.calls[1:], strict=False)
    )
    assert 0.15 <= first_gap < 0.6 and 0.3 <= second_gap < 0.9
    assert AWS_RETRY_DELAYS == (60.0, 120.0)

    no_retries = ScriptedInvoker(failures=5)
    destinations = Destinations()
    invoker = async_invoker(
        no_retries, destinations, AsyncConfig(maximum_retry_attempts=0, on_failure="q")
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(no_retries.calls) == 1
    assert destinations.sent[0][1]["requestContext"]["approximateInvokeCount"] == 1


def test_an_event_older_than_the_maximum_age_is_not_retried() -> None:
    now = [1000.0]
    scripted = ScriptedInvoker(failures=5, on_call=lambda: now.__setitem__(0, now[0] + 120))
    destinations = Destinations()
    invoker = async_invoker(
        scripted,
        destinations,
        AsyncConfig(maximum_event_age_s=60, on_failure="q"),
        clock=lambda: now[0],
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(scripted.calls) == 1
    context = destinations.sent[0][1]["requestContext"]
    assert (context["condition"], context["approximateInvokeCount"]) == ("EventAgeExceeded", 1)


def test_async_success_goes_to_an_on_success_destination_and_gone_functions_are_dropped() -> None:
    destinations = Destinations()
    invoker = async_invoker(ScriptedInvoker(failures=0), destinations, AsyncConfig(on_success="ok"))
    try:
        invoker.submit("fn", b'{"a": 1}')
        invoker.submit("no-such-function", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    [(arn, record)] = destinations.sent
    assert arn == "ok" and record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == "done"
    assert "functionError" not in record["responseContext"]


# --- moto's Invoke API ------------------------------------------------------------------


def create_function(
    lambda_client: Any,
    name: str,
    handler: str,
    zip_bytes: bytes,
    *,
    endpoint_url: str | None = None,
    **extra: Any,
) -> str:
    iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint_url)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    try:
        role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName="fn-role")
    created = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler=handler,
        Code={"ZipFile": zip_bytes},
        Timeout=3,
        **extra,
    )
    return str(created["FunctionArn"])


@pytest.fixture
def local_lambda(moto_aws: None, runtime: LambdaRuntime) -> Iterator[AsyncInvoker]:
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: moto_lambda.function_spec(ACCOUNT, REGION, ref),
        invoke_config=lambda ref: moto_lambda.async_config(ACCOUNT, REGION, ref),
        send_to_destination=lambda arn, record: moto_lambda.send_to_queue(
            ACCOUNT, REGION, arn, json.dumps(record)
        ),
        retry_delays=(0.0, 0.0),
        threads=2,
    )
    uninstall = moto_lambda.install_invoke(runtime, invoker)
    yield invoker
    invoker.shutdown()
    uninstall()


def test_moto_internals_the_runtime_relies_on_are_where_it_expects(moto_aws: None) -> None:
    from moto.awslambda.models import lambda_backends

    assert moto_lambda.missing_internals() == []
    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "probe", "h.echo", handler_zip())
    function = lambda_backends[ACCOUNT][REGION].get_function("probe")
    assert moto_lambda.function_attributes_missing(function) == []
    spec = moto_lambda.function_spec(ACCOUNT, REGION, "probe")
    assert spec is not None and spec.handler == "h.echo" and spec.version == "$LATEST"
    assert spec.zip_bytes == handler_zip() and spec.code_sha256 == code_sha256(spec.zip_bytes)
    assert moto_lambda.function_spec(ACCOUNT, REGION, "absent") is None


def test_invoke_through_the_api_runs_the_deployed_code(
    local_lambda: AsyncInvoker, tmp_path: Path
) -> None:
    from moto.awslambda.models import lambda_backends

    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "fn", "h.touch", handler_zip())
    marker = tmp_path / "ran"

    answer = client.invoke(
        FunctionName="fn", Payload=json.dumps({"marker": str(marker)}), LogType="Tail"
    )
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"version": "$LATEST", "code": "one"}
    assert base64.b64decode(answer["LogResult"]).startswith(b"START RequestId: ")
    assert answer["ExecutedVersion"] == "$LATEST"

    failed = client.invoke(
        FunctionName="fn", Payload=json.dumps({"marker": str(marker), "fail": 1})
    )
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorType"] == "RuntimeError"

    dry = client.invoke(FunctionName="fn", InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert len(marker.read_text().splitlines()) == 2

    queued = client.invoke(
        FunctionName="fn", InvocationType="Event", Payload=json.dumps({"marker": str(marker)})
    )
    assert queued["StatusCode"] == 202
    assert local_lambda.drain(timeout=10)
    assert len(marker.read_text().splitlines()) == 3

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="absent", Payload=b"{}")

    # moto's own callers (event source mappings, SNS, EventBridge) run the code too.
    function = lambda_backends[ACCOUNT][REGION].get_function("fn")
    internal = function.invoke(json.dumps({"marker": str(marker)}), {}, {})
    assert json.loads(internal) == {"version": "$LATEST", "code": "one"}
    assert len(marker.read_text().splitlines()) == 4


def test_invoke_honours_the_qualifier(local_lambda: AsyncInvoker) -> None:
    client = boto3.client("lambda", region_name=REGION)
    create_function(client, "fn", "h.touch", handler_zip())
    client.publish_version(FunctionName="fn")
    two = handler_zip(HANDLERS.replace('"code": "one"', '"code": "two"'))
    client.update_function_code(FunctionName="fn", ZipFile=two)

    def answer(**qualifier: str) -> Any:
        # The event carries a "qualifier" field, which moto used to mistake for the version.
        event = {"marker": "/dev/null", "qualifier": "1"}
        reply = client.invoke(FunctionName="fn", Payload=json.dumps(event), **qualifier)
        return json.loads(reply["Payload"].read())

    assert answer(Qualifier="1") == {"version": "1", "code": "one"}
    assert answer() == {"version": "$LATEST", "code": "two"}
    assert answer(Qualifier="$LATEST") == {"version": "$LATEST", "code": "two"}


def test_async_failure_lands_in_the_on_failure_queue(local_lambda: AsyncInvoker) -> None:
    client = boto3.client("lambda", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="failures")["QueueUrl"]
    function_arn = create_function(client, "fn", "h.fail", handler_zip())
    client.put_function_event_invoke_config(
        FunctionName="fn",
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": FAILURES_QUEUE}},
    )

    client.invoke(FunctionName="fn", InvocationType="Event", Payload=b'{"id": 9}')
    assert local_lambda.drain(timeout=10)

    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["functionArn"] == f"{function_arn}:$LATEST"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"id": 9}
    assert record["responsePayload"]["errorMessage"] == 'no good: {"id": 9}'


def test_uninstall_puts_moto_back(moto_aws: None, runtime: LambdaRuntime) -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda.responses import LambdaResponse

    before = [vars(LambdaResponse)["invoke"], vars(LambdaBackend)["invoke"]]
    before.append(vars(LambdaFunction)["_invoke_lambda"])
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: None,
        invoke_config=lambda ref: AsyncConfig(),
        send_to_destination=Destinations(),
        threads=1,
    )
    moto_lambda.install_invoke(runtime, invoker)()
    invoker.shutdown()
    after = [vars(LambdaResponse)["invoke"], vars(LambdaBackend)["invoke"]]
    after.append(vars(LambdaFunction)["_invoke_lambda"])
    assert after == before


# --- the real save/delete function, calling the local cloud back -----------------------


@pytest.fixture
def moto_server() -> Iterator[str]:
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=5)
        server.stop()


def test_the_deployed_save_delete_function_indexes_an_image(
    moto_server: str, tmp_path: Path
) -> None:
    from imgcli.infra.packaging import build_function_zip
    from imgcli.lambdas.records import TABLE_DEFINITION
    from tests.eventdata import load_event
    from tests.images import image_bytes

    clients = {
        service: boto3.client(service, region_name=REGION, endpoint_url=moto_server)
        for service in ("lambda", "s3", "dynamodb")
    }
    clients["s3"].create_bucket(Bucket="photos")
    clients["dynamodb"].create_table(TableName="images", **TABLE_DEFINITION)
    key = "summer/beach day.jpg"
    put = clients["s3"].put_object(Bucket="photos", Key=key, Body=image_bytes("JPEG", (64, 48)))
    bundle = build_function_zip("local")
    create_function(
        clients["lambda"],
        "save-delete",
        "lambdas.save_delete.handler",
        bundle.zip_bytes,
        endpoint_url=moto_server,
        Environment={"Variables": {"TABLE_NAME": "images"}},
    )
    event = load_event("s3_put")
    record = event["Records"][0]["s3"]
    record["bucket"] = {"name": "photos", "arn": "arn:aws:s3:::photos"}
    record["object"].update(
        key="summer/beach+day.jpg", size=len(image_bytes("JPEG", (64, 48))), eTag=put["ETag"]
    )

    runtime = LambdaRuntime(
        workdir=tmp_path / "runtime",
        endpoint_url=moto_server,
        region=REGION,
        credentials=CREDENTIALS,
    )
    invoker = AsyncInvoker(
        runtime,
        lookup=lambda ref: None,
        invoke_config=lambda ref: AsyncConfig(),
        send_to_destination=Destinations(),
        threads=1,
    )
    uninstall = moto_lambda.install_invoke(runtime, invoker)
    try:
        answer = clients["lambda"].invoke(FunctionName="save-delete", Payload=json.dumps(event))
        payload = json.loads(answer["Payload"].read())
    finally:
        uninstall()
        invoker.shutdown()
        runtime.shutdown()

    assert "FunctionError" not in answer, payload
    assert payload == {"active": 1}
    item = clients["dynamodb"].get_item(TableName="images", Key={"key": {"S": key}})["Item"]
    assert item["status"] == {"S": "active"}
    assert (item["width"], item["height"]) == ({"N": "64"}, {"N": "48"})
