"""What every command shares: its run's ``Invocation``, the failure mapping, common options.

- ``invocation(ctx)`` is the ``Invocation`` the global options built (``imgcli.cli``);
  ``command_invocation`` also honours the command's own ``--json``.
- ``reports_failures`` wraps every command body: whatever it raises goes through
  ``imgcli.errors.describe_failure`` (the one mapping from exceptions to messages and exit
  codes, told the run's stack and local cloud by ``Invocation.describe_failure``) and ends
  the process with that code. Typer's standalone mode would otherwise print its own
  traceback, or end Ctrl-C silently.
- ``JsonFlag``, ``DryRunFlag`` and ``YesFlag`` are the options several commands take, so
  each reads and behaves the same everywhere.
- **Global options anywhere.** The global options (``StackOption`` ... ``RegionOption``,
  the app callback's parameters) are also accepted after the command, as the AWS CLI takes
  its own (``imgcli upload -q photos``, ``imgcli list --stack prod``). No command declares
  them: ``use_frame_classes`` makes every registered command an ``ImgcliCommand``, which
  adds copies of them (Typer's own options, built once from ``_after_command``'s
  signature) that feed the same ``Invocation`` instead of the command's arguments, shown
  in a "Global options" panel of its help (a command with a class of its own gets it
  with ``ImgcliCommand`` mixed in). Given in both places, the one after the
  command wins, as a repeated option does anywhere in Click: the last one given. A command
  that declares an option of the same name keeps its own (``--json`` where a command
  takes it: it means the same).
- Help shows no Python types (Typer writes ``<bool>`` for an option that takes no value,
  ``<str>`` for a text value): ``ImgcliCommand`` and ``ImgcliGroup`` blank a flag's
  metavar and name every other value after its parameter (``PREFIX``, ``KEY...``).
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Final, ParamSpec, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from imgcli.errors import ExitCode, Failure, describe_failure
from imgcli.invocation import Invocation
from imgcli.output import Output, Streams

P = ParamSpec("P")
R = TypeVar("R")

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Write the result as JSON to stdout (same as global --json).")
]
DryRunFlag = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

StackOption = Annotated[
    str | None, typer.Option("--stack", "-s", help="Stack to use: a name from the config file.")
]
GlobalJsonOption = Annotated[
    bool, typer.Option("--json", help="Write results as JSON (NDJSON for lists) to stdout.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="On errors, also print the cause.")
]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile (aws stacks).")]
RegionOption = Annotated[
    str | None, typer.Option("--region", help="AWS region (aws stacks; a local stack has one).")
]
GLOBAL_PANEL: Final = "Global options"


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
            failure = _report(kwargs, KeyboardInterrupt() if interrupted else exc, exc)
            raise typer.Exit(int(failure.exit_code)) from exc

    return run_command


def _report(kwargs: Mapping[str, object], exc: BaseException, cause: BaseException) -> Failure:
    run = _invocation_in(kwargs)
    if run is None:
        # A command without a context parameter still reports its failure, plainly.
        failure = describe_failure(exc)
        Output(Streams.from_process()).failure(failure, cause=cause)
        return failure
    failure = run.describe_failure(exc)
    run.output.failure(failure, cause=cause)
    return failure


def _invocation_in(kwargs: Mapping[str, object]) -> Invocation | None:
    for value in kwargs.values():
        # Typer hands commands its bundled click's Context, which typer.Context only
        # subclasses for annotations, so look for the method rather than the class.
        find_object = getattr(value, "find_object", None)
        found = find_object(Invocation) if callable(find_object) else None
        if isinstance(found, Invocation):
            return found
    return None


def _after_command(
    stack: StackOption = None,
    json_output: GlobalJsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """The global options as a command takes them; only its parameters are used."""


@functools.cache
def _global_option_templates() -> tuple[Any, ...]:
    # Typer's own options for _after_command's signature: conversion, help and types
    # exactly as the app callback's, with nothing re-implemented.
    probe = typer.Typer(add_completion=False)
    probe.command()(_after_command)
    return tuple(typer.main.get_command(probe).params)


def _global_option_given(ctx: typer.Context, param: Any, value: Any) -> Any:
    """Apply a global option given after the command to the run's ``Invocation``."""
    if value is None or value is False or ctx.resilient_parsing:
        return value  # not given here: what was given before the command stands
    run = ctx.find_object(Invocation)
    if run is None:
        return value
    if param.name in ("stack", "profile", "region"):
        run.override(**{param.name: value})
    elif param.name == "json_output":
        run.output.json_mode = True
    elif param.name == "quiet":
        run.output.quiet = True
    elif param.name == "verbose":
        run.output.verbose = True
    return value


def _global_options_for(params: Iterable[Any]) -> list[Any]:
    """Copies of the global options that fit beside ``params`` (no name taken twice)."""
    taken = {name for param in params for name in (*param.opts, *param.secondary_opts)}
    added = []
    for template in _global_option_templates():
        names = [name for name in template.opts if name not in taken]
        if not names:
            continue
        option = copy.copy(template)
        option.opts = names
        option.expose_value = False
        option.callback = _global_option_given
        option.rich_help_panel = GLOBAL_PANEL
        added.append(option)
    return added


def _without_flag_types(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "param_type_name", "") == "argument":
            # The name column already says KEY or PATH...; the type column would add
            # Python's "<list[str]>".
            param.display_type_rich = _no_type
            continue
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""  # Typer would show "<bool>" for a flag, which takes no value
        elif param.name and not getattr(param.type_descriptor, "is_choice", False):
            # Typer shows Python's types ("<str>", "<float range>"); people read what the
            # value is, as the AWS CLI and Git write it: PREFIX, REGION.
            param.metavar = param.name.upper()
    return params


def _no_type(ctx: Any) -> None:
    return None


class ImgcliCommand(TyperCommand):
    """A command that also takes the global options, and shows no type for a flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options_for(self.params))

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


class ImgcliGroup(TyperGroup):
    """A group (the app, ``local``) that shows no type for a flag."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_types(super().get_params(ctx))


@functools.cache
def _with_frame(command_class: type[TyperCommand]) -> type[TyperCommand]:
    """``command_class`` (a command's own, e.g. upload's) with ``ImgcliCommand`` mixed in."""
    return type(command_class.__name__, (command_class, ImgcliCommand), {})


def use_frame_classes(app: typer.Typer) -> None:
    """Make every command registered on ``app`` (and its groups) an ``ImgcliCommand``, and
    every group an ``ImgcliGroup``, unless it chose a class of its own."""
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # app.command() records its default class
            command.cls = ImgcliCommand
        elif not issubclass(command.cls, ImgcliCommand):
            command.cls = _with_frame(command.cls)
    for group in app.registered_groups:
        # Not a class: Typer's "not set" placeholder.
        if not isinstance(group.cls, type) or group.cls is TyperGroup:
            group.cls = ImgcliGroup
        if group.typer_instance is not None:
            use_frame_classes(group.typer_instance)
