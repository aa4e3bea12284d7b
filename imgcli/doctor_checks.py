"""The questions ``imgcli doctor`` asks the selected stack, each answered as one report row.

Each check reuses the service the matching command uses, so doctor and the fix it names
agree on what is wrong:

* **resources**: bootstrap's own plan, made without executing (``bootstrap --dry-run``);
  every step it would take is a drift, named by the step's description.
* **local cloud**: ``imgcli.localcloud.process.status``, whose health check makes the
  answer prove it holds this data dir's secret. It runs before any client is made: a
  command's first client would start a local cloud that does not run, and doctor must
  report that instead.
* **credentials**: STS GetCallerIdentity (account and ARN), then one signed
  ``GET /images?limit=1`` through ``imgcli.gallery_api``.
* **failed events**: the queue's depth, and the age of its oldest message, read as
  ``events list`` reads (each message received and made visible again at once), at most
  ``OLDEST_READ_LIMIT`` of them.
* **index**: ``reconcile``'s comparison with no repair (its dry run), for the counts.
* **function errors**: the last hour of the functions' logs (``imgcli logs``' reader),
  counting the lines ``LogEvent.is_error`` calls failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from imgcli.doctor import (
    CREDENTIALS,
    FAILED_EVENTS,
    FUNCTION_ERRORS,
    INDEX,
    LOCAL_CLOUD,
    RESOURCES,
    Check,
    Status,
    fixes,
)
from imgcli.output import plural

if TYPE_CHECKING:
    from imgcli.function_log_reader import LogEvent
    from imgcli.infra.deploy import StackDescription
    from imgcli.invocation import Invocation
    from imgcli.reconcile import ReconcileSummary

#: How far back the function errors are read.
ERRORS_SINCE_S: Final = 3600
#: Messages read to find the oldest one: more are counted but not read.
OLDEST_READ_LIMIT: Final = 1000
#: The latest error's message is cut to this many characters (the logs have it whole).
MESSAGE_CHARS: Final = 200


class LiveStackChecks:
    """``imgcli.doctor.StackChecks`` against the run's stack, as bootstrap recorded it;
    ``clock`` gives epoch seconds."""

    def __init__(
        self,
        run: Invocation,
        description: StackDescription,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._run = run
        self._description = description
        self._clock = clock
        self._fix = fixes(run.settings.name)

    @property
    def local(self) -> bool:
        return self._description.target == "local"

    def local_cloud(self) -> Check:
        from imgcli.localcloud import process

        settings = self._run.settings
        if settings.endpoint_url != process.endpoint_for(settings.local_port):
            return Check(
                LOCAL_CLOUD,
                Status.WARNING,
                f"the stack's endpoint {settings.endpoint_url} is not this data dir's local "
                "cloud: imgcli cannot prove who answers there",
                "point the stack at the local cloud (endpoint_url), or leave it as it is",
            )
        status = process.status(settings.local_port, self._run.environ)
        if status.note is not None:
            return Check(
                LOCAL_CLOUD,
                Status.PROBLEM,
                status.note,
                f"stop that program, or use another port; then {self._fix[LOCAL_CLOUD]}",
            )
        if not status.running:
            return Check(
                LOCAL_CLOUD,
                Status.PROBLEM,
                f"no local cloud answers on {status.endpoint}",
                self._fix[LOCAL_CLOUD],
            )
        if status.port != settings.local_port:
            return Check(
                LOCAL_CLOUD,
                Status.PROBLEM,
                f"this data dir's local cloud runs on port {status.port}, the stack is set "
                f"to port {settings.local_port} ({settings.sources['local_port']})",
                f"use port {status.port}, or 'imgcli local stop' and "
                f"'imgcli local start --port {settings.local_port}'",
            )
        running = f"pid {status.pid} on {status.endpoint}, proved it holds this data dir's secret"
        if status.problems:
            return Check(
                LOCAL_CLOUD,
                Status.WARNING,
                f"{running}; at start it could not restore: {'; '.join(status.problems)}",
                "imgcli local status",
            )
        return Check(LOCAL_CLOUD, Status.OK, running)

    def identity(self) -> Check:
        caller = self._run.aws().client("sts").get_caller_identity()
        return Check(CREDENTIALS, Status.OK, f"account {caller['Account']}, {caller['Arn']}")

    def signed_call(self) -> Check:
        from imgcli.gallery_api import gallery_api_for

        for _ in gallery_api_for(self._run).list_pages(limit=1):
            pass
        return Check(CREDENTIALS, Status.OK, "the signed call GET /images?limit=1 answered")

    def resources(self) -> Check:
        from imgcli.infra import deploy

        outcome = deploy.bootstrap(self._run.stack_environment(), {}, dry_run=True)
        drifts = [step.description for step in outcome.plan.steps]
        if drifts:
            return Check(
                RESOURCES,
                Status.PROBLEM,
                f"{plural(len(drifts), 'drift')}: {'; '.join(drifts)}",
                self._fix[RESOURCES],
            )
        if not self._description.complete:
            return Check(
                RESOURCES,
                Status.PROBLEM,
                "the last bootstrap did not finish",
                self._fix[RESOURCES],
            )
        return Check(RESOURCES, Status.OK, "as bootstrap would make them (its plan is empty)")

    def failed_events(self) -> Check:
        from imgcli.failed_events import QueueWalk, failed_events_queue_for, human_age, now_ms

        queue = failed_events_queue_for(self._run)
        depth = queue.depth()
        waiting = depth.visible + depth.in_flight
        if not waiting:
            return Check(FAILED_EVENTS, Status.OK, "the failed-events queue is empty")
        detail = f"{plural(waiting, 'failed event')} in the queue"
        if depth.in_flight:
            detail += f" ({depth.in_flight:,} being read or replayed now)"
        limit = min(depth.visible, OLDEST_READ_LIMIT)
        oldest = oldest_sent_ms(
            (message.sent_at_ms for message in QueueWalk(queue).messages()), limit
        )
        if oldest is not None:
            age = human_age(max(now_ms() - oldest, 0) // 1000)
            read = "" if limit == depth.visible else f" of the {limit:,} read"
            detail += f"; the oldest{read} is {age} old"
        return Check(FAILED_EVENTS, Status.WARNING, detail, self._fix[FAILED_EVENTS])

    def index(self) -> Check:
        from imgcli.gallery_api import gallery_api_for
        from imgcli.reconcile import ReconcileSummary, bucket_objects, index_records, reconcile
        from imgcli.reconcile_drift import classify

        run = self._run
        bucket = run.settings.record("bucket")
        drifts = classify(
            bucket_objects(run.aws().client("s3"), bucket), index_records(gallery_api_for(run))
        )
        summary = ReconcileSummary(dry_run=True)
        for _ in reconcile(drifts, None, summary):
            pass  # a dry run: only the counts matter
        return index_check(summary, self._fix[INDEX])

    def function_errors(self) -> Check:
        from imgcli.function_log_reader import FunctionLogReader, selected_functions

        functions = selected_functions(self._description.functions, None)
        reader = FunctionLogReader(self._run.aws().client("logs"), functions)
        start_ms = int((self._clock() - ERRORS_SINCE_S) * 1000)
        return errors_check(reader.read(start_ms), self._fix[FUNCTION_ERRORS])


def oldest_sent_ms(sent: Iterable[int | None], limit: int) -> int | None:
    """The earliest of the first ``limit`` send times (``None``: unknown), or ``None``."""
    oldest: int | None = None
    iterator = iter(sent)
    try:
        for count, sent_ms in enumerate(iterator, start=1):
            if sent_ms is not None and (oldest is None or sent_ms < oldest):
                oldest = sent_ms
            if count >= limit:
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # a queue walk makes what it received visible again when closed
    return oldest


def index_check(summary: ReconcileSummary, fix: str) -> Check:
    """The index row from reconcile's counts: a problem when any key drifted."""
    counts = (
        f"{summary.missing:,} missing, {summary.stale:,} stale, {summary.orphaned:,} orphaned "
        f"of {plural(summary.compared, 'key')} compared"
    )
    if summary.drifted:
        return Check(INDEX, Status.PROBLEM, f"the index and the bucket disagree: {counts}", fix)
    return Check(INDEX, Status.OK, f"the index matches the bucket: {counts}")


def errors_check(events: Iterable[LogEvent], fix: str) -> Check:
    """The function errors row: a warning with the count and the latest error's message."""
    from imgcli.function_log_reader import shown_time

    count = 0
    latest: LogEvent | None = None
    for event in events:
        if event.is_error:
            count += 1
            if latest is None or event.timestamp_ms >= latest.timestamp_ms:
                latest = event
    if latest is None:
        return Check(
            FUNCTION_ERRORS, Status.OK, "no errors in the functions' logs in the last hour"
        )
    return Check(
        FUNCTION_ERRORS,
        Status.WARNING,
        f"{plural(count, 'error line')} in the last hour; the latest ({latest.function}, "
        f"{shown_time(latest.timestamp_ms)}): {_message_of(latest)}",
        fix,
    )


def _message_of(event: LogEvent) -> str:
    record = event.record
    text = event.message
    if record is not None and isinstance(record.get("message"), str):
        text = record["message"]
        error = record.get("error") or record.get("error_message")
        if isinstance(error, str) and error:
            text = f"{text}: {error}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= MESSAGE_CHARS else first[: MESSAGE_CHARS - 1] + "…"
