"""What ``sts:AssumeRole`` checks beyond the caller's identity policies: trust and duration.

moto's STS issues credentials for any role ARN, for any ``DurationSeconds``; AWS refuses
a caller the role's trust policy (``AssumeRolePolicyDocument``) does not name, and a
duration outside 900 seconds .. the role's ``MaxSessionDuration`` (at most one hour when a
role session assumes a role: "role chaining"). The authoriser asks :func:`refusal` for
every AssumeRole call before moto sees it.

Decisions:

* A role session is known to a trust policy by its role's ARN, its assumed-role ARN and
  its account (``"AWS": "<account>"`` or ``arn:aws:iam::<account>:root``);
  ``iam_policy.evaluate_trust`` decides. A role that does not exist is trusted by no one
  (AWS: AccessDenied). The caller's identity policy must allow ``sts:AssumeRole`` on the
  role too (the authoriser checks it as for any call): stricter than AWS when the trust
  policy names the caller's role explicitly, which AWS lets through without it.
* The owner (the local cloud's key) is not checked against trust policies: it stands for
  the account's administrator, who may rewrite any trust policy anyway, and foreign
  clients (the AWS CLI's ``sts assume-role``) rely on assuming the stack's roles, which
  trust only Lambda. AWS would refuse the root user any AssumeRole; the local cloud has no
  other user to offer. Its durations are bounded like everyone's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from imgcli.localcloud.iam_policy import Caller, evaluate_trust
from imgcli.localcloud.role_policies import (
    DEFAULT_MAX_SESSION_S,
    RoleTrust,
    role_trust,
    session_context,
)

MIN_SESSION_S: Final = 900
LONGEST_SESSION_S: Final = 43200
ROLE_CHAINING_MAX_S: Final = 3600
#: moto's (and AWS's) DurationSeconds when the request names none.
DEFAULT_DURATION_S: Final = 3600
ASSUME_ROLE: Final = "AssumeRole"

#: A role's trust and MaxSessionDuration now (``role_policies.role_trust``; tests pass their own).
TrustSource = Callable[[str], RoleTrust | None]


@dataclass(frozen=True)
class Refusal:
    """AWS's error for a refused AssumeRole: ``AccessDenied`` (403) or ``ValidationError``."""

    code: str
    status: int
    message: str


def refusal(
    params: Mapping[str, Any],
    region: str,
    *,
    caller_role: str | None = None,
    caller_session: str | None = None,
    trust_of: TrustSource = role_trust,
) -> Refusal | None:
    """Why AWS would refuse this AssumeRole call (``params`` as sent); ``None`` if it would
    not. ``caller_role``/``caller_session``: the calling role session's role ARN and
    assumed-role ARN; both ``None`` for the owner (module docstring)."""
    role_arn = params.get("RoleArn")
    if not isinstance(role_arn, str) or not role_arn:
        return None  # moto answers a missing RoleArn with its own validation error
    trust = trust_of(role_arn)
    duration = _duration(params.get("DurationSeconds"))
    if duration is None or duration < MIN_SESSION_S or duration > LONGEST_SESSION_S:
        bound = (
            f"greater than or equal to {MIN_SESSION_S}"
            if duration is not None and duration < MIN_SESSION_S
            else f"less than or equal to {LONGEST_SESSION_S}"
        )
        return Refusal(
            "ValidationError",
            400,
            f"1 validation error detected: Value '{params.get('DurationSeconds')}' at "
            f"'durationSeconds' failed to satisfy constraint: Member must have value {bound}",
        )
    if caller_role is not None and duration > ROLE_CHAINING_MAX_S:
        return Refusal(
            "ValidationError",
            400,
            "The requested DurationSeconds exceeds the 1 hour session limit for roles "
            "assumed by role chaining.",
        )
    max_session_s = DEFAULT_MAX_SESSION_S if trust is None else trust.max_session_s
    if duration > max_session_s:
        return Refusal(
            "ValidationError",
            400,
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    if caller_role is None:
        return None
    session = caller_session or caller_role
    denied = Refusal(
        "AccessDenied",
        403,
        f"User: {session} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
    )
    if trust is None:
        return denied
    account = caller_role.split(":")[4] if caller_role.count(":") >= 5 else None
    callers = [Caller(arn=arn, account=account) for arn in (caller_role, session)]
    context = session_context(caller_role, region)
    evaluation = evaluate_trust(trust.document, "sts:AssumeRole", callers, context)
    return None if evaluation.allowed else denied


def _duration(value: Any) -> int | None:
    if value is None:
        return DEFAULT_DURATION_S
    try:
        return int(str(value))
    except ValueError:
        return None
