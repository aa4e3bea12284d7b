"""A role's identity policies as moto's IAM holds them at this moment, and decisions on them.

Everything that acts as a role on the local cloud asks here: the authoriser (each call a
role session makes), the Lambda on-failure destination (written with the function's role)
and the functions' log writing. Policies are read afresh at every decision, as AWS
evaluates them at the moment of the call: a ``PutRolePolicy`` or ``DetachRolePolicy``
takes effect on the next call, not when a worker restarts.

A role's policies are its inline ones (``role.policies``: name → JSON text) and the default
version of each attached managed policy (``role.managed_policies``), AWS-managed ones
included; :func:`role_trust` reads what ``sts:AssumeRole`` is checked against. A role
that does not exist (deleted, or never created: moto's ``AssumeRole`` does not check) has
no policies, so its sessions may do nothing. This module is the only one that reads
moto's IAM models; :func:`missing_internals` and :func:`role_attributes_missing` check
the names it relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from imgcli.localcloud import MotoInternalsChanged
from imgcli.localcloud.iam_policy import Context, Evaluation, evaluate

_ROLE_ATTRIBUTES: Final = (
    "id",
    "arn",
    "policies",
    "managed_policies",
    "assume_role_policy_document",
    "max_session_duration",
)
#: AWS's MaxSessionDuration when a role sets none.
DEFAULT_MAX_SESSION_S: Final = 3600


@dataclass(frozen=True)
class RoleTrust:
    """What ``sts:AssumeRole`` checks on the role assumed: who may, and for how long."""

    document: str
    max_session_s: int


def role_policy_documents(role_arn: str) -> list[str]:
    """The JSON texts of every identity policy of ``role_arn`` now; ``[]`` if it is gone."""
    role = _role(role_arn)
    if role is None:
        return []
    try:
        documents = [str(text) for text in list(role.policies.values())]
        for policy in list(role.managed_policies.values()):
            default = next(version for version in policy.versions if version.is_default)
            documents.append(str(default.document))
    except (AttributeError, StopIteration) as exc:
        raise MotoInternalsChanged(
            f"imgcli reads role policies from moto's IAM models, which changed: {exc!r}"
        ) from exc
    return documents


def role_trust(role_arn: str) -> RoleTrust | None:
    """The trust policy and MaxSessionDuration of ``role_arn`` now; ``None`` if it is gone."""
    role = _role(role_arn)
    if role is None:
        return None
    document = role.assume_role_policy_document
    try:
        max_session_s = int(role.max_session_duration or DEFAULT_MAX_SESSION_S)
    except (TypeError, ValueError):
        max_session_s = DEFAULT_MAX_SESSION_S
    return RoleTrust(str(document or ""), max_session_s)


def role_id(role_arn: str) -> str | None:
    """The role's unique id (``AROA...``), part of a session's ``UserId``; ``None`` if gone."""
    role = _role(role_arn)
    return None if role is None else str(role.id)


def session_context(role_arn: str, region: str) -> Context:
    """The condition keys the local cloud knows for a role session's requests.

    ``aws:SecureTransport`` is false: the local cloud speaks plain HTTP on 127.0.0.1.
    """
    account = _arn_parts(role_arn)[1]
    return {
        "aws:SecureTransport": False,
        "aws:PrincipalArn": role_arn,
        "aws:PrincipalAccount": account,
        "aws:PrincipalType": "AssumedRole",
        "aws:RequestedRegion": region,
    }


def role_allows(role_arn: str, action: str, resource: str, region: str) -> Evaluation:
    """Whether ``role_arn``'s identity policies allow ``action`` on ``resource`` now."""
    documents = role_policy_documents(role_arn)
    return evaluate(documents, action, resource, session_context(role_arn, region))


def missing_internals() -> list[str]:
    """The moto IAM internals this module relies on that are missing; empty if none."""
    from moto.iam import exceptions, models

    expected: list[tuple[object, str]] = [
        (models, "iam_backends"),
        (models, "IAMBackend"),
        (models, "PolicyVersion"),
        (exceptions, "NotFoundException"),
    ]
    problems = [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, name in expected
        if not hasattr(owner, name)
    ]
    if not problems and not callable(getattr(models.IAMBackend, "get_role", None)):
        problems.append("IAMBackend.get_role")
    return problems


def role_attributes_missing(role: Any) -> list[str]:
    """The attributes of a moto ``Role`` this module reads that ``role`` lacks."""
    return [name for name in _ROLE_ATTRIBUTES if not hasattr(role, name)]


def _role(role_arn: str) -> Any | None:
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    partition, account, name = _arn_parts(role_arn)
    if not account or not name:
        return None
    try:
        role = iam_backends[account][partition].get_role(name)
    except NotFoundException:
        return None
    missing = role_attributes_missing(role)
    if missing:
        raise MotoInternalsChanged(
            "imgcli reads role policies from moto's IAM roles, which lack: " + ", ".join(missing)
        )
    # A role of that name on another path is another role.
    return role if role.arn == role_arn else None


def _arn_parts(role_arn: str) -> tuple[str, str, str]:
    """(partition, account, role name) of ``arn:<partition>:iam::<account>:role/<path/>name``."""
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        return "aws", "", ""
    return parts[1], parts[4], parts[5].rsplit("/", 1)[-1]
