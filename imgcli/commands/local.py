"""``imgcli local start|stop|status|reset``: the local cloud's process.

The work is ``imgcli.localcloud.process`` (start, stop, find and reset the one background
process on 127.0.0.1); these commands resolve the port (``--port``, then the stack's
settings) and show its status.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from imgcli.commands.frame import (
    JsonFlag,
    YesFlag,
    command_invocation,
    invocation,
    reports_failures,
)
from imgcli.invocation import Invocation

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

    run = command_invocation(ctx, json_output)
    _show_local_status(run, process.status(_local_port(run, port), run.environ))


@local_app.command("reset")
@reports_failures
def local_reset(
    ctx: typer.Context,
    port: PortOption = None,
    yes: YesFlag = False,
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


def register(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")
