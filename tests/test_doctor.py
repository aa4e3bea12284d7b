"""``imgcli doctor``'s report and verdict, with a recording stand-in for the stack.

Which checks run when another fails (none is started behind a problem it depends on),
that a check's exception is a row and never a crash, the order of the rows, the fix that
says reconcile rather than bootstrap, the exit code; and the rows made from reconcile's
counts, the functions' log lines and the queue's send times.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imgcli.doctor import (
    CHECKS,
    CREDENTIALS,
    FAILED_EVENTS,
    FUNCTION_ERRORS,
    INDEX,
    LOCAL_CLOUD,
    RESOURCES,
    Check,
    DoctorReport,
    ProblemsFound,
    Status,
    examine,
    fixes,
)
from imgcli.doctor_checks import errors_check, index_check, oldest_sent_ms
from imgcli.errors import AuthError, ExitCode, Failure, describe_failure
from imgcli.function_log_reader import LogEvent
from imgcli.reconcile import ReconcileSummary

STACK = "demo"
FIX = fixes(STACK)
Answer = Check | BaseException


class RecordingChecks:
    """``StackChecks`` answering what it is given (all ok by default), recording each call."""

    def __init__(self, *, local: bool = True, **answers: Answer) -> None:
        self.local = local
        self.asked: list[str] = []
        self._answers = answers

    def _answer(self, method: str, name: str) -> Check:
        self.asked.append(method)
        answer = self._answers.get(method, Check(name, Status.OK, f"{method} fine"))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def local_cloud(self) -> Check:
        return self._answer("local_cloud", LOCAL_CLOUD)

    def identity(self) -> Check:
        return self._answer("identity", CREDENTIALS)

    def signed_call(self) -> Check:
        return self._answer("signed_call", CREDENTIALS)

    def resources(self) -> Check:
        return self._answer("resources", RESOURCES)

    def failed_events(self) -> Check:
        return self._answer("failed_events", FAILED_EVENTS)

    def index(self) -> Check:
        return self._answer("index", INDEX)

    def function_errors(self) -> Check:
        return self._answer("function_errors", FUNCTION_ERRORS)


def run(checks: RecordingChecks) -> DoctorReport:
    return examine(checks, describe_failure, STACK)


def statuses(report: DoctorReport) -> dict[str, str]:
    return {check.name: str(check.status) for check in report.checks}


def test_a_healthy_local_stack_runs_every_check_and_reports_in_order() -> None:
    checks = RecordingChecks()
    report = run(checks)
    assert [check.name for check in report.checks] == list(CHECKS)
    assert set(statuses(report).values()) == {"ok"}
    assert report.healthy
    assert report.as_json() == {
        "checks": [
            {"name": check.name, "status": "ok", "detail": check.detail, "fix": ""}
            for check in report.checks
        ],
        "healthy": True,
    }
    # Dependency order: the local cloud first, then who the credentials are.
    assert checks.asked[:3] == ["local_cloud", "identity", "signed_call"]
    credentials = report.checks[CHECKS.index(CREDENTIALS)]
    assert credentials.detail == "identity fine; signed_call fine"


def test_an_aws_stack_has_no_local_cloud_row() -> None:
    checks = RecordingChecks(local=False)
    report = run(checks)
    assert LOCAL_CLOUD not in statuses(report)
    assert "local_cloud" not in checks.asked
    assert report.healthy


def test_warnings_alone_keep_the_stack_healthy() -> None:
    waiting = Check(FAILED_EVENTS, Status.WARNING, "2 failed events", FIX[FAILED_EVENTS])
    errors = Check(FUNCTION_ERRORS, Status.WARNING, "3 error lines", FIX[FUNCTION_ERRORS])
    report = run(RecordingChecks(failed_events=waiting, function_errors=errors))
    assert report.healthy
    assert report.problems == ()


def test_no_local_cloud_skips_every_other_check_without_asking_it() -> None:
    down = Check(LOCAL_CLOUD, Status.PROBLEM, "no local cloud answers", FIX[LOCAL_CLOUD])
    checks = RecordingChecks(local_cloud=down)
    report = run(checks)
    assert checks.asked == ["local_cloud"]
    assert statuses(report) == {**dict.fromkeys(CHECKS, "skipped"), LOCAL_CLOUD: "problem"}
    skipped = report.checks[0]
    assert skipped.detail == "skipped: the local cloud is not available" and skipped.fix == ""
    assert not report.healthy


def test_refused_credentials_are_a_problem_with_their_reason_and_skip_the_rest() -> None:
    refused = AuthError("the security token is invalid", hint="renew your session")
    checks = RecordingChecks(identity=refused)
    report = run(checks)
    assert checks.asked == ["local_cloud", "identity"]
    credentials = report.checks[CHECKS.index(CREDENTIALS)]
    assert credentials == Check(
        CREDENTIALS, Status.PROBLEM, "the security token is invalid", "renew your session"
    )
    assert statuses(report) == {
        **dict.fromkeys(CHECKS, "skipped"),
        LOCAL_CLOUD: "ok",
        CREDENTIALS: "problem",
    }


def test_a_failed_signed_call_skips_only_the_index() -> None:
    refused = AuthError("the API refused the signature")
    checks = RecordingChecks(signed_call=refused)
    report = run(checks)
    assert "index" not in checks.asked
    assert statuses(report) == {
        **dict.fromkeys(CHECKS, "ok"),
        CREDENTIALS: "problem",
        INDEX: "skipped",
    }
    credentials = report.checks[CHECKS.index(CREDENTIALS)]
    assert credentials.detail == "identity fine; the API refused the signature"
    assert credentials.fix == FIX[CREDENTIALS]  # the exception had no hint


def test_a_check_that_raises_is_a_problem_and_the_others_still_run() -> None:
    checks = RecordingChecks(failed_events=RuntimeError("queue exploded"))
    report = run(checks)
    assert checks.asked[-3:] == ["failed_events", "index", "function_errors"]
    failed = report.checks[CHECKS.index(FAILED_EVENTS)]
    assert failed.status is Status.PROBLEM
    assert "queue exploded" in failed.detail
    assert statuses(report)[FUNCTION_ERRORS] == "ok"


def test_ctrl_c_is_not_a_finding() -> None:
    with pytest.raises(KeyboardInterrupt):
        run(RecordingChecks(resources=KeyboardInterrupt()))


def test_the_explanation_comes_from_the_callers_failure_mapping() -> None:
    seen: list[BaseException] = []

    def explain(error: BaseException) -> Failure:
        seen.append(error)
        return Failure("said by the run", ExitCode.REMOTE)

    error = RuntimeError("raw")
    report = examine(RecordingChecks(index=error), explain, STACK)
    assert seen == [error]
    index = report.checks[CHECKS.index(INDEX)]
    assert (index.detail, index.fix) == ("said by the run", FIX[INDEX])


def drifted_index() -> Check:
    return Check(INDEX, Status.PROBLEM, "2 missing", FIX[INDEX])


def test_drift_in_the_index_alone_says_reconcile_not_bootstrap() -> None:
    report = run(RecordingChecks(index=drifted_index()))
    index = report.checks[CHECKS.index(INDEX)]
    assert (
        index.fix == f"imgcli --stack {STACK} reconcile (not bootstrap: it repairs "
        "resources, not the index)"
    )


def test_drift_in_both_says_bootstrap_then_reconcile() -> None:
    broken = Check(RESOURCES, Status.PROBLEM, "create bucket notification x", FIX[RESOURCES])
    report = run(RecordingChecks(resources=broken, index=drifted_index()))
    index = report.checks[CHECKS.index(INDEX)]
    assert index.fix == (
        f"imgcli --stack {STACK} bootstrap, then imgcli --stack {STACK} reconcile "
        "(bootstrap does not index)"
    )
    assert report.checks[0].fix == f"imgcli --stack {STACK} bootstrap"


def test_an_index_check_that_could_not_run_keeps_its_own_fix() -> None:
    failed = AuthError("denied", hint="ask for s3:ListBucketVersions")
    report = run(RecordingChecks(index=failed))
    assert report.checks[CHECKS.index(INDEX)].fix == "ask for s3:ListBucketVersions"


def test_problems_end_the_command_with_exit_code_1_not_a_stack_error() -> None:
    broken = Check(RESOURCES, Status.PROBLEM, "drift", FIX[RESOURCES])
    report = run(RecordingChecks(resources=broken, index=drifted_index()))
    failure = describe_failure(ProblemsFound(report, json_mode=False))
    assert failure.exit_code is ExitCode.SOME_FAILED
    assert int(failure.exit_code) == 1
    assert failure.message == "doctor found 2 problems: resources, index"
    assert failure.hint == "the fix column says what to do"
    one = DoctorReport((broken,))
    assert ProblemsFound(one, json_mode=True).message == "doctor found 1 problem: resources"
    assert ProblemsFound(one, json_mode=True).hint == "each check's fix says what to do"


def test_every_fix_names_the_stack() -> None:
    for name in (RESOURCES, FAILED_EVENTS, INDEX, FUNCTION_ERRORS):
        assert FIX[name].startswith(f"imgcli --stack {STACK} ")


# The rows doctor_checks makes from the services' answers


def test_the_index_row_counts_reconciles_drift() -> None:
    summary = ReconcileSummary(dry_run=True, missing=2, stale=1, orphaned=3, unchanged=4)
    row = index_check(summary, FIX[INDEX])
    assert row == Check(
        INDEX,
        Status.PROBLEM,
        "the index and the bucket disagree: 2 missing, 1 stale, 3 orphaned of 10 keys compared",
        FIX[INDEX],
    )
    clean = index_check(ReconcileSummary(dry_run=True, unchanged=1), FIX[INDEX])
    assert clean.status is Status.OK and clean.fix == ""
    assert (
        clean.detail
        == "the index matches the bucket: 0 missing, 0 stale, 0 orphaned of 1 key compared"
    )


def event(timestamp_ms: int, message: str, function: str = "save") -> LogEvent:
    return LogEvent(timestamp_ms, function, "stream", str(timestamp_ms), message)


def test_function_errors_count_error_lines_and_show_the_latest() -> None:
    lines = [
        event(1_000, '{"level": "INFO", "message": "indexed"}'),
        event(2_000, '{"level": "ERROR", "message": "record failed", "error": "AccessDenied"}'),
        event(3_000, "START RequestId: x"),
        event(4_000, "[ERROR] RecordsFailed: 1 record(s) failed\nTraceback ...", "retrieve"),
        event(5_000, "END RequestId: x"),
    ]
    row = errors_check(lines, FIX[FUNCTION_ERRORS])
    assert row.status is Status.WARNING
    assert row.detail == (
        "2 error lines in the last hour; the latest (retrieve, 1970-01-01T00:00:04.000Z): "
        "[ERROR] RecordsFailed: 1 record(s) failed"
    )
    json_latest = errors_check(lines[:2], FIX[FUNCTION_ERRORS])
    assert json_latest.detail.endswith("): record failed: AccessDenied")
    assert errors_check(lines[:1], FIX[FUNCTION_ERRORS]).status is Status.OK


def test_a_long_error_message_is_cut() -> None:
    row = errors_check([event(1, "[ERROR] " + "x" * 500)], FIX[FUNCTION_ERRORS])
    message = row.detail.split("): ", 1)[1]
    assert len(message) == 200 and message.endswith("…")


def test_the_oldest_message_is_found_among_the_first_read_and_the_walk_is_closed() -> None:
    closed: list[bool] = []

    def sent() -> Iterator[int | None]:
        try:
            yield from (30, None, 10, 20, 5)
        finally:
            closed.append(True)

    assert oldest_sent_ms(sent(), limit=4) == 10  # the fifth is not read
    assert closed == [True]
    assert oldest_sent_ms(iter([None]), limit=10) is None
    assert oldest_sent_ms(iter([]), limit=10) is None
