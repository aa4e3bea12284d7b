"""``imgcli logs`` and the AWS CLI on the local cloud, end to end.

An image uploaded to a bootstrapped local stack is indexed by the save function, whose
output the local cloud writes to its log group: ``imgcli logs`` shows its "record done"
line framed by Lambda's START and REPORT lines, ``aws logs filter-log-events`` finds the
same lines, and ``--follow`` shows a later upload's lines and ends on Ctrl-C with exit 0.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.images import image_bytes
from tests.localstack import KEY, REPO, SECRET, aws_cli, bootstrap, local_cloud_env, run_imgcli


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("logs")
    with local_cloud_env(base, "logs") as env:
        description = bootstrap(env)
        description["env"] = env
        description["photos"] = base / "photos"
        description["photos"].mkdir()
        yield description


def upload(stack: dict[str, Any], name: str) -> None:
    photo = stack["photos"] / name
    photo.write_bytes(image_bytes("PNG", (20, 10)))
    sent = run_imgcli(stack["env"], "upload", str(photo))
    assert sent.returncode == 0, sent.stderr


def eventually(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)
    return found


def done_events(stack: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    """``imgcli logs save --json``'s events once the save function logged ``key`` done."""
    shown = run_imgcli(stack["env"], "logs", "save", "--json")
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    done = [
        event
        for event in events
        if event.get("record", {}).get("message") == "record done"
        and event["record"].get("key") == key
    ]
    return events if done else None


@pytest.fixture(scope="module")
def indexed(stack: dict[str, Any]) -> list[dict[str, Any]]:
    upload(stack, "first.png")
    found: list[dict[str, Any]] = eventually(
        lambda: done_events(stack, "first.png"), "the first upload's record done line"
    )
    return found


def test_imgcli_logs_shows_record_done_framed_by_start_and_report(
    stack: dict[str, Any], indexed: list[dict[str, Any]]
) -> None:
    done = next(e for e in indexed if e.get("record", {}).get("message") == "record done")
    request_id = done["record"]["request_id"]
    messages = [e["message"] for e in indexed if e["stream"] == done["stream"]]
    assert f"START RequestId: {request_id} Version: $LATEST" in messages
    report = next(m for m in messages if m.startswith(f"REPORT RequestId: {request_id}\t"))
    assert "\tDuration: " in report and "\tBilled Duration: " in report
    assert {e["function"] for e in indexed} == {"save"}

    shown = run_imgcli(stack["env"], "logs", "save")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(" save INFO record done " in line and "key=first.png" in line for line in lines)
    assert any(f" save START RequestId: {request_id} " in line for line in lines)
    assert any(
        line.split("\t")[0].endswith(f"save REPORT RequestId: {request_id}") for line in lines
    )

    both = run_imgcli(stack["env"], "logs", "--since", "1h")
    assert both.returncode == 0, both.stderr
    assert len(both.stdout.splitlines()) >= len(lines)
    assert run_imgcli(stack["env"], "logs", "retrieve").stdout == ""  # never ran: nothing


@pytest.mark.skipif(
    aws_cli() is None,
    reason="no AWS CLI: neither benchmarks/.venv-awscli (make bench installs it) nor aws on PATH",
)
def test_the_aws_cli_filter_log_events_finds_the_same_lines(
    stack: dict[str, Any], indexed: list[dict[str, Any]], tmp_path: Path
) -> None:
    cli = aws_cli()
    assert cli is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMGCLI_"))},
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    group = f"/aws/lambda/{stack['functions']['save_delete']}"
    found = subprocess.run(
        [
            cli,
            "--endpoint-url",
            stack["endpoint_url"],
            "logs",
            "filter-log-events",
            "--log-group-name",
            group,
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    messages = [event["message"] for event in json.loads(found.stdout)["events"]]
    ours = [event["message"] for event in indexed]
    assert set(ours) <= set(messages)
    assert any(m.startswith("START RequestId: ") for m in messages)
    assert any('"record done"' in m and '"first.png"' in m for m in messages)


def test_follow_shows_new_lines_and_ends_quietly_on_ctrl_c(
    stack: dict[str, Any], indexed: list[dict[str, Any]], tmp_path: Path
) -> None:
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        following = subprocess.Popen(
            [sys.executable, "-m", "imgcli", "logs", "save", "--follow", "--json"],
            cwd=REPO,
            env=stack["env"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in following.stdout or ():
            lines.put(line)

    # A thread reads, so a line already in the pipe's buffer is never waited for.
    threading.Thread(target=read_lines, daemon=True).start()

    def read_until(key: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                raise AssertionError(f"no line for {key} within 60 s: {seen}") from None
            seen.append(json.loads(line))
            if seen[-1].get("record", {}).get("key") == key:
                return seen

    try:
        first = read_until("first.png")  # what was there when it started
        upload(stack, "second.png")
        later = read_until("second.png")  # what came while it followed
        following.send_signal(signal.SIGINT)
        following.wait(timeout=30)
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()
    shown = [(event["stream"], event["timestamp"], event["message"]) for event in first + later]
    assert len(shown) == len(set(shown))  # no line twice
    assert following.returncode == 0, errors.read_text()
    assert errors.read_text() == ""
