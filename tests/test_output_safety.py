"""What ``Output`` shows a person is safe and whole: control characters escaped in every
human-facing form, tables folded rather than cut, plain lines for scripts, Enter at prompts.

Each test drives ``Output`` over ``StringIO`` streams, on a terminal or not, with strings
that hold what a hostile key can: ESC sequences (colour, clear screen, window title),
newlines, tabs, a carriage return, a C1 CSI, bidi overrides, a non-UTF-8 byte.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import TextIO, cast

import pytest
from rich.cells import cell_len

from imgcli.errors import ExitCode, Failure, UsageError
from imgcli.output import MIN_FOLD_WIDTH, Output, Streams, plural

#: What a hostile key may hold, and how each must be shown.
HOSTILE = {
    "\x1b[31mred\x1b[0m": "\\x1b[31mred\\x1b[0m",
    "\x1b]0;owned\x07": "\\x1b]0;owned\\x07",
    "\x1b[2J": "\\x1b[2J",
    "two\nlines": "two\\nlines",
    "tab\there": "tab\\there",
    "back\rwards": "back\\rwards",
    "c1\x9b31m": "c1\\x9b31m",
    "\u202egpj.exe": "\\u202egpj.exe",
    "bad\udcffbyte": "bad\\xffbyte",
}
KEY = "trips/" + "".join(HOSTILE) + ".jpg"
SHOWN_KEY = "trips/" + "".join(HOSTILE.values()) + ".jpg"
#: Raw characters that must never reach a stream people read (on a terminal, rich's own
#: control sequences are taken out first, so the hostile sequences are also looked for whole).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
RICH_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
RICH_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class Captured:
    def __init__(self, *, tty: bool = False, stdin: str = "", stdin_tty: bool = False) -> None:
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
        )

    def output(self, **options: bool) -> Output:
        return Output(self.streams, **options)


def assert_safe(text: str, *, tty: bool) -> None:
    for raw in HOSTILE:
        if raw[0] == "\x1b":
            assert raw not in text, repr(text)
    if tty:
        text = RICH_CONTROL.sub("", text)
    assert not RAW.search(text), repr(text)


@pytest.fixture(params=[False, True], ids=["piped", "terminal"])
def tty(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_messages_show_control_characters_escaped(tty: bool) -> None:
    captured = Captured(tty=tty)
    output = captured.output(verbose=True)
    output.info(f"deleting {KEY}")
    output.warning(f"skipped {KEY}")
    try:
        raise ValueError(f"the cause: {KEY}")
    except ValueError as cause:
        output.failure(Failure(f"no image {KEY}", ExitCode.SOME_FAILED, f"try {KEY}"), cause)

    assert_safe(captured.stderr.getvalue(), tty=tty)
    plain = RICH_COLOUR.sub("", captured.stderr.getvalue())
    assert f"deleting {SHOWN_KEY}" in plain
    assert f"warning: skipped {SHOWN_KEY}" in plain
    assert f"error: no image {SHOWN_KEY} — try {SHOWN_KEY}" in plain
    # In a traceback a newline is a line break (the lines are escaped one by one).
    assert "ValueError: the cause: trips/\\x1b[31mred\\x1b[0m\\x1b]0;owned\\x07\\x1b[2Jtwo" in plain


def test_tables_show_cells_headers_and_titles_escaped(tty: bool) -> None:
    captured = Captured(tty=tty)
    output = captured.output()
    output.document({}, columns=("field", "value"), rows=[("key", KEY)], title=KEY)
    output.records([{"key": KEY, "col\x1b[1m": "x"}], columns=("key", "col\x1b[1m"))

    assert_safe(captured.stdout.getvalue(), tty=tty)
    if not tty:  # natural width: nothing folded
        assert SHOWN_KEY in captured.stdout.getvalue()
        assert "col\\x1b[1m" in captured.stdout.getvalue()


def test_json_keeps_values_unchanged() -> None:
    captured = Captured(tty=True)
    output = captured.output(json_mode=True)
    output.records([{"key": KEY}], columns=("key",))
    output.document({"key": KEY}, columns=(), rows=())

    assert [json.loads(line)["key"] for line in captured.stdout.getvalue().splitlines()] == [
        KEY,
        KEY,
    ]


def test_lines_are_tab_separated_one_record_per_line_values_escaped() -> None:
    captured = Captured()
    captured.output().lines([(KEY, "JPEG", 40, None), ("plain.jpg", "PNG", 8, 9)])

    lines = captured.stdout.getvalue().split("\n")
    assert lines[2:] == [""]
    assert lines[0].split("\t") == [SHOWN_KEY, "JPEG", "40", ""]
    assert lines[1].split("\t") == ["plain.jpg", "PNG", "8", "9"]
    assert_safe(captured.stdout.getvalue().replace("\t", " "), tty=False)


def test_lines_are_silent_but_drained_when_quiet() -> None:
    captured = Captured()
    drained: list[int] = []

    def rows() -> Iterator[tuple[int]]:
        for n in range(3):
            drained.append(n)
            yield (n,)

    captured.output(quiet=True).lines(rows())
    assert drained == [0, 1, 2]
    assert captured.stdout.getvalue() == ""


def test_progress_descriptions_are_escaped() -> None:
    captured = Captured(tty=True)
    with captured.output().progress() as progress:
        task = progress.add_task("checking a\x1b[2Jb\u202e [bold]x", total=2)
        progress.update(task, completed=1, description="sent c\x1b]0;owned\x07d [bold]y")

    assert_safe(captured.stderr.getvalue(), tty=True)
    assert "checking a\\x1b[2Jb\\u202e [bold]x" in captured.stderr.getvalue()
    assert "sent c\\x1b]0;owned\\x07d [bold]y" in captured.stderr.getvalue()


def test_the_prompt_shows_its_question_escaped() -> None:
    captured = Captured(stdin="n\n", stdin_tty=True, tty=True)
    assert not captured.output().confirm(f"Delete {KEY}?", yes=False)

    assert_safe(captured.stderr.getvalue(), tty=True)
    assert f"Delete {SHOWN_KEY}? [y/N]" in RICH_COLOUR.sub("", captured.stderr.getvalue())


def test_the_refused_prompt_names_the_question_escaped() -> None:
    captured = Captured(stdin_tty=False)
    output = captured.output()
    with pytest.raises(UsageError) as refused:
        output.confirm(f"Delete {KEY}?", yes=False)
    output.failure(Failure(refused.value.message, ExitCode.USAGE, refused.value.hint))

    assert_safe(captured.stderr.getvalue(), tty=False)
    assert SHOWN_KEY in captured.stderr.getvalue()


# --- tables fold, never cut ----------------------------------------------------------------

LONG_KEY = "trips/2024/summer-holiday-in-the-mountains/day-03/very-long-file-name-000123.jpg"
ROW = (LONG_KEY, "JPEG", "4000x3000", "1.2 MiB", "2025-01-02T03:04:05.123456+00:00")
COLUMNS = ("key", "format", "dimensions", "size", "uploaded")


def column_text(table: str, index: int) -> str:
    """The concatenated text of one column of a rich table's body rows."""
    body = table.split("┩", 1)[1]
    cells = [line.split("│")[index + 1].strip() for line in body.splitlines() if "│" in line]
    return "".join(cells)


@pytest.mark.parametrize("width", [14, 30, 47, 60, 80, 100, 140])
def test_a_table_on_a_terminal_folds_long_values_at_any_width(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    captured = Captured(tty=True)
    captured.output().records([dict(zip(COLUMNS, ROW, strict=True))], columns=COLUMNS)

    table = RICH_COLOUR.sub("", captured.stdout.getvalue())
    assert "…" not in table
    for index, value in enumerate(ROW):
        assert column_text(table, index).replace(" ", "") == value.replace(" ", "")
    narrowest = 3 * len(COLUMNS) + 1
    narrowest += sum(
        min(max(map(len, pair)), MIN_FOLD_WIDTH) for pair in zip(COLUMNS, ROW, strict=True)
    )
    widest_line = max(cell_len(line) for line in table.splitlines())
    assert widest_line <= max(width, narrowest)
    if width >= 80:
        assert widest_line <= width  # a terminal of usual width needs no wrapping of its own


def test_a_table_off_a_terminal_keeps_each_row_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    captured = Captured(tty=False)
    captured.output().document({}, columns=COLUMNS, rows=[ROW], title=LONG_KEY)

    out = captured.stdout.getvalue()
    assert "…" not in out
    row = next(line for line in out.splitlines() if "JPEG" in line)
    assert all(value in row for value in ROW)
    assert LONG_KEY in out.splitlines()[0]  # the title too


# --- prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "default", "expected"),
    [
        ("\n", False, False),
        ("\ny\n", False, False),  # Enter is an answer: the y is never read
        ("\n", True, True),
        ("", False, False),  # end of input: the default
        ("", True, True),
        ("y\n", False, True),
        ("YES\n", False, True),
        ("no\n", True, False),
        ("maybe\n\n", True, True),  # asked again, then Enter
        ("maybe\ny\n", False, True),
    ],
)
def test_the_prompt_takes_enter_as_its_default(answer: str, default: bool, expected: bool) -> None:
    captured = Captured(stdin=answer, stdin_tty=True)
    assert captured.output().confirm("Delete 3 images?", yes=False, default=default) is expected

    prompts = captured.stderr.getvalue().count(
        "Delete 3 images? " + ("[Y/n]" if default else "[y/N]")
    )
    assert prompts == (2 if answer.startswith("maybe") else 1)
    assert captured.stdout.getvalue() == ""


class CtrlC:
    """A terminal's stdin where the person presses Ctrl-C instead of answering."""

    def readline(self) -> str:
        raise KeyboardInterrupt


def test_ctrl_c_at_the_prompt_propagates() -> None:
    captured = Captured()
    streams = Streams(
        stdin=cast(TextIO, CtrlC()),
        stdout=captured.stdout,
        stderr=captured.stderr,
        stdin_isatty=True,
    )
    with pytest.raises(KeyboardInterrupt):
        Output(streams).confirm("Delete 3 images?", yes=False)


def test_counts_are_written_with_thousands_separators() -> None:
    assert plural(1234, "image") == "1,234 images"
    assert plural(1, "image") == "1 image"
    assert plural(999, "key") == "999 keys"
