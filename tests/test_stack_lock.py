"""The stack lock (``imgcli.infra.lock``) against other real processes: a second holder
waits and is told who holds it, ``wait=False`` refuses, a dead holder never blocks; and
bootstrap and destroy take it through the CLI."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgcli.cli import app
from imgcli.infra.deploy import forgetting_local_stacks
from imgcli.infra.errors import InvalidStackName
from imgcli.infra.lock import LockHolder, StackBusy, local_cloud_lock, lock_path, stack_lock
from imgcli.infra.state import StackState, state_path

REPO = Path(__file__).resolve().parents[1]
HOLDER = """
import sys
from imgcli.infra.lock import stack_lock
with stack_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


@contextmanager
def held_elsewhere(stack: str, command: str = "bootstrap") -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``stack``'s lock as ``command`` until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, stack, command],
        cwd=REPO,
        env=os.environ.copy(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=30)


def test_a_second_holder_waits_and_hears_who_holds_it() -> None:
    heard: list[LockHolder] = []
    waiting, acquired = threading.Event(), threading.Event()

    def on_wait(holder: LockHolder) -> None:
        heard.append(holder)
        waiting.set()

    def second() -> None:
        with stack_lock("s1", "destroy", on_wait=on_wait):
            acquired.set()

    with held_elsewhere("s1") as holder:
        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        assert waiting.wait(30)
        assert not acquired.is_set()  # the other process still holds it
        assert heard == [LockHolder("s1", "bootstrap", holder.pid)]
        assert heard[0].describe() == f"another imgcli bootstrap of stack 's1' (pid {holder.pid})"
        assert holder.stdin is not None
        holder.stdin.close()  # the holder finishes
        assert acquired.wait(30)
    thread.join(30)


def test_without_waiting_a_held_lock_is_refused_naming_its_holder() -> None:
    with (
        held_elsewhere("s1", "destroy") as holder,
        pytest.raises(StackBusy) as refused,
        stack_lock("s1", "bootstrap", wait=False),
    ):
        pytest.fail("the lock is held by another process")
    assert (
        refused.value.message
        == f"another imgcli destroy of stack 's1' (pid {holder.pid}) is running"
    )
    assert refused.value.hint is not None and "--no-wait" in refused.value.hint


def test_the_lock_of_a_process_that_died_never_blocks() -> None:
    with held_elsewhere("s1") as holder:
        os.kill(holder.pid, signal.SIGKILL)  # no chance to clean anything up
        holder.wait(timeout=30)
        heard: list[LockHolder] = []
        with stack_lock("s1", "bootstrap", wait=False, on_wait=heard.append):
            pass
        assert heard == []


def test_other_stacks_are_not_held() -> None:
    with held_elsewhere("s1"), stack_lock("s2", "bootstrap", wait=False):
        pass


def test_the_lock_sits_beside_the_state_file_and_names_its_holder_only_while_held() -> None:
    path = lock_path("s1")
    assert path == state_path("s1").with_name("s1.lock")
    with stack_lock("s1", "bootstrap"):
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert path.read_text() == ""


def test_a_stack_name_that_is_no_stack_name_never_becomes_a_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidStackName):
        state_path("../../x")
    with pytest.raises(InvalidStackName):
        lock_path("")


# Through the CLI (on moto in process) --------------------------------------------------

runner = CliRunner()


def test_bootstrap_and_destroy_with_no_wait_refuse_a_stack_being_changed(moto_aws: None) -> None:
    with held_elsewhere("c1") as holder:
        for command in (["bootstrap", "--target", "aws"], ["destroy", "--target", "aws", "--yes"]):
            result = runner.invoke(app, ["--stack", "c1", *command, "--no-wait"])
            assert result.exit_code == 2, result.stderr
            assert f"another imgcli bootstrap of stack 'c1' (pid {holder.pid}) is running" in (
                result.stderr
            )
    assert StackState.load(state_path("c1")) is None  # neither changed anything
    # A dry run changes nothing, so it takes no lock: it plans while the other runs.
    with held_elsewhere("c1"):
        planned = runner.invoke(app, ["--stack", "c1", "bootstrap", "--target", "aws", "--dry-run"])
        assert planned.exit_code == 0, planned.stderr


def test_a_stack_name_reaching_outside_the_data_dir_is_refused(tmp_path: Path) -> None:
    """``--stack ../../x stack`` read ``<data dir>/../x.json``."""
    outside = Path(os.environ["IMGCLI_DATA_DIR"]).parent / "x.json"
    StackState(path=outside, stack="x", target="aws", complete=True).save()
    result = runner.invoke(app, ["--stack", "../../x", "stack"])
    assert result.exit_code == 2
    assert "stack name" in result.stderr


# The local cloud's lock: local reset against a first bootstrap -------------------------


def test_a_local_reset_waits_for_a_first_bootstrap_that_has_no_record_yet() -> None:
    heard: list[LockHolder] = []
    reset_ran = threading.Event()

    def reset() -> None:
        with forgetting_local_stacks("the local cloud was reset", on_wait=heard.append):
            reset_ran.set()

    # A first bootstrap of a local stack holds the lock shared, and no record exists yet.
    with local_cloud_lock("bootstrap", exclusive=False):
        resetting = threading.Thread(target=reset)
        resetting.start()
        resetting.join(1.0)
        assert not reset_ran.is_set()  # waiting: no stack lock could have stopped it
        StackState(path=state_path("first"), stack="first", target="local").save()
    resetting.join(30)
    assert reset_ran.is_set()
    assert heard == [LockHolder(None, None, None)]
    state = StackState.load(state_path("first"))
    assert state is not None and state.gone == "the local cloud was reset"


def test_local_bootstraps_share_the_local_cloud_s_lock_and_a_reset_excludes_them() -> None:
    shared = local_cloud_lock("bootstrap", exclusive=False)
    with shared, local_cloud_lock("destroy", exclusive=False, wait=False):
        pass  # two local stacks may change side by side
    with local_cloud_lock("bootstrap", exclusive=False), pytest.raises(StackBusy):
        local_cloud_lock("local reset", exclusive=True, wait=False).__enter__()
    reset = local_cloud_lock("local reset", exclusive=True)
    with reset, pytest.raises(StackBusy) as refused:
        local_cloud_lock("bootstrap", exclusive=False, wait=False).__enter__()
    assert refused.value.holder == LockHolder(None, "local reset", os.getpid())
    assert "another imgcli local reset of the local cloud" in refused.value.message
