"""imgcli's command line: the app, its global options, and the console script.

Layers point one way (a test checks): the services (``imgcli.invocation``, ``config``,
``output``, ``errors``, ``aws``, ``upload``, ``gallery_api``, ``localcloud``, and the stack
layer ``imgcli.infra`` with the functions' ``imgcli.lambdas``) know nothing of the command
line; ``imgcli.commands`` holds every command, one module per group, on the shared frame of
``imgcli.commands.frame``; this module builds the app from them. Nothing imports upward.

- ``global_options`` (the app callback) turns the global flags into one ``Invocation``
  on ``ctx.obj``: the ``Output`` and the selected stack's settings, resolved on first use
  so ``imgcli <command> --help`` works even with a broken config file. The same options
  are accepted after the command (the frame adds them to every command; the one after
  the command wins), and the app is the frame's ``ImgcliGroup``.
- Heavy modules (boto3, botocore, PIL, moto, ``imgcli.infra``, ``imgcli.lambdas``) are
  imported inside the commands that use them, so ``--help`` and ``--version`` stay fast; a
  test enforces it.

Commands follow one shape: ``Annotated[...]`` options, a docstring that is the help text
with an example, one call into a service function, one render.
"""

import gc
import os
from typing import Annotated

import typer

from imgcli import __version__
from imgcli.commands import register_all
from imgcli.commands.frame import (
    GlobalJsonOption,
    ImgcliGroup,
    ProfileOption,
    QuietOption,
    RegionOption,
    StackOption,
    VerboseOption,
)
from imgcli.config import Flags
from imgcli.invocation import Invocation
from imgcli.output import Output, Streams


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"imgcli {__version__}")
        raise typer.Exit()


def global_options(
    ctx: typer.Context,
    stack: StackOption = None,
    json_output: GlobalJsonOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """A command-line image gallery on a serverless AWS stack (or the local cloud).

    The options below are accepted after the command too (imgcli config --stack prod).

    Example: imgcli --stack prod config
    """
    # Tests may pass their own Streams as the context object (CliRunner.invoke(obj=...)).
    streams = ctx.obj if isinstance(ctx.obj, Streams) else Streams.from_process()
    output = Output(streams, json_mode=json_output, quiet=quiet, verbose=verbose)
    flags = Flags(stack=stack, profile=profile, region=region)
    ctx.obj = Invocation(output, flags, os.environ)


def build_app() -> typer.Typer:
    """The imgcli Typer app with its global options and commands (tests build fresh ones)."""
    app = typer.Typer(
        name="imgcli",
        cls=ImgcliGroup,
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        # Markdown reflows docstring paragraphs, so help text wraps to the terminal.
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(global_options)
    register_all(app)
    return app


app = build_app()


def main() -> None:
    """The ``imgcli`` console script."""
    # Start-up makes some 100,000 objects that live as long as the process (modules,
    # botocore's service models); at Python's default threshold of 700 the collector walks
    # them again and again while they age, 30-50 ms of a command that takes half a second.
    # It still runs, 30 times less often: an upload of 10,000 files makes garbage cycles.
    gc.set_threshold(20_000, 10, 10)
    try:
        app(prog_name="imgcli")
    finally:
        # The interpreter's last act would be a full collection over all of them (70-140 ms
        # after an upload) just before the process ends; frozen objects are left out of it.
        gc.freeze()
