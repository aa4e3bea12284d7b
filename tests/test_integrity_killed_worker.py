"""A save worker killed mid-invocation on the local cloud, and what doctor and reconcile see.

A Lambda execution environment can die under an invocation (out of memory, a crashed host):
AWS reports ``Runtime.ExitError`` and retries an asynchronous invocation like any other
failure, and once the retries are exhausted the event goes to the on-failure destination.
Nothing may be lost silently: the image ends indexed, or it is in the failed-events queue
where ``doctor`` names it and ``reconcile`` / ``events replay`` repair it.

Deterministic, without timing guesses: after a warm-up image (whose "record done" log line
proves its worker is idle again, since the runtime writes an invocation's log after
checking the worker back in) every save worker is SIGSTOPped; an upload's event is then
handed to a stopped worker, which is seen in flight when the worker's request pipe holds
unread bytes (``FIONREAD`` on the pipe through ``/proc/<pid>/fd``, the descriptor number
read from the worker's command line); only then is that worker SIGKILLed. The others are
resumed first, so a retry never lands on a stopped worker. Linux only (``/proc``).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import os
import signal
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud import process
from imgcli.localcloud.worker_pool import WORKER_SCRIPT
from tests.images import image_bytes
from tests.localstack import (
    bootstrap,
    failed_queue_depth,
    local_client,
    local_cloud_env,
    run_imgcli,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds the workers through /proc"
)

RETRIED = "killed/retried.png"
EXHAUSTED = "killed/exhausted.png"
KILLED_LINE = "Runtime exited with error: signal: killed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_cloud_env(tmp_path_factory.mktemp("killed-worker"), "killedworker") as env:
        description = bootstrap(env)
        description["env"] = env
        yield description


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)
    return found


# --- the worker processes, through /proc ---------------------------------------------


def stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` from the state on (the command name may hold spaces)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def save_workers(stack: dict[str, Any]) -> list[int]:
    """The pids of the save function's workers: the server's children running the worker
    script with the save function's name in their environment."""
    server = process.status(int(stack["env"]["IMGCLI_LOCAL_PORT"]), stack["env"]).pid
    assert server is not None, "the local cloud is not running"
    wanted = f"AWS_LAMBDA_FUNCTION_NAME={stack['functions']['save_delete']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat_fields(pid)[1]) != server:
                continue
            if str(WORKER_SCRIPT).encode() not in (entry / "cmdline").read_bytes():
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(pid)
    return sorted(found)


def unread_request_bytes(pid: int) -> int:
    """Bytes the runtime wrote to the worker's request pipe that the worker has not read."""
    config = json.loads((Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")).split(b"\0")[-1])
    pipe = os.open(f"/proc/{pid}/fd/{config['request_fd']}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        count = array.array("i", [0])
        fcntl.ioctl(pipe, termios.FIONREAD, count)  # reads nothing: the bytes stay queued
        return count[0]
    finally:
        os.close(pipe)


def stopped(pid: int) -> bool:
    return stat_fields(pid)[0] == "T"


def resume(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


# --- the stack -------------------------------------------------------------------------


def save_log(stack: dict[str, Any]) -> list[dict[str, Any]]:
    logs = local_client(stack, "logs")
    group = f"/aws/lambda/{stack['functions']['save_delete']}"
    events: list[dict[str, Any]] = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
        events.extend(page["events"])
    return events


def logged_done(stack: dict[str, Any], key: str) -> set[str]:
    """The log streams (workers) in which the save function logged ``key`` as done."""
    streams = set()
    for event in save_log(stack):
        with contextlib.suppress(ValueError):
            line = json.loads(event["message"])
            if line.get("message") == "record done" and line.get("key") == key:
                streams.add(event["logStreamName"])
    return streams


def indexed(stack: dict[str, Any], key: str) -> bool:
    item = local_client(stack, "dynamodb").get_item(
        TableName=stack["table"], Key={"key": {"S": key}}, ConsistentRead=True
    )
    return bool(item.get("Item", {}).get("status", {}).get("S") == "active")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def doctor(stack: dict[str, Any]) -> tuple[int, dict[str, dict[str, str]]]:
    done = run_imgcli(stack["env"], "doctor", "--json")
    document = json.loads(done.stdout)
    return done.returncode, {check["name"]: check for check in document["checks"]}


def upload_to_a_killed_worker(stack: dict[str, Any], key: str, warm_key: str) -> int:
    """Uploads ``key`` with plain boto3 and kills the save worker its event was handed to,
    while that worker is in the invocation; returns the killed worker's pid."""
    s3 = local_client(stack, "s3")
    s3.put_object(Bucket=stack["bucket"], Key=warm_key, Body=image_bytes("PNG", (8, 8)))
    wait_for(lambda: logged_done(stack, warm_key), "the warm-up image's invocation finished")
    workers = save_workers(stack)
    assert workers, "no warm save worker after an invocation"
    paused = list(workers)
    try:
        for pid in workers:
            os.killpg(pid, signal.SIGSTOP)  # a worker leads its own process group
        wait_for(lambda: all(stopped(pid) for pid in workers), "the save workers stopped")
        assert not any(unread_request_bytes(pid) for pid in workers)
        s3.put_object(Bucket=stack["bucket"], Key=key, Body=image_bytes("PNG", (16, 12)))
        in_flight: list[int] = wait_for(
            lambda: [pid for pid in workers if unread_request_bytes(pid)],
            "the event handed to a stopped save worker",
        )
        assert len(in_flight) == 1, in_flight
        victim = in_flight[0]
        paused.remove(victim)
        resume(paused)  # first, so the retry cannot land on a stopped worker
        os.killpg(victim, signal.SIGKILL)
    finally:
        resume(paused)  # a failed assertion must not leave the local cloud's workers stopped
    wait_for(lambda: victim not in save_workers(stack), "the killed worker reaped")
    return victim


def test_an_invocation_whose_worker_is_killed_is_retried_on_a_new_worker(
    stack: dict[str, Any],
) -> None:
    upload_to_a_killed_worker(stack, RETRIED, "killed/warm-1.png")

    wait_for(lambda: indexed(stack, RETRIED), "the image indexed by a retry")
    killed_in = {
        event["logStreamName"] for event in save_log(stack) if KILLED_LINE in event["message"]
    }
    assert len(killed_in) == 1, "the runtime saw the worker die under the invocation"
    done_in = logged_done(stack, RETRIED)
    assert done_in and not done_in & killed_in  # indexed by another worker: a retry
    assert failed_queue_depth(stack) == (0, 0)


def test_a_killed_invocation_past_its_retries_is_found_and_repaired(
    stack: dict[str, Any],
) -> None:
    env, functions = stack["env"], local_client(stack, "lambda")
    save = stack["functions"]["save_delete"]
    config = functions.get_function_event_invoke_config(FunctionName=save)
    as_bootstrapped = {
        "MaximumRetryAttempts": config["MaximumRetryAttempts"],
        "MaximumEventAgeInSeconds": config["MaximumEventAgeInSeconds"],
        "DestinationConfig": config["DestinationConfig"],
    }
    # moto 5.2.5 keeps answering with the first config put: delete, then put.
    functions.delete_function_event_invoke_config(FunctionName=save)
    functions.put_function_event_invoke_config(
        FunctionName=save, **{**as_bootstrapped, "MaximumRetryAttempts": 0}
    )
    try:
        upload_to_a_killed_worker(stack, EXHAUSTED, "killed/warm-2.png")
        wait_for(lambda: failed_queue_depth(stack) == (1, 0), "the killed event, queued")
    finally:
        functions.delete_function_event_invoke_config(FunctionName=save)
        functions.put_function_event_invoke_config(FunctionName=save, **as_bootstrapped)
    assert not indexed(stack, EXHAUSTED)

    code, checks = doctor(stack)
    assert code == 1, checks
    assert checks["resources"]["status"] == "ok", checks["resources"]
    assert checks["index"]["status"] == "problem"
    assert "1 missing, 0 stale, 0 orphaned" in checks["index"]["detail"]
    assert checks["failed events"]["status"] == "warning"
    assert checks["failed events"]["detail"].startswith("1 failed event in the queue")

    listed = run_imgcli(env, "events", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (event,) = json_lines(listed.stdout)
    assert event["keys"] == [EXHAUSTED]
    assert (event["condition"], event["attempts"]) == ("RetriesExhausted", 1)
    assert event["error_type"] == "Runtime.ExitError"
    assert "signal: killed" in event["error_message"]

    repaired = run_imgcli(env, "reconcile", "--json")
    assert repaired.returncode == 0, repaired.stderr
    *reports, summary = json_lines(repaired.stdout)
    assert [(r["key"], r["drift"], r["outcome"]) for r in reports] == [
        (EXHAUSTED, "missing", "indexed")
    ]
    assert summary["summary"]["missing"] == 1 and summary["summary"]["repaired"] == 1
    assert indexed(stack, EXHAUSTED)
    replayed = run_imgcli(env, "events", "replay", "--json")
    assert replayed.returncode == 0, replayed.stderr
    assert json_lines(replayed.stdout)[-1]["summary"]["replayed"] == 1
    assert failed_queue_depth(stack) == (0, 0)

    code, checks = doctor(stack)
    assert code == 0, checks
    assert checks["index"]["status"] == "ok" and checks["failed events"]["status"] == "ok"
    again = run_imgcli(env, "reconcile", "--json")
    assert again.returncode == 0, again.stderr
    *reports, summary = json_lines(again.stdout)
    assert reports == []
    assert summary["summary"]["missing"] == summary["summary"]["repaired"] == 0
