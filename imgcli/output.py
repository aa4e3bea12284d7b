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

Text is treated as text: every string that reaches rich is escaped with
``rich.markup.escape`` first, because AWS messages and S3 keys contain ``[...]``.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

from imgcli.errors import Failure, UsageError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


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
            self._results.print(_table(columns, rows, title))

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
        self._results.print(_table(columns, rows, title))

    # Messages (stderr)

    def info(self, message: str) -> None:
        """Tell people what is happening; silenced by ``--quiet``."""
        if not self.quiet:
            self._messages.print(escape(message), soft_wrap=True)

    def warning(self, message: str) -> None:
        """Something went wrong that did not stop the command; silenced by ``--quiet``."""
        if not self.quiet:
            self._messages.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)

    def failure(self, failure: Failure, cause: BaseException | None = None) -> None:
        """The one-line error a command ends with; with ``--verbose``, its traceback first."""
        if self.verbose and cause is not None:
            self._messages.out("".join(traceback.format_exception(cause)).rstrip(), highlight=False)
        line = f"[bold red]error:[/] {escape(failure.message)}"
        if failure.hint:
            line += f" [dim]— {escape(failure.hint)}[/]"
        self._messages.print(line, soft_wrap=True)

    # Interaction (stdin, stderr)

    def confirm(self, question: str, *, yes: bool) -> bool:
        """Ask a yes/no question; ``yes=True`` (``--yes``) answers it without asking.

        Without a terminal on stdin nobody can answer, so this refuses instead of hanging
        or guessing.
        """
        if yes:
            return True
        if not self.streams.stdin_isatty:
            raise UsageError(
                f"cannot ask for confirmation without a terminal: {question}",
                hint="pass --yes to confirm",
            )
        from rich.prompt import Confirm

        return Confirm.ask(
            escape(question), console=self._messages, stream=self.streams.stdin, default=False
        )

    def progress(self) -> ProgressDisplay:
        """A live progress display on a terminal; elsewhere one that shows nothing."""
        if self.quiet or not self.streams.stderr_isatty:
            return NoProgress()
        from rich.progress import Progress

        return Progress(console=self._messages, transient=True)

    def _write_json(self, data: Any) -> None:
        stream = self.streams.stdout
        stream.write(json.dumps(data, ensure_ascii=False, default=_json_value) + "\n")
        # Flushed per document so a consumer of an NDJSON stream sees each record at once.
        stream.flush()


def escape(text: str) -> str:
    """``text`` shown literally by rich: ``[`` never starts markup."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def _console(stream: TextIO, isatty: bool, no_color: bool) -> Console:
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
    )


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], title: str | None) -> Any:
    from rich.table import Table

    table = Table(*(escape(column) for column in columns), title=title and escape(title))
    for row in rows:
        table.add_row(*(escape(_cell(value)) for value in row))
    return table


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
    """``count`` and ``noun``, with an s unless there is exactly one (``3 keys``)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def human_size(size: int) -> str:
    """``size`` bytes in binary units, as ``ls -lh`` would (``1.2 MiB``)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
