"""``imgcli doctor`` and ``imgcli reconcile``: check the stack and its index, and repair the
index where it does not match the bucket.

``doctor`` is ``imgcli.doctor`` (which checks run, and the verdict) over
``imgcli.doctor_checks`` (the questions asked of the stack). Its stack must have been
bootstrapped (else exit 3, before any request); then it prints every check, a failed one
included, and exits 1 (``ProblemsFound``) when any found a problem, 0 when all are ok or
only warn. People get a table (check, status, detail, fix) and, on a terminal, a
transient line naming the check that runs; ``--json`` gives one object ``{"checks":
[{"name", "status", "detail", "fix"}], "healthy"}``.

For ``reconcile``, the work is ``imgcli.reconcile`` (listings, classification, batched
repairs through the save function); this module turns its reports into output, the way
``delete`` and ``upload`` do:

* ``--json``: one object per drifted key (``key``, ``drift``, ``outcome``) as its repair
  settles, then ``{"summary": {...}}`` with the counts, which ends every run whose
  arguments were accepted, a failure part-way included (then with ``"error": {"message",
  "exit_code"}``, and the exit code stays the error's), so a script learns how far it got.
* People get a table of the drifted keys (one per 1,000 rows, so memory stays bounded
  even when the whole index is missing) and a summary line on stderr; on a terminal a
  transient progress line counts the keys compared while the listings run.
* ``--dry-run`` lists and classifies, and sends no repair: each drifted key's outcome is
  ``would_repair``.
* ``--prefix`` names keys to match, so it is checked as a new key (``imgcli.keys``) before
  any request; an empty one means every key.

Reconcile's exit codes: 0 when every repair worked (or nothing drifted, or a dry run); 1
(``NotAllRepaired``) when any failed; an error that stops the run (credentials, the stack
gone, the network) keeps its own code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from imgcli.commands.frame import (
    DryRunFlag,
    JsonFlag,
    command_invocation,
    reports_failures,
)
from imgcli.errors import PartialFailure
from imgcli.keys import checked_new_key
from imgcli.output import plural

if TYPE_CHECKING:
    from imgcli.invocation import Invocation
    from imgcli.output import ProgressDisplay
    from imgcli.reconcile import KeyReport, ReconcileSummary
    from imgcli.reconcile_drift import KeyDrift

REPORT_COLUMNS: Final = ("key", "drift", "outcome")
#: Rows per table people see: tables print as they fill, so memory stays bounded.
TABLE_ROWS: Final = 1000
#: Keys compared between two redraws of the progress line.
PROGRESS_EVERY: Final = 100


class NotAllRepaired(PartialFailure):
    """Some drifted keys could not be repaired (exit code 1); the others were."""

    def __init__(self, failed: int, drifted: int, *, json_mode: bool) -> None:
        where = "the records whose outcome starts with 'failed'" if json_mode else "the table"
        super().__init__(
            failed,
            drifted,
            "repairs",
            hint=f"{where} say which and why; run 'imgcli reconcile' again to retry them",
        )


@reports_failures
def reconcile_index(
    ctx: typer.Context,
    prefix: Annotated[
        str | None,
        typer.Option("--prefix", "-p", help="Only keys that start with this (empty: all)."),
    ] = None,
    dry_run: DryRunFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Compare the bucket with the index and repair where they differ.

    Every current object of the bucket is compared with what the API lists (active and
    invalid images): an object with no record is missing, a record of another version is
    stale, a record whose object is gone is orphaned. Their keys are sent to the stack's
    save function, which reads each object as S3 has it now and indexes it again or
    removes its record. --dry-run only reports. --json prints one object per drifted key
    (key, drift, outcome), then a summary object. Exit code 1 when a repair failed.

    Example: imgcli reconcile --prefix holiday/ --dry-run
    """
    if prefix:
        checked_new_key(prefix, "--prefix")
    run = command_invocation(ctx, json_output)
    from imgcli.reconcile import ReconcileSummary

    summary = ReconcileSummary(dry_run=dry_run)
    try:
        _reconcile(run, prefix or "", summary)
    except KeyboardInterrupt:
        _show_summary(run, summary)
        raise
    except Exception as error:
        _show_summary(run, summary, error=error)
        raise
    _show_summary(run, summary)
    if summary.failed:
        raise NotAllRepaired(summary.failed, summary.drifted, json_mode=run.output.json_mode)


def _reconcile(run: Invocation, prefix: str, summary: ReconcileSummary) -> None:
    from imgcli.gallery_api import gallery_api_for
    from imgcli.reconcile import (
        DEFAULT_CONCURRENCY,
        bucket_objects,
        index_records,
        reconcile,
    )
    from imgcli.reconcile_drift import classify
    from imgcli.reconcile_repair import SaveFunctionRepairs

    bucket = run.settings.record("bucket")
    function = run.settings.record("save_function")
    api = gallery_api_for(run)
    aws = run.aws()
    repair = None
    if not summary.dry_run:
        functions = aws.client("lambda", max_pool_connections=DEFAULT_CONCURRENCY)
        repair = SaveFunctionRepairs(functions, function, bucket)
    drifts = classify(bucket_objects(aws.client("s3"), bucket, prefix), index_records(api, prefix))
    with run.output.progress() as display:
        counter = _Counter(display, summary)
        reports = reconcile(drifts, repair, summary, on_compared=counter.compared)
        _show_reports(run, reports)


class _Counter:
    """The progress line: keys compared, drifted and repaired so far."""

    def __init__(self, display: ProgressDisplay, summary: ReconcileSummary) -> None:
        self._display = display
        self._summary = summary
        self._task = display.add_task("comparing the bucket with the index", total=None)

    def compared(self, item: KeyDrift) -> None:
        summary = self._summary
        if summary.compared % PROGRESS_EVERY:
            return
        self._display.update(
            self._task,
            completed=summary.compared,
            description=f"compared {plural(summary.compared, 'key')}, "
            f"{summary.drifted:,} drifted, {summary.repaired:,} repaired",
        )


def _show_reports(run: Invocation, reports: Iterable[KeyReport]) -> None:
    output = run.output
    if output.json_mode:
        output.records((report.as_json() for report in reports), columns=REPORT_COLUMNS)
        return
    rows: list[dict[str, Any]] = []
    for report in reports:
        rows.append(report.as_json())
        if len(rows) == TABLE_ROWS:
            output.records(rows, columns=REPORT_COLUMNS)
            rows = []
    if rows:
        output.records(rows, columns=REPORT_COLUMNS)


def _show_summary(
    run: Invocation, summary: ReconcileSummary, *, error: Exception | None = None
) -> None:
    """The summary every run ends with; ``error`` is what stopped it, if anything but
    Ctrl-C did (the frame reports it on its own line afterwards)."""
    if run.output.json_mode:
        data = summary.as_json()
        if error is not None:
            failure = run.describe_failure(error)
            data["error"] = {"message": failure.message, "exit_code": int(failure.exit_code)}
        run.output.document({"summary": data}, columns=(), rows=())
        return
    run.output.info(summary_line(summary, stopped=error is not None))


def summary_line(summary: ReconcileSummary, *, stopped: bool = False) -> str:
    """What people read at the end: the counts, and what was repaired."""
    stale = f"{summary.stale:,} stale"
    if summary.older_schema:
        stale += f" ({plural(summary.older_schema, 'record')} of an older schema)"
    counts = (
        f"{plural(summary.compared, 'key')} compared: {summary.missing:,} missing, "
        f"{stale}, {summary.orphaned:,} orphaned, {summary.unchanged:,} unchanged"
    )
    if stopped:
        return f"stopped by an error after {counts}; {summary.repaired:,} repaired before it"
    if summary.dry_run:
        return f"dry run: {counts}; nothing changed"
    if not summary.drifted:
        return f"the index matches the bucket: {counts}"
    return f"{counts}; {summary.repaired:,} repaired, {summary.failed:,} failed"


@reports_failures
def doctor(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Check the selected stack and say what to run for each problem found.

    Checks, each ok, warning or problem with a one-line fix: the resources are as
    bootstrap would make them (each drift named); a local stack's local cloud runs and
    is this data dir's; the credentials (who they are) and a signed API call work; the
    failed-events queue (depth, oldest message); the index matches the bucket (the
    counts reconcile would repair); the functions' errors in the last hour. A check that
    cannot run is a problem, and those that depend on it are skipped. Exit code 0 when
    healthy or with warnings only, 1 when a problem was found, 3 when the stack was never
    bootstrapped.

    Example: imgcli --stack prod doctor --json
    """
    from imgcli.doctor import COLUMNS, ProblemsFound, Status, examine
    from imgcli.doctor_checks import LiveStackChecks
    from imgcli.infra import deploy

    run = command_invocation(ctx, json_output)
    name = run.settings.name
    description = deploy.describe(name)  # never bootstrapped: exit 3, nothing asked
    with run.output.progress() as display:
        task = display.add_task("checking the stack", total=None)
        report = examine(
            LiveStackChecks(run, description),
            run.describe_failure,
            name,
            on_check=lambda check: display.update(task, description=f"checking {check}"),
        )
    run.output.document(
        report.as_json(), columns=COLUMNS, rows=report.rows(), title=f"stack {name}"
    )
    if not report.healthy:
        raise ProblemsFound(report, json_mode=run.output.json_mode)
    warnings = sum(check.status is Status.WARNING for check in report.checks)
    run.output.info(
        f"stack '{name}' is healthy"
        + (f" ({plural(warnings, 'warning')}: see their fixes)" if warnings else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``doctor`` and ``reconcile`` to the imgcli app."""
    app.command("doctor")(doctor)
    app.command("reconcile")(reconcile_index)
