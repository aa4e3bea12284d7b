"""The output object: stdout for data, stderr for the rest, terminals get colour and progress."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.progress import Progress

from imgcli.errors import ExitCode, Failure, UsageError
from imgcli.output import NoProgress, Output, Streams, TransferProgress

# An SGR escape sequence that sets a foreground colour (30-37, 90-97, or 38;...).
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|9[0-7])(?:;[0-9;]*)?m")


class Captured:
    """Streams over StringIO, with a chosen terminal-ness, and what was written to them."""

    def __init__(
        self, *, tty: bool = False, no_color: bool = False, stdin: str = "", stdin_tty: bool = False
    ) -> None:
        self.stdin = io.StringIO(stdin)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.streams = Streams(
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
            stdin_isatty=stdin_tty,
            stdout_isatty=tty,
            stderr_isatty=tty,
            no_color=no_color,
        )

    def output(self, **options: bool) -> Output:
        return Output(self.streams, **options)

    @property
    def out(self) -> str:
        return self.stdout.getvalue()

    @property
    def err(self) -> str:
        return self.stderr.getvalue()


RECORDS = [
    {"key": "a.jpg", "size": 10, "uploaded": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"key": "b [1].png", "size": 20, "uploaded": None},
]


def test_document_as_json_is_one_document() -> None:
    captured = Captured()
    captured.output(json_mode=True).document(
        {"region": "us-east-1", "port": 4599}, columns=("name",), rows=[("ignored",)]
    )
    assert json.loads(captured.out) == {"region": "us-east-1", "port": 4599}
    assert captured.out.count("\n") == 1
    assert captured.err == ""


def test_document_as_table_for_people() -> None:
    captured = Captured()
    captured.output().document(
        {"ignored": True}, columns=("setting", "value"), rows=[("region", "us-east-1")]
    )
    assert "setting" in captured.out
    assert "us-east-1" in captured.out
    assert "ignored" not in captured.out
    assert captured.err == ""


def test_records_as_ndjson_one_line_each() -> None:
    captured = Captured()
    captured.output(json_mode=True).records(iter(RECORDS), columns=("key",))
    lines = captured.out.splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a.jpg", "b [1].png"]
    assert json.loads(lines[0])["uploaded"] == "2025-01-02T03:04:05+00:00"


def test_records_are_written_as_they_arrive() -> None:
    captured = Captured()
    seen_before_second: list[str] = []

    def produce() -> Iterator[dict[str, object]]:
        yield RECORDS[0]
        seen_before_second.append(captured.out)
        yield RECORDS[1]

    captured.output(json_mode=True).records(produce(), columns=("key",))
    assert '"a.jpg"' in seen_before_second[0]


def test_records_as_table_keep_brackets_literal() -> None:
    captured = Captured()
    captured.output().records(RECORDS, columns=("key", "size", "uploaded"))
    assert "b [1].png" in captured.out
    assert "2025-01-02T03:04:05+00:00" in captured.out


def test_messages_go_to_stderr() -> None:
    captured = Captured()
    output = captured.output()
    output.info("uploading 3 images")
    output.warning("skipped c.gif")
    assert captured.out == ""
    assert "uploading 3 images" in captured.err
    assert "warning: skipped c.gif" in captured.err


def test_quiet_silences_all_but_errors() -> None:
    captured = Captured(tty=True)
    output = captured.output(quiet=True)
    output.info("hello")
    output.warning("careful")
    output.document({"a": 1}, columns=("a",), rows=[(1,)])
    drained: list[object] = []

    def produce() -> Iterator[dict[str, object]]:
        for record in RECORDS:
            drained.append(record)
            yield record

    output.records(produce(), columns=("key",))
    assert isinstance(output.progress(), NoProgress)
    assert captured.out == ""
    assert captured.err == ""
    # The records were still consumed: the caller's work happens while iterating.
    assert len(drained) == 2
    output.failure(Failure("it broke", ExitCode.REMOTE))
    assert "it broke" in captured.err


def test_quiet_json_prints_nothing() -> None:
    captured = Captured()
    captured.output(quiet=True, json_mode=True).document({"a": 1}, columns=(), rows=[])
    assert captured.out == ""


def test_failure_is_one_line_with_hint_even_when_long() -> None:
    captured = Captured()
    message = "S3 PutObject failed (InvalidArgument): " + "x" * 200
    captured.output().failure(Failure(message, ExitCode.REMOTE, "try again"), RuntimeError())
    assert captured.err == f"error: {message} — try again\n"
    assert captured.out == ""


def test_failure_escapes_markup_from_aws() -> None:
    captured = Captured()
    captured.output().failure(Failure("Value [red]x[/red] at 'key' failed", ExitCode.REMOTE))
    assert "Value [red]x[/red] at 'key' failed" in captured.err


def test_verbose_failure_prints_the_traceback_first() -> None:
    captured = Captured()
    try:
        raise ValueError("the cause [1]")
    except ValueError as exc:
        captured.output(verbose=True).failure(Failure("it broke", ExitCode.INTERNAL), exc)
    assert captured.err.startswith("Traceback (most recent call last):")
    assert "ValueError: the cause [1]" in captured.err
    assert captured.err.splitlines()[-1] == "error: it broke"


def test_colour_only_on_a_terminal() -> None:
    plain = Captured(tty=False)
    plain.output().failure(Failure("no colour", ExitCode.REMOTE))
    assert "\x1b[" not in plain.err
    terminal = Captured(tty=True)
    terminal.output().failure(Failure("colour", ExitCode.REMOTE))
    assert COLOUR.search(terminal.err)


def test_no_color_removes_colour_on_a_terminal() -> None:
    captured = Captured(tty=True, no_color=True)
    output = captured.output()
    output.failure(Failure("no colour", ExitCode.REMOTE))
    output.warning("no colour either")
    assert not COLOUR.search(captured.err)


def test_json_never_carries_escape_codes() -> None:
    captured = Captured(tty=True)
    captured.output(json_mode=True).document({"a": "[bold]b[/bold]"}, columns=(), rows=[])
    assert captured.out == '{"a": "[bold]b[/bold]"}\n'


def test_streams_from_process_reads_no_color() -> None:
    assert Streams.from_process({"NO_COLOR": "1"}).no_color
    assert not Streams.from_process({"NO_COLOR": ""}).no_color
    assert not Streams.from_process({}).no_color


def test_confirm_with_yes_does_not_ask() -> None:
    captured = Captured(stdin_tty=False)
    assert captured.output().confirm("Delete 3 images?", yes=True)
    assert captured.err == ""


def test_confirm_refuses_without_a_terminal() -> None:
    captured = Captured(stdin="y\n", stdin_tty=False)
    with pytest.raises(UsageError) as raised:
        captured.output().confirm("Delete 3 images?", yes=False)
    assert raised.value.hint == "pass --yes to confirm"
    assert "Delete 3 images?" in raised.value.message


@pytest.mark.parametrize(("answer", "expected"), [("y\n", True), ("n\n", False), ("", False)])
def test_confirm_asks_on_a_terminal(answer: str, expected: bool) -> None:
    captured = Captured(stdin=answer, stdin_tty=True)
    assert captured.output().confirm("Delete [all] images?", yes=False) is expected
    assert "Delete [all] images?" in captured.err
    assert captured.out == ""


def test_progress_is_rich_on_a_terminal() -> None:
    captured = Captured(tty=True)
    progress = captured.output().progress()
    assert isinstance(progress, Progress)
    with progress:
        task = progress.add_task("uploading", total=2)
        progress.advance(task)
        progress.update(task, completed=2)
    assert captured.out == ""


def test_progress_is_a_no_op_elsewhere() -> None:
    captured = Captured(tty=False)
    progress = captured.output().progress()
    assert isinstance(progress, NoProgress)
    with progress:
        task = progress.add_task("uploading", total=2)
        progress.advance(task)
        progress.update(task, completed=2, description="done")
    assert captured.out == ""
    assert captured.err == ""


class RecordingDisplay(NoProgress):
    """A progress display that keeps every update it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[dict[str, object]] = []

    def update(self, task_id: Any, **fields: Any) -> None:
        self.updates.append(fields)


def test_a_transfer_s_progress_line_counts_files_and_bytes_as_they_are_found() -> None:
    now = [0.0]
    progress = TransferProgress(lambda: now[0])
    progress.queued(10)  # silent: no display yet
    display = RecordingDisplay()
    progress.show_on(display, "listing")
    progress.queued(2048)
    now[0] = 2.0
    progress.moved(2048)
    progress.file_done()
    assert display.updates[0]["total"] == 2058  # the totals grow as work is found
    assert display.updates[-1] == {
        "completed": 2048,
        "description": "1/2 files, 2.0 KiB of 2.0 KiB, 1.0 KiB/s",
    }
