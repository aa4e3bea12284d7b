"""``imgcli local start|stop|status|env|reset``: the local cloud's process and its key.

The work is ``imgcli.localcloud.process`` (start, stop, find and reset the one background
process on 127.0.0.1); these commands resolve the port (``--port``, then the stack's
settings) and show its status. ``env`` prints the variables that point other AWS tools at
it, with the owner's key: shell-quoted ``export`` lines for ``eval``, or a JSON object.
Every one of them takes ``--json``: ``start`` and ``status`` print the status object,
``stop`` and ``reset`` an object saying what they did.

``reset`` discards every local stack's resources with the local cloud, so it also marks
those stacks' bootstrap records as gone (``imgcli.infra.deploy.forgetting_local_stacks``,
under each stack's lock, after waiting for a bootstrap that is running): ``imgcli stack``
and the other commands then say the stack must be bootstrapped again, instead of failing
on a bucket that no longer exists.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

import typer

from imgcli.commands.frame import (
    JsonFlag,
    YesFlag,
    command_invocation,
    reports_failures,
)
from imgcli.invocation import Invocation

if TYPE_CHECKING:
    from imgcli.localcloud.process import LocalCloudStatus

#: Variables that would make AWS's tools sign or route differently from what ``env`` sets:
#: a session token (``AWS_SECURITY_TOKEN`` is botocore's old name for it) would be sent
#: with the local key and refused, and a profile may not exist here.
UNSET: Final = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")

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
def local_start(ctx: typer.Context, port: PortOption = None, json_output: JsonFlag = False) -> None:
    """Start the local cloud in the background; harmless if it already runs.

    Example: imgcli local start --port 4599
    """
    from imgcli.localcloud import process

    run = command_invocation(ctx, json_output)
    status, started = process.start(_local_port(run, port), run.environ)
    run.output.info(
        f"{'started' if started else 'already running:'} the local cloud on {status.endpoint}"
    )
    _show_local_status(run, status)


@local_app.command("stop")
@reports_failures
def local_stop(ctx: typer.Context, port: PortOption = None, json_output: JsonFlag = False) -> None:
    """Stop the local cloud, saving its state.

    Example: imgcli local stop
    """
    from imgcli.localcloud import process

    run = command_invocation(ctx, json_output)
    local_port = _local_port(run, port)
    stopped = process.stop(local_port, run.environ)
    run.output.info("stopped the local cloud" if stopped else "the local cloud was not running")
    if run.output.json_mode:
        run.output.document({"stopped": stopped, "port": local_port}, columns=(), rows=())


@local_app.command("status")
@reports_failures
def local_status(
    ctx: typer.Context, port: PortOption = None, json_output: JsonFlag = False
) -> None:
    """Say whether the local cloud runs: its endpoint, pid, data dir and region, and the
    key pair it accepts, which is its owner's alone (imgcli local env exports it).

    Example: imgcli local status --json
    """
    from imgcli.localcloud import process

    run = command_invocation(ctx, json_output)
    _show_local_status(run, process.status(_local_port(run, port), run.environ))


@local_app.command("env")
@reports_failures
def local_env(ctx: typer.Context, port: PortOption = None, json_output: JsonFlag = False) -> None:
    """Print the variables that point AWS's CLI and SDKs at the local cloud.

    Shell lines (export AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL; unset the session token and profile) for eval,
    or with --json an object of the variables. This does not start the local cloud
    (imgcli local start does); it makes the local cloud's secret if there is none yet.

    Example: eval "$(imgcli local env)" && aws s3 ls
    """
    from imgcli.localcloud import process

    run = command_invocation(ctx, json_output)
    variables = process.access(_local_port(run, port), run.environ).aws_environment()
    if run.output.json_mode or run.output.quiet:
        run.output.document(variables, columns=("variable", "value"), rows=variables.items())
        return
    # A service's own endpoint variable, or the switch that ignores them, would win
    # over AWS_ENDPOINT_URL and send the local secret elsewhere.
    overrides = sorted(
        name
        for name in run.environ
        if name.startswith("AWS_ENDPOINT_URL_") or name == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
    )
    stream = run.output.streams.stdout
    for name, value in variables.items():
        stream.write(f"export {name}={shlex.quote(value)}\n")
    stream.write(f"unset {' '.join([*UNSET, *overrides])}\n")
    stream.flush()


@local_app.command("reset")
@reports_failures
def local_reset(
    ctx: typer.Context,
    port: PortOption = None,
    yes: YesFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Stop the local cloud and discard everything in it: buckets, tables, functions, and
    its key pair (a new one is made at the next start). Every local stack must then be
    bootstrapped again; their records say so.

    Example: imgcli local reset --yes
    """
    from imgcli.config import resolve_stack
    from imgcli.infra import deploy
    from imgcli.localcloud import process

    run = command_invocation(ctx, json_output)
    if port is None:
        # Not run.settings: they need the local cloud's key, which may be what is broken.
        port = resolve_stack(run.flags, run.environ, local_key=False).local_port
    question = "Discard every bucket, table and function of the local cloud?"
    if not run.output.confirm(question, yes=yes):
        if run.output.json_mode:
            run.output.document({"reset": False, "stacks_gone": []}, columns=(), rows=())
        return
    when = datetime.now(UTC).isoformat(timespec="seconds")
    with deploy.forgetting_local_stacks(
        f"the local cloud was reset (imgcli local reset, {when})",
        on_wait=lambda holder: run.output.info(f"waiting for {holder.describe()}..."),
        environ=run.environ,
    ) as stacks:
        process.reset(port, run.environ)
    run.output.info("the local cloud's state is gone")
    if stacks:
        run.output.info(
            f"local stacks to bootstrap again: {', '.join(stacks)} (imgcli --stack NAME bootstrap)"
        )
    if run.output.json_mode:
        run.output.document({"reset": True, "stacks_gone": stacks}, columns=(), rows=())


def _show_local_status(run: Invocation, status: LocalCloudStatus) -> None:
    data = status.as_json()
    rows = [
        (name, value) for name, value in data.items() if name not in ("note", "problems") or value
    ]
    run.output.document(data, columns=("field", "value"), rows=rows)
    for problem in status.problems:
        run.output.warning(f"the local cloud did not restore: {problem}")
    if status.note is not None:
        run.output.warning(
            f"{status.note}; imgcli sends it nothing (stop that program, or use another port)"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")
