"""Two real ``imgcli bootstrap`` processes of one stack at once, on the local cloud.

Before the stack lock both planned from the same reading, both carried out all 14 steps
and left every permission statement twice. The test holds the stack's lock itself while
both processes start, so both are certain to be waiting (and to say so) when it lets go;
then they race for it as two bootstraps started together would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from imgcli.infra.lock import local_cloud_lock, stack_lock
from imgcli.infra.state import state_path
from tests.localstack import REPO, local_client, local_cloud_env, run_imgcli

STACK = "race"


class Bootstrap:
    """``imgcli bootstrap --json`` in a subprocess, its stderr read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imgcli", "bootstrap", "--json"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self.waiting = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if line.startswith("waiting for "):
                self.waiting.set()

    def finish(self) -> tuple[int, dict[str, Any], str]:
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        code = self.process.wait(timeout=300)
        self._reader.join(30)
        stderr = "".join(self.stderr)
        return code, json.loads(stdout) if code == 0 else {}, stderr


def test_two_bootstraps_at_once_carry_out_one_plan_and_no_statement_twice(
    tmp_path: Path,
) -> None:
    with local_cloud_env(tmp_path, STACK) as env:
        started = run_imgcli(env, "local", "start")
        assert started.returncode == 0, started.stderr
        runs = []
        try:
            with stack_lock(STACK, "bootstrap", environ=env):
                runs = [Bootstrap(env), Bootstrap(env)]
                for run in runs:
                    assert run.waiting.wait(120), "".join(run.stderr)
        finally:
            outcomes = [run.finish() for run in runs]

        expected_wait = f"waiting for another imgcli bootstrap of stack '{STACK}' (pid "
        for code, _, stderr in outcomes:
            assert code == 0, stderr
            assert expected_wait in stderr
        carried_out = [o for o in outcomes if f"bootstrap plan for stack '{STACK}'" in o[2]]
        up_to_date = [o for o in outcomes if f"stack '{STACK}' is up to date" in o[2]]
        assert (len(carried_out), len(up_to_date)) == (1, 1), [o[2] for o in outcomes]
        assert "[15/15]" in carried_out[0][2]
        stack = carried_out[0][1]
        assert up_to_date[0][1] == stack

        lam = local_client(stack, "lambda")
        sids = {
            function: Counter(
                statement["Sid"]
                for statement in json.loads(lam.get_policy(FunctionName=function)["Policy"])[
                    "Statement"
                ]
            )
            for function in stack["functions"].values()
        }
        assert sids == {
            stack["functions"]["save_delete"]: {"s3-invoke": 1},
            stack["functions"]["retrieve"]: {"api-invoke-0": 1, "api-invoke-1": 1},
        }


def test_a_local_bootstrap_does_not_run_while_the_local_cloud_is_being_reset(
    tmp_path: Path,
) -> None:
    # A first bootstrap has no record for `local reset` to find and lock: the local cloud's
    # own lock is what keeps the two apart.
    with local_cloud_env(tmp_path, STACK) as env:
        started = run_imgcli(env, "local", "start")
        assert started.returncode == 0, started.stderr
        with local_cloud_lock("local reset", exclusive=True, environ=env):
            refused = run_imgcli(env, "bootstrap", "--no-wait")
        assert refused.returncode == 2, refused.stderr
        assert "another imgcli local reset of the local cloud (pid " in refused.stderr
        assert not state_path(STACK, env).exists()
