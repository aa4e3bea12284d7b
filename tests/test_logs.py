"""``imgcli logs`` on an AWS stack, against moto in process (``function_log_reader``).

The stack's record names the functions; their log groups and events are made with boto3
as Lambda would have written them, then the command (or the reader) reads them back.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from imgcli.cli import app
from imgcli.errors import ExitCode
from imgcli.function_log_reader import (
    FunctionLogReader,
    LogEvent,
    readable_fields,
    shown_time,
    since_millis,
)
from imgcli.infra.state import StackState, state_path

runner = CliRunner()
SAVE, RETRIEVE = "imgcli-demo-save", "imgcli-demo-retrieve"
STREAM = "2025/01/01/[$LATEST]0123456789abcdef"
REPORT = "REPORT RequestId: r1\tDuration: 12.50 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB"


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def logs(moto_aws: None) -> Any:
    StackState(
        path=state_path("demo", os.environ),
        stack="demo",
        target="aws",
        region="us-east-1",
        account="123456789012",
        outputs={"save_function": SAVE, "retrieve_function": RETRIEVE},
        complete=True,
    ).save()
    return boto3.client("logs", region_name="us-east-1")


def write(logs: Any, function: str, lines: list[tuple[int, str]], stream: str = STREAM) -> None:
    group = f"/aws/lambda/{function}"
    if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        logs.create_log_group(logGroupName=group)
    if not logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=stream)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [{"timestamp": stamp, "message": message} for stamp, message in lines]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def json_line(message: str, **fields: Any) -> str:
    line = {"time": "2025-01-01T00:00:00Z", "level": "INFO", "function": "save_delete"}
    return json.dumps({**line, "message": message, **fields}) + "\n"


def imgcli(*args: str) -> Result:
    return runner.invoke(app, ["--stack", "demo", "logs", *args])


def test_both_functions_interleaved_by_time_readably(logs: Any) -> None:
    t = now_ms() - 60_000
    write(logs, SAVE, [(t, "START RequestId: r1 Version: $LATEST\n")])
    write(logs, RETRIEVE, [(t + 1, json_line("listed", count=3, request_id="r2"))])
    write(logs, SAVE, [(t + 2, json_line("record done", key="a b.jpg", outcome="indexed"))])
    write(logs, SAVE, [(t + 3, "END RequestId: r1\n"), (t + 3, REPORT + "\n")])

    shown = imgcli()
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"{shown_time(t)} save START RequestId: r1 Version: $LATEST",
        f"{shown_time(t + 1)} retrieve INFO listed count=3 request_id=r2",
        f'{shown_time(t + 2)} save INFO record done key="a b.jpg" outcome=indexed',
        f"{shown_time(t + 3)} save END RequestId: r1",
        f"{shown_time(t + 3)} save {REPORT}",  # its tabs as Lambda wrote them
    ]
    only_save = imgcli("save")
    assert only_save.exit_code == 0, only_save.output
    assert len(only_save.stdout.splitlines()) == 4
    assert "retrieve" not in only_save.stdout


def test_json_gives_one_object_per_event_with_the_record_when_there_is_one(logs: Any) -> None:
    t = now_ms() - 1_000
    write(logs, SAVE, [(t, "START RequestId: r1 Version: $LATEST\n")])
    write(logs, SAVE, [(t + 1, json_line("record done", key="k.png"))])

    shown = imgcli("save", "--json")
    assert shown.exit_code == 0, shown.output
    start, done = [json.loads(line) for line in shown.stdout.splitlines()]
    assert start == {
        "timestamp": shown_time(t),
        "function": "save",
        "stream": STREAM,
        "message": "START RequestId: r1 Version: $LATEST",
    }
    assert done["record"]["message"] == "record done"
    assert done["record"]["key"] == "k.png"
    assert json.loads(done["message"]) == done["record"]


def test_control_characters_in_a_line_are_shown_escaped(logs: Any) -> None:
    t = now_ms() - 1_000
    write(logs, SAVE, [(t, "Traceback \x1b[2J\rspoofed\n")])
    write(logs, SAVE, [(t + 1, json_line("bad key", key="a\x1b]0;title\x07\nb"))])

    shown = imgcli("save")
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout and "\r" not in shown.stdout and "\x07" not in shown.stdout
    lines = shown.stdout.splitlines()
    assert lines[0].endswith("save Traceback \\x1b[2J\\rspoofed")
    assert lines[1].endswith('save INFO bad key key="a\\u001b]0;title\\u0007\\nb"')


def test_a_function_that_never_ran_has_nothing_to_show(logs: Any) -> None:
    shown = imgcli()
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == ""
    write(logs, RETRIEVE, [(now_ms(), "only retrieve ran\n")])
    shown = imgcli()
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].endswith("retrieve only retrieve ran")


def test_since_leaves_out_older_lines_and_a_bad_value_is_a_usage_error(logs: Any) -> None:
    t = now_ms()
    write(logs, SAVE, [(t - 3 * 3_600_000, "three hours ago\n"), (t - 60_000, "a minute ago\n")])
    assert "a minute ago" in imgcli().stdout
    assert "three hours ago" not in imgcli().stdout  # the default: the last 10 minutes
    assert "three hours ago" in imgcli("--since", "4h").stdout
    iso = datetime.fromtimestamp((t - 120_000) / 1000, UTC).isoformat()
    assert imgcli("--since", iso).stdout.count("\n") == 1

    refused = imgcli("--since", "yesterday")
    assert refused.exit_code == ExitCode.USAGE
    assert "--since 'yesterday' is neither a duration nor an ISO time" in refused.stderr


def test_since_accepts_durations_and_iso_times() -> None:
    now = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
    base = int(now.timestamp() * 1000)
    assert since_millis("30s", now) == base - 30_000
    assert since_millis("10m", now) == base - 600_000
    assert since_millis("2h", now) == base - 7_200_000
    assert since_millis("1d", now) == base - 86_400_000
    assert since_millis("2025-01-02T11:00:00", now) == base - 3_600_000  # no zone: UTC
    assert since_millis("2025-01-02T12:00:00+01:00", now) == base - 3_600_000
    assert since_millis("2025-01-02T11:00:00Z", now) == base - 3_600_000


def test_every_page_is_read_and_the_groups_merge_in_time_order(logs: Any) -> None:
    t = now_ms() - 10_000
    write(logs, SAVE, [(t + i, f"save {i}") for i in range(0, 10, 2)])
    write(logs, RETRIEVE, [(t + i, f"retrieve {i}") for i in range(1, 10, 2)])
    write(logs, SAVE, [(t + 10, "save 10")], stream="2025/01/01/[$LATEST]another")

    functions = {"save": SAVE, "retrieve": RETRIEVE}
    events = list(FunctionLogReader(logs, functions, page_size=2).read(t))
    assert [event.timestamp_ms - t for event in events] == list(range(11))
    assert [event.message.split()[0] for event in events[:3]] == ["save", "retrieve", "save"]


def test_following_shows_each_new_line_once_late_arrivals_included(logs: Any) -> None:
    t = now_ms() - 1_000
    write(logs, SAVE, [(t, "first")])
    arrivals = [
        [(t + 5, "second")],
        [],
        # Ingested after "second" was shown, with an earlier timestamp (within the overlap).
        [(t + 3, "late"), (t + 6, "third")],
    ]
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if not arrivals:
            raise KeyboardInterrupt
        if lines := arrivals.pop(0):
            write(logs, SAVE, lines)

    reader = FunctionLogReader(logs, {"save": SAVE}, sleep=sleep)
    shown: list[list[str]] = []
    with pytest.raises(KeyboardInterrupt):
        for batch in reader.follow(t):
            shown.append([event.message for event in batch])
    assert shown == [["first"], ["second"], ["late", "third"]]
    assert polls == [2.0] * 4


def test_a_plain_line_keeps_its_tabs_and_a_json_line_its_fields() -> None:
    report = LogEvent(0, "save", "s", "1", REPORT)
    assert readable_fields(report) == [
        "1970-01-01T00:00:00.000Z save REPORT RequestId: r1",
        "Duration: 12.50 ms",
        "Billed Duration: 13 ms",
        "Memory Size: 512 MB",
    ]
    line = json.dumps({"level": "ERROR", "message": "failed", "n": 2, "ok": None, "e": "a=b"})
    assert readable_fields(LogEvent(1, "retrieve", "s", "2", line)) == [
        '1970-01-01T00:00:00.001Z retrieve ERROR failed n=2 ok=null e="a=b"'
    ]
    # A JSON value that is not an object, or an object without a message, is plain text.
    assert readable_fields(LogEvent(2, "save", "s", "3", "[1, 2]"))[0].endswith("save [1, 2]")
    assert LogEvent(2, "save", "s", "3", '{"a": 1}').as_json()["record"] == {"a": 1}


def test_errors_are_told_from_other_lines() -> None:
    def event(message: str) -> LogEvent:
        return LogEvent(0, "save", "s", "1", message)

    assert event(json.dumps({"level": "ERROR", "message": "failed"})).is_error
    assert not event(json.dumps({"level": "INFO", "message": "record done"})).is_error
    assert event("[ERROR] KeyError: 'Records'\rTraceback (most recent call last):").is_error
    assert event("2025-01-01T00:00:00.000Z r1 Task timed out after 3.00 seconds").is_error
    assert event("RequestId: r1 Error: Runtime exited with error: signal: killed").is_error
    assert not event("START RequestId: r1 Version: $LATEST").is_error
    assert not event("a line that mentions [ERROR] later").is_error
