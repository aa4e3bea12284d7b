"""The functions' logs, written to their log groups in CloudWatch Logs as Lambda writes them.

On AWS a function's output goes to the log group ``/aws/lambda/<name>``, one log stream
per execution environment, and Lambda writes it with the function's own role: a role
without ``logs:CreateLogStream`` and ``logs:PutLogEvents`` on that group loses its logs
(and one without ``logs:CreateLogGroup`` loses them when the group does not exist). The
runtime hands every invocation's log to :class:`FunctionLogWriter` (its ``log_sink``),
which checks the role's policies at that moment (``role_policies``) and writes into
moto's Logs backend in process, so ``aws logs tail /aws/lambda/<name>`` works locally and
a missing logging permission shows as missing logs, as it would on AWS.

Each line is one event (Lambda's START, END and REPORT lines included), stamped with the
time it is written. Lines end at ``\\n`` only, as Lambda splits a function's output: a
``\\r`` (which Lambda's own Python logging handler puts in place of a traceback's newlines
to keep a record in one event) or a Unicode line separator inside a JSON line (which
``json.dumps(..., ensure_ascii=False)`` leaves as it is) stays in its event. The writes
change moto's state outside any request, so they run through ``mutate``, which the server
points at whatever serialises changes with its snapshots (the journal's mutation lock);
reading the role's policies does not need it. A refusal is logged once per function and
reason, not per invocation. moto keeps every event it is given (it enforces no retention),
so the log groups grow with use; they are saved with the rest of the state. The moto names
used here are checked by :func:`missing_internals`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from imgcli.localcloud.role_policies import role_allows
from imgcli.localcloud.runtime import FunctionSpec

LOGGER: Final = logging.getLogger(__name__)


def log_group_name(function_name: str) -> str:
    """Lambda's log group for a function."""
    return f"/aws/lambda/{function_name}"


class FunctionLogWriter:
    """The runtime's ``log_sink``: writes an invocation's log as the function's role.

    ``account`` and ``region`` are the local cloud's; ``clock`` (epoch seconds) stamps the
    events; ``mutate(change)`` runs each change to moto's Logs backend (by default, just
    calls it). Thread-safe: workers of many functions finish at once.
    """

    def __init__(
        self,
        account: str,
        region: str,
        *,
        clock: Callable[[], float] = time.time,
        mutate: Callable[[Callable[[], None]], None] = lambda change: change(),
    ) -> None:
        self._account = account
        self._region = region
        self._clock = clock
        self._mutate = mutate
        self._created: set[tuple[str, str]] = set()
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, spec: FunctionSpec, stream: str, text: str) -> None:
        if spec.role_arn is None:
            return  # no role, no credentials to write with
        group = log_group_name(spec.name)
        group_arn = f"arn:aws:logs:{self._region}:{self._account}:log-group:{group}"
        stream_arn = f"{group_arn}:log-stream:{stream}"
        backend = self._backend()
        if group not in backend.groups:
            if not self._allowed(spec, "logs:CreateLogGroup", f"{group_arn}:*"):
                return
            self._mutate(lambda: self._create(lambda: backend.create_log_group(group, {})))
        if (group, stream) not in self._created:
            if not self._allowed(spec, "logs:CreateLogStream", stream_arn):
                return
            self._mutate(lambda: self._create(lambda: backend.create_log_stream(group, stream)))
            with self._lock:
                self._created.add((group, stream))
        if not self._allowed(spec, "logs:PutLogEvents", stream_arn):
            return
        now_ms = int(self._clock() * 1000)
        events = [{"timestamp": now_ms, "message": line} for line in text.split("\n") if line]
        if events:
            self._mutate(lambda: self._put(backend, group, stream, events))

    def _put(self, backend: Any, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        from moto.logs.exceptions import ResourceNotFoundException

        try:
            backend.put_log_events(group, stream, events)
        except ResourceNotFoundException:
            # Someone deleted the group or stream: these lines are lost, as on AWS, and the
            # next invocation makes them again (if the role still may).
            with self._lock:
                self._created.discard((group, stream))

    def _allowed(self, spec: FunctionSpec, action: str, resource: str) -> bool:
        assert spec.role_arn is not None
        evaluation = role_allows(spec.role_arn, action, resource, self._region)
        if evaluation.allowed:
            return True
        with self._lock:
            first = (spec.name, action) not in self._warned
            self._warned.add((spec.name, action))
        if first:
            LOGGER.warning(
                "%s's logs are not written: its role %s may not %s on %s (%s)",
                spec.name,
                spec.role_arn,
                action,
                resource,
                evaluation.decision.value,
            )
        return False

    def _backend(self) -> Any:
        from moto.logs.models import logs_backends

        return logs_backends[self._account][self._region]

    @staticmethod
    def _create(create: Callable[[], Any]) -> None:
        from moto.logs.exceptions import ResourceAlreadyExistsException

        # Another worker of the function may have made it first.
        with contextlib.suppress(ResourceAlreadyExistsException):
            create()


def missing_internals() -> list[str]:
    """The moto Logs internals this module relies on that are missing; empty if none."""
    from moto.logs import exceptions, models

    problems = [
        f"moto.logs.{name}"
        for owner, name in [
            (models, "logs_backends"),
            (models, "LogsBackend"),
            (exceptions, "ResourceAlreadyExistsException"),
            (exceptions, "ResourceNotFoundException"),
        ]
        if not hasattr(owner, name)
    ]
    if problems:
        return problems
    for method in ("create_log_group", "create_log_stream", "put_log_events"):
        if not callable(getattr(models.LogsBackend, method, None)):
            problems.append(f"LogsBackend.{method}")
    if not isinstance(
        getattr(models.LogsBackend("us-east-1", "123456789012"), "groups", None), dict
    ):
        problems.append("LogsBackend.groups (a dict)")
    return problems
