"""Lambda's asynchronous invocation (``InvocationType=Event``) on the local cloud.

:class:`AsyncInvoker` is Lambda's event queue: ``submit`` returns at once, worker threads
invoke, a function error is retried per AWS's rules (``MaximumRetryAttempts``, default 2;
``MaximumEventAgeInSeconds``), and an event that still fails goes to the ``OnFailure``
destination as AWS's invocation record. AWS waits one minute before the first retry and two
before the second (``AWS_RETRY_DELAYS``); the local cloud passes shorter delays so a failing
event settles in seconds. Retries wait in a schedule, not in a sleeping thread, so one
failing function cannot stall the others.

The invoker sits in front of a synchronous :class:`~imgcli.localcloud.runtime.Invoker` (the
``LambdaRuntime``) and, like it, knows nothing about moto: ``moto_lambda`` supplies the
functions, their event invoke configs and the delivery to destinations.

**Events survive a crash.** An accepted event is a promise (S3 told the writer its object
is stored; Lambda answered 202), so an ``EventJournal`` (the server's journal,
``journal_layer.EventLedger``) notes each event as it is submitted and again once it is
settled: succeeded, delivered to its on-failure destination, or given up (too old, its
function gone). Events still queued when the invoker shuts down are *not* settled: the
next start ``resubmit``s them, with their original payloads and ids, as it does events a
crash left unsettled. An event that had run without being noted settled runs again:
delivery is at least once, as on AWS.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from imgcli.localcloud.runtime import (
    FunctionSpec,
    InvocationResult,
    Invoker,
    aws_error,
    aws_timestamp,
)

logger = logging.getLogger(__name__)

AWS_RETRY_DELAYS: Final = (60.0, 120.0)
"""AWS's waits before the first and second retry of a failed asynchronous invocation."""

DEFAULT_MAX_RETRY_ATTEMPTS: Final = 2
DEFAULT_MAX_EVENT_AGE_S: Final = 21600.0


@dataclass(frozen=True)
class AsyncConfig:
    """A function's event invoke config (``PutFunctionEventInvokeConfig``), AWS's defaults
    when it has none: two retries, six hours, no destinations."""

    maximum_retry_attempts: int = DEFAULT_MAX_RETRY_ATTEMPTS
    maximum_event_age_s: float = DEFAULT_MAX_EVENT_AGE_S
    on_failure: str | None = None
    on_success: str | None = None


class EventJournal(Protocol):
    """Notes each event from submission until it is settled, so a restart can resume it."""

    def submitted(self, event_id: str, function: str, payload: bytes) -> None:
        """Note a new event; returns once it would survive a crash."""

    def finished(self, event_id: str) -> None:
        """Note that the event is settled and must not run again."""


@dataclass
class _Event:
    """One asynchronous invocation on its way through attempts."""

    request_id: str
    function: str
    payload: bytes
    submitted_at: float
    attempts: int = 0
    last_result: InvocationResult | None = None
    function_arn: str = ""


class AsyncInvoker:
    """Lambda's asynchronous invocation (``InvocationType=Event``): queue, retries, destinations.

    ``lookup`` resolves a function name or ARN to its current spec when an attempt starts
    (``None``: the function is gone and the event is dropped); ``invoke_config`` gives its
    event invoke config; ``send_to_destination(arn, record)`` delivers an invocation record.
    ``retry_delays[i]`` is the wait before retry ``i + 1`` (the last one repeats); AWS's
    are ``AWS_RETRY_DELAYS``. ``clock`` (monotonic seconds) measures event age and times
    retries; tests replace it to age events without waiting.
    """

    def __init__(
        self,
        runtime: Invoker,
        *,
        lookup: Callable[[str], FunctionSpec | None],
        invoke_config: Callable[[str], AsyncConfig],
        send_to_destination: Callable[[str, dict[str, Any]], None],
        retry_delays: Sequence[float] = AWS_RETRY_DELAYS,
        threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
        journal: EventJournal | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if any(delay < 0 for delay in retry_delays):
            raise ValueError("retry delays can't be negative")
        self._runtime = runtime
        self._lookup = lookup
        self._invoke_config = invoke_config
        self._send = send_to_destination
        self._retry_delays = tuple(retry_delays)
        self._clock = clock
        self._journal = journal
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Event]] = []
        self._order = itertools.count()
        self._outstanding = 0
        self._running = True
        self._threads = [
            threading.Thread(target=self._serve, name=f"lambda-async-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: str, payload: bytes) -> str:
        """Queues one asynchronous invocation of a function (name or ARN); returns its id.

        Returns at once, or, with a journal, once the journal holds the event.
        """
        event = _Event(str(uuid.uuid4()), function, payload, submitted_at=self._clock())
        with self._cond:
            if not self._running:
                raise RuntimeError("the asynchronous invoker has been shut down")
        if self._journal is not None:
            self._journal.submitted(event.request_id, function, payload)
        self._enqueue(event)
        return event.request_id

    def resubmit(self, event_id: str, function: str, payload: bytes, *, age_s: float) -> None:
        """Queues again an event submitted before a restart (the journal still holds it).

        ``age_s`` is how long ago it was first submitted, for ``MaximumEventAgeInSeconds``.
        """
        submitted_at = self._clock() - max(age_s, 0.0)
        self._enqueue(_Event(event_id, function, payload, submitted_at=submitted_at))

    def _enqueue(self, event: _Event) -> None:
        with self._cond:
            if not self._running:
                raise RuntimeError("the asynchronous invoker has been shut down")
            self._outstanding += 1
            self._schedule(event, self._clock())

    def drain(self, timeout: float) -> bool:
        """Waits until every submitted event has succeeded or been given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stops the threads after their current attempt; events still waiting are dropped."""
        with self._cond:
            self._running = False
            dropped = len(self._due)
            self._due.clear()
            self._outstanding -= dropped
            self._cond.notify_all()
        if dropped:
            logger.warning("dropped %d queued asynchronous invocation(s) at shutdown", dropped)
        for thread in self._threads:
            thread.join(timeout)

    def _schedule(self, event: _Event, due: float) -> None:
        heapq.heappush(self._due, (due, next(self._order), event))
        self._cond.notify()

    def _next_due(self) -> _Event | None:
        with self._cond:
            while self._running:
                if self._due:
                    wait = self._due[0][0] - self._clock()
                    if wait <= 0:
                        return heapq.heappop(self._due)[2]
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _serve(self) -> None:
        while (event := self._next_due()) is not None:
            try:
                retry_at = self._attempt(event)
            except Exception:  # a bug in one event must not kill the thread
                logger.exception("asynchronous invocation %s failed", event.request_id)
                retry_at = None
            if retry_at is None:
                self._settled(event)
            with self._cond:
                if retry_at is not None and self._running:
                    self._schedule(event, retry_at)
                else:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def _settled(self, event: _Event) -> None:
        if self._journal is None:
            return
        try:
            self._journal.finished(event.request_id)
        except Exception:  # at worst the event runs once more after a restart
            logger.exception("could not note event %s as settled", event.request_id)

    def _attempt(self, event: _Event) -> float | None:
        """Runs one attempt; returns when to retry, or None when the event is settled."""
        spec = self._lookup(event.function)
        if spec is None:
            logger.warning(
                "dropping event %s: function %s is gone", event.request_id, event.function
            )
            return None
        event.function_arn = spec.qualified_arn
        config = self._invoke_config(event.function)
        if self._clock() - event.submitted_at > config.maximum_event_age_s:
            self._deliver(config.on_failure, event, "EventAgeExceeded")
            return None
        result = self._run(spec, event.payload)
        event.attempts += 1
        event.last_result = result
        if result.function_error is None:
            self._deliver(config.on_success, event, "Success")
            return None
        if event.attempts > config.maximum_retry_attempts:
            self._deliver(config.on_failure, event, "RetriesExhausted")
            return None
        return self._clock() + self._retry_delay(event.attempts)

    def _run(self, spec: FunctionSpec, payload: bytes) -> InvocationResult:
        try:
            return self._runtime.invoke(spec, payload)
        except Exception as exc:  # the runtime failing is a failed attempt
            logger.exception("runtime failed to invoke %s", spec.name)
            error = aws_error("Runtime.Unknown", f"the local runtime failed: {exc}")
            return InvocationResult(200, json.dumps(error).encode(), "Unhandled", 0.0, "")

    def _retry_delay(self, attempts: int) -> float:
        if not self._retry_delays:
            return 0.0
        return self._retry_delays[min(attempts, len(self._retry_delays)) - 1]

    def _deliver(self, destination: str | None, event: _Event, condition: str) -> None:
        if not destination:
            if condition != "Success":
                logger.warning(
                    "asynchronous invocation %s of %s failed (%s); no on-failure destination",
                    event.request_id,
                    event.function,
                    condition,
                )
            return
        try:
            self._send(destination, _invocation_record(event, condition))
        except Exception:  # a missing queue must not stop other deliveries
            logger.exception("could not send invocation %s to %s", event.request_id, destination)


def _invocation_record(event: _Event, condition: str) -> dict[str, Any]:
    """The record Lambda sends to a destination (AWS, "Adding a destination")."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": aws_timestamp(),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": event.function_arn,
            "condition": condition,
            "approximateInvokeCount": event.attempts,
        },
        "requestPayload": _json_or_text(event.payload),
    }
    result = event.last_result
    if result is not None:
        response: dict[str, Any] = {
            "statusCode": result.status_code,
            "executedVersion": result.executed_version,
        }
        if result.function_error:
            response["functionError"] = result.function_error
        record["responseContext"] = response
        record["responsePayload"] = _json_or_text(result.payload)
    return record


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", errors="replace")
