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

import dataclasses
import enum
import functools
import gc
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer

from imgcli import __version__
from imgcli.config import Flags, StackSettings, resolve_stack
from imgcli.errors import ExitCode, describe_failure
from imgcli.output import Output, Streams

if TYPE_CHECKING:
    from imgcli.aws import AwsClients
    from imgcli.infra.deploy import StackDescription, StackEnvironment
    from imgcli.infra.plan import Plan, Step

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
        """boto3 clients for the selected stack; the first call imports boto3.

        A local stack's cloud is started first if it is not running (said on stderr), so a
        newcomer's first command just works.
        """
        if self._aws is None:
            from imgcli.aws import AwsClients

            self._ensure_local_cloud()
            self._aws = AwsClients(self.settings)
        return self._aws

    def _ensure_local_cloud(self) -> None:
        from imgcli.localcloud import process

        settings = self.settings
        if settings.target != "local" or settings.endpoint_url != process.endpoint_for(
            settings.local_port
        ):
            return  # an AWS stack, or a local endpoint someone else runs
        status, started = process.start(settings.local_port, self.environ)
        if started:
            self.output.info(f"started the local cloud on {status.endpoint}")

    def override(self, **flags: Any) -> None:
        """Let a command's own flags (``--target``, ``--port``) take part in resolving."""
        self.flags = dataclasses.replace(self.flags, **flags)
        self._settings = None
        self._aws = None

    def stack_environment(self) -> "StackEnvironment":
        """Account, region and names of the selected stack (the first AWS calls)."""
        from imgcli.errors import UsageError
        from imgcli.infra.deploy import StackEnvironment

        aws = self.aws()
        region = aws.region
        if not region:
            raise UsageError("no AWS region for this stack", hint="pass --region or set AWS_REGION")
        return StackEnvironment(self.settings, aws.client, region)


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


class TargetChoice(enum.StrEnum):
    local = "local"
    aws = "aws"


class ArchitectureChoice(enum.StrEnum):
    arm64 = "arm64"
    x86_64 = "x86_64"


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Write the result as JSON to stdout (same as global --json).")
]
DryRunFlag = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]


@reports_failures
def bootstrap_stack(
    ctx: typer.Context,
    target: Annotated[
        TargetChoice | None,
        typer.Option(help="Where the stack lives; fixed by the first bootstrap. Default: local."),
    ] = None,
    arch: Annotated[
        ArchitectureChoice | None,
        typer.Option(help="CPU architecture of the functions. Default: arm64, then as before."),
    ] = None,
    noncurrent_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Days a deleted or overwritten image stays recoverable as an old version. "
            "Default: 30, then as before.",
        ),
    ] = None,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Create the stack, or bring it up to date: bucket, table, roles, functions, API.

    Safe to run again: it plans from what exists, changes only what differs, and resumes
    a bootstrap that failed half way.

    Example: imgcli --stack demo bootstrap --target aws --dry-run
    """
    from imgcli.infra import deploy

    run = _command_invocation(ctx, json_output)
    if target is not None:
        run.override(target=target.value)
    changes: dict[str, Any] = {}
    if arch is not None:
        changes["architecture"] = arch.value
    if noncurrent_days is not None:
        changes["noncurrent_version_days"] = noncurrent_days
    outcome = deploy.bootstrap(
        run.stack_environment(),
        changes,
        dry_run=dry_run,
        on_plan=lambda plan: _show_plan(run, plan, "bootstrap"),
        on_step=lambda step, number, total: _show_step(run, step, number, total),
    )
    if dry_run:
        if run.output.json_mode:  # people read the plan on stderr already
            _plan_document(run, outcome.plan)
    elif outcome.description is not None:
        _show_stack(run, outcome.description)


@reports_failures
def destroy_stack(
    ctx: typer.Context,
    target: Annotated[
        TargetChoice | None,
        typer.Option(help="Where the stack lives, if its bootstrap record is lost."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    delete_images: Annotated[
        bool,
        typer.Option(help="Also delete every image, with all its versions, and the bucket."),
    ] = False,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Remove the stack: everything bootstrap created. Safe to run again.

    A bucket that still holds images is kept (and nothing is removed) unless
    --delete-images is given.

    Example: imgcli --stack demo destroy --yes --delete-images
    """
    from imgcli.infra import deploy

    run = _command_invocation(ctx, json_output)
    if target is not None:
        run.override(target=target.value)
    environment = run.stack_environment()
    name = run.settings.name

    def confirm(plan: "Plan") -> bool:
        return run.output.confirm(
            f"Delete {len(plan.steps)} resources of stack '{name}'"
            + (" and every image in it" if delete_images else "")
            + "?",
            yes=yes,
        )

    outcome = deploy.destroy(
        environment,
        delete_images=delete_images,
        dry_run=dry_run,
        confirm=confirm,
        on_plan=lambda plan: _show_plan(run, plan, "destroy"),
        on_step=lambda step, number, total: _show_step(run, step, number, total),
    )
    for note in outcome.notes:
        run.output.warning(note)
    if outcome.plan.up_to_date:
        run.output.info(f"stack '{name}': nothing to destroy")
    elif not dry_run and not outcome.executed:
        run.output.info("nothing was changed")
    if run.output.json_mode:
        run.output.document(
            {
                "stack": name,
                "destroyed": outcome.executed,
                "dry_run": dry_run,
                "steps": [step.description for step in outcome.plan.steps],
            },
            columns=(),
            rows=(),
        )


@reports_failures
def show_stack(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Describe the selected stack as bootstrap recorded it: bucket, table, API URL. No AWS calls.

    Example: imgcli --stack demo stack --json
    """
    from imgcli.infra import deploy

    run = _command_invocation(ctx, json_output)
    _show_stack(run, deploy.describe(run.settings))


def _command_invocation(ctx: typer.Context, json_output: bool) -> Invocation:
    run = invocation(ctx)
    run.output.json_mode = run.output.json_mode or json_output
    return run


def _show_plan(run: Invocation, plan: "Plan", verb: str) -> None:
    name = run.settings.name
    if plan.up_to_date:
        if verb == "bootstrap":
            run.output.info(f"stack '{name}' is up to date")
        return
    run.output.info(f"{verb} plan for stack '{name}' ({len(plan.steps)} steps):")
    marks = {"create": "+", "update": "~", "delete": "-"}
    for step in plan.steps:
        run.output.info(f"  {marks[step.action]} {step.description}")


def _plan_document(run: Invocation, plan: "Plan") -> None:
    """A dry run's result for scripts: the plan as JSON."""
    steps = [{"action": step.action, "description": step.description} for step in plan.steps]
    run.output.document(
        {"stack": run.settings.name, "up_to_date": plan.up_to_date, "steps": steps},
        columns=("action", "step"),
        rows=[(step.action, step.description) for step in plan.steps],
        title=f"plan for stack {run.settings.name}",
    )


def _show_step(run: Invocation, step: "Step", number: int, total: int) -> None:
    run.output.info(f"[{number}/{total}] {step.description}")


def _show_stack(run: Invocation, description: "StackDescription") -> None:
    data: dict[str, Any] = description.as_json()
    rows = [
        (key, ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value)
        for key, value in data.items()
    ]
    run.output.document(
        data, columns=("field", "value"), rows=rows, title=f"stack {description.stack}"
    )


local_app = typer.Typer(
    help="Run the local cloud: the whole stack on 127.0.0.1, no AWS account needed.",
    no_args_is_help=True,
)

PortOption = Annotated[
    int | None,
    typer.Option("--port", help="Port on 127.0.0.1 (default: IMGCLI_LOCAL_PORT, then 4599)."),
]


def _local_port(run: Invocation, port: int | None) -> int:
    if port is not None:
        run.override(local_port=port)
    return run.settings.local_port


@local_app.command("start")
@reports_failures
def local_start(ctx: typer.Context, port: PortOption = None) -> None:
    """Start the local cloud in the background; harmless if it already runs.

    Example: imgcli local start --port 4599
    """
    from imgcli.localcloud import process

    run = invocation(ctx)
    status, started = process.start(_local_port(run, port), run.environ)
    run.output.info(
        f"{'started' if started else 'already running:'} the local cloud on {status.endpoint}"
    )
    _show_local_status(run, status)


@local_app.command("stop")
@reports_failures
def local_stop(ctx: typer.Context, port: PortOption = None) -> None:
    """Stop the local cloud, saving its state.

    Example: imgcli local stop
    """
    from imgcli.localcloud import process

    run = invocation(ctx)
    stopped = process.stop(_local_port(run, port), run.environ)
    run.output.info("stopped the local cloud" if stopped else "the local cloud was not running")


@local_app.command("status")
@reports_failures
def local_status(
    ctx: typer.Context, port: PortOption = None, json_output: JsonFlag = False
) -> None:
    """Say whether the local cloud runs, where, and the credentials it accepts.

    Example: imgcli local status --json
    """
    from imgcli.localcloud import process

    run = _command_invocation(ctx, json_output)
    _show_local_status(run, process.status(_local_port(run, port), run.environ))


@local_app.command("reset")
@reports_failures
def local_reset(
    ctx: typer.Context,
    port: PortOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop the local cloud and discard everything in it: buckets, tables, functions.

    Example: imgcli local reset --yes
    """
    from imgcli.localcloud import process

    run = invocation(ctx)
    if run.output.confirm("Discard every bucket, table and function of the local cloud?", yes=yes):
        process.reset(_local_port(run, port), run.environ)
        run.output.info("the local cloud's state is gone")


def _show_local_status(run: Invocation, status: Any) -> None:
    data = status.as_json()
    run.output.document(data, columns=("field", "value"), rows=list(data.items()))


def build_app() -> typer.Typer:
    """The imgcli Typer app with its global options and commands (tests build fresh ones)."""
    app = typer.Typer(
        name="imgcli",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        # Markdown reflows docstring paragraphs, so help text wraps to the terminal.
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(global_options)
    app.command("config")(show_config)
    app.command("bootstrap")(bootstrap_stack)
    app.command("destroy")(destroy_stack)
    app.command("stack")(show_stack)
    app.add_typer(local_app, name="local")
    from imgcli.commands import register_all

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
