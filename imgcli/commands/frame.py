"""What every command shares: its run's ``Invocation``, the failure mapping, common options.

- ``invocation(ctx)`` is the ``Invocation`` the global options built (``imgcli.cli``);
  ``command_invocation`` also honours the command's own ``--json``.
- ``reports_failures`` wraps every command body: whatever it raises goes through
  ``imgcli.errors.describe_failure`` (the one mapping from exceptions to messages and exit
  codes) and ends the process with that code. Typer's standalone mode would otherwise print
  its own traceback, or end Ctrl-C silently.
- ``JsonFlag``, ``DryRunFlag`` and ``YesFlag`` are the options several commands take, so
  each reads and behaves the same everywhere.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import Annotated, ParamSpec, TypeVar

import typer

from imgcli.errors import ExitCode, describe_failure
from imgcli.invocation import Invocation
from imgcli.output import Output, Streams

P = ParamSpec("P")
R = TypeVar("R")

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Write the result as JSON to stdout (same as global --json).")
]
DryRunFlag = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def invocation(ctx: typer.Context) -> Invocation:
    """The ``Invocation`` the global options built for this run."""
    found = ctx.find_object(Invocation)
    if found is None:
        raise RuntimeError("the imgcli callback did not run: build the app with build_app()")
    return found


def command_invocation(ctx: typer.Context, json_output: bool) -> Invocation:
    """The run's ``Invocation``, in JSON mode if the command's own ``--json`` was given."""
    run = invocation(ctx)
    run.output.json_mode = run.output.json_mode or json_output
    return run


def reports_failures(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command body inside imgcli's one exception-to-exit-code mapping.

    Every command is decorated with it (a test checks). Bodies raise ``imgcli.errors``
    classes for anticipated problems (``UsageError`` rather than ``typer.BadParameter``);
    ``typer.Exit`` passes through untouched.
    """

    @functools.wraps(command)
    def run_command(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            try:
                return command(*args, **kwargs)
            finally:
                # Most output is still buffered here: a reader that is gone shows now, where
                # it can be told from a failure, not in Click's flush at exit (exit 1).
                sys.stdout.flush()
        # typer.Abort (a prompt's Ctrl-C) is mapped below: Typer would print "Aborted!"
        # and exit 1, which here means "some items failed".
        except typer.Exit:
            raise
        except BrokenPipeError:
            # `imgcli list | head`: the reader is gone, which is no failure of ours. Typer
            # would exit 1 ("some items failed"); end as a program killed by SIGPIPE does,
            # with stdout pointed at /dev/null so the flush at exit cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise typer.Exit(int(ExitCode.BROKEN_PIPE)) from None
        except (Exception, KeyboardInterrupt) as exc:
            interrupted = isinstance(exc, typer.Abort)  # a prompt's Ctrl-C or end of input
            failure = describe_failure(KeyboardInterrupt() if interrupted else exc)
            _output_for(kwargs).failure(failure, cause=exc)
            raise typer.Exit(int(failure.exit_code)) from exc

    return run_command


def _output_for(kwargs: Mapping[str, object]) -> Output:
    for value in kwargs.values():
        # Typer hands commands its bundled click's Context, which typer.Context only
        # subclasses for annotations, so look for the method rather than the class.
        find_object = getattr(value, "find_object", None)
        found = find_object(Invocation) if callable(find_object) else None
        if isinstance(found, Invocation):
            return found.output
    # A command without a context parameter still reports its failure, plainly.
    return Output(Streams.from_process())
