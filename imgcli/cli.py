"""imgcli's command line: parse arguments, call one service function, render its result.

The frame every command shares lives here:

- ``global_options`` (the app callback) turns the global flags into one ``Invocation``
  on ``ctx.obj``: the ``Output`` and the selected stack's settings, resolved on first use
  so ``imgcli <command> --help`` works even with a broken config file.
- ``reports_failures`` wraps every command body: whatever it raises goes through
  ``imgcli.errors.describe_failure`` (the one mapping from exceptions to messages and exit
  codes) and ends the process with that code. Typer's standalone mode would otherwise print
  its own traceback, or end Ctrl-C silently.
- Heavy modules (boto3, botocore, PIL, moto, ``infra``, ``lambdas``) are imported inside
  the commands that use them, so ``--help`` and ``--version`` stay fast; a test enforces it.

Commands follow one shape: ``Annotated[...]`` options, a docstring that is the help text
with an example, one call into a service function, one render.
"""

import functools
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from imgcli import __version__
from imgcli.config import Flags, StackSettings, resolve_stack
from imgcli.errors import describe_failure
from imgcli.output import Output, Streams

if TYPE_CHECKING:
    from imgcli.aws import AwsClients

P = ParamSpec("P")
R = TypeVar("R")


class Invocation:
    """What one run of imgcli knows: how to talk to the user, and which stack to use."""

    def __init__(self, output: Output, flags: Flags, environ: Mapping[str, str]) -> None:
        self.output = output
        self.flags = flags
        self.environ = environ
        self._settings: StackSettings | None = None
        self._aws: AwsClients | None = None

    @property
    def settings(self) -> StackSettings:
        """The selected stack's settings (flags > IMGCLI_* > config file > defaults)."""
        if self._settings is None:
            self._settings = resolve_stack(self.flags, self.environ)
        return self._settings

    def aws(self) -> "AwsClients":
        """boto3 clients for the selected stack; the first call imports boto3."""
        if self._aws is None:
            from imgcli.aws import AwsClients

            self._aws = AwsClients(self.settings)
        return self._aws


def invocation(ctx: typer.Context) -> Invocation:
    """The ``Invocation`` the global options built for this run."""
    found = ctx.find_object(Invocation)
    if found is None:
        raise RuntimeError("the imgcli callback did not run: build the app with build_app()")
    return found


def reports_failures(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command body inside imgcli's one exception-to-exit-code mapping.

    Every command is decorated with it (a test checks). Bodies raise ``imgcli.errors``
    classes for anticipated problems (``UsageError`` rather than ``typer.BadParameter``);
    ``typer.Exit`` passes through untouched.
    """

    @functools.wraps(command)
    def run_command(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        # Typer's exit signal, and a closed pipe (`imgcli list | head`), which Typer
        # already ends quietly. typer.Abort (a prompt's Ctrl-C) is mapped below: Typer would
        # print "Aborted!" and exit 1, which here means "some items failed".
        except (typer.Exit, BrokenPipeError):
            raise
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"imgcli {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option("--stack", "-s", help="Stack to use: a name from the config file."),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Write results as JSON (NDJSON for lists) to stdout."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="On errors, also print the cause.")
    ] = False,
    profile: Annotated[
        str | None, typer.Option("--profile", help="AWS profile (aws stacks).")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region.")] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """A command-line image gallery on a serverless AWS stack (or the local cloud).

    Example: imgcli --stack prod config
    """
    # Tests may pass their own Streams as the context object (CliRunner.invoke(obj=...)).
    streams = ctx.obj if isinstance(ctx.obj, Streams) else Streams.from_process()
    output = Output(streams, json_mode=json_output, quiet=quiet, verbose=verbose)
    flags = Flags(stack=stack, profile=profile, region=region)
    ctx.obj = Invocation(output, flags, os.environ)


@reports_failures
def show_config(ctx: typer.Context) -> None:
    """Show the selected stack's settings and where each comes from. No AWS calls.

    Example: imgcli --stack prod --json config
    """
    run = invocation(ctx)
    settings = run.settings
    if settings.known_stacks and not settings.in_config_file:
        run.output.warning(
            f"stack '{settings.name}' is not in {settings.config_file} (it defines "
            f"{', '.join(settings.known_stacks)}); showing defaults"
        )
    rows = settings.describe()
    run.output.document(
        {name: {"value": value, "source": source} for name, value, source in rows},
        columns=("setting", "value", "source"),
        rows=rows,
        title=f"stack {settings.name}",
    )


def build_app() -> typer.Typer:
    """The imgcli Typer app with its global options and commands (tests build fresh ones)."""
    app = typer.Typer(
        name="imgcli",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(global_options)
    app.command("config")(show_config)
    return app


app = build_app()


def main() -> None:
    """The ``imgcli`` console script."""
    app(prog_name="imgcli")
