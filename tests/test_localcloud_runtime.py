"""The local cloud's Lambda runtime: warm workers, timeouts, crashes, updates, logs.

The tests run small handler zips (``tests.lambda_runtime``: one module, ``h.py``, one
function per behaviour) in a real :class:`LambdaRuntime`: real subprocesses, real pipes,
real kills.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgcli.infra.packaging import code_sha256
from imgcli.localcloud.runtime import FunctionSpec, InvocationResult, LambdaRuntime
from imgcli.localcloud.worker_pool import LOG_TAIL_BYTES
from tests.lambda_runtime import (
    CREDENTIALS,
    HANDLERS,
    REGION,
    handler_zip,
    running_runtime,
    spec_for,
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
    with running_runtime(tmp_path / "runtime") as runtime:
        yield runtime


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
