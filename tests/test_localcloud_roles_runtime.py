"""The runtime gives each worker its role's credentials, a private HOME and /tmp, and logs.

Real workers (``tests.lambda_runtime``) with a credential source that records what it
issued, a clock the tests move, and a log sink that keeps what it was given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imgcli.localcloud.identity import Principal
from imgcli.localcloud.role_sessions import RoleSessions
from imgcli.localcloud.runtime import CREDENTIALS_MARGIN_S, FunctionSpec, LambdaRuntime
from tests.lambda_runtime import REGION, spec_for

ROLE = "arn:aws:iam::123456789012:role/imgcli-demo-save-delete"
OTHER_ROLE = "arn:aws:iam::123456789012:role/imgcli-demo-retrieve"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class RecordingSessions:
    """Issues real role sessions and remembers them."""

    def __init__(self, clock: Clock, duration_s: float = 3600.0) -> None:
        self.sessions = RoleSessions(clock=clock)
        self.duration_s = duration_s
        self.issued: list[Principal] = []

    def __call__(self, spec: FunctionSpec) -> Principal:
        assert spec.role_arn is not None
        session = self.sessions.issue(spec.role_arn, spec.name, self.duration_s)
        self.issued.append(session)
        return session


class Logs:
    def __init__(self) -> None:
        self.written: list[tuple[str, str, str]] = []

    def __call__(self, spec: FunctionSpec, stream: str, text: str) -> None:
        self.written.append((spec.name, stream, text))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> RecordingSessions:
    return RecordingSessions(clock)


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def runtime(
    tmp_path: Path, clock: Clock, issuer: RecordingSessions, logs: Logs
) -> Iterator[LambdaRuntime]:
    runtime = LambdaRuntime(
        workdir=tmp_path / "runtime",
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
        credentials=issuer,
        log_sink=logs,
        clock=clock,
    )
    try:
        yield runtime
    finally:
        runtime.shutdown()


def run(runtime: LambdaRuntime, spec: FunctionSpec) -> dict[str, Any]:
    result = runtime.invoke(spec, b"{}")
    assert result.function_error is None, result.payload
    answer: dict[str, Any] = json.loads(result.payload)
    return answer


def test_each_worker_gets_its_roles_session_credentials(
    runtime: LambdaRuntime, issuer: RecordingSessions
) -> None:
    seen = run(runtime, spec_for("h.home", role_arn=ROLE))
    [session] = issuer.issued
    assert seen["key"] == session.access_key_id and seen["key"].startswith("ASIA")
    assert seen["token"] == session.session_token
    assert session.role_arn == ROLE
    # A warm worker keeps its credentials; no new session per invocation.
    assert run(runtime, spec_for("h.home", role_arn=ROLE))["key"] == session.access_key_id
    assert len(issuer.issued) == 1


def test_a_role_change_takes_effect_on_the_next_invocation(
    runtime: LambdaRuntime, issuer: RecordingSessions
) -> None:
    spec = spec_for("h.home", role_arn=ROLE)
    before = run(runtime, spec)
    after = run(runtime, replace(spec, role_arn=OTHER_ROLE))
    assert after["pid"] != before["pid"]
    assert [s.role_arn for s in issuer.issued] == [ROLE, OTHER_ROLE]
    assert after["key"] == issuer.issued[1].access_key_id


def test_a_worker_is_replaced_before_its_credentials_expire(
    runtime: LambdaRuntime, issuer: RecordingSessions, clock: Clock
) -> None:
    spec = spec_for("h.home", role_arn=ROLE, timeout_s=3)
    first = run(runtime, spec)
    expires_at = issuer.issued[0].expires_at
    assert expires_at is not None
    # Still long enough for an invocation and the margin: the warm worker serves.
    clock.now = expires_at - spec.timeout_s - CREDENTIALS_MARGIN_S - 1
    assert run(runtime, spec)["pid"] == first["pid"]
    # Not any more: a fresh worker with fresh credentials.
    clock.now += 2
    fresh = run(runtime, spec)
    assert fresh["pid"] != first["pid"]
    assert fresh["key"] == issuer.issued[1].access_key_id != first["key"]


def test_workers_get_a_private_home_and_tmp_removed_with_them(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    one = run(runtime, spec_for("h.home", name="one", role_arn=ROLE))
    two = run(runtime, spec_for("h.home", name="two", role_arn=ROLE))
    for seen in (one, two):
        home = Path(seen["home"])
        assert seen["tmp"] == seen["home"]
        assert home.parent == tmp_path / "runtime" / "tmp"
        assert seen["mode"] == 0o700
        assert home != Path(os.path.expanduser("~"))
        assert (home / "scratch").read_text() == "mine"
    assert one["home"] != two["home"]
    runtime.shutdown()
    assert not Path(one["home"]).exists() and not Path(two["home"]).exists()


def test_leftover_worker_directories_are_cleared_at_start(tmp_path: Path) -> None:
    stale = tmp_path / "runtime" / "tmp" / "worker-from-a-killed-server"
    stale.mkdir(parents=True)
    LambdaRuntime(
        workdir=tmp_path / "runtime",
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
        credentials=("k", "s"),
    ).shutdown()
    assert not stale.exists()


def test_static_credentials_carry_no_session_token(tmp_path: Path) -> None:
    runtime = LambdaRuntime(
        workdir=tmp_path, endpoint_url="http://127.0.0.1:9", region=REGION, credentials=("k", "s")
    )
    try:
        seen = run(runtime, spec_for("h.home"))
    finally:
        runtime.shutdown()
    assert (seen["key"], seen["token"]) == ("k", None)


def test_every_invocations_whole_log_goes_to_the_sink(runtime: LambdaRuntime, logs: Logs) -> None:
    spec = spec_for("h.chatty", role_arn=ROLE)
    long = runtime.invoke(spec, b'{"long": true}')
    short = runtime.invoke(spec, b"{}")
    [(name, stream, text), (_, same_stream, second)] = logs.written
    assert name == "fn" and stream == same_stream  # one stream per worker
    assert "/[$LATEST]" in stream
    # The sink gets the whole log, where LogType=Tail gets its last 4 KB.
    assert text.startswith(f"START RequestId: {long.request_id}") and "x" * 10000 in text
    assert "START RequestId" not in long.log
    assert second.splitlines()[-1].startswith(f"REPORT RequestId: {short.request_id}")
    failed = runtime.invoke(spec_for("missing.handler", role_arn=ROLE), b"{}")
    assert failed.function_error == "Unhandled"
    assert "Runtime.ImportModuleError" in logs.written[-1][2]


def test_a_failing_log_sink_never_fails_the_invocation(tmp_path: Path) -> None:
    def broken(spec: FunctionSpec, stream: str, text: str) -> None:
        raise RuntimeError("logs are down")

    runtime = LambdaRuntime(
        workdir=tmp_path,
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
        credentials=("k", "s"),
        log_sink=broken,
    )
    try:
        assert runtime.invoke(spec_for("h.echo"), b'{"a": 1}').payload == b'{"a": 1}'
    finally:
        runtime.shutdown()
