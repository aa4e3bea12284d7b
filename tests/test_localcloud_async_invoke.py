"""The local cloud's asynchronous invocation: retries, maximum event age, destinations.

Two tests run a handler zip (``tests.lambda_runtime``) in a real :class:`LambdaRuntime`;
the rules that need time to pass (delays, event age) use a scripted invoker and an injected
clock instead. The last tests check what the event journal is told: every event from its
submission until it is settled, and not the ones a shutdown left queued.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud.async_invoke import AWS_RETRY_DELAYS, AsyncConfig, AsyncInvoker
from imgcli.localcloud.runtime import FunctionSpec, InvocationResult, LambdaRuntime
from tests.lambda_runtime import (
    ACCOUNT,
    FAILURES_QUEUE,
    REGION,
    Destinations,
    running_runtime,
    spec_for,
)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    with running_runtime(tmp_path / "runtime") as runtime:
        yield runtime


class ScriptedInvoker:
    """Answers each invocation with the next scripted outcome, noting when it was called."""

    def __init__(self, failures: int, *, on_call: Callable[[], None] = lambda: None) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.on_call = on_call

    def invoke(self, spec: FunctionSpec, payload: bytes) -> InvocationResult:
        self.calls.append(time.monotonic())
        self.on_call()
        if len(self.calls) <= self.failures:
            error = {"errorType": "ValueError", "errorMessage": "scripted"}
            return InvocationResult(200, json.dumps(error).encode(), "Unhandled", 1.0, "")
        return InvocationResult(200, b'"done"', None, 1.0, "")


def async_invoker(
    runtime: Any,
    destinations: Destinations,
    config: AsyncConfig,
    *,
    retry_delays: tuple[float, ...] = (0.0, 0.0),
    clock: Callable[[], float] = time.monotonic,
) -> AsyncInvoker:
    specs = {"fn": spec_for("h.touch"), "failing": spec_for("h.fail", name="failing")}
    return AsyncInvoker(
        runtime,
        lookup=specs.get,
        invoke_config=lambda name: config,
        send_to_destination=destinations,
        retry_delays=retry_delays,
        threads=2,
        clock=clock,
    )


def test_async_failure_is_retried_twice_then_sent_to_the_on_failure_destination(
    runtime: LambdaRuntime,
) -> None:
    destinations = Destinations()
    invoker = async_invoker(runtime, destinations, AsyncConfig(on_failure=FAILURES_QUEUE))
    try:
        invoker.submit("failing", b'{"id": 1}')
        assert invoker.drain(timeout=10)
    finally:
        invoker.shutdown()

    [(arn, record)] = destinations.sent
    assert arn == FAILURES_QUEUE
    assert set(record) == {
        "version",
        "timestamp",
        "requestContext",
        "requestPayload",
        "responseContext",
        "responsePayload",
    }
    assert record["version"] == "1.0"
    assert time.strptime(record["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert record["timestamp"].endswith("Z")
    context = record["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 3
    assert context["functionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:failing:$LATEST"
    assert context["requestId"]
    assert record["requestPayload"] == {"id": 1}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorType"] == "ValueError"


def test_async_success_sends_nothing_to_the_failure_destination(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    destinations = Destinations()
    invoker = async_invoker(runtime, destinations, AsyncConfig(on_failure=FAILURES_QUEUE))
    marker = tmp_path / "ran"
    try:
        invoker.submit("fn", json.dumps({"marker": str(marker)}).encode())
        assert invoker.drain(timeout=10)
    finally:
        invoker.shutdown()
    assert destinations.sent == []
    assert len(marker.read_text().splitlines()) == 1


def test_async_retries_wait_the_configured_delays_and_obey_maximum_retry_attempts() -> None:
    scripted = ScriptedInvoker(failures=5)
    invoker = async_invoker(
        scripted,
        Destinations(),
        AsyncConfig(maximum_retry_attempts=2),
        retry_delays=(0.15, 0.3),
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(scripted.calls) == 3
    first_gap, second_gap = (
        b - a for a, b in zip(scripted.calls, scripted.calls[1:], strict=False)
    )
    assert 0.15 <= first_gap < 0.6 and 0.3 <= second_gap < 0.9
    assert AWS_RETRY_DELAYS == (60.0, 120.0)

    no_retries = ScriptedInvoker(failures=5)
    destinations = Destinations()
    invoker = async_invoker(
        no_retries, destinations, AsyncConfig(maximum_retry_attempts=0, on_failure="q")
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(no_retries.calls) == 1
    assert destinations.sent[0][1]["requestContext"]["approximateInvokeCount"] == 1


def test_an_event_older_than_the_maximum_age_is_not_retried() -> None:
    now = [1000.0]
    scripted = ScriptedInvoker(failures=5, on_call=lambda: now.__setitem__(0, now[0] + 120))
    destinations = Destinations()
    invoker = async_invoker(
        scripted,
        destinations,
        AsyncConfig(maximum_event_age_s=60, on_failure="q"),
        clock=lambda: now[0],
    )
    try:
        invoker.submit("fn", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert len(scripted.calls) == 1
    context = destinations.sent[0][1]["requestContext"]
    assert (context["condition"], context["approximateInvokeCount"]) == ("EventAgeExceeded", 1)


def test_async_success_goes_to_an_on_success_destination_and_gone_functions_are_dropped() -> None:
    destinations = Destinations()
    invoker = async_invoker(ScriptedInvoker(failures=0), destinations, AsyncConfig(on_success="ok"))
    try:
        invoker.submit("fn", b'{"a": 1}')
        invoker.submit("no-such-function", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    [(arn, record)] = destinations.sent
    assert arn == "ok" and record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == "done"
    assert "functionError" not in record["responseContext"]


def journaled_invoker(
    runtime: Any, journal: Any, config: AsyncConfig, **options: Any
) -> AsyncInvoker:
    return AsyncInvoker(
        runtime,
        lookup={"fn": spec_for("h.touch")}.get,
        invoke_config=lambda name: config,
        send_to_destination=options.pop("destinations", Destinations()),
        retry_delays=(0.0,),
        journal=journal,
        **options,
    )


class Journal:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.settled = threading.Event()

    def submitted(self, event_id: str, function: str, payload: bytes) -> None:
        self.calls.append(("submitted", event_id))

    def finished(self, event_id: str) -> None:
        self.calls.append(("finished", event_id))
        self.settled.set()


def test_every_event_is_journaled_until_it_is_settled() -> None:
    journal = Journal()
    invoker = journaled_invoker(ScriptedInvoker(failures=0), journal, AsyncConfig(), threads=1)
    try:
        ran = invoker.submit("fn", b"{}")
        gone = invoker.submit("no-such-function", b"{}")
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    # The worker thread may settle the first before the second is submitted.
    assert sorted(journal.calls) == sorted(
        [("submitted", ran), ("submitted", gone), ("finished", ran), ("finished", gone)]
    )
    for event in (ran, gone):
        assert journal.calls.index(("submitted", event)) < journal.calls.index(("finished", event))


def test_events_still_queued_at_shutdown_are_not_settled() -> None:
    started, release = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(5)

    journal = Journal()
    invoker = journaled_invoker(
        ScriptedInvoker(failures=0, on_call=block), journal, AsyncConfig(), threads=1
    )
    running = invoker.submit("fn", b"1")
    assert started.wait(5)
    queued = [invoker.submit("fn", b"2"), invoker.submit("fn", b"3")]
    invoker.shutdown(timeout=0)  # drops the queued ones, lets the running one finish
    release.set()
    assert journal.settled.wait(5)

    settled = [event_id for call, event_id in journal.calls if call == "finished"]
    assert settled == [running]
    assert queued[0] != queued[1]


def test_a_resubmitted_event_keeps_its_id_and_its_age() -> None:
    now = [1000.0]
    destinations = Destinations()
    journal = Journal()
    invoker = journaled_invoker(
        ScriptedInvoker(failures=0),
        journal,
        AsyncConfig(maximum_event_age_s=60, on_failure="q"),
        destinations=destinations,
        clock=lambda: now[0],
        threads=1,
    )
    try:
        invoker.resubmit("from-before-the-crash", "fn", b'{"a": 1}', age_s=120)
        assert invoker.drain(timeout=5)
    finally:
        invoker.shutdown()
    assert journal.calls == [("finished", "from-before-the-crash")]  # not noted again
    context = destinations.sent[0][1]["requestContext"]
    assert (context["requestId"], context["condition"]) == (
        "from-before-the-crash",
        "EventAgeExceeded",
    )
