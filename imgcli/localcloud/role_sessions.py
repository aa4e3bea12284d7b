"""Role sessions: temporary credentials that stand for an IAM role, as AWS hands them out.

On AWS every Lambda execution environment gets its role's temporary credentials (access
key id ``ASIA...``, secret, session token, expiry), and every call made with them is
authorised against the role's policies. :class:`RoleSessions` issues such credentials for
the local cloud's workers (:meth:`RoleSessions.for_function`: the session is named after
the function, as Lambda names it) and finds the role behind any access key id
(:meth:`RoleSessions.lookup`, the ``identity.Identities`` the gate asks), including the
credentials moto's own STS ``AssumeRole`` gave a foreign client (the AWS CLI's
``sts assume-role``), so those clients are authorised as the role too.

Decisions:

* Sessions issued here live in memory only: workers do not survive a restart, so neither
  need their credentials. moto's STS sessions are moto's state, saved with it.
* Lifetime: 12 hours by default, the most AWS allows a role session; the runtime replaces
  a worker whose credentials would expire during an invocation, as Lambda refreshes them.
* ``lookup`` also returns sessions that expired less than ``EXPIRED_KEPT_S`` ago: the gate
  refuses them as expired (AWS's ``ExpiredToken``) rather than as an unknown key. Older
  ones are forgotten the next time a session is issued.
* moto keeps its sessions in ``sts_backends[account][partition].assumed_roles`` (the
  partition is ``"aws"`` in moto 5.2.5, not a ``"global"`` region), each with
  ``access_key_id``, ``secret_access_key``, ``session_token``, ``role_arn``,
  ``session_name`` and a naive-UTC ``expiration``: :func:`missing_internals` and
  :func:`assumed_role_attributes_missing` check that shape, and a lookup that finds it
  changed raises ``MotoInternalsChanged``.
"""

from __future__ import annotations

import inspect
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from imgcli.localcloud import MotoInternalsChanged
from imgcli.localcloud.identity import Identities, Principal
from imgcli.localcloud.runtime import FunctionSpec

#: AWS's longest role session, and what a function's workers get.
DEFAULT_SESSION_S: Final = 12 * 3600.0
#: How long an expired session is still recognised (and refused as expired).
EXPIRED_KEPT_S: Final = 3600.0

_KEY_ALPHABET: Final = string.ascii_uppercase + string.digits
_ASSUMED_ROLE_ATTRIBUTES: Final = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "role_arn",
    "session_name",
    "expiration",
)


@dataclass(frozen=True)
class RoleSession(Principal):
    """A role's temporary credentials, with the session name AWS shows in its ARN."""

    session_name: str = ""

    @property
    def assumed_role_arn(self) -> str:
        """``arn:aws:sts::<account>:assumed-role/<role>/<session>``: who AWS says calls."""
        return assumed_role_arn(self.role_arn or "", self.session_name)


def assumed_role_arn(role_arn: str, session_name: str) -> str:
    """The STS ARN of a session of ``role_arn`` (a role's path is not part of it)."""
    parts = role_arn.split(":", 5)
    if len(parts) != 6:
        return role_arn
    partition, account, role = parts[1], parts[4], parts[5].rsplit("/", 1)[-1]
    return f"arn:{partition}:sts::{account}:assumed-role/{role}/{session_name}"


class RoleSessions:
    """Issues role sessions and finds the principal behind an access key id.

    Thread-safe. ``clock`` (epoch seconds) sets expiry times; tests move it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, RoleSession] = {}
        self._lock = threading.Lock()

    def issue(
        self, role_arn: str, session_name: str, duration_s: float = DEFAULT_SESSION_S
    ) -> RoleSession:
        """New temporary credentials for ``role_arn``, valid for ``duration_s`` seconds."""
        if not role_arn.startswith("arn:") or ":role/" not in role_arn:
            raise ValueError(f"not a role ARN: {role_arn!r}")
        now = self._clock()
        session = RoleSession(
            access_key_id="ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
            secret_access_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(96),
            role_arn=role_arn,
            expires_at=now + duration_s,
            session_name=session_name,
        )
        with self._lock:
            self._forget_expired(now)
            self._sessions[session.access_key_id] = session
        return session

    def for_function(self, spec: FunctionSpec) -> RoleSession:
        """Credentials for a worker of ``spec``: its role, in a session named after it."""
        if not spec.role_arn:
            raise ValueError(f"function {spec.name} has no execution role")
        return self.issue(spec.role_arn, spec.name)

    def lookup(self, access_key_id: str) -> Principal | None:
        """The session ``access_key_id`` belongs to (ours, then moto's STS), or ``None``."""
        with self._lock:
            session = self._sessions.get(access_key_id)
        if session is not None:
            return session
        if not access_key_id.startswith("ASIA"):
            return None  # every temporary key moto or we issue starts so
        return moto_sts_session(access_key_id)

    def _forget_expired(self, now: float) -> None:
        stale = [
            key
            for key, session in self._sessions.items()
            if session.expires_at is not None and session.expires_at + EXPIRED_KEPT_S < now
        ]
        for key in stale:
            del self._sessions[key]


class IdentityChain:
    """An ``identity.Identities`` that asks each of several in turn: the gate's, with the
    owner's key first and then the role sessions (``IdentityChain(owner_keys, sessions)``)."""

    def __init__(self, *sources: Identities) -> None:
        self._sources = sources

    def lookup(self, access_key_id: str) -> Principal | None:
        for source in self._sources:
            principal = source.lookup(access_key_id)
            if principal is not None:
                return principal
        return None


def moto_sts_session(access_key_id: str) -> RoleSession | None:
    """The session moto's STS ``AssumeRole`` issued with ``access_key_id``, or ``None``."""
    for assumed in _moto_assumed_roles():
        if getattr(assumed, "access_key_id", None) != access_key_id:
            continue
        missing = assumed_role_attributes_missing(assumed)
        if missing:
            raise MotoInternalsChanged(
                "imgcli's role sessions read moto's STS sessions, which lack: " + ", ".join(missing)
            )
        return RoleSession(
            access_key_id=assumed.access_key_id,
            secret_access_key=assumed.secret_access_key,
            session_token=assumed.session_token,
            role_arn=assumed.role_arn,
            expires_at=_epoch(assumed.expiration),
            session_name=assumed.session_name,
        )
    return None


def missing_internals() -> list[str]:
    """The moto STS internals this module relies on that are missing; empty if none."""
    from moto.sts import models

    problems: list[str] = []
    for name in ("sts_backends", "STSBackend", "AssumedRole"):
        if not hasattr(models, name):
            problems.append(f"moto.sts.models.{name}")
    if problems:
        return problems
    if not isinstance(
        getattr(models.STSBackend("aws", "123456789012"), "assumed_roles", None), list
    ):
        problems.append("STSBackend.assumed_roles (a list)")
    parameters = inspect.signature(models.AssumedRole).parameters
    problems += [
        f"AssumedRole({name}=...)"
        for name in ("access_key", "role_session_name", "role_arn", "duration")
        if name not in parameters
    ]
    return problems


def assumed_role_attributes_missing(assumed: Any) -> list[str]:
    """The attributes :func:`moto_sts_session` reads that moto's session object lacks."""
    return [name for name in _ASSUMED_ROLE_ATTRIBUTES if not hasattr(assumed, name)]


def _moto_assumed_roles() -> Iterator[Any]:
    from moto.sts.models import sts_backends

    # Only backends that exist: indexing a BackendDict would create them.
    for per_account in list(sts_backends.values()):
        for backend in list(per_account.values()):
            yield from list(getattr(backend, "assumed_roles", []))


def _epoch(moment: datetime) -> float:
    """moto's expiration (a naive datetime in UTC) as epoch seconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
