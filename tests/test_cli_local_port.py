"""The local cloud's port and the stack agree: no "start it" / "already running" loop.

One local cloud of this module's own, started as a user would (``imgcli local start
--port N``, no port configured anywhere), then the commands after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imgcli.errors import ExitCode
from imgcli.localcloud import process
from tests.localstack import KEY, SECRET, cloud_environment, free_port, give_owner_key, run_imgcli


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], int]]:
    """A local cloud started with --port on a free port; the environment sets no port."""
    env = cloud_environment(tmp_path_factory.mktemp("local-port"), "portstack")
    del env["IMGCLI_LOCAL_PORT"]
    give_owner_key(env, KEY, SECRET)
    port = free_port()
    result = run_imgcli(env, "local", "start", "--port", str(port), timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        yield env, port
    finally:
        process.stop(port, env)


def test_commands_after_local_start_use_its_port(started: tuple[dict[str, str], int]) -> None:
    env, port = started
    # Before: "is the local cloud running? start it with 'imgcli local start'" (exit 6).
    planned = run_imgcli(env, "bootstrap", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "bootstrap plan for stack 'portstack'" in planned.stderr
    status = run_imgcli(env, "local", "status")
    assert status.returncode == 0, status.stderr
    assert f"http://127.0.0.1:{port}" in status.stdout


def test_a_configured_port_that_disagrees_is_refused_naming_both(
    started: tuple[dict[str, str], int],
) -> None:
    env, port = started
    other = free_port()
    result = run_imgcli({**env, "IMGCLI_LOCAL_PORT": str(other)}, "bootstrap", "--dry-run")
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert (
        f"this data dir's local cloud runs on port {port}, but stack 'portstack' is set to "
        f"port {other} (env IMGCLI_LOCAL_PORT)"
    ) in result.stderr
    assert f"imgcli local start --port {other}" in result.stderr


def test_an_endpoint_where_nothing_answers_names_the_running_port(
    started: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    env, port = started
    other = free_port()
    nowhere = {
        **env,
        "IMGCLI_ENDPOINT_URL": f"http://127.0.0.1:{other}",
        "AWS_MAX_ATTEMPTS": "1",
    }
    result = run_imgcli(nowhere, "bootstrap", "--dry-run")
    assert result.returncode == ExitCode.NETWORK, result.stderr
    assert (
        f"nothing answers on port {other}, but this data dir's local cloud runs on port {port}"
    ) in result.stderr
