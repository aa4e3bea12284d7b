"""``imgcli events list|replay|purge``: the stack's failed-events queue.

Events the save function could not apply past its retries wait in the stack's failed-events
queue as Lambda's invocation records; ``imgcli.failed_events`` reads, replays and deletes
them (how, and why so, is said there).

Output decisions:

* ``list`` leaves the queue as it was. A table for people (id, keys, event time, error,
  attempts, age); ``--json`` one object per message. Messages another reader held while
  listing (a replay at work) are not shown, and a warning says how many.
* ``replay`` asks nothing: replaying is safe (the save function never lets an old event
  undo a newer one) and deletes only what succeeded. One row (or JSON line) per message,
  then a summary (the last JSON line, also when the run fails part-way); exit code 1 when
  any message failed again, was not a failed event, was not found, or stayed held by
  another reader.
* ``purge`` names the count and asks (Enter is no; without a terminal it needs --yes), then
  deletes exactly the messages it counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from imgcli.commands.frame import JsonFlag, YesFlag, command_invocation, reports_failures
from imgcli.errors import PartialFailure
from imgcli.output import plural

if TYPE_CHECKING:
    from imgcli.failed_events import QueuedEvent, QueueWalk, ReplayOutcome
    from imgcli.invocation import Invocation

events_app = typer.Typer(
    help="See, replay or delete the events the stack failed to index (its failed-events queue).",
    no_args_is_help=True,
)


class NotAllHandled(PartialFailure):
    """Some failed events were not replayed (or not deleted); exit code 1."""

    def __init__(self, missed: int, total: int, done: str, hint: str) -> None:
        super().__init__(missed, total, "failed events", hint=hint)
        self.message = f"{missed} of {plural(total, 'failed event')} not {done}"
        self.args = (self.message,)


LIST_COLUMNS: Final = ("id", "keys", "event time", "error", "attempts", "age")
REPLAY_COLUMNS: Final = ("id", "status", "keys", "error")


@events_app.command("list")
@reports_failures
def list_events(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show at most this many.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the failed events: keys, event time, error, attempts and age of each.

    The queue is left as it was (each message is hidden for a few seconds while it is
    read, then made visible again). --json prints one JSON object per message.

    Example: imgcli events list --json
    """
    from imgcli.failed_events import QueueWalk, failed_events_queue_for, list_failed_events, now_ms

    run = command_invocation(ctx, json_output)
    walk = QueueWalk(failed_events_queue_for(run))
    now = now_ms()
    shown = _show(
        run,
        ((event.as_json(now), _list_row(event, now)) for event in list_failed_events(walk, limit)),
        LIST_COLUMNS,
    )
    if walk.held_elsewhere:
        run.output.warning(
            f"{plural(walk.held_elsewhere, 'failed event')} not shown: another reader "
            "(a replay?) holds them; list again in a minute"
        )
    if not shown:
        run.output.info("no failed events")


@events_app.command("replay")
@reports_failures
def replay_events(
    ctx: typer.Context,
    message_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="MESSAGE_ID",
            help="Replay only these messages (ids from 'imgcli events list'); default all.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run the failed events through the save function again; delete those that succeed.

    Without ids every message is replayed, without asking: the save function never lets
    an old event undo a newer one. A message that fails again stays in the queue with its
    new error shown. --json prints one object per message, then a summary object. Exit
    code 1 when any message was not replayed.

    Example: imgcli events replay
    """
    from imgcli.failed_events import (
        QueueWalk,
        failed_events_queue_for,
        replay_failed_events,
        replay_summary,
        save_function_for,
    )

    run = command_invocation(ctx, json_output)
    wanted = list(dict.fromkeys(message_ids or []))
    told_waiting = False

    def waiting(held: int) -> None:
        nonlocal told_waiting
        if not told_waiting:
            run.output.info(
                f"waiting for {plural(held, 'failed event')} another reader holds "
                "(an 'events list' in progress?)"
            )
            told_waiting = True

    outcomes: list[ReplayOutcome] = []
    walk: QueueWalk | None = None

    def replayed(walk: QueueWalk) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for outcome in replay_failed_events(walk, save_function_for(run), wanted):
            outcomes.append(outcome)
            yield outcome.as_json(), _replay_row(outcome)

    try:
        walk = QueueWalk(failed_events_queue_for(run), wait_for_others=True, on_waiting=waiting)
        _show(run, replayed(walk), REPLAY_COLUMNS)
    finally:
        # Also when the run fails part-way: a script learns how far it got.
        summary = replay_summary(outcomes, walk.held_elsewhere if walk else 0)
        if run.output.json_mode:
            run.output.document({"summary": summary}, columns=(), rows=())
        else:
            run.output.info(_replay_line(summary))
    _fail_unless_all_replayed(summary)


@events_app.command("purge")
@reports_failures
def purge_events(ctx: typer.Context, yes: YesFlag = False, json_output: JsonFlag = False) -> None:
    """Delete every failed event, after asking; they are not replayed.

    The question names how many there are (Enter answers no); where nobody can answer,
    pass --yes. Exactly the messages counted are deleted: one that arrives meanwhile
    stays.

    Example: imgcli events purge --yes
    """
    from imgcli.failed_events import (
        QueueWalk,
        count_messages,
        failed_events_queue_for,
        purge_messages,
    )

    run = command_invocation(ctx, json_output)
    queue = failed_events_queue_for(run)
    counting = QueueWalk(queue, wait_for_others=True)
    ids = count_messages(counting)
    if counting.held_elsewhere:
        run.output.warning(
            f"{plural(counting.held_elsewhere, 'failed event')} not counted: another reader "
            "(a replay?) holds them"
        )
    deleted = 0
    try:
        if not ids:
            run.output.info("no failed events")
            return
        question = f"delete {plural(len(ids), 'failed event')}? They will not be replayed."
        if not run.output.confirm(question, yes=yes):
            run.output.info("nothing was deleted")
            return
        deleted = purge_messages(QueueWalk(queue, wait_for_others=True), ids)
        run.output.info(f"deleted {plural(deleted, 'failed event')}")
    finally:
        if run.output.json_mode:
            run.output.document(
                {"summary": {"counted": len(ids), "deleted": deleted}}, columns=(), rows=()
            )
    if deleted < len(ids):
        raise NotAllHandled(
            len(ids) - deleted,
            len(ids),
            "deleted",
            hint="another reader held them (a replay?) or deleted them meanwhile: "
            "see 'imgcli events list'",
        )


def register(app: typer.Typer) -> None:
    """Add the ``events`` group (``list``, ``replay``, ``purge``) to the imgcli app."""
    app.add_typer(events_app, name="events")


def _show(
    run: Invocation,
    rows: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    columns: Sequence[str],
) -> int:
    """Each (JSON, table row) pair: JSON lines as they come, or one table at the end (none
    when there is nothing to show); how many there were."""
    if run.output.json_mode:
        count = 0
        for data, _ in rows:
            run.output.records([data], columns=columns)
            count += 1
        return count
    table = [row for _, row in rows]
    if table:
        run.output.records(table, columns=columns)
    return len(table)


def _list_row(event: QueuedEvent, now: int) -> dict[str, Any]:
    from imgcli.failed_events import human_age

    record = event.record
    return {
        "id": event.message_id,
        "keys": ", ".join(record.keys) if record else "",
        "event time": record.event_time if record else None,
        "error": record.error if record else event.problem,
        "attempts": record.attempts if record else None,
        "age": human_age(event.age_s(now)),
    }


def _replay_row(outcome: ReplayOutcome) -> dict[str, Any]:
    error = ": ".join(part for part in (outcome.error_type, outcome.error_message) if part)
    return {
        "id": outcome.message_id,
        "status": outcome.status,
        "keys": ", ".join(outcome.keys),
        "error": error or None,
    }


def _replay_line(summary: dict[str, int]) -> str:
    if not summary["total"] and not summary["held_elsewhere"]:
        return "no failed events"
    line = f"replayed {summary['replayed']} of {plural(summary['total'], 'failed event')}"
    others = [
        f"{summary[status]} {label}"
        for status, label in (
            ("failed", "failed again"),
            ("unreadable", "not failed events"),
            ("missing", "not found"),
            ("held_elsewhere", "held by another reader"),
        )
        if summary[status]
    ]
    return line + (": " + ", ".join(others) if others else "")


def _fail_unless_all_replayed(summary: dict[str, int]) -> None:
    not_replayed = summary["total"] - summary["replayed"] + summary["held_elsewhere"]
    if not_replayed:
        raise NotAllHandled(
            not_replayed,
            summary["total"] + summary["held_elsewhere"],
            "replayed",
            hint="the report above says why; failed ones stay in the queue: fix the cause "
            "and run 'imgcli events replay' again",
        )
