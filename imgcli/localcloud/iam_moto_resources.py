"""Whether moto will act on the resource an identifier names: for identifiers it resolves wrongly.

moto 5.2.5's CloudWatch Logs resolves a ``logGroupIdentifier`` by looping over every group
for one whose ARN equals it, and its loop variable leaks: *any* identifier (a bare name, a
wrong ARN, the exact ARN of another group) resolves to the last group created. The
authoriser therefore lets a role session name a group by identifier only if it is the
exact ARN of the group moto will act on: one that exists and is the last
(``RequiredPermissions.must_resolve``). That stays right when moto fixes its loop (it then
acts on the named group, which is that one); it refuses identifiers of other groups until
then (use ``logGroupName``). A group created between the check and moto's call could
change the answer: a race the local cloud accepts.
:func:`missing_internals` checks the names read (``logs_backends``, a backend's
``groups`` mapping, a group's ``arn``).
"""

from __future__ import annotations

from typing import Any

from imgcli.localcloud import MotoInternalsChanged


def resolves_exactly(arn: str) -> bool:
    """Whether moto resolves the identifier ``arn`` to the resource it names (log groups
    only; anything else: ``False``)."""
    parts = arn.split(":", 6)
    if len(parts) != 7 or parts[2] != "logs" or parts[5] != "log-group":
        return False
    region, account, name = parts[3], parts[4], parts[6]
    groups = _log_groups(account, region)
    if name not in groups:
        return False
    group = list(groups.values())[-1]  # where moto's loop ends, whatever it matched
    if not hasattr(group, "arn"):
        raise MotoInternalsChanged("imgcli reads moto's log groups' arn, which is gone")
    return bool(group.arn == arn)


def missing_internals() -> list[str]:
    """The moto CloudWatch Logs internals this module relies on that are missing."""
    from moto.logs import models

    if not hasattr(models, "logs_backends") or not hasattr(models, "LogsBackend"):
        return ["moto.logs.models.logs_backends / LogsBackend"]
    backend = models.LogsBackend("us-east-1", "123456789012")
    if not isinstance(getattr(backend, "groups", None), dict):
        return ["LogsBackend.groups (a dict of name to group)"]
    return []


def _log_groups(account: str, region: str) -> dict[str, Any]:
    from moto.logs.models import logs_backends

    # Only backends that exist: indexing a BackendDict would create them.
    per_account = logs_backends.get(account) if account in logs_backends else None
    backend = per_account.get(region) if per_account and region in per_account else None
    if backend is None:
        return {}
    groups = getattr(backend, "groups", None)
    if not isinstance(groups, dict):
        raise MotoInternalsChanged("imgcli reads moto's LogsBackend.groups, which changed")
    return groups
