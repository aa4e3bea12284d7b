"""``imgcli doctor``'s report: which checks run, in which order, and what the verdict is.

The checks themselves (``imgcli.doctor_checks``) each ask the stack one question; this
module decides what a broken stack still lets doctor ask, and never lets one failure end
the report:

* **Dependencies.** The local cloud (a local stack) comes first: when it does not run,
  nothing else can answer, so every other check is ``skipped`` with that reason rather
  than started (a command would start the local cloud; doctor reports instead). Then the
  credentials, in two parts: who they are (STS), on which every AWS call depends
  (resources, failed events, function errors), and a signed API call, on which the
  index comparison depends (it reads the index through the API, as ``reconcile`` does).
* **Failures are findings.** A check that raises is a ``problem`` whose detail is what
  ``imgcli.errors.describe_failure`` says of the exception and whose fix is its hint,
  else the check's usual fix; only Ctrl-C ends doctor.
* **Bootstrap or reconcile.** ``bootstrap`` repairs resources, never the index: objects
  written while the notification was gone stay unlisted after it. So an index that
  disagrees with the bucket is always told to run ``reconcile``, after ``bootstrap`` when
  the resources drifted too (the repair goes through the save function and its
  permissions).
* **The verdict.** Healthy means no ``problem`` (warnings are things to look at: failed
  events waiting, recent function errors); a report that is not healthy ends the command
  with ``ProblemsFound``, exit code 1, after the report is printed.

The rows come out in a fixed order (``CHECKS``), whatever order they ran in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from imgcli.errors import ExitCode, Failure, ImgcliError

RESOURCES: Final = "resources"
LOCAL_CLOUD: Final = "local cloud"
CREDENTIALS: Final = "credentials"
FAILED_EVENTS: Final = "failed events"
INDEX: Final = "index"
FUNCTION_ERRORS: Final = "function errors"
#: The order of the report's rows.
CHECKS: Final = (RESOURCES, LOCAL_CLOUD, CREDENTIALS, FAILED_EVENTS, INDEX, FUNCTION_ERRORS)
COLUMNS: Final = ("check", "status", "detail", "fix")


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"
    #: Not run: a check it depends on found a problem (the detail says which).
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    """One row of the report; ``fix`` is empty when there is nothing to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "status": str(self.status),
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(check.status in (Status.OK, Status.WARNING) for check in self.checks)

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if check.status is Status.PROBLEM)

    def as_json(self) -> dict[str, Any]:
        return {"checks": [check.as_json() for check in self.checks], "healthy": self.healthy}

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [(c.name, str(c.status), c.detail, c.fix) for c in self.checks]


class ProblemsFound(ImgcliError):
    """Doctor found at least one problem (exit code 1); the report says what to do."""

    exit_code = ExitCode.SOME_FAILED

    def __init__(self, report: DoctorReport, *, json_mode: bool) -> None:
        names = [check.name for check in report.problems]
        where = "each check's fix" if json_mode else "the fix column"
        count = f"{len(names)} problem{'' if len(names) == 1 else 's'}"
        super().__init__(
            f"doctor found {count}: {', '.join(names)}", hint=f"{where} says what to do"
        )
        self.report = report


class StackChecks(Protocol):
    """The questions doctor asks a stack (``imgcli.doctor_checks.LiveStackChecks``).

    Each returns its row (``name`` is the check's name, from ``CHECKS``), or raises; the
    credentials row is made from ``identity`` and ``signed_call``.
    """

    @property
    def local(self) -> bool:
        """Whether the stack is on the local cloud (only then is ``local_cloud`` asked)."""
        ...

    def local_cloud(self) -> Check: ...

    def identity(self) -> Check: ...

    def signed_call(self) -> Check: ...

    def resources(self) -> Check: ...

    def failed_events(self) -> Check: ...

    def index(self) -> Check: ...

    def function_errors(self) -> Check: ...


Explain = Callable[[BaseException], Failure]


def fixes(stack: str) -> dict[str, str]:
    """Each check's usual fix, naming the stack so it cannot act on another one."""
    imgcli = f"imgcli --stack {stack}"
    return {
        RESOURCES: f"{imgcli} bootstrap",
        LOCAL_CLOUD: "imgcli local start",
        CREDENTIALS: "check the credentials (--profile, AWS_PROFILE) and the stack's region",
        FAILED_EVENTS: f"{imgcli} events list, then {imgcli} events replay",
        INDEX: f"{imgcli} reconcile",
        FUNCTION_ERRORS: f"{imgcli} logs --since 1h",
    }


def examine(
    checks: StackChecks,
    explain: Explain,
    stack: str,
    *,
    on_check: Callable[[str], None] = lambda name: None,
) -> DoctorReport:
    """Run every check ``checks`` can answer, in dependency order; the report in ``CHECKS``
    order. ``explain`` turns a check's exception into its row; ``on_check`` hears each
    check's name as it starts (for a progress line)."""
    usual_fix = fixes(stack)
    found: dict[str, Check] = {}

    def attempt(name: str, ask: Callable[[], Check]) -> Check:
        on_check(name)
        try:
            return ask()
        except Exception as error:  # noqa: BLE001 - a broken stack is a finding, not a crash
            failure = explain(error)
            return Check(name, Status.PROBLEM, failure.message, failure.hint or usual_fix[name])

    def skip(names: tuple[str, ...], reason: str) -> None:
        for name in names:
            found[name] = Check(name, Status.SKIPPED, f"skipped: {reason}")

    if checks.local:
        found[LOCAL_CLOUD] = attempt(LOCAL_CLOUD, checks.local_cloud)
        if found[LOCAL_CLOUD].status is Status.PROBLEM:
            skip(
                (RESOURCES, CREDENTIALS, FAILED_EVENTS, INDEX, FUNCTION_ERRORS),
                "the local cloud is not available",
            )
            return _ordered(found)
    identity = attempt(CREDENTIALS, checks.identity)
    if identity.status is Status.PROBLEM:
        found[CREDENTIALS] = identity
        skip((RESOURCES, FAILED_EVENTS, INDEX, FUNCTION_ERRORS), "the credentials do not work")
        return _ordered(found)
    signed = attempt(CREDENTIALS, checks.signed_call)
    found[CREDENTIALS] = _credentials(identity, signed)
    found[RESOURCES] = attempt(RESOURCES, checks.resources)
    found[FAILED_EVENTS] = attempt(FAILED_EVENTS, checks.failed_events)
    if signed.status is Status.PROBLEM:
        skip((INDEX,), "the signed API call failed")
    else:
        resources = found[RESOURCES]
        found[INDEX] = attempt(INDEX, lambda: _index_advice(checks.index(), resources, usual_fix))
    found[FUNCTION_ERRORS] = attempt(FUNCTION_ERRORS, checks.function_errors)
    return _ordered(found)


def _credentials(identity: Check, signed: Check) -> Check:
    worse = max(identity.status, signed.status, key=_SEVERITY.__getitem__)
    fix = signed.fix if signed.status is not Status.OK else identity.fix
    return Check(CREDENTIALS, worse, f"{identity.detail}; {signed.detail}", fix)


def _index_advice(index: Check, resources: Check, usual_fix: Mapping[str, str]) -> Check:
    """The fix for drift the index check found: reconcile, after bootstrap when the
    resources drifted too."""
    if index.status is not Status.PROBLEM or index.fix != usual_fix[INDEX]:
        return index
    if resources.status is Status.PROBLEM:
        fix = f"{usual_fix[RESOURCES]}, then {usual_fix[INDEX]} (bootstrap does not index)"
    else:
        fix = f"{usual_fix[INDEX]} (not bootstrap: it repairs resources, not the index)"
    return Check(INDEX, index.status, index.detail, fix)


_SEVERITY: Final = {Status.OK: 0, Status.SKIPPED: 1, Status.WARNING: 2, Status.PROBLEM: 3}


def _ordered(found: Mapping[str, Check]) -> DoctorReport:
    return DoctorReport(tuple(found[name] for name in CHECKS if name in found))
