"""``imgcli logs``: the functions' CloudWatch Logs, on AWS and on the local cloud alike.

The service is ``imgcli.function_log_reader``; this module parses the options, names the
functions from the stack's record and renders. People get one line per event
(``time function LEVEL message key=value...`` for the functions' JSON lines, Lambda's
START/END/REPORT lines as Lambda wrote them), escaped by ``Output``; ``--json`` gives one
object per event.

``--follow`` polls until Ctrl-C, which ends it quietly with exit code 0, as ``aws logs
tail --follow`` does: stopping is the only way out of following, not a failure. A Ctrl-C
without ``--follow`` (a long read) is an interruption like any other: 130.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

from imgcli.commands.frame import JsonFlag, command_invocation, reports_failures

if TYPE_CHECKING:
    from imgcli.function_log_reader import LogEvent
    from imgcli.output import Output


class FunctionName(enum.StrEnum):
    save = "save"
    retrieve = "retrieve"


@reports_failures
def logs(
    ctx: typer.Context,
    function: Annotated[
        FunctionName | None,
        typer.Argument(
            metavar="FUNCTION", help="save or retrieve: whose logs to show; both when not given."
        ),
    ] = None,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start this long ago (30s, 10m, 2h, 1d) or at an ISO 8601 time (UTC unless "
            "it names a zone).",
        ),
    ] = "10m",
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep showing new lines until Ctrl-C (exit 0)."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show the functions' logs from CloudWatch Logs, oldest first, both functions interleaved.

    Example: imgcli logs save --since 1h --follow
    """
    from datetime import UTC, datetime

    from imgcli.function_log_reader import FunctionLogReader, selected_functions, since_millis
    from imgcli.infra import deploy

    run = command_invocation(ctx, json_output)
    start_ms = since_millis(since, datetime.now(UTC))
    description = deploy.describe(run.settings.name)
    which = None if function is None else function.value
    reader = FunctionLogReader(
        run.aws().client("logs"), selected_functions(description.functions, which)
    )
    if not follow:
        _show(run.output, reader.read(start_ms))
        return
    try:
        for batch in reader.follow(start_ms):
            _show(run.output, batch)
    except KeyboardInterrupt:
        return  # the way to stop following: quietly, exit 0


def _show(output: Output, events: Iterable[LogEvent]) -> None:
    from imgcli.function_log_reader import readable_fields

    if output.json_mode:
        output.records((event.as_json() for event in events), columns=())
    else:
        output.lines(readable_fields(event) for event in events)


def register(app: typer.Typer) -> None:
    """Add ``logs`` to ``app``."""
    app.command(name="logs")(logs)
