"""Everything imgcli shows: data on stdout, everything else on stderr.

Scripts pipe imgcli's stdout, so stdout carries only results: a rich table for people or,
with ``--json``, one JSON document (a single result) or NDJSON (a stream of records,
written as they come). Progress, information, warnings, prompts and errors go to stderr.
Colours and progress bars appear only when that stream is a terminal and ``NO_COLOR`` is
not set; ``--quiet`` silences everything except errors (results included: the exit code is
the answer).

``Output`` is built from an explicit ``Streams`` value — the streams and whether each is a
terminal — rather than reading ``sys`` itself (httpie's ``Environment``), so tests hand it
``StringIO`` objects and choose "terminal or not" directly.

Text is treated as text, and escaped here so no command can forget: every string a person
reads (table cells, titles, plain lines, messages, failures and their hints, prompts,
progress descriptions) shows its control characters as escapes
(``imgcli.terminal_text.visible``), piped or not, since a key holding an ESC would
otherwise drive the terminal; and what reaches rich never starts markup, because AWS
messages and S3 keys contain ``[...]``. JSON and CSV get values unchanged: they escape by
their own rules. Commands pass raw text.

Tables never cut a value. On a terminal a table is as wide as the terminal and folds long
values (keys, paths) onto more lines; when even folded columns cannot fit, the table is
drawn wider than the terminal, which wraps its lines, rather than losing characters.
Elsewhere (a pipe, a file) a table is printed at its natural width, a row per line.
``lines`` is the plain form for scripts: tab-separated, no header, one record per line
(``aws --output text``), each value escaped so a tab or newline cannot split a field.

Prompts read a line and take Enter (or end of input) as the default, shown the usual way
(``[y/N]``); Ctrl-C propagates as ``KeyboardInterrupt``.

rich is imported when something is first shown through it (a table, a message, a prompt),
not when ``Output`` is made: it costs some 20 ms of start-up, which ``--quiet`` and
``--json`` runs never need.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO, cast

from imgcli.errors import Failure, UsageError
from imgcli.terminal_text import visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

#: A table column on a terminal is folded down to this many characters (or its widest
#: value, if narrower) and no further: slivers narrower than this read worse than a table
#: drawn wider than the terminal, whose lines the terminal wraps.
MIN_FOLD_WIDTH: Final = 10


@dataclass(frozen=True)
class Streams:
    """The three standard streams, whether each is a terminal, and whether colour is off."""

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_isatty: bool = False
    stdout_isatty: bool = False
    stderr_isatty: bool = False
    no_color: bool = False

    @classmethod
    def from_process(cls, environ: Mapping[str, str] = os.environ) -> Streams:
        """The process's own streams, as they are at call time (CliRunner swaps them)."""
        return cls(
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdin_isatty=_isatty(sys.stdin),
            stdout_isatty=_isatty(sys.stdout),
            stderr_isatty=_isatty(sys.stderr),
            # https://no-color.org: set and not empty means no colour.
            no_color=bool(environ.get("NO_COLOR")),
        )


class ProgressDisplay(Protocol):
    """The part of ``rich.progress.Progress`` imgcli uses; ``NoProgress`` does nothing."""

    def __enter__(self) -> ProgressDisplay: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def add_task(self, description: str, *, total: float | None = ...) -> TaskID: ...

    def advance(self, task_id: TaskID, advance: float = ...) -> None: ...

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = ...,
        completed: float | None = ...,
        description: str | None = ...,
    ) -> None: ...


class TransferProgress:
    """The one progress line of a transfer (``upload``, ``download``): files and bytes done
    of those queued so far, and the rate. The totals grow while the work is still being
    found, which is streamed rather than counted first. Silent until ``show_on`` gives it a
    display (a terminal)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._started = clock()
        self._display: ProgressDisplay | None = None
        self._task: TaskID | None = None
        self._files_total = self._files_done = 0
        self._bytes_total = self._bytes_done = 0

    def show_on(self, display: ProgressDisplay, label: str) -> None:
        self._display = display
        self._task = display.add_task(label, total=None)

    def queued(self, size: int) -> None:
        self._files_total += 1
        self._bytes_total += size
        self._refresh(total=self._bytes_total or None)

    def moved(self, amount: int) -> None:
        """``amount`` more bytes sent or received."""
        self._bytes_done += amount
        self._refresh()

    def file_done(self) -> None:
        self._files_done += 1
        self._refresh()

    def _refresh(self, **fields: Any) -> None:
        if self._display is None or self._task is None:
            return
        elapsed = max(self._clock() - self._started, 1e-6)
        description = (
            f"{self._files_done}/{self._files_total} files, "
            f"{human_size(self._bytes_done)} of {human_size(self._bytes_total)}, "
            f"{human_size(int(self._bytes_done / elapsed))}/s"
        )
        self._display.update(
            self._task, completed=self._bytes_done, description=description, **fields
        )


class NoProgress:
    """Progress that shows nothing: for pipes, log files and ``--quiet``."""

    def __init__(self) -> None:
        self._tasks = 0

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def add_task(self, description: str, *, total: float | None = None) -> TaskID:
        self._tasks += 1
        return cast("TaskID", self._tasks)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        return None

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        description: str | None = None,
    ) -> None:
        return None


class Output:
    """The one way commands talk to the user: results, messages, prompts and progress."""

    def __init__(
        self,
        streams: Streams,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        verbose: bool = False,
    ) -> None:
        self.streams = streams
        self.json_mode = json_mode
        self.quiet = quiet
        self.verbose = verbose

    @functools.cached_property
    def _results(self) -> Console:
        streams = self.streams
        return _console(streams.stdout, streams.stdout_isatty, streams.no_color)

    @functools.cached_property
    def _messages(self) -> Console:
        streams = self.streams
        return _console(streams.stderr, streams.stderr_isatty, streams.no_color)

    # Results (stdout)

    def document(
        self,
        data: Any,
        *,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        title: str | None = None,
    ) -> None:
        """One result: ``data`` as a single JSON document, or ``rows`` as a table."""
        if self.quiet:
            return
        if self.json_mode:
            self._write_json(data)
        else:
            self._print_table(_table(columns, rows, title))

    def records(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        columns: Sequence[str],
        title: str | None = None,
    ) -> None:
        """A stream of results: NDJSON written as records arrive, or one table at the end."""
        if self.quiet:
            for _ in records:
                pass  # still drain: the caller's work happens while iterating
            return
        if self.json_mode:
            for record in records:
                self._write_json(record)
            return
        rows = [[record.get(column) for column in columns] for record in records]
        self._print_table(_table(columns, rows, title))

    def lines(self, rows: Iterable[Sequence[object]]) -> None:
        """Rows as plain tab-separated lines, no header (``aws --output text``), written as
        they arrive: the form scripts read when stdout is not a terminal.

        Each value is shown with ``visible``, so a tab or newline in a key cannot split a
        field or a line; an absent value is an empty field.
        """
        if self.quiet:
            for _ in rows:
                pass  # still drain: the caller's work happens while iterating
            return
        stream = self.streams.stdout
        for row in rows:
            stream.write("\t".join(visible(_cell(value)) for value in row) + "\n")
        # Once per batch (a page of a listing): `imgcli list | head -1` sees the first row
        # while later pages are still being fetched.
        stream.flush()

    def _print_table(self, table: Table) -> None:
        console = self._results
        width = _table_width(console, table, on_terminal=self.streams.stdout_isatty)
        if width != console.width:
            streams = self.streams
            console = _console(streams.stdout, streams.stdout_isatty, streams.no_color, width)
        console.print(table)

    # Messages (stderr)

    def info(self, message: str) -> None:
        """Tell people what is happening; silenced by ``--quiet``."""
        if not self.quiet:
            self._messages.print(shown(message), soft_wrap=True)

    def warning(self, message: str) -> None:
        """Something went wrong that did not stop the command; silenced by ``--quiet``."""
        if not self.quiet:
            self._messages.print(f"[bold yellow]warning:[/] {shown(message)}", soft_wrap=True)

    def failure(self, failure: Failure, cause: BaseException | None = None) -> None:
        """The one-line error a command ends with; with ``--verbose``, its traceback first."""
        if self.verbose and cause is not None:
            lines = "".join(traceback.format_exception(cause)).rstrip().splitlines()
            # Exception messages quote keys and file names: escaped line by line.
            self._messages.out("\n".join(visible(line) for line in lines), highlight=False)
        line = f"[bold red]error:[/] {shown(failure.message)}"
        if failure.hint:
            line += f" [dim]— {shown(failure.hint)}[/]"
        self._messages.print(line, soft_wrap=True)

    # Interaction (stdin, stderr)

    def confirm(self, question: str, *, yes: bool, default: bool = False) -> bool:
        """Ask a yes/no question; ``yes=True`` (``--yes``) answers it without asking.

        Enter, or the end of input, answers ``default``, shown as the capital letter
        (``[y/N]``); anything but y, yes, n or no asks again. Without a terminal on stdin
        nobody can answer, so this refuses instead of hanging or guessing.
        """
        if yes:
            return True
        if not self.streams.stdin_isatty:
            raise UsageError(
                f"cannot ask for confirmation without a terminal: {question}",
                hint="pass --yes to confirm",
            )
        choices = "[Y/n]" if default else "[y/N]"
        while True:
            self._messages.print(f"{shown(question)} {_literal(choices)} ", end="", soft_wrap=True)
            answer = self.streams.stdin.readline()
            if not answer:  # end of input (Ctrl-D): the default, on a line of its own
                self._messages.print()
                return default
            word = answer.strip().lower()
            if not word:
                return default
            if word in ("y", "yes"):
                return True
            if word in ("n", "no"):
                return False
            self._messages.print(
                f"please answer y or n (Enter for {'yes' if default else 'no'})", soft_wrap=True
            )

    def progress(self) -> ProgressDisplay:
        """A live progress display on a terminal; elsewhere one that shows nothing."""
        if self.quiet or not self.streams.stderr_isatty:
            return NoProgress()
        return _shown_progress_class()(console=self._messages, transient=True)

    def _write_json(self, data: Any) -> None:
        stream = self.streams.stdout
        stream.write(json.dumps(data, ensure_ascii=False, default=_json_value) + "\n")
        # Flushed per document so a consumer of an NDJSON stream sees each record at once.
        stream.flush()


def _literal(text: str) -> str:
    """``text`` shown literally by rich: ``[`` never starts markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def shown(text: str) -> str:
    """``text`` as rich markup that shows it to a person safely: control characters as
    escapes (``visible``), ``[`` never markup."""
    return _literal(visible(text))


@functools.cache
def _shown_progress_class() -> type[Progress]:
    # A subclass made on first use, so rich.progress is imported only when a bar shows.
    from rich.progress import Progress

    class ShownProgress(Progress):
        """rich's Progress, with descriptions (file names, keys) shown safely."""

        def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
            return super().add_task(shown(description), *args, **kwargs)

        def update(self, task_id: TaskID, *, description: str | None = None, **kwargs: Any) -> None:
            if description is not None:
                description = shown(description)
            super().update(task_id, description=description, **kwargs)

    return ShownProgress


def _console(stream: TextIO, isatty: bool, no_color: bool, width: int | None = None) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 ("some items failed" here); the commands' one handler
            # (imgcli.commands.frame.reports_failures) ends as a closed pipe should.
            raise BrokenPipeError(errno.EPIPE, "the reader of this output is gone")

    return _Console(
        file=stream,
        force_terminal=isatty,
        no_color=no_color,
        highlight=False,
        emoji=False,
        width=width,
    )


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None) -> Table:
    """A table whose every cell is shown safely and folds rather than being cut.

    Cells are ``Text`` (never parsed as markup). Each column may fold down to
    ``MIN_FOLD_WIDTH`` characters (or its widest value), which ``_table_width`` honours.
    """
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    cells = [[visible(_cell(value)) for value in row] for row in rows]
    table = Table(title=None if title is None else Text(visible(title)))
    for index, column in enumerate(columns):
        header = visible(column)
        widest = max((cell_len(row[index]) for row in cells), default=0)
        table.add_column(
            Text(header),
            overflow="fold",
            min_width=min(max(widest, cell_len(header)), MIN_FOLD_WIDTH),
        )
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _table_width(console: Console, table: Table, *, on_terminal: bool) -> int:
    """The width to draw ``table`` at: the terminal's, unless its columns cannot fit when
    folded to their minimum; off a terminal, the table's natural width (nothing folded)."""
    if not on_terminal:
        from rich.measure import Measurement

        natural = Measurement.get(console, console.options.update_width(10**6), table).maximum
        return max(natural, 1)
    # The default box and padding: one space each side of a cell, a rule between columns
    # and at both edges.
    columns = table.columns
    narrowest = sum((column.min_width or 1) + 3 for column in columns) + 1
    return max(console.width, narrowest)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _json_value(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _isatty(stream: TextIO | None) -> bool:
    # sys streams can be None (pythonw) or closed; neither is a terminal.
    try:
        return stream is not None and stream.isatty()
    except ValueError:
        return False


def plural(count: int, noun: str) -> str:
    """``count`` (thousands separated) and ``noun``, with an s unless there is exactly one
    (``3 keys``, ``1,234 images``)."""
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def human_size(size: int) -> str:
    """``size`` bytes in binary units, as ``ls -lh`` would (``1.2 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
